// What network.cpp (the passes, predict, cost, gradients) and train.cpp
// (fit) share: Network<T>::Impl (what a network holds, and its passes), the
// workspace of one pass, the training lock, the checks and messages of both.
// Internal to the core.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "chainrule/buffer.hpp"
#include "chainrule/errors.hpp"
#include "chainrule/network.hpp"
#include "kernels/kernels.hpp"
#include "runtime/memory.hpp"

namespace chainrule {
namespace detail {
// A shared mutex that lets a waiting writer in ahead of readers that come
// after it: a writer holds the turnstile while it waits, so new readers
// queue behind it instead of keeping it out forever (glibc's rwlock prefers
// readers, and four threads calling predict in a loop starved fit).
class WriterFirstMutex {
public:
    void lock() {
        std::lock_guard<std::mutex> turn(turnstile_);
        mutex_.lock();
    }
    void unlock() { mutex_.unlock(); }
    void lock_shared() {
        { std::lock_guard<std::mutex> turn(turnstile_); }
        mutex_.lock_shared();
    }
    void unlock_shared() { mutex_.unlock_shared(); }

private:
    std::mutex turnstile_;
    std::shared_mutex mutex_;
};

// The locks of one network, known process-wide for fork(): before a fork,
// the forking thread waits for every network's step boundary (it takes each
// one's writer lock), so that a child process gets whole steps only; in the
// child, where no other thread exists, every lock is made new and free, but
// the training lock that the forking thread itself holds (a fork from a fit
// callback): that fit goes on in the child. A child may thus predict, save,
// or train any network, also one that another thread of the parent was
// training when it forked.
struct NetworkLocks {
    NetworkLocks();   // registers them
    ~NetworkLocks();  // unregisters them
    NetworkLocks(const NetworkLocks&) = delete;
    NetworkLocks& operator=(const NetworkLocks&) = delete;

    std::mutex train;                        // guards grads_ and train_workspace_ ...
    std::atomic<std::thread::id> trainer{};  // ... held by this thread (none: free)
    WriterFirstMutex params;                 // readers: predict, cost, save; writer: SGD
    // Guards predict_workspace_; only ever tried (a predict that finds it
    // taken makes a workspace of its own), and free at every fork (a fork
    // waits for the predicts, which hold params).
    std::mutex predict_workspace;
};
}  // namespace detail
}  // namespace chainrule

