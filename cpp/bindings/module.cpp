// pybind11 glue: NumPy arrays in, pointers and shapes to the core, the GIL
// released around the work. Arrays are read in place; anything that would
// need a conversion (another dtype, another memory order, a list) is refused
// with a message that says how to get the expected array. No training logic
// lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__GLIBCXX__)
#include <cxxabi.h>  // abi::__forced_unwind
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "chainrule/chainrule.hpp"

namespace py = pybind11;
using namespace chainrule;

namespace {

// predict releases the GIL only for at least this many multiply-adds (records
// x parameters), about 10 microseconds of work: releasing and taking it back
// costs a fraction of a microsecond, more than a single-record predict of a
// small network. Below it, other Python threads wait that long at most.
constexpr std::size_t kReleaseGilWork = std::size_t{1} << 15;
// How often a fit in the main thread takes the GIL to look for Ctrl-C.
constexpr std::chrono::milliseconds kSignalInterval{20};

template <typename T>
std::string how_to_fix(const char* name) {
    return std::string("; pass np.ascontiguousarray(") + name + ", dtype=np." + dtype_name<T>() + ")";
}

// Whether obj is a numpy.ma.MaskedArray (an ndarray subclass whose data
// buffer holds the masked values too). Only a subclass can be one, and only
// once numpy.ma is imported: an exact ndarray, or a process that never
// imported numpy.ma, costs no lookup.
bool is_masked_array(const py::handle& obj) {
    if (Py_TYPE(obj.ptr()) == py::detail::npy_api::get().PyArray_Type_) return false;
    PyObject* core = PyImport_GetModule(py::str("numpy.ma.core").ptr());  // new reference, or null: not imported
    if (core == nullptr) {
        if (PyErr_Occurred()) throw py::error_already_set();
        return false;
    }
    const py::object module = py::reinterpret_steal<py::object>(core);
    const py::object masked = py::getattr(module, "MaskedArray", py::none());
    if (masked.is_none()) return false;
    const int is = PyObject_IsInstance(obj.ptr(), masked.ptr());
    if (is < 0) throw py::error_already_set();
    return is != 0;
}

// A read-only view of a C-contiguous, aligned, native-endian array of T with
// 2 dimensions (or 1, seen as one column, where `allow_vector`). Never copies.
template <typename T>
ConstMatrixView<T> as_matrix(const py::handle& obj, const char* name, bool allow_vector) {
    if (!py::isinstance<py::array>(obj)) {
        throw py::type_error(std::string(name) + " must be a numpy.ndarray of dtype " + dtype_name<T>() + ", got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))) + how_to_fix<T>(name));
    }
    if (is_masked_array(obj)) {
        throw py::type_error(std::string(name) + " is a numpy.ma.MaskedArray: its masked entries would be read as "
                             "data, since arrays are read in place; pass a numpy.ndarray without the masked records, "
                             "or " + name + ".filled(value) to choose their values");
    }
    const auto array = py::reinterpret_borrow<py::array>(obj);
    if (!array.dtype().is(py::dtype::of<T>()) && !array.dtype().equal(py::dtype::of<T>())) {
        throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(array.dtype())) +
                             ", but the network's dtype is " + dtype_name<T>() + "; it is read in place, never "
                             "converted" + how_to_fix<T>(name));
    }
    if (!(array.flags() & py::array::c_style) || !(array.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
        throw py::value_error(std::string(name) + " must be C-contiguous (row-major) and aligned; it is read in "
                              "place, never copied" + how_to_fix<T>(name));
    }
    const auto* data = static_cast<const T*>(array.data());
    if (array.ndim() == 2) {
        return {data, static_cast<std::size_t>(array.shape(0)), static_cast<std::size_t>(array.shape(1))};
    }
    if (array.ndim() == 1 && allow_vector) return {data, static_cast<std::size_t>(array.shape(0)), 1};
    throw py::value_error(std::string(name) + " must be 2-D (n_records, " + (allow_vector ? "n_outputs" : "n_features") +
                          ")" + (allow_vector ? " or 1-D for a single output" : "") + ", got " +
                          std::to_string(array.ndim()) + "-D" +
                          (array.ndim() == 1 ? "; reshape a single record with X.reshape(1, -1)" : ""));
}

std::size_t non_negative(long long value, const char* name);  // below, with the settings

// One array of a CSR matrix (X.data, X.indices, X.indptr), 1-D, C-contiguous
// and aligned, read in place.
py::array csr_part(const py::object& X, const char* part) {
    const py::object obj = X.attr(part);
    const std::string name = std::string("X.") + part;
    if (!py::isinstance<py::array>(obj)) {
        throw py::type_error(name + " must be a numpy.ndarray, got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    }
    const auto array = py::reinterpret_borrow<py::array>(obj);
    if (array.ndim() != 1) throw py::value_error(name + " must be 1-D, got " + std::to_string(array.ndim()) + "-D");
    if (!(array.flags() & py::array::c_style) || !(array.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
        throw py::value_error(name + " must be contiguous and aligned; it is read in place, never copied");
    }
    return array;
}

// X of a CSR matrix (scipy.sparse's csr_matrix or csr_array: network.py
// hands over only those) as a view of its three arrays, never copied: data
// of the network's dtype, indices and indptr both int32 or both int64.
// Calls use(view) with a CsrMatrixView<T, std::int32_t or std::int64_t>.
template <typename T, typename Use>
auto with_csr(const py::object& X, const Use& use) {
    const py::array data = csr_part(X, "data");
    const py::array indices = csr_part(X, "indices");
    const py::array indptr = csr_part(X, "indptr");
    const auto shape = X.attr("shape").cast<std::pair<long long, long long>>();
    const std::size_t rows = non_negative(shape.first, "X.shape[0]");
    const std::size_t cols = non_negative(shape.second, "X.shape[1]");
    if (!data.dtype().is(py::dtype::of<T>()) && !data.dtype().equal(py::dtype::of<T>())) {
        throw py::type_error("X.data has dtype " + std::string(py::str(data.dtype())) + ", but the network's dtype is " +
                             dtype_name<T>() + "; sparse X is read in place, never converted; pass X.astype(np." +
                             dtype_name<T>() + ")");
    }
    if (static_cast<std::size_t>(indptr.shape(0)) != rows + 1) {
        throw py::value_error("X.indptr has " + std::to_string(indptr.shape(0)) + " offsets, but X has " +
                              std::to_string(rows) + " records: a CSR matrix needs n_records + 1");
    }
    if (indices.shape(0) != data.shape(0)) {
        throw py::value_error("X.indices has " + std::to_string(indices.shape(0)) + " entries but X.data has " +
                              std::to_string(data.shape(0)) + "; they must be as long as each other");
    }
    const auto nnz = static_cast<std::size_t>(data.shape(0));
    const auto* values = static_cast<const T*>(data.data());
    auto is = [](const py::array& a, const py::dtype& dtype) { return a.dtype().is(dtype) || a.dtype().equal(dtype); };
    const py::dtype int32 = py::dtype::of<std::int32_t>(), int64 = py::dtype::of<std::int64_t>();
    if (is(indices, int32) && is(indptr, int32)) {
        return use(CsrMatrixView<T, std::int32_t>{static_cast<const std::int32_t*>(indptr.data()),
                                                  static_cast<const std::int32_t*>(indices.data()), values, rows,
                                                  cols, nnz});
    }
    if (is(indices, int64) && is(indptr, int64)) {
        return use(CsrMatrixView<T, std::int64_t>{static_cast<const std::int64_t*>(indptr.data()),
                                                  static_cast<const std::int64_t*>(indices.data()), values, rows,
                                                  cols, nnz});
    }
    throw py::type_error("X.indices and X.indptr must both be int32 or both int64 (scipy's index types), got " +
                         std::string(py::str(indices.dtype())) + " and " + std::string(py::str(indptr.dtype())));
}

// Whether network.py handed over a CSR matrix (it converts other sparse formats).
bool is_csr(const py::object& X) {
    return !py::isinstance<py::array>(X) && py::hasattr(X, "indptr") && py::hasattr(X, "format") &&
           py::str(X.attr("format")).cast<std::string>() == "csr";
}

// Calls use(view) with X as a ConstMatrixView<T> or, for a CSR matrix, a CsrMatrixView.
template <typename T, typename Use>
auto with_records(const py::object& X, const Use& use) {
    if (is_csr(X)) return with_csr<T>(X, use);
    return use(as_matrix<T>(X, "X", false));
}

// Sample weights: None, or a 1-D array of the network's dtype with one value
// per record (network.py converts them: they are small).
template <typename T>
const T* as_weights(const py::object& obj, std::size_t num_records) {
    if (obj.is_none()) return nullptr;
    const auto array = py::cast<py::array_t<T, py::array::c_style>>(obj);
    if (array.ndim() != 1 || static_cast<std::size_t>(array.shape(0)) != num_records) {
        throw py::value_error("sample_weight must have shape (" + std::to_string(num_records) + ",), one weight "
                              "per record");
    }
    return array.data();
}

template <typename T>
ConstMatrixView<T> as_targets(const Network<T>& net, const py::handle& obj) {
    const ConstMatrixView<T> Y = as_matrix<T>(obj, "y", true);
    if (py::reinterpret_borrow<py::array>(obj).ndim() == 1 && net.num_outputs() != 1) {
        throw py::value_error("y is 1-D, but the network has " + std::to_string(net.num_outputs()) +
                              " outputs; pass y of shape (n_records, " + std::to_string(net.num_outputs()) + ")");
    }
    return Y;
}

// An array that shares the memory of `data` and keeps `owner` alive.
template <typename T>
py::array_t<T> view(T* data, std::vector<py::ssize_t> shape, const py::object& owner) {
    std::vector<py::ssize_t> strides(shape.size(), static_cast<py::ssize_t>(sizeof(T)));
    if (shape.size() == 2) strides[0] = shape[1] * static_cast<py::ssize_t>(sizeof(T));
    return py::array_t<T>(shape, strides, data, owner);
}

template <typename T>
py::array_t<T> copy_of(const T* data, std::vector<py::ssize_t> shape) {
    py::array_t<T> out(shape);
    std::copy(data, data + out.size(), out.mutable_data());
    return out;
}

// The core's messages are UTF-8 text, except for the file names they quote:
// those are the path's bytes, which on POSIX need not be UTF-8. Such a byte
// shows as \xNN (Python's backslashreplace) instead of failing the conversion.
py::str message_text(const std::string& message) {
    PyObject* text = PyUnicode_DecodeUTF8(message.data(), static_cast<py::ssize_t>(message.size()), "backslashreplace");
    if (text == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(text);
}

// A path from the core as Python spells it: os.fsdecode of its bytes.
py::str path_text(const std::string& path) {
    PyObject* text = PyUnicode_DecodeFSDefaultAndSize(path.data(), static_cast<py::ssize_t>(path.size()));
    if (text == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(text);
}

// -- Threads still in the core when the interpreter exits -------------------
//
// At exit, Python ends a daemon thread that tries to take the GIL back with
// pthread_exit, a forced unwind; through a noexcept frame (pybind11's
// gil_scoped_release destructor) that is std::terminate, and the process
// dies of SIGABRT instead of exiting with its status. And a thread still
// computing while exit() runs the libraries' destructors (OpenBLAS frees its
// buffers there) could crash too. So:
//  * every call that releases the GIL goes through without_gil: a thread
//    other than the main one is counted while inside the core;
//  * at exit (in an atexit handler: Python runs those before it stops
//    letting other threads take the GIL) the exit gate closes: fit, in any thread, stops at its next check
//    between steps, and the handler waits, the GIL released, for the counted
//    threads to leave the core; each then stays parked (asleep, holding no
//    lock of the core and not the GIL) until the process ends, as does one
//    that enters the core after that;
//  * a forced unwind that reaches a frame of ours (a thread that retakes the
//    GIL once Python no longer lets it, from a callback say) is caught and
//    the thread parks: it never unwinds through the core.
// The main thread is never parked: it is the one that exits.

// Thrown by fit's interrupt check in a thread other than the main one once
// the interpreter is exiting; without_gil parks the thread when it sees it.
struct exiting_stop {};

class ExitGate {
public:
    // Counts the calling thread in; false once the interpreter is exiting.
    bool enter() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (closed_) return false;
        ++inside_;
        return true;
    }
    // Counts it in even when closed (a thread back from a callback, which
    // stops at once), so that leave() stays paired.
    void rejoin() {
        std::lock_guard<std::mutex> lock(mutex_);
        ++inside_;
    }
    void leave() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--inside_ == 0) left_.notify_all();
    }
    bool closed() const { return closed_flag_.load(std::memory_order_acquire); }
    // Closes the gate, then waits for every counted thread to leave the core.
    void close_and_wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        closed_ = true;
        closed_flag_.store(true, std::memory_order_release);
        left_.wait(lock, [&] { return inside_ == 0; });
    }
    // In a forked child: only the forking thread exists, and it is not in
    // the core (fork is Python code, and from a callback it left the count).
    void reset_in_child() {
        new (&mutex_) std::mutex();
        new (&left_) std::condition_variable();
        inside_ = 0;
    }

private:
    std::mutex mutex_;
    std::condition_variable left_;
    int inside_ = 0;
    bool closed_ = false;
    std::atomic<bool> closed_flag_{false};
};

// Never destroyed: threads may still use it while the process exits.
ExitGate& exit_gate() {
    static ExitGate* gate = new ExitGate();
    return *gate;
}

// The main thread's identifier, read once at import.
unsigned long g_main_thread = 0;

bool on_main_thread() { return PyThread_get_thread_ident() == g_main_thread; }

// Sleeps until the process ends; the caller holds neither the GIL nor a lock
// of the core.
[[noreturn]] void park() {
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

// Takes the GIL back for `state`, or parks when Python ends the thread
// instead (its forced unwind stops here).
void retake_gil(PyThreadState* state) noexcept {
#if defined(__GLIBCXX__)
    try {
        PyEval_RestoreThread(state);
    } catch (abi::__forced_unwind&) {
        park();
    }
#else
    PyEval_RestoreThread(state);
#endif
}

// Runs work() without the GIL (see above) and returns its result.
template <typename Work>
auto without_gil(Work&& work) -> decltype(work()) {
    const bool counted = !on_main_thread();
    if (counted && !exit_gate().enter()) {
        PyEval_SaveThread();
        park();
    }
    PyThreadState* state = PyEval_SaveThread();
    auto finish = [&]() noexcept {
        if (counted) {
            exit_gate().leave();
            if (exit_gate().closed()) park();
        }
        retake_gil(state);
    };
    try {
        if constexpr (std::is_void_v<decltype(work())>) {
            work();
            finish();
        } else {
            auto result = work();
            finish();
            return result;
        }
    } catch (...) {
        finish();
        throw;
    }
}

// fit calls a Python callback nested this deep at most in one thread (a
// callback that calls fit, whose callback calls fit, ...): each level holds
// C++ frames of the core's, and the C stack is not Python's recursion limit.
constexpr int kMaxNestedFits = 32;
// ... and starts a nested fit only with this much of the thread's stack left.
constexpr std::size_t kStackReserve = std::size_t{128} << 10;

thread_local int t_callback_depth = 0;

// Bytes of the calling thread's stack below this frame, or SIZE_MAX where
// they cannot be told.
std::size_t stack_left() {
#if defined(__GLIBC__)
    thread_local const std::uintptr_t lowest = [] {
        std::uintptr_t low = 0;
        pthread_attr_t attributes;
        if (pthread_getattr_np(pthread_self(), &attributes) == 0) {
            void* address = nullptr;
            std::size_t size = 0;
            if (pthread_attr_getstack(&attributes, &address, &size) == 0) low = reinterpret_cast<std::uintptr_t>(address);
            pthread_attr_destroy(&attributes);
        }
        return low;
    }();
    const char here = 0;
    const auto position = reinterpret_cast<std::uintptr_t>(&here);
    if (lowest == 0 || position < lowest) return SIZE_MAX;
    return position - lowest;
#else
    return SIZE_MAX;
#endif
}

void check_nesting() {
    if (t_callback_depth == 0) return;
    const std::size_t left = stack_left();
    if (t_callback_depth >= kMaxNestedFits || left < kStackReserve) {
        PyErr_SetString(PyExc_RecursionError,
                        ("fit called from a fit callback nested " + std::to_string(t_callback_depth) +
                         " deep: fit nests at most " + std::to_string(kMaxNestedFits) +
                         " deep, and only with " + std::to_string(kStackReserve >> 10) +
                         " KiB of the thread's stack left (" +
                         (left == SIZE_MAX ? std::string("unknown") : std::to_string(left >> 10) + " KiB") +
                         " left); train the nested networks after the outer fit returns")
                            .c_str());
        throw py::error_already_set();
    }
}

// Runs the C API calls of `part` (no C++ object with a destructor in it);
// should Python end the thread inside them (the interpreter exits), it parks.
template <typename Part>
void python_part(const Part& part) {
#if defined(__GLIBCXX__)
    try {
        part();
    } catch (abi::__forced_unwind&) {
        park();
    }
#else
    part();
#endif
}

// fit's callback: callable(epoch, cost), from inside the core without the
// GIL; false stops training (any falsy value but None, Python's truthiness).
// `counted`: the thread is counted by the exit gate (see without_gil); while
// Python code runs it is not (exit does not wait for Python code), and once
// the interpreter is exiting, fit stops as soon as the callback returns.
bool call_epoch_callback(PyObject* callable, const EpochReport& report, bool counted) {
    if (counted) exit_gate().leave();  // out of the core, and one callback deeper, until back
    ++t_callback_depth;
    auto back = [counted] {
        --t_callback_depth;
        if (counted) exit_gate().rejoin();
    };
    PyGILState_STATE gil{};
    int truth = -1;
    python_part([&] {
        gil = PyGILState_Ensure();
        PyObject* result = PyObject_CallFunction(callable, "nd", static_cast<Py_ssize_t>(report.epoch), report.cost);
        if (result != nullptr) {
            truth = result == Py_None ? 1 : PyObject_IsTrue(result);
            Py_DECREF(result);
        }
    });
    if (truth < 0) {
        py::error_already_set error;  // fetched with the GIL held
        PyGILState_Release(gil);
        back();
        throw error;
    }
    PyGILState_Release(gil);
    back();
    if (counted && exit_gate().closed()) throw exiting_stop{};
    return truth != 0;
}

// The Python type of chainrule::format_error, set once at import.
PyObject* g_model_format_error = nullptr;

// A count for the core's unsigned types. The public Python layer refuses
// negative values before they get here; the core checks the values' rules.
std::size_t non_negative(long long value, const char* name) {
    if (value < 0) throw py::value_error(std::string(name) + " must be >= 0, got " + std::to_string(value));
    return static_cast<std::size_t>(value);
}

// The optimizer and schedule settings, from the dicts chainrule.optim builds
// (it checks the types; the core checks the values).
OptimizerOptions optimizer_options(const py::dict& d) {
    OptimizerOptions o;
    const std::string kind = d["kind"].cast<std::string>();
    o.kind = kind == "adam" ? OptimizerKind::adam : kind == "adamw" ? OptimizerKind::adamw : OptimizerKind::sgd;
    o.form = d["form"].cast<std::string>() == "sklearn" ? OptimizerForm::sklearn : OptimizerForm::torch;
    o.momentum = d["momentum"].cast<double>();
    o.nesterov = d["nesterov"].cast<bool>();
    o.weight_decay = d["weight_decay"].cast<double>();
    o.beta1 = d["beta1"].cast<double>();
    o.beta2 = d["beta2"].cast<double>();
    o.eps = d["eps"].cast<double>();
    o.amsgrad = d["amsgrad"].cast<bool>();
    return o;
}

ScheduleOptions schedule_options(const py::dict& d) {
    ScheduleOptions s;
    const std::string kind = d["kind"].cast<std::string>();
    s.kind = kind == "invscaling" ? ScheduleKind::invscaling
             : kind == "adaptive" ? ScheduleKind::adaptive
             : kind == "step"     ? ScheduleKind::step
             : kind == "cosine"   ? ScheduleKind::cosine
                                  : ScheduleKind::constant;
    s.power_t = d["power_t"].cast<double>();
    s.step_size = d["step_size"].cast<std::size_t>();
    s.gamma = d["gamma"].cast<double>();
    s.t_max = d["t_max"].cast<std::size_t>();
    s.eta_min = d["eta_min"].cast<double>();
    if (!d["custom"].is_none()) {
        // Called by fit with the GIL released: take it for the call.
        s.custom = [custom = py::object(d["custom"])](std::size_t epoch, double lr) {
            py::gil_scoped_acquire acquire;
            const py::object rate = custom(epoch, lr);
            if (PyFloat_Check(rate.ptr()) || PyLong_Check(rate.ptr())) return rate.cast<double>();
            throw py::type_error("the schedule must return a number, got " +
                                 std::string(py::str(py::type::handle_of(rate).attr("__name__"))));
        };
    }
    return s;
}

// fit's reducer, from a Python object with `rank`, `size` and a call that
// sums a NumPy array in place over the processes (chainrule.distributed's
// MPI one). Called by fit with the GIL released: the GIL is taken for the
// call only; the array views the core's buffer (never copied). An exception
// in it propagates out of fit (the step it was called for is not taken).
template <typename V>
std::function<void(V*, std::size_t)> python_sum(const py::object& sum) {
    return [sum](V* values, std::size_t count) {
        py::gil_scoped_acquire acquire;
        const py::capsule borrowed(values, [](void*) {});  // the core owns the buffer
        sum(py::array_t<V>({py::ssize_t(count)}, {py::ssize_t(sizeof(V))}, values, borrowed));
    };
}

template <typename T>
std::optional<Reducer<T>> reducer_from(const py::object& reducer) {
    if (reducer.is_none()) return std::nullopt;
    Reducer<T> r;
    r.rank = reducer.attr("rank").cast<std::size_t>();
    r.size = reducer.attr("size").cast<std::size_t>();
    r.sum = python_sum<T>(reducer);
    r.sum_scalars = python_sum<double>(reducer);
    return r;
}

template <typename T>
void bind_training_state(py::module_& m, const char* class_name) {
    using State = TrainingState<T>;
    py::class_<State>(m, class_name, "What a training run carries between fit calls (chainrule/optimizer.hpp).")
        .def(py::init<>())
        .def_property("steps", [](const State& s) { return s.optimizer.steps; },
                      [](State& s, std::uint64_t v) { s.optimizer.steps = v; })
        .def_readwrite("epochs", &State::epochs)
        .def_readwrite("records", &State::records)
        .def_readwrite("seeded", &State::seeded)
        .def_readwrite("seed", &State::seed)
        .def_property("generator", [](const State& s) {
                          return std::vector<std::uint64_t>(s.generator, s.generator + 4);
                      },
                      [](State& s, const std::vector<std::uint64_t>& words) {
                          if (words.size() != 4) throw py::value_error("generator: expected 4 words");
                          std::copy(words.begin(), words.end(), s.generator);
                      })
        .def_readwrite("learning_rate", &State::learning_rate)
        .def_readwrite("best_cost", &State::best_cost)
        .def_readwrite("epochs_without_improvement", &State::epochs_without_improvement)
        .def_readwrite("has_best", &State::has_best)
        .def("slot", [](const State& s, int i) {
                 if (i < 0 || i > 2) throw py::index_error("slot: 0, 1 or 2");
                 return copy_of<T>(s.optimizer.slots[i].data(), {py::ssize_t(s.optimizer.slots[i].size())});
             }, py::arg("index"), "A copy of state buffer `index` (empty before the first step).")
        .def("set_slot", [](State& s, int i, const py::array_t<T, py::array::c_style>& values) {
                 if (i < 0 || i > 2) throw py::index_error("slot: 0, 1 or 2");
                 if (values.ndim() != 1) throw py::value_error("a state buffer is 1-D");
                 s.optimizer.slots[i].assign(values.data(), values.data() + values.size());
             }, py::arg("index"), py::arg("values"));
}

template <typename T>
void bind_network(py::module_& m, const char* class_name) {
    using Net = Network<T>;
    py::class_<Net>(m, class_name, "A dense network of one dtype (the core's Network<T>); use chainrule.Network.")
        .def(py::init([](const std::vector<long long>& layer_sizes, const std::vector<std::string>& activations,
                         const std::string& loss, std::uint64_t seed) {
                 std::vector<std::size_t> sizes;
                 for (std::size_t i = 0; i < layer_sizes.size(); ++i) {
                     sizes.push_back(non_negative(layer_sizes[i], ("layer_sizes[" + std::to_string(i) + "]").c_str()));
                 }
                 std::vector<Activation> parsed;
                 for (std::size_t i = 0; i < activations.size(); ++i) {  // the last is the output's
                     const bool output = i + 1 == activations.size();
                     parsed.push_back(parse_activation(activations[i], output ? "output" : "activation"));
                 }
                 const Loss parsed_loss = parse_loss(loss);
                 return without_gil([&] {  // initialising a large network takes a while
                     return new Net(std::move(sizes), std::move(parsed), parsed_loss, seed);
                 });
             }),
             py::arg("layer_sizes"), py::arg("activations"), py::arg("loss"), py::arg("seed"),
             "layer_sizes (n_0..n_L), one activation name per layer, a loss name, a 64-bit seed.")
        .def_property_readonly("layer_sizes", &Net::layer_sizes)
        .def_property_readonly("activations",
                               [](const Net& net) {
                                   std::vector<std::string> names;
                                   for (Activation a : net.activations()) names.emplace_back(activation_name(a));
                                   return names;
                               })
        .def_property_readonly("loss", [](const Net& net) { return std::string(loss_name(net.loss())); })
        .def_property_readonly("num_params", &Net::num_params)
        .def_property_readonly("dtype", [](const Net&) { return std::string(dtype_name<T>()); })
        .def("weight", [](py::object self, std::size_t l) {
                 const LayerView<T> v = self.cast<Net&>().layer(l);
                 return view<T>(v.weight, {py::ssize_t(v.out_features), py::ssize_t(v.in_features)}, self);
             }, py::arg("layer"), "Writable view of W_l (n_l, n_{l-1}), sharing the network's memory.")
        .def("bias", [](py::object self, std::size_t l) {
                 const LayerView<T> v = self.cast<Net&>().layer(l);
                 return view<T>(v.bias, {py::ssize_t(v.out_features)}, self);
             }, py::arg("layer"), "Writable view of b_l (n_l,), sharing the network's memory.")
        .def("params", [](py::object self) {
                 Net& net = self.cast<Net&>();
                 return view<T>(net.params(), {py::ssize_t(net.num_params())}, self);
             }, "Writable view of the flat parameter buffer [W_1, b_1, ..., W_L, b_L].")
        .def("predict", [](const Net& net, const py::object& X) {
                 return with_records<T>(X, [&](const auto& x) {
                     if (x.cols != net.num_inputs()) net.predict({nullptr, 0, 0}, x);  // raises the shape error
                     py::array_t<T> out({py::ssize_t(x.rows), py::ssize_t(net.num_outputs())});
                     MatrixView<T> o{out.mutable_data(), x.rows, net.num_outputs()};
                     if (x.rows * net.num_params() < kReleaseGilWork) {
                         net.predict(o, x);  // a microsecond or less: releasing the GIL would cost more
                     } else {
                         without_gil([&] { net.predict(o, x); });
                     }
                     return out;
                 });
             }, py::arg("X"), "A_L (n_records, n_outputs) for the records of X (dense, or a CSR matrix).")
        .def("cost", [](const Net& net, const py::object& X, const py::object& y, const py::object& sample_weight) {
                 return with_records<T>(X, [&](const auto& x) {
                     const ConstMatrixView<T> t = as_targets(net, y);
                     const T* w = as_weights<T>(sample_weight, x.rows);
                     return without_gil([&] { return net.cost(x, t, w); });
                 });
             }, py::arg("X"), py::arg("y"), py::arg("sample_weight") = py::none(),
             "The mean record loss over (X, y), weighted by sample_weight when given.")
        .def("gradients", [](Net& net, const py::object& X, const py::object& y, const py::object& sample_weight) {
                 // One new buffer, filled while the core still holds its training
                 // lock (another thread's fit may overwrite the core's own
                 // gradient right after); the arrays returned are views of it.
                 py::array_t<T> flat(py::ssize_t(net.num_params()));
                 T* gradient = flat.mutable_data();
                 with_records<T>(X, [&](const auto& x) {
                     const ConstMatrixView<T> t = as_targets(net, y);
                     const T* w = as_weights<T>(sample_weight, x.rows);
                     without_gil([&] { net.compute_gradients(x, t, gradient, w); });
                 });
                 py::list grads;
                 for (std::size_t l = 0; l < net.num_layers(); ++l) {
                     const LayerView<const T> p = std::as_const(net).layer(l);  // where layer l sits in the layout
                     T* weight = gradient + (p.weight - net.params());
                     T* bias = gradient + (p.bias - net.params());
                     grads.append(py::make_tuple(
                         view<T>(weight, {py::ssize_t(p.out_features), py::ssize_t(p.in_features)}, flat),
                         view<T>(bias, {py::ssize_t(p.out_features)}, flat)));
                 }
                 return grads;
             }, py::arg("X"), py::arg("y"), py::arg("sample_weight") = py::none(),
             "[(dW_1, db_1), ...]: the gradient of cost(X, y, sample_weight).")
        .def("cost_and_gradient", [](Net& net, const py::object& X, const py::object& y,
                                     const py::object& sample_weight, double alpha) {
                 py::array_t<T> flat(py::ssize_t(net.num_params()));  // a new array: the caller may keep it
                 T* gradient = flat.mutable_data();
                 const double cost = with_records<T>(X, [&](const auto& x) {
                     const ConstMatrixView<T> t = as_targets(net, y);
                     const T* w = as_weights<T>(sample_weight, x.rows);
                     return without_gil([&] { return net.cost_and_gradient(x, t, gradient, alpha, w); });
                 });
                 return py::make_tuple(cost, flat);
             }, py::arg("X"), py::arg("y"), py::arg("sample_weight") = py::none(), py::arg("alpha") = 0.0,
             "(cost, flat gradient): the mean loss plus alpha/2 ||W||^2 over the weight sum, and its gradient "
             "in the layout of params(), at the parameters in params().")
        .def("sgd_step", [](Net& net, const py::object& X, const py::object& y, double lr) {
                 const ConstMatrixView<T> x = as_matrix<T>(X, "X", false);
                 const ConstMatrixView<T> t = as_targets(net, y);
                 return without_gil([&] { return net.sgd_step(x, t, lr); });
             }, py::arg("X"), py::arg("y"), py::arg("lr"), "One SGD step on the batch; returns the cost before it.")
        .def("fit", [](Net& net, const py::object& X, const py::object& y, long long epochs, double lr,
                       long long batch_size, bool shuffle, std::uint64_t seed, std::optional<double> tol,
                       long long n_iter_no_change, const py::object& on_epoch, const py::dict& optimizer,
                       const py::dict& schedule, double alpha, TrainingState<T>* state,
                       const py::object& sample_weight, const std::vector<double>& dropout,
                       const py::object& reducer, bool callback_writes_data) {
                 check_nesting();
                 const std::optional<Reducer<T>> sums = reducer_from<T>(reducer);
                 FitOptions options;
                 options.epochs = non_negative(epochs, "epochs");
                 options.learning_rate = lr;
                 options.batch_size = non_negative(batch_size, "batch_size");
                 options.shuffle = shuffle;
                 options.seed = seed;
                 options.tol = tol;
                 options.n_iter_no_change = non_negative(n_iter_no_change, "n_iter_no_change");
                 options.optimizer = optimizer_options(optimizer);
                 options.schedule = schedule_options(schedule);
                 options.alpha = alpha;
                 options.dropout = dropout;
                 options.callback_writes_data = callback_writes_data;
                 // Ctrl-C: fit offers a check between steps every millisecond or so;
                 // at most every kSignalInterval, take the GIL and deliver pending
                 // signals, so that it stops training with KeyboardInterrupt. Only
                 // in the main thread, the one Python runs signal handlers in:
                 // elsewhere, waiting for the GIL would only slow training down,
                 // and the check only stops training once the interpreter exits.
                 // A distributed fit's Python code (the reducer) runs between
                 // the checks: chainrule.distributed records Ctrl-C there instead
                 // of raising mid-collective, and `reducer.interrupted()` tells.
                 const bool main_thread = on_main_thread();
                 InterruptCheck interrupt;
                 if (main_thread) {
                     const py::object interrupted = py::getattr(reducer, "interrupted", py::none());
                     interrupt = [last = std::chrono::steady_clock::now(), interrupted]() mutable {
                         const auto now = std::chrono::steady_clock::now();
                         if (now - last < kSignalInterval) return;
                         last = now;
                         py::gil_scoped_acquire acquire;
                         if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                         if (!interrupted.is_none() && interrupted().cast<bool>()) {
                             PyErr_SetNone(PyExc_KeyboardInterrupt);
                             throw py::error_already_set();
                         }
                     };
                 } else {
                     interrupt = [] {
                         if (exit_gate().closed()) throw exiting_stop{};
                         std::this_thread::yield();  // let a waiting reader take the lock first
                     };
                 }
                 EpochCallback hook;
                 if (!on_epoch.is_none()) {
                     hook = [callable = on_epoch.ptr(), counted = !main_thread](const EpochReport& report) {
                         return call_epoch_callback(callable, report, counted);
                     };
                 }
                 std::vector<double> history = with_records<T>(X, [&](const auto& x) {
                     const ConstMatrixView<T> t = as_targets(net, y);
                     const T* w = as_weights<T>(sample_weight, x.rows);
                     return without_gil([&] {
                         return net.fit(x, t, options, hook, interrupt, state, w, sums ? &*sums : nullptr);
                     });
                 });
                 return copy_of<double>(history.data(), {py::ssize_t(history.size())});
             },
             py::arg("X"), py::arg("y"), py::arg("epochs"), py::arg("lr"), py::arg("batch_size"), py::arg("shuffle"),
             py::arg("seed"), py::arg("tol"), py::arg("n_iter_no_change"), py::arg("on_epoch"), py::arg("optimizer"),
             py::arg("schedule"), py::arg("alpha"), py::arg("state").none(true),
             py::arg("sample_weight") = py::none(), py::arg("dropout") = std::vector<double>(),
             py::arg("reducer") = py::none(), py::arg("callback_writes_data") = true,
             "Mini-batch training; returns the cost of each epoch. With reducer, this process's shard of a "
             "distributed fit (chainrule.distributed).")
        .def("save", [](const Net& net, const std::string& path) {
                 without_gil([&] { save(net, path); });
             }, py::arg("path"), "Writes the model file atomically; path: bytes (os.fsencode) or str.")
        .def("copy", [](const Net& net) { return Net(net); }, "An independent copy of the network.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "chainrule's compiled core; the public API is the chainrule package.";
    m.attr("__version__") = chainrule::version;
    py::list activation_names, loss_names;
    for (Activation a : all_activations()) activation_names.append(activation_name(a));
    for (Loss l : all_losses()) loss_names.append(loss_name(l));
    m.attr("ACTIVATIONS") = py::tuple(activation_names);
    m.attr("LOSSES") = py::tuple(loss_names);

    py::register_exception<divergence_error>(m, "DivergenceError", PyExc_FloatingPointError);
    g_model_format_error = py::register_exception<format_error>(m, "ModelFormatError", PyExc_ValueError).ptr();
    py::register_exception<busy_error>(m, "BusyError", PyExc_RuntimeError);
    // Tried before the translators above (pybind11 tries the latest first):
    // the errors whose messages quote a path.
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const file_error& e) {
            // OSError(errno, message, filename) becomes FileNotFoundError etc.;
            // Python appends the filename, so the message leaves it out.
            const std::string message =
                e.action().empty() ? std::string(e.what()) : e.action() + ": " + std::strerror(e.code());
            const py::tuple args = py::make_tuple(e.code(), message_text(message), path_text(e.path()));
            PyErr_SetObject(PyExc_OSError, args.ptr());
        } catch (const format_error& e) {
            PyErr_SetObject(g_model_format_error, message_text(e.what()).ptr());
        } catch (const std::invalid_argument& e) {
            PyErr_SetObject(PyExc_ValueError, message_text(e.what()).ptr());
        }
    });

    bind_training_state<float>(m, "TrainingStateFloat32");
    bind_training_state<double>(m, "TrainingStateFloat64");
    // Threads other than the main one park once the interpreter exits (see
    // without_gil): at exit, before Python stops letting threads take the GIL.
    g_main_thread = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
#if defined(__unix__) || defined(__APPLE__)
    // The forking thread is the child's main thread (Python makes it so, too).
    pthread_atfork(nullptr, nullptr, [] {
        exit_gate().reset_in_child();
        g_main_thread = PyThread_get_thread_ident();
    });
#endif
    m.def("_close_exit_gate", [] {
        PyThreadState* state = PyEval_SaveThread();
        exit_gate().close_and_wait();
        PyEval_RestoreThread(state);
    }, "At exit: stop the core's work in other threads and wait for them to leave it (atexit calls this).");
    py::module_::import("atexit").attr("register")(m.attr("_close_exit_gate"));

    bind_network<float>(m, "NetworkFloat32");
    bind_network<double>(m, "NetworkFloat64");

    m.def("model_dtype", [](const std::string& path) {
        const ModelHeader h = without_gil([&] { return read_model_header(path); });
        return std::string(dtype_name(h.scalar_bytes));
    }, py::arg("path"),
          "The dtype of the model file at path ('float32' or 'float64'); path: bytes (os.fsencode) or str.");
    m.def("distributed_order", &distributed_order, py::arg("num_records"), py::arg("seed"), py::arg("rank"),
          py::arg("epoch"), "The order in which rank `rank` visits its shard's records in epoch `epoch` of a "
          "shuffled distributed fit seeded with `seed`.");
    m.def("set_num_threads", &set_num_threads, py::arg("threads"),
          "Use at most `threads` (>= 1) threads for the large matrix products; results do not depend on it.");
    m.def("get_num_threads", &get_num_threads, "The thread count set by set_num_threads (default: all cores).");
    m.def("gemm_backend", &gemm_backend,
          "The library that computes the matrix products: 'openblas', 'cblas' or 'loops'.");
    m.def("load", [](const std::string& path) -> py::object {
        LoadedModel model = without_gil([&] { return load_model(path); });
        if (model.float32) return py::cast(std::move(model.float32));
        return py::cast(std::move(model.float64));
    }, py::arg("path"), "The network in the model file at path, in the dtype it holds (one open of the file).");
}
