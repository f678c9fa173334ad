// What network.cpp (the passes, predict, cost, gradients) and train.cpp
// (fit) share: the workspace of one pass, the training lock, the checks and
// messages of both. Internal to the core.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <atomic>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "chainrule/errors.hpp"
#include "chainrule/network.hpp"
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

}  // namespace chainrule::detail

namespace chainrule {

// The buffers of one forward and backward pass over up to `capacity` records.
// Sized once; the step loop only reuses them.
template <typename T>
struct Network<T>::Workspace {
    std::size_t capacity = 0;
    std::vector<std::size_t> output_offset;  // A_l of layer l starts here in `outputs`
    std::vector<T> outputs;                  // A_1, ..., A_L, each (capacity, n_l)
    std::vector<T> logits;                   // Z_L (capacity, n_L): BCE is taken from logits
    std::vector<T> delta;                    // dZ_l (capacity, max n_l) ...
    std::vector<T> spare_delta;              // ... and dZ_{l-1}, swapped layer by layer
    std::vector<T> batch_inputs;             // a shuffled batch gathered from X (capacity, n_0)
    std::vector<T> batch_targets;            // and from Y (capacity, n_L)
    std::vector<T> dropped;                  // with dropout: each hidden A_l after it, laid out as `outputs`

    Workspace(const std::vector<std::size_t>& sizes, std::size_t capacity_, bool training)
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
            const std::size_t gather_size =
                detail::checked_add(detail::checked_mul(capacity, sizes.front(), what), logits_size, what);
            total = detail::checked_add(total, detail::checked_add(2 * delta_size, gather_size, what), what);
            detail::check_fits_in_memory_lazy(detail::checked_mul(total, sizeof(T), what),
                                              [&] { return detail::concat("a workspace for batches of ", capacity, " records"); });
            delta.resize(delta_size);
            spare_delta.resize(delta_size);
            batch_inputs.resize(capacity * sizes.front());
            batch_targets.resize(logits_size);
        } else {
            detail::check_fits_in_memory_lazy(detail::checked_mul(total, sizeof(T), what),
                                              [&] { return detail::concat("a workspace for ", capacity, " records"); });
        }
        outputs.resize(total_outputs);
        logits.resize(logits_size);
    }

    T* output(std::size_t l) { return outputs.data() + output_offset[l]; }
    T* dropped_output(std::size_t l) { return dropped.data() + output_offset[l]; }
};

}  // namespace chainrule