namespace chainrule::detail {

// predict, cost and compute_gradients walk the records in chunks of at most
// this many, so their workspace stays small whatever the size of X.
constexpr std::size_t kChunkRecords = 256;

// fit computes the losses of one-record BCE steps this many at a time, and
// takes fused one-record steps this many per call (record_steps).
constexpr std::size_t kDeferredSteps = 256;

template <typename... Parts>
std::string concat(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    return out.str();
}

// Where the first non-finite value of a (rows, cols) matrix is, for the message.
template <typename T>
std::pair<std::size_t, std::size_t> first_non_finite(ConstMatrixView<T> m) {
    for (std::size_t i = 0; i < m.size(); ++i) {
        if (!std::isfinite(m.data[i])) return {i / m.cols, i % m.cols};
    }
    return {m.rows, 0};
}

// The training lock, held by this thread until it goes out of scope, or
// busy_error when another thread holds it; it notes its holder for fork
// (detail::NetworkLocks).
class TrainingLock {
public:
    explicit TrainingLock(NetworkLocks& locks) : locks_(locks) {
        if (!locks_.train.try_lock()) {
            throw busy_error("the network is being trained or differentiated in another thread; "
                             "wait for that call to return");
        }
        locks_.trainer.store(std::this_thread::get_id());
    }
    ~TrainingLock() {
        locks_.trainer.store(std::thread::id());
        locks_.train.unlock();
    }
    TrainingLock(const TrainingLock&) = delete;
    TrainingLock& operator=(const TrainingLock&) = delete;

private:
    NetworkLocks& locks_;
};

// lr must be positive and finite in the network's dtype too: a float32 step
// with an lr that rounds to 0 (or to inf) would silently do nothing (or diverge).
template <typename T>
void check_learning_rate(double learning_rate, const char* argument = "lr") {
    if (!std::isfinite(learning_rate) || learning_rate <= 0.0) {
        throw std::invalid_argument(concat(argument, " must be a finite number > 0, got ", learning_rate));
    }
    const T rounded = static_cast<T>(learning_rate);
    if (!(rounded > T(0)) || !std::isfinite(rounded)) {
        throw std::invalid_argument(concat(argument, "=", learning_rate, " is ", rounded, " in ", dtype_name<T>(),
                                           "; use an lr that the network's dtype can hold"));
    }
}

// The dropout of one training step: the keep/drop draw of unit j of record
// r of hidden layer l is a hash of (seed, epoch, step, r, l, j), so it
// depends on nothing else (thread count, order of computation), and a run
// repeats from its seed. docs/math.md, "Dropout".
struct DropoutStep {
    const std::vector<double>* rates;  // per hidden layer, in [0, 1)
    std::uint64_t seed, epoch, step, first_record;
};

// SGD's step (plain, or with momentum but not Nesterov's; no weight decay
// or L2 penalty) taken by the backward pass itself, layer by layer as soon as
// each layer's backward is done, once a bound has shown that every value it
// computes stays finite (Network::Impl::backward, docs/math.md, "The step
// inside the backward pass"). fit keeps the bounds from step to step.
template <typename T>
struct StepInBackward {
    double lr = 0.0;
    double largest_input = -1.0;  // >= every |x| of the records the batches come from; < 0: unknown
    const OptimizerOptions* optimizer = nullptr;
    OptimizerState<T>* state = nullptr;  // with momentum, its velocity (slot 0), laid out as the parameters
    // Per layer: bounds on every |W_l| and |b_l|, and on every |velocity|
    // over the layer's parameters; `next` the same after this step (step_bounded).
    std::vector<double> largest, next;
    std::vector<double> largest_velocity, next_velocity;
    std::vector<double> largest_inputs;  // step_bounded's bounds on each layer's |A_{l-1}|

    // The optimizers it takes: the others' steps need the whole gradient first.
    static bool takes(const OptimizerOptions& o) {
        return o.kind == OptimizerKind::sgd && !o.nesterov && o.weight_decay == 0.0;
    }
};

inline std::uint64_t mix64(std::uint64_t z) {  // splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// The draw of unit `unit` of hidden layer `layer` is made of the step's key,
// then the record's, then the unit's: each computed once where it is shared.
inline std::uint64_t dropout_step_key(const DropoutStep& d) {
    return mix64(mix64(mix64(d.seed + 0x9e3779b97f4a7c15ULL) ^ d.epoch) ^ d.step);
}
inline std::uint64_t dropout_record_key(std::uint64_t step_key, std::uint64_t record) {
    return mix64(step_key ^ record);
}
// Uniform in [0, 1).
inline double dropout_unit_draw(std::uint64_t record_key, std::uint64_t layer, std::uint64_t unit) {
    return static_cast<double>(mix64(record_key ^ ((layer << 32) | unit)) >> 11) * 0x1.0p-53;
}

// What the first layer reads for one batch: B contiguous dense records, or
// B records of a CSR matrix (SparseRows: a range of records or a list).
template <typename T>
struct RecordBatch {
    const T* dense = nullptr;  // (B, n_0) row-major; null for CSR records
    SparseRows<T, std::int32_t> csr32;
    SparseRows<T, std::int64_t> csr64;
    bool wide = false;  // CSR with 64-bit indices (csr64), else csr32
};

// The records X of a call: a dense matrix, or a CSR one with 32- or 64-bit
// indices. The passes read X through it; only the first layer looks inside.
template <typename T>
struct Records {
    enum class Kind { dense, csr32, csr64 };
    Kind kind = Kind::dense;
    ConstMatrixView<T> dense;
    CsrMatrixView<T, std::int32_t> csr32;
    CsrMatrixView<T, std::int64_t> csr64;
    std::size_t rows = 0, cols = 0;

    Records(ConstMatrixView<T> m) : kind(Kind::dense), dense(m), rows(m.rows), cols(m.cols) {}  // NOLINT: implicit
    Records(CsrMatrixView<T, std::int32_t> m) : kind(Kind::csr32), csr32(m), rows(m.rows), cols(m.cols) {}  // NOLINT
    Records(CsrMatrixView<T, std::int64_t> m) : kind(Kind::csr64), csr64(m), rows(m.rows), cols(m.cols) {}  // NOLINT

    bool sparse() const { return kind != Kind::dense; }

    // Records start, start + 1, ... (contiguous: a dense batch is read in place).
    RecordBatch<T> from(std::size_t start) const { return batch(nullptr, start); }
    // Records rows[0], rows[1], ...: CSR records only (dense ones are gathered).
    RecordBatch<T> listed(const std::size_t* rows_) const { return batch(rows_, 0); }

private:
    RecordBatch<T> batch(const std::size_t* list, std::size_t start) const {
        RecordBatch<T> b;
        switch (kind) {
            case Kind::dense: b.dense = dense.row(start); break;
            case Kind::csr32: b.csr32 = {csr32.indptr, csr32.indices, csr32.values, list, start}; break;
            case Kind::csr64:
                b.csr64 = {csr64.indptr, csr64.indices, csr64.values, list, start};
                b.wide = true;
                break;
        }
        return b;
    }
};

// The first layer's forward and weight gradient on a batch, dense or CSR.
template <typename T>
void first_layer_forward(T* out, const RecordBatch<T>& inp, const T* weight, const T* bias, std::size_t rows,
                         std::size_t in_features, std::size_t out_features) {
    if (inp.dense) {
        linear_forward(out, inp.dense, weight, bias, rows, in_features, out_features);
    } else if (inp.wide) {
        sparse_linear_forward(out, inp.csr64, weight, bias, rows, in_features, out_features);
    } else {
        sparse_linear_forward(out, inp.csr32, weight, bias, rows, in_features, out_features);
    }
}

template <typename T>
void first_layer_backward(T* dweight, T* dbias, const T* dout, const RecordBatch<T>& inp, const T* weight,
                          std::size_t rows, std::size_t in_features, std::size_t out_features, bool accumulate) {
    if (inp.dense) {
        linear_backward<T>(nullptr, dweight, dbias, dout, inp.dense, weight, rows, in_features, out_features,
                           accumulate);
    } else if (inp.wide) {
        sparse_linear_backward(dweight, dbias, dout, inp.csr64, rows, in_features, out_features, accumulate);
    } else {
        sparse_linear_backward(dweight, dbias, dout, inp.csr32, rows, in_features, out_features, accumulate);
    }
}

// The record that holds stored entry e of a CSR matrix (for messages).
template <typename T, typename Index>
std::size_t record_of_entry(const CsrMatrixView<T, Index>& X, std::size_t e) {
    const Index* after = std::upper_bound(X.indptr, X.indptr + X.rows + 1, static_cast<Index>(e));
    return static_cast<std::size_t>(after - X.indptr) - 1;
}

// A CSR X's structure and values: what every call checks before it reads X.
template <typename T, typename Index>
void check_csr(const CsrMatrixView<T, Index>& X) {
    if (X.indptr == nullptr) throw std::invalid_argument("X: null indptr pointer");
    if (X.nnz > 0 && (X.indices == nullptr || X.values == nullptr)) {
        throw std::invalid_argument("X: null indices or values pointer");
    }
    if (X.indptr[0] < 0) {
        throw std::invalid_argument(concat("X (CSR): indptr[0] is ", X.indptr[0], "; offsets must be >= 0"));
    }
    for (std::size_t r = 0; r < X.rows; ++r) {
        if (X.indptr[r + 1] < X.indptr[r]) {
            throw std::invalid_argument(concat("X (CSR): indptr[", r + 1, "] = ", X.indptr[r + 1],
                                               " is less than indptr[", r, "] = ", X.indptr[r],
                                               "; indptr must be non-decreasing"));
        }
    }
    const std::size_t begin = static_cast<std::size_t>(X.indptr[0]);
    const std::size_t end = static_cast<std::size_t>(X.indptr[X.rows]);
    if (end > X.nnz) {
        throw std::invalid_argument(concat("X (CSR): indptr[", X.rows, "] = ", end, " exceeds the ", X.nnz,
                                           " stored entries (the length of indices and data)"));
    }
    for (std::size_t e = begin; e < end; ++e) {
        const Index k = X.indices[e];
        if (k < 0 || static_cast<std::size_t>(k) >= X.cols) {
            throw std::invalid_argument(concat("X (CSR): indices[", e, "] = ", k, " (record ", record_of_entry(X, e),
                                               ") is out of range; column indices must be in [0, ", X.cols, ")"));
        }
    }
    if (!all_finite(X.values + begin, end - begin)) {
        std::size_t e = begin;
        while (std::isfinite(X.values[e])) ++e;
        throw std::invalid_argument(concat("X contains a non-finite value (nan or inf) at record ",
                                           record_of_entry(X, e), ", feature ", X.indices[e]));
    }
}

}  // namespace chainrule::detail

namespace chainrule {
namespace detail {

// The buffers of one forward and backward pass over up to `capacity` records.
// Sized once; the step loop only reuses them.
template <typename T>
struct Workspace {
    std::size_t capacity = 0;
    std::vector<std::size_t> output_offset;  // A_l of layer l starts here in `outputs`
    std::vector<T> outputs;                  // A_1, ..., A_L, each (capacity, n_l)
    std::vector<T> logits;                   // Z_L (capacity, n_L): BCE is taken from logits
    std::vector<double> row_lse;             // a softmax output's lse(Z_L) per record, for cce_forward (capacity)
    std::vector<T> delta;                    // dZ_l (capacity, max n_l) ...
    std::vector<T> spare_delta;              // ... and dZ_{l-1}, swapped layer by layer
    std::vector<T> batch_inputs;             // a shuffled batch gathered from dense X (capacity, n_0), or empty
    std::vector<T> batch_targets;            // and from Y (capacity, n_L)
    std::vector<T> dropped;                  // with dropout: each hidden A_l after it, laid out as `outputs`

    // gather_inputs: room for a shuffled batch of dense records (fit's dense
    // mini-batches only; CSR batches are read through their list of records).
    Workspace(const std::vector<std::size_t>& sizes, std::size_t capacity_, bool training, bool gather_inputs = false)
        : capacity(capacity_) {
        const char* what = "the workspace";
        std::size_t total_outputs = 0;
        std::size_t widest = 0;
        output_offset.reserve(sizes.size() - 1);
        for (std::size_t l = 1; l < sizes.size(); ++l) {
            output_offset.push_back(total_outputs);
            total_outputs = detail::checked_add(total_outputs, detail::checked_mul(capacity, sizes[l], what), what);
            widest = std::max(widest, sizes[l]);
        }
        const std::size_t logits_size = detail::checked_mul(capacity, sizes.back(), what);
        std::size_t total = detail::checked_add(total_outputs, logits_size, what);
        if (training) {
            const std::size_t delta_size = detail::checked_mul(capacity, widest, what);
            const std::size_t gather_inputs_size = gather_inputs ? detail::checked_mul(capacity, sizes.front(), what) : 0;
            const std::size_t gather_size = detail::checked_add(gather_inputs_size, logits_size, what);
            total = detail::checked_add(total, detail::checked_add(2 * delta_size, gather_size, what), what);
            detail::check_fits_in_memory_lazy(detail::checked_mul(total, sizeof(T), what),
                                              [&] { return detail::concat("a workspace for batches of ", capacity, " records"); });
            delta.resize(delta_size);
            spare_delta.resize(delta_size);
            batch_inputs.resize(gather_inputs_size);
            batch_targets.resize(logits_size);
        } else {
            detail::check_fits_in_memory_lazy(detail::checked_mul(total, sizeof(T), what),
                                              [&] { return detail::concat("a workspace for ", capacity, " records"); });
        }
        outputs.resize(total_outputs);
        logits.resize(logits_size);
        row_lse.resize(capacity);
    }

    // The bytes of a workspace for predicting `capacity` records (training false).
    static std::size_t predict_bytes(const std::vector<std::size_t>& sizes, std::size_t capacity) {
        std::size_t values = sizes.back();  // the logits
        for (std::size_t l = 1; l < sizes.size(); ++l) values += sizes[l];
        return capacity * (values * sizeof(T) + sizeof(double));
    }

    T* output(std::size_t l) { return outputs.data() + output_offset[l]; }
    const T* output(std::size_t l) const { return outputs.data() + output_offset[l]; }
    T* dropped_output(std::size_t l) { return dropped.data() + output_offset[l]; }
    const T* dropped_output(std::size_t l) const { return dropped.data() + output_offset[l]; }
};

}  // namespace detail

// What a Network holds and does: its structure, the flat parameter and
// gradient buffers, the training workspace and the locks, and the passes
// (network.cpp) and fit (train.cpp) over them. Network's public calls
// forward here; the public header shows none of it.
template <typename T>
struct Network<T>::Impl {
    using Workspace = detail::Workspace<T>;

    Impl(std::vector<std::size_t> layer_sizes, std::vector<Activation> activations, Loss loss, std::uint64_t seed);
    Impl(const Impl& other);  // copies the parameters (under other's reader lock); zeroed gradients
    Impl& operator=(const Impl&) = delete;
    void assign(const Impl& other);  // Network::operator=

    std::size_t num_layers() const { return activations_.size(); }
    std::size_t num_inputs() const { return layer_sizes_.front(); }
    std::size_t num_outputs() const { return layer_sizes_.back(); }
    std::size_t num_params() const { return params_.size(); }
    LayerView<T> layer(std::size_t l);
    LayerView<const T> layer(std::size_t l) const;
    LayerView<const T> layer_grads(std::size_t l) const;

    // Network's calls on dense or CSR records.
    void predict_records(MatrixView<T> out, const detail::Records<T>& X) const;
    double cost_records(const detail::Records<T>& X, ConstMatrixView<T> Y, const T* sample_weight) const;
    double compute_gradients(ConstMatrixView<T> X, ConstMatrixView<T> Y);  // into grads_ alone
    double compute_gradients_records(const detail::Records<T>& X, ConstMatrixView<T> Y, T* gradient,
                                     const T* sample_weight);
    double cost_and_gradient_records(const detail::Records<T>& X, ConstMatrixView<T> Y, T* gradient, double alpha,
                                     const T* sample_weight);
    double sgd_step(ConstMatrixView<T> X, ConstMatrixView<T> Y, double learning_rate);
    std::vector<double> fit_records(const detail::Records<T>& X, ConstMatrixView<T> Y, const FitOptions& options,
                                    const EpochCallback& on_epoch, const InterruptCheck& check_interrupt,
                                    TrainingState<T>* state, const T* sample_weight, const Reducer<T>* reducer);

    // X's shape, and (values) that each value is finite.
    // Each returns the largest |x| of a dense X whose values it checked, else -1.
    double check_inputs(const detail::Records<T>& X, bool values = true) const;
    double check_input_values(ConstMatrixView<T> X) const;
    double check_targets(const detail::Records<T>& X, ConstMatrixView<T> Y) const;
    void check_params_finite() const;  // the caller holds locks_->params
    double compute_gradients_locked(const detail::Records<T>& X, ConstMatrixView<T> Y,
                                    const T* sample_weight = nullptr);  // ... and locks_->train
    // With `drop`, training's forward pass: each hidden layer's output also
    // goes through dropout into ws.dropped, which the next layer reads.
    const T* forward(Workspace& ws, const detail::RecordBatch<T>& X, std::size_t rows,
                     const detail::DropoutStep* drop = nullptr) const;
    // predict's records [start, start + ws.capacity) (or to the end of X) into out.
    void predict_chunk(Workspace& ws, MatrixView<T> out, const detail::Records<T>& X, std::size_t start) const;
    // Throws predict's overflow error if an output of records [start, start + rows), a, is not finite.
    void check_predictions_finite(const T* a, std::size_t start, std::size_t rows) const;
    // predict's fast path: one small hidden layer and one output (W2, W3),
    // dense X (detail::small_network_predict); records [start, start + rows).
    bool small_network_predicts(const detail::Records<T>& X) const;
    void predict_chunks(MatrixView<T> out, const detail::Records<T>& X, bool small) const;
    void predict_small_chunk(MatrixView<T> out, ConstMatrixView<T> X, std::size_t start, std::size_t rows) const;
    // The summed record losses of the batch in ws (with weights: sum_i s_i L_i).
    double batch_loss(const Workspace& ws, const T* Y, std::size_t rows, const T* weights = nullptr) const;
    // With `step` (and without accumulate), SGD's step is taken inside when
    // step_bounded allows it: then it returns true, and grads_ holds no whole
    // gradient; else (and without `step`) it returns false.
    bool backward(Workspace& ws, const detail::RecordBatch<T>& X, const T* Y, std::size_t rows, T scale,
                  bool accumulate, const T* row_scale = nullptr, const detail::DropoutStep* drop = nullptr,
                  detail::StepInBackward<T>* step = nullptr);
    // Whether the step on the batch of the delta dZ_L (rows) keeps every
    // value finite, by a bound on each layer's gradient; the bounds after the
    // step into step.next and step.next_velocity.
    bool step_bounded(const Workspace& ws, const detail::RecordBatch<T>& X, const T* delta, std::size_t rows,
                      const detail::DropoutStep* drop, detail::StepInBackward<T>& step) const;
    // Whether some layer's dW at this batch size is a GEMM: a network large
    // enough for the step inside the backward pass to save time.
    bool step_inside_pays(std::size_t rows) const;
    // The largest magnitude of each layer's weights and biases, and of its
    // velocity (into step.largest, step.largest_velocity).
    void measure_parameters(detail::StepInBackward<T>& step) const;
    static double weight_sum(const T* weights, std::size_t n);
    static void check_sample_weight(const T* weights, std::size_t n);
    bool has_fused_record_step() const;
    RecordSteps record_steps(Workspace& ws, T* logits, double* losses, const T* X, const T* Y, const std::size_t* rows,
                             std::size_t count, OptimizerState<T>& state, const OptimizerOptions& optimizer,
                             double lr);
    double accumulate_gradients(Workspace& ws, const detail::Records<T>& X, ConstMatrixView<T> Y,
                                const T* weights = nullptr);
    double l2_penalty(double alpha) const;               // 0.5 alpha sum_l ||W_l||^2 (0 when alpha is 0)
    void add_l2_gradient(double alpha, double divisor);  // dW_l += (alpha / divisor) W_l
    // gather_inputs: with room for a shuffled batch of dense records.
    Workspace& training_workspace(std::size_t capacity, bool gather_inputs = false);

    std::vector<std::size_t> layer_sizes_;
    std::vector<Activation> activations_;
    Loss loss_;
    std::vector<std::size_t> offsets_;  // where W_l starts in params_; b_l follows it
    Buffer<T> params_{StaggeredAllocator<T>(0)};
    Buffer<T> grads_{StaggeredAllocator<T>(1)};
    std::unique_ptr<Workspace> train_workspace_;
    // A small predict's workspace, kept for the next (locks_->predict_workspace),
    // so that predicting a few records allocates nothing.
    mutable std::optional<Workspace> predict_workspace_;
    mutable std::unique_ptr<detail::NetworkLocks> locks_;  // train and params
};

}  // namespace chainrule
