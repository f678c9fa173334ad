// Network<T>::fit: mini-batch training as a straight loop over named parts.
//
//   for each epoch:  lr = the schedule's rate; the batch source shuffles
//     for each batch: gather it; forward; the loss; backward (+ L2); update
//     the epoch's cost; the stopping rule; readers and the callback get in
//
// The parts below are the source of batches (shuffling, gathering,
// prefetching), the epoch's cost (which owns the deferred losses of
// one-record steps), the window that lets readers and Ctrl-C in between
// steps, the stopping rule and the schedule. A step is chosen once per fit:
// the fused one-record path (plain SGD on a one-layer network, one record a
// step) or the general one. The equations are those of docs/math.md.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "chainrule/errors.hpp"
#include "chainrule/network.hpp"
#include "kernels/kernels.hpp"
#include "network_internals.hpp"
#include "runtime/prefetch.hpp"
#include "runtime/random.hpp"
#include "runtime/thread_pool.hpp"

namespace chainrule {

namespace {

using detail::concat;

// A shuffled fit prefetches the records of the next steps, at least this many
// records ahead: one small step takes less time than a cache miss.
constexpr std::size_t kPrefetchRecords = 16;

// A shuffled batch of at least twice this many values (X and Y) is gathered
// by all the core's threads, in ranges of records.
constexpr std::size_t kGatherMinPart = std::size_t{1} << 14;

// Fused one-record steps are taken at most kDeferredSteps per call, keeping
// their logits within this many values.
constexpr std::size_t kFusedValues = 4096;

// fit reserves room for at most this many epoch costs up front (32 KiB).
constexpr std::size_t kHistoryReserve = 4096;

// adaptive stops dividing the rate below this (scikit-learn's limit).
constexpr double kAdaptiveMinRate = 1e-6;

// Hints the cache to fetch rows[0..count) of m.
template <typename T>
CHAINRULE_ALWAYS_INLINE void prefetch_rows(ConstMatrixView<T> m, const std::size_t* rows, std::size_t count) {
    for (std::size_t r = 0; r < count; ++r) detail::prefetch_bytes(m.row(rows[r]), m.cols * sizeof(T));
}

void check_in_unit_interval(double value, const char* argument) {
    if (!(value >= 0.0 && value < 1.0)) {
        throw std::invalid_argument(concat(argument, " must be in [0, 1), got ", value));
    }
}

template <typename T>
void check_fit_options(const FitOptions& options) {
    detail::check_learning_rate<T>(options.learning_rate);
    if (options.batch_size < 1) throw std::invalid_argument("batch_size must be >= 1, got 0");
    if (options.tol && (!std::isfinite(*options.tol) || *options.tol < 0.0)) {
        throw std::invalid_argument(concat("tol must be None or a finite number >= 0, got ", *options.tol));
    }
    if (options.n_iter_no_change < 1) {  // read only with tol or the adaptive schedule, checked always
        throw std::invalid_argument("n_iter_no_change must be >= 1, got 0");
    }
    if (!(std::isfinite(options.alpha) && options.alpha >= 0.0)) {
        throw std::invalid_argument(concat("alpha must be a finite number >= 0, got ", options.alpha));
    }
    const OptimizerOptions& o = options.optimizer;
    check_in_unit_interval(o.momentum, "momentum");
    if (o.nesterov && !(o.momentum > 0.0)) throw std::invalid_argument("nesterov needs a momentum > 0");
    if (!(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0)) {
        throw std::invalid_argument(concat("weight_decay must be a finite number >= 0, got ", o.weight_decay));
    }
    check_in_unit_interval(o.beta1, "betas[0]");
    check_in_unit_interval(o.beta2, "betas[1]");
    if (!(std::isfinite(o.eps) && o.eps > 0.0)) {
        throw std::invalid_argument(concat("eps must be a finite number > 0, got ", o.eps));
    }
    if (o.kind != OptimizerKind::sgd && (o.momentum != 0.0 || o.nesterov)) {
        throw std::invalid_argument("momentum and nesterov are options of the sgd optimizer");
    }
    if (o.amsgrad && (o.kind == OptimizerKind::sgd || o.form == OptimizerForm::sklearn)) {
        throw std::invalid_argument("amsgrad is an option of torch's adam and adamw");
    }
    if (o.kind == OptimizerKind::adamw && o.form == OptimizerForm::sklearn) {
        throw std::invalid_argument("scikit-learn has no adamw: use form='torch'");
    }
    for (std::size_t l = 0; l < options.dropout.size(); ++l) {
        if (!(options.dropout[l] >= 0.0 && options.dropout[l] < 1.0)) {
            throw std::invalid_argument(concat("dropout[", l, "] must be in [0, 1), got ", options.dropout[l]));
        }
    }
    const ScheduleOptions& s = options.schedule;
    if (s.kind == ScheduleKind::invscaling && !(std::isfinite(s.power_t) && s.power_t >= 0.0)) {
        throw std::invalid_argument(concat("power_t must be a finite number >= 0, got ", s.power_t));
    }
    if (s.kind == ScheduleKind::step) {
        if (s.step_size < 1) throw std::invalid_argument("step_size must be >= 1, got 0");
        if (!(std::isfinite(s.gamma) && s.gamma > 0.0)) {
            throw std::invalid_argument(concat("gamma must be a finite number > 0, got ", s.gamma));
        }
    }
    if (s.kind == ScheduleKind::cosine) {
        if (s.t_max < 1) throw std::invalid_argument("t_max must be >= 1, got 0");
        if (!(std::isfinite(s.eta_min) && s.eta_min >= 0.0 && s.eta_min <= options.learning_rate)) {
            throw std::invalid_argument(concat("eta_min must be a finite number in [0, lr], got ", s.eta_min));
        }
    }
    if (s.kind == ScheduleKind::adaptive && !options.tol) {
        throw std::invalid_argument("the adaptive schedule needs tol (it divides the rate when the cost stalls)");
    }
}

// The records of each batch, in order or in a new permutation per epoch;
// a shuffled batch of dense records is gathered into the workspace (X
// itself is never copied) and the records of the next steps are
// prefetched. A shuffled batch of CSR records is read through the
// permutation in place (the first layer takes a list of records); only its
// targets and weights are gathered.
template <typename T>
class BatchSource {
public:
    struct Batch {
        detail::RecordBatch<T> inputs;
        const T* targets;
        std::size_t rows;
        const T* weights;  // the records' sample weights, or null
    };

    BatchSource(const detail::Records<T>& records, ConstMatrixView<T> Y, const T* weights, std::size_t batch_size,
                bool shuffle, T* gather_x, T* gather_y)
        : records_(records),
          X_(records.dense),
          Y_(Y),
          sparse_(records.sparse()),
          num_records_(records.rows),
          weights_(weights),
          gather_w_(weights && shuffle ? batch_size : 0),
          batch_size_(batch_size),
          shuffle_(shuffle),
          order_(shuffle ? records.rows : 0),
          gather_x_(gather_x),
          gather_y_(gather_y),
          prefetch_distance_(std::max(batch_size, kPrefetchRecords)),
          gather_min_rows_(std::max<std::size_t>(1, kGatherMinPart / ((sparse_ ? 0 : records.cols) + Y.cols))) {}

    void begin_epoch(detail::Random& random) {
        prefetched_ = 0;
        if (!shuffle_) return;
        std::iota(order_.begin(), order_.end(), std::size_t{0});
        random.shuffle(order_.data(), order_.size());
    }

    std::size_t num_records() const { return num_records_; }

    // The record of each of the steps [start, start + count): this epoch's
    // permutation, or null when the records go in order.
    const std::size_t* rows(std::size_t start) const { return shuffle_ ? order_.data() + start : nullptr; }

    // The batch of records [start, start + rows) of this epoch's order.
    Batch batch(std::size_t start) {
        const std::size_t rows = std::min(batch_size_, num_records_ - start);
        if (!shuffle_) return {records_.from(start), Y_.row(start), rows, weights_ ? weights_ + start : nullptr};
        const std::size_t* order = order_.data() + start;
        const T* weights = nullptr;
        if (weights_) {
            for (std::size_t r = 0; r < rows; ++r) gather_w_[r] = weights_[order[r]];
            weights = gather_w_.data();
        }
        // One record is contiguous already; CSR records are read through the order.
        Batch batch{sparse_ ? records_.listed(order) : records_.from(order[0]), Y_.row(order[0]), rows, weights};
        if (rows > 1) {  // gather the batch (on all threads when large)
            detail::for_ranges(rows, gather_min_rows_, 1, [&](std::size_t begin, std::size_t end) {
                for (std::size_t r = begin; r < end; ++r) {
                    if (!sparse_) std::memcpy(gather_x_ + r * X_.cols, X_.row(order[r]), X_.cols * sizeof(T));
                    std::memcpy(gather_y_ + r * Y_.cols, Y_.row(order[r]), Y_.cols * sizeof(T));
                }
            });
            if (!sparse_) batch.inputs = detail::RecordBatch<T>{gather_x_, {}, {}, false};
            batch.targets = gather_y_;
        }
        // The records of a shuffled batch sit anywhere in X: ask for those of
        // the next steps now, so that their cache misses overlap this step.
        const std::size_t ahead = std::min(num_records_, start + rows + prefetch_distance_);
        if (prefetched_ < ahead) {
            if (!sparse_) prefetch_rows(X_, order_.data() + prefetched_, ahead - prefetched_);
            prefetch_rows(Y_, order_.data() + prefetched_, ahead - prefetched_);
            prefetched_ = ahead;
        }
        return batch;
    }

    // For the fused steps: prefetch the first records after step `end`.
    void prefetch_after(std::size_t end) const {
        if (!shuffle_) return;
        const std::size_t next = std::min(kPrefetchRecords, num_records_ - end);
        prefetch_rows(X_, order_.data() + end, next);
        prefetch_rows(Y_, order_.data() + end, next);
    }

private:
    const detail::Records<T>& records_;
    ConstMatrixView<T> X_, Y_;  // X_: the dense records (unused for CSR ones)
    bool sparse_;
    std::size_t num_records_;
    const T* weights_;
    std::vector<T> gather_w_;
    std::size_t batch_size_;
    bool shuffle_;
    std::vector<std::size_t> order_;
    T* gather_x_;
    T* gather_y_;
    std::size_t prefetch_distance_, gather_min_rows_;
    std::size_t prefetched_ = 0;  // the records of order_[0, prefetched_) were prefetched
};

// The epoch's cost: the sum of (loss / total) over the steps, in step order
// (total: the number of records, or their weights' sum), so that huge
// finite losses cannot overflow it. The BCE of a
// one-output, one-record step may wait: its logit and target are kept, and
// the losses of up to kDeferredSteps such steps are computed together
// (bce_losses, vectorized) and added in order.
template <typename T>
class EpochCost {
public:
    explicit EpochCost(double total) : total_(total) {}

    void add(double loss) { cost_ += loss / total_; }

    void defer(T logit, T target) {
        logits_[deferred_] = logit;
        targets_[deferred_] = target;
        if (++deferred_ == detail::kDeferredSteps) flush();
    }

    double finish() {
        flush();
        return cost_;
    }

private:
    void flush() {
        bce_losses(losses_, logits_, targets_, deferred_);
        for (std::size_t i = 0; i < deferred_; ++i) cost_ += losses_[i] / total_;
        deferred_ = 0;
    }

    double total_;
    double cost_ = 0.0;
    std::size_t deferred_ = 0;
    T logits_[detail::kDeferredSteps];
    T targets_[detail::kDeferredSteps];
    double losses_[detail::kDeferredSteps];
};

// Readers (predict, cost, save) take the parameters' lock between steps:
// about every 2^20 multiply-adds, a millisecond or so, the writer lets go,
// polls for an interrupt (Ctrl-C) and takes it again.
class ReaderWindow {
public:
    ReaderWindow(detail::WriterFirstMutex& mutex, const InterruptCheck& check_interrupt, std::size_t steps_per_poll)
        : writing_(mutex), check_interrupt_(check_interrupt), steps_per_poll_(steps_per_poll) {}

    std::size_t steps_until_poll() const { return steps_per_poll_ - steps_since_poll_; }

    void after_steps(std::size_t count) {
        steps_since_poll_ += count;
        if (steps_since_poll_ >= steps_per_poll_) poll();
    }

    // after_steps, handing back what the interrupt check threw (the lock held again).
    std::exception_ptr after_steps_caught(std::size_t count) {
        try {
            after_steps(count);
            return nullptr;
        } catch (...) {
            return std::current_exception();
        }
    }

    void open() { writing_.unlock(); }
    void close() { writing_.lock(); }

private:
    void poll() {
        steps_since_poll_ = 0;
        writing_.unlock();
        try {
            if (check_interrupt_) {
                check_interrupt_();  // may throw: the last completed step stands
            } else {
                std::this_thread::yield();  // let a waiting reader take the lock first
            }
        } catch (...) {
            writing_.lock();
            throw;
        }
        writing_.lock();
    }

    std::unique_lock<detail::WriterFirstMutex> writing_;
    const InterruptCheck& check_interrupt_;
    std::size_t steps_per_poll_;
    std::size_t steps_since_poll_ = 0;
};

// tol's rule: it fires after n_iter_no_change epochs in a row that did not
// beat the best cost by tol (scikit-learn's MLP counts the same way but waits
// for one epoch more). Its running values live in the TrainingState.
template <typename T>
bool stalled(TrainingState<T>& run, double cost, double tol, std::size_t n_iter_no_change) {
    run.epochs_without_improvement =
        run.has_best && cost > run.best_cost - tol ? run.epochs_without_improvement + 1 : 0;
    if (!run.has_best || cost < run.best_cost) run.best_cost = cost;
    run.has_best = true;
    return run.epochs_without_improvement >= n_iter_no_change;
}

// The learning rate of the run's next epoch (optimizer.hpp, ScheduleOptions).
template <typename T>
double scheduled_rate(const FitOptions& options, const TrainingState<T>& run) {
    const ScheduleOptions& s = options.schedule;
    const double lr = options.learning_rate;
    const double epoch = static_cast<double>(run.epochs);
    double rate = lr;
    if (s.custom) {
        rate = s.custom(static_cast<std::size_t>(run.epochs), lr);
        if (!(std::isfinite(rate) && rate > 0.0)) {
            throw std::invalid_argument(concat("the schedule returned ", rate, " for epoch ", run.epochs,
                                               "; a learning rate must be a finite number > 0"));
        }
        detail::check_learning_rate<T>(rate, "the schedule's learning rate");
        return rate;
    }
    switch (s.kind) {
        case ScheduleKind::constant: break;
        case ScheduleKind::invscaling:
            rate = lr / std::pow(static_cast<double>(run.records) + 1.0, s.power_t);
            break;
        case ScheduleKind::adaptive: rate = run.learning_rate > 0.0 ? run.learning_rate : lr; break;
        case ScheduleKind::step:
            rate = lr * std::pow(s.gamma, std::floor(epoch / static_cast<double>(s.step_size)));
            break;
        case ScheduleKind::cosine: {
            const double t = std::min(epoch, static_cast<double>(s.t_max));
            constexpr double kPi = 3.14159265358979323846;
            rate = s.eta_min + (lr - s.eta_min) * (1.0 + std::cos(kPi * t / static_cast<double>(s.t_max))) / 2.0;
            break;
        }
    }
    // A rate that rounds to 0 in the dtype would silently stop training.
    if (!(static_cast<T>(rate) > T(0))) {
        throw std::invalid_argument(concat("the schedule's learning rate for epoch ", run.epochs, " is ", rate,
                                           ", which is 0 in ", dtype_name<T>()));
    }
    return rate;
}


// ---- Distributed training (docs/math.md, "Distributed training") ----------
//
// The processes meet at fixed points: on entry (everyone's checks and shard
// sizes), at every step (the gradient, the loss and each one's status) and
// after every epoch (the callback's verdict). At each, every process reports
// a status; one that failed makes all of them throw there, so no process is
// left waiting in a collective the others never reach.

// A process's status at a meeting point (a double: it travels through sum_scalars).
constexpr double kGoOn = 0.0, kStop = 1.0, kFailed = 2.0;

// A failed process's message travels as one character per double, at most
// this many characters.
constexpr std::size_t kMessageChars = 512;

// The failure's message, its first paragraph only (a Python error's what()
// goes on with its traceback, which the other processes need not read).
std::string message_of(const std::exception_ptr& failure) {
    try {
        std::rethrow_exception(failure);
    } catch (const std::exception& e) {
        const std::string message = e.what();
        return message.substr(0, message.find("\n\n"));
    } catch (...) {
        return "an exception that is not a std::exception";
    }
}

// The ranks whose status is kFailed, and the first one's message (every
// process takes part in the exchange).
template <typename T>
std::string failure_report(const Reducer<T>& reducer, const double* statuses, const std::exception_ptr& own) {
    std::vector<double> text(reducer.size * kMessageChars, 0.0);
    if (own) {
        const std::string message = message_of(own);
        for (std::size_t i = 0; i < std::min(message.size(), kMessageChars); ++i) {
            text[reducer.rank * kMessageChars + i] = static_cast<unsigned char>(message[i]);
        }
    }
    reducer.sum_scalars(text.data(), text.size());
    std::string ranks, first;  // the failed ranks, and the message of the lowest
    std::size_t failed = 0, lowest = 0;
    for (std::size_t r = 0; r < reducer.size; ++r) {
        if (statuses[r] != kFailed) continue;
        ranks += concat(failed ? ", " : "", r);
        if (failed++) continue;
        lowest = r;
        for (std::size_t i = 0; i < kMessageChars && text[r * kMessageChars + i] != 0.0; ++i) {
            first += static_cast<char>(static_cast<unsigned char>(text[r * kMessageChars + i]));
        }
    }
    return concat(failed == 1 ? "rank " : "ranks ", ranks, " of ", reducer.size, " failed; rank ", lowest, ": ",
                  first);
}

// After a collective that carried each rank's status in statuses[0, size):
// returns whether any rank asked to stop; if one failed, throws on every
// rank (see Network::fit).
template <typename T>
bool agree(const Reducer<T>& reducer, const double* statuses, const std::exception_ptr& own, const char* where,
           bool at_entry) {
    bool failed = false, stop = false;
    for (std::size_t r = 0; r < reducer.size; ++r) {
        failed = failed || statuses[r] == kFailed;
        stop = stop || statuses[r] == kStop;
    }
    if (!failed) return stop;
    const std::string report = failure_report(reducer, statuses, own);
    if (at_entry) throw std::invalid_argument(concat(report, " (", where, "; no process trained)"));
    if (own) std::rethrow_exception(own);
    throw std::runtime_error(concat(report, " (", where, "; every process stopped there)"));
}

// Each rank's status, gathered through a sum (each writes its own slot).
template <typename T>
bool agree_on(const Reducer<T>& reducer, double status, const std::exception_ptr& own, const char* where) {
    std::vector<double> statuses(reducer.size, 0.0);
    statuses[reducer.rank] = own ? kFailed : status;
    reducer.sum_scalars(statuses.data(), statuses.size());
    return agree(reducer, statuses.data(), own, where, false);
}

// Copies values[0, count) of rank 0 to every rank, through `scratch` (count
// values): the others add -0.0, which leaves every value (+0.0 included) as
// it is. Should the sum throw, `values` are left as they were.
template <typename V, typename Sum>
void copy_from_rank0(std::size_t rank, const Sum& sum, V* values, std::size_t count, V* scratch) {
    if (rank == 0) {
        std::copy(values, values + count, scratch);
    } else {
        std::fill(scratch, scratch + count, V(-0.0));
    }
    sum(scratch, count);
    std::copy(scratch, scratch + count, values);
}

// Each shard's size and weight sum, and what every rank must agree on. The
// seed travels as its two 32-bit halves, each exact in a double.
struct Peer {
    double status, records, weight_sum, params, epochs, batch_size, seed_high, seed_low, learning_rate, run_epochs,
        run_steps, slots;
};
constexpr std::size_t kPeerFields = sizeof(Peer) / sizeof(double);

template <typename T>
std::vector<Peer> meet_at_entry(const Reducer<T>& reducer, const Peer& own, const std::exception_ptr& failure) {
    std::vector<double> table(reducer.size * kPeerFields, 0.0);
    std::memcpy(table.data() + reducer.rank * kPeerFields, &own, sizeof(Peer));
    reducer.sum_scalars(table.data(), table.size());
    std::vector<Peer> peers(reducer.size);
    std::memcpy(peers.data(), table.data(), table.size() * sizeof(double));
    std::vector<double> statuses(reducer.size);
    for (std::size_t r = 0; r < reducer.size; ++r) statuses[r] = peers[r].status;
    agree(reducer, statuses.data(), failure, "at the start of fit", true);
    static const char* const names[kPeerFields] = {"", "", "", "the network's parameter count", "epochs",
                                                   "batch_size", "the seed's high 32 bits",
                                                   "the seed's low 32 bits", "the learning rate",
                                                   "the run's epochs so far", "the optimizer's steps so far",
                                                   "the optimizer's state size"};
    for (std::size_t f = 3; f < kPeerFields; ++f) {  // the table's rows are the Peers, field by field
        for (std::size_t r = 1; r < reducer.size; ++r) {
            const double mine = table[r * kPeerFields + f];
            const double first = table[f];
            if (mine != first) {
                throw std::invalid_argument(concat("the processes disagree on ", names[f], ": rank 0 has ", first,
                                                   ", rank ", r, " has ", mine, "; every process must call fit "
                                                   "with the same network, options and run (no process trained)"));
            }
        }
    }
    return peers;
}

// The records step `step` takes from a shard of `records` records.
std::size_t step_rows(double records, std::size_t batch_size, std::size_t step) {
    const double start = static_cast<double>(step) * static_cast<double>(batch_size);
    return records > start ? static_cast<std::size_t>(std::min<double>(batch_size, records - start)) : 0;
}

std::uint64_t distributed_seed(std::uint64_t seed, std::size_t rank, std::uint64_t epoch) {
    return detail::mix64(detail::mix64(detail::mix64(seed ^ 0x6a09e667f3bcc909ULL) ^ rank) ^ epoch);
}

}  // namespace

std::vector<std::size_t> distributed_order(std::size_t num_records, std::uint64_t seed, std::size_t rank,
                                           std::uint64_t epoch) {
    std::vector<std::size_t> order(num_records);
    std::iota(order.begin(), order.end(), std::size_t{0});
    detail::Random random(distributed_seed(seed, rank, epoch));
    random.shuffle(order.data(), order.size());
    return order;
}

namespace {

template <typename T>
void check_training_state(const TrainingState<T>& run, const OptimizerOptions& optimizer, std::size_t num_params) {
    const int slots = optimizer_slots(optimizer);
    for (int s = 0; s < slots; ++s) {
        const std::size_t size = run.optimizer.slots[s].size();
        if (size != 0 && size != num_params) {
            throw std::invalid_argument(concat("the optimizer state holds ", size, " values per buffer, but the "
                                               "network has ", num_params, " parameters: it belongs to another "
                                               "network"));
        }
    }
}

}  // namespace

template <typename T>
std::vector<double> Network<T>::fit(ConstMatrixView<T> X, ConstMatrixView<T> Y, const FitOptions& options,
                                    const EpochCallback& on_epoch, const InterruptCheck& check_interrupt,
                                    TrainingState<T>* state, const T* sample_weight, const Reducer<T>* reducer) {
    return impl_->fit_records(X, Y, options, on_epoch, check_interrupt, state, sample_weight, reducer);
}

template <typename T>
template <typename Index>
std::vector<double> Network<T>::fit(CsrMatrixView<T, Index> X, ConstMatrixView<T> Y, const FitOptions& options,
                                    const EpochCallback& on_epoch, const InterruptCheck& check_interrupt,
                                    TrainingState<T>* state, const T* sample_weight, const Reducer<T>* reducer) {
    return impl_->fit_records(X, Y, options, on_epoch, check_interrupt, state, sample_weight, reducer);
}

template <typename T>
std::vector<double> Network<T>::Impl::fit_records(const detail::Records<T>& X, ConstMatrixView<T> Y,
                                            const FitOptions& options, const EpochCallback& on_epoch,
                                            const InterruptCheck& check_interrupt, TrainingState<T>* state,
                                            const T* sample_weight, const Reducer<T>* reducer) {
    if (reducer && (reducer->size < 1 || reducer->rank >= reducer->size || !reducer->sum || !reducer->sum_scalars)) {
        throw std::invalid_argument(concat("reducer: expected 0 <= rank < size and both sums set, got rank ",
                                           reducer->rank, " of size ", reducer->size));
    }
    TrainingState<T> fresh;
    TrainingState<T>& run = state ? *state : fresh;  // a run of one call unless the caller keeps it
    std::optional<detail::TrainingLock> lock;
    // The training workspace is let go when fit returns or throws (with the
    // lock held: else it is another thread's): its batches may need far more
    // than what the calls after it use, which size their own.
    struct ReleaseWorkspace {
        const std::optional<detail::TrainingLock>& lock;
        std::unique_ptr<Workspace>& workspace;
        ~ReleaseWorkspace() {
            if (lock) workspace.reset();
        }
    } release_workspace{lock, train_workspace_};
    std::exception_ptr entry_failure;  // distributed: reported to every process before anyone trains
    double largest_input = -1.0;       // of a dense X, from the check of its values
    try {
        check_fit_options<T>(options);
        if (!options.dropout.empty() && options.dropout.size() != num_layers() - 1) {
            throw std::invalid_argument(concat("dropout: expected ", num_layers() - 1,
                                               " rates (one per hidden layer), got ", options.dropout.size()));
        }
        largest_input = check_targets(X, Y);
        check_sample_weight(sample_weight, X.rows);
        lock.emplace(*locks_);
        check_training_state(run, options.optimizer, num_params());
        if (reducer && reducer->rank == 0) {  // rank 0's parameters become everyone's
            const std::unique_lock<detail::WriterFirstMutex> reading(locks_->params);
            check_params_finite();
        }
    } catch (...) {
        if (!reducer) throw;
        entry_failure = std::current_exception();
    }
    const std::uint64_t run_seed = run.seeded ? run.seed : options.seed;

    // Distributed: every shard's size and weight sum, then rank 0's parameters and run.
    std::vector<Peer> peers;
    if (reducer) {
        const Peer own{static_cast<double>(entry_failure ? kFailed : kGoOn), static_cast<double>(X.rows),
                       sample_weight && !entry_failure ? weight_sum(sample_weight, X.rows) : 0.0,
                       static_cast<double>(num_params()), static_cast<double>(options.epochs),
                       static_cast<double>(options.batch_size), static_cast<double>(run_seed >> 32),
                       static_cast<double>(run_seed & 0xffffffffULL),
                       options.learning_rate, static_cast<double>(run.epochs),
                       static_cast<double>(run.optimizer.steps),
                       static_cast<double>(run.optimizer.slots[0].size())};
        peers = meet_at_entry(*reducer, own, entry_failure);
        // Through the gradient buffer (num_params values, rewritten by every step).
        copy_from_rank0(reducer->rank, reducer->sum, params_.data(), params_.size(), grads_.data());
        for (Buffer<T>& slot : run.optimizer.slots) {
            if (!slot.empty()) copy_from_rank0(reducer->rank, reducer->sum, slot.data(), slot.size(), grads_.data());
        }
        double rule[4] = {run.best_cost, static_cast<double>(run.epochs_without_improvement),
                          run.has_best ? 1.0 : 0.0, run.learning_rate};
        double rule_scratch[4];
        copy_from_rank0(reducer->rank, reducer->sum_scalars, rule, 4, rule_scratch);
        run.best_cost = rule[0];
        run.epochs_without_improvement = static_cast<std::uint64_t>(rule[1]);
        run.has_best = rule[2] != 0.0;
        run.learning_rate = rule[3];
    }
    double largest_shard = static_cast<double>(X.rows), all_records = static_cast<double>(X.rows), all_weights = 0.0;
    for (const Peer& peer : peers) {  // in rank order: every process adds the same numbers the same way
        largest_shard = std::max(largest_shard, peer.records);
        all_records += peer.records;
        all_weights += peer.weight_sum;
    }
    if (reducer) all_records -= static_cast<double>(X.rows);

    const std::size_t num_records = X.rows;  // this shard's
    const std::size_t batch_size = static_cast<std::size_t>(std::min<double>(options.batch_size, largest_shard));
    const std::size_t local_batch = std::min(batch_size, num_records);
    const std::size_t steps_per_epoch = (static_cast<std::size_t>(largest_shard) + batch_size - 1) / batch_size;
    // Dense shuffled batches of several records are gathered into the workspace.
    Workspace& ws = training_workspace(local_batch, !X.sparse() && options.shuffle && local_batch > 1);
    BatchSource<T> batches(X, Y, sample_weight, local_batch, options.shuffle, ws.batch_inputs.data(),
                           ws.batch_targets.data());
    const double total = sample_weight ? (reducer ? all_weights : weight_sum(sample_weight, num_records))
                                       : all_records;
    std::vector<T> row_scale(sample_weight ? local_batch : 0);  // s_i / (the batch's weight sum)
    detail::Random random(options.seed);
    if (run.seeded) random.set_state(run.generator);  // a run continues its shuffling stream
    const bool dropout =
        std::any_of(options.dropout.begin(), options.dropout.end(), [](double rate) { return rate > 0.0; });
    if (dropout && ws.dropped.size() != ws.outputs.size()) ws.dropped.resize(ws.outputs.size());
    const OptimizerOptions& optimizer = options.optimizer;
    // The step, chosen once: one-record steps (SGD, plain or with momentum,
    // or Adam: record_steps_take) of a one-layer network on dense records run
    // fused, many per call (dense_record_steps); else the general path; with
    // a reducer, the distributed one (every step meets the other processes).
    // (One layer: no hidden layer, so no dropout.)
    const bool fused = !reducer && batch_size == 1 && !X.sparse() && has_fused_record_step() &&
                       record_steps_take(optimizer) && options.alpha == 0.0 && !sample_weight;
    // One-record steps of a one-output BCE network leave their loss for later:
    // the divergence check needs only a finite logit (targets are in [0, 1]).
    const bool defer_loss = !reducer && batch_size == 1 && num_outputs() == 1 && loss_ == Loss::bce &&
                            options.alpha == 0.0 && !sample_weight;
    const bool general = !fused && !reducer;
    // SGD (plain, or with momentum but not Nesterov's) on dense batches where
    // some layer's dW is a GEMM: the step is taken inside the backward pass,
    // in that GEMM (Impl::backward; docs/math.md, "The step inside the
    // backward pass"). The bounds are measured at each epoch's start (the
    // callback may have set parameters) and after a step taken the other
    // way, and follow each step taken inside.
    const bool step_on_the_way = general && !X.sparse() && detail::StepInBackward<T>::takes(optimizer) &&
                                 options.alpha == 0.0 && step_inside_pays(local_batch);
    detail::StepInBackward<T> inside;
    inside.optimizer = &optimizer;
    inside.state = &run.optimizer;
    inside.largest_input = largest_input;  // again where X is checked again (X must not change otherwise)
    const std::size_t fused_chunk =
        fused ? std::clamp<std::size_t>(kFusedValues / num_outputs(), 1, detail::kDeferredSteps) : 0;
    std::vector<T> step_logits(fused_chunk * num_outputs());
    std::vector<double> step_losses(fused_chunk);
    std::vector<double> step_scalars(reducer ? 1 + reducer->size : 0);  // the summed loss, each rank's status
    std::vector<double> history;  // grows as epochs end: a huge epochs (stopped by tol or the callback) is valid
    history.reserve(std::min<std::size_t>(options.epochs, kHistoryReserve));

    auto cost_diverged = [&](std::size_t epoch, std::size_t batch, double loss, double lr) {
        return divergence_error(concat("training diverged at epoch ", epoch + 1, ", batch ", batch + 1,
                                       ": the cost became ", loss, "; the parameters hold their last finite "
                                       "values (before that step); lower the learning rate (lr=", lr,
                                       "), or scale the inputs if they are large"));
    };
    auto update_diverged = [&](std::size_t epoch, std::size_t batch, double lr) {
        return divergence_error(concat("training diverged at epoch ", epoch + 1, ", batch ", batch + 1,
                                       ": a parameter would become non-finite; the parameters hold their "
                                       "last finite values (before that step); lower the learning rate (lr=",
                                       lr, ")"));
    };
    // X and Y are read in place, and the callback may have written to them
    // (targets of 5 under bce make negative costs): the next epoch reads
    // them only after the checks made on entry pass again, unless the caller
    // promised the callback does not write them (dense X only).
    const bool recheck_data = on_epoch && (options.callback_writes_data || X.sparse());
    auto check_inputs_again = [&](std::size_t epoch) {
        if (!recheck_data) return;
        try {
            inside.largest_input = check_targets(X, Y);
            check_sample_weight(sample_weight, X.rows);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(concat("X or y changed during fit (in the callback after epoch ", epoch + 1,
                                               "): ", e.what(), "; the parameters are those after epoch ",
                                               epoch + 1, "; X and y must not change while fit runs"));
        }
    };
    ReaderWindow window(locks_->params, check_interrupt,
                        std::max<std::size_t>(1, (std::size_t{1} << 20) / (batch_size * num_params())));
    if (!reducer) check_params_finite();  // once: from here on, each step keeps them finite or throws

    for (std::size_t epoch = 0; epoch < options.epochs; ++epoch) {
        const double lr = scheduled_rate(options, run);
        if (step_on_the_way) {
            inside.lr = lr;
            measure_parameters(inside);
        }
        if (reducer && options.shuffle) {
            detail::Random shard_random(distributed_seed(run_seed, reducer->rank, run.epochs));
            batches.begin_epoch(shard_random);
        } else {
            batches.begin_epoch(random);
        }
        EpochCost<T> cost(total);
        for (std::size_t start = 0; fused && start < num_records;) {
            // Up to fused_chunk steps in one call, stopping at the next poll.
            const std::size_t count = std::min({fused_chunk, num_records - start, window.steps_until_poll()});
            const std::size_t* rows = batches.rows(start);  // else in place, in order
            batches.prefetch_after(start + count);          // the kernel prefetches within its steps
            const RecordSteps steps = record_steps(ws, step_logits.data(), step_losses.data(),
                                                   rows ? X.dense.data : X.dense.row(start), rows ? Y.data : Y.row(start),
                                                   rows, count, run.optimizer, optimizer, lr);
            for (std::size_t i = 0; i < steps.done; ++i) cost.add(step_losses[i]);  // in order
            if (steps.stopped == RecordStep::loss_not_finite) {
                throw cost_diverged(epoch, start + steps.done, step_losses[steps.done], lr);
            }
            if (steps.stopped == RecordStep::update_not_finite) throw update_diverged(epoch, start + steps.done, lr);
            start += count;
            window.after_steps(count);
        }
        for (std::size_t start = 0, batch = 0; general && start < num_records; start += batch_size, ++batch) {
            const auto b = batches.batch(start);
            // The batch's divisor: its records, or its weights' sum (a batch of weights 0 takes no step).
            const double divisor = b.weights ? weight_sum(b.weights, b.rows) : static_cast<double>(b.rows);
            if (!(divisor > 0.0)) continue;
            for (std::size_t r = 0; b.weights && r < b.rows; ++r) {
                row_scale[r] = static_cast<T>(static_cast<double>(b.weights[r]) / divisor);
            }
            const detail::DropoutStep drop{&options.dropout, run_seed, run.epochs, batch, start};
            forward(ws, b.inputs, b.rows, dropout ? &drop : nullptr);
            const bool deferred = defer_loss && std::isfinite(ws.logits[0]);  // a finite BCE: it can wait
            const double loss =
                deferred ? 0.0 : batch_loss(ws, b.targets, b.rows, b.weights) + l2_penalty(options.alpha);
            if (!std::isfinite(loss)) throw cost_diverged(epoch, batch, loss, lr);
            const bool stepped =
                backward(ws, b.inputs, b.targets, b.rows, b.weights ? T(1) : T(1) / static_cast<T>(b.rows),
                         /*accumulate=*/false, b.weights ? row_scale.data() : nullptr, dropout ? &drop : nullptr,
                         step_on_the_way ? &inside : nullptr);
            if (stepped) {
                ++run.optimizer.steps;  // as optimizer_update counts a step
                std::swap(inside.largest, inside.next);
                std::swap(inside.largest_velocity, inside.next_velocity);
            } else {
                add_l2_gradient(options.alpha, divisor);
                if (!optimizer_update(params_.data(), grads_.data(), params_.size(), run.optimizer, optimizer, lr)) {
                    throw update_diverged(epoch, batch, lr);
                }
                if (step_on_the_way) measure_parameters(inside);  // a bound that failed starts again from the values
            }
            if (deferred) {
                cost.defer(ws.logits[0], b.targets[0]);
            } else {
                cost.add(loss);
            }
            window.after_steps(1);
        }
        // Distributed: step j is records [j b, (j + 1) b) of every shard's
        // order, the shards in rank order (docs/math.md); each process
        // differentiates its part with the whole step's divisor, and the sum
        // of the parts is the step's gradient.
        for (std::size_t step = 0, first = 0; reducer && step < steps_per_epoch; ++step) {
            const std::size_t rows = step_rows(static_cast<double>(num_records), batch_size, step);
            std::size_t step_records = 0, before = 0;  // the step's records, and those of lower ranks
            for (std::size_t r = 0; r < reducer->size; ++r) {
                const std::size_t part = step_rows(peers[r].records, batch_size, step);
                if (r < reducer->rank) before += part;
                step_records += part;
            }
            const std::size_t step_first = first;  // the step's first record in the epoch's joint order
            first += step_records;
            const auto b = rows ? batches.batch(step * batch_size) : typename BatchSource<T>::Batch{};
            double divisor = static_cast<double>(step_records);
            if (sample_weight) {
                divisor = rows ? weight_sum(b.weights, rows) : 0.0;
                reducer->sum_scalars(&divisor, 1);
            }
            if (!(divisor > 0.0)) continue;  // every process skips it: they share the divisor
            for (std::size_t r = 0; b.weights && r < rows; ++r) {
                row_scale[r] = static_cast<T>(static_cast<double>(b.weights[r]) / divisor);
            }
            double loss = 0.0;
            if (rows) {
                const detail::DropoutStep drop{&options.dropout, run_seed, run.epochs, step, step_first + before};
                forward(ws, b.inputs, rows, dropout ? &drop : nullptr);
                loss = batch_loss(ws, b.targets, rows, b.weights);
                backward(ws, b.inputs, b.targets, rows, b.weights ? T(1) : T(1) / static_cast<T>(step_records),
                         /*accumulate=*/false, b.weights ? row_scale.data() : nullptr, dropout ? &drop : nullptr);
            } else {
                std::fill(grads_.begin(), grads_.end(), T(0));
            }
            const std::exception_ptr interrupted = window.after_steps_caught(1);
            reducer->sum(grads_.data(), grads_.size());
            std::fill(step_scalars.begin(), step_scalars.end(), 0.0);
            step_scalars[0] = loss;
            step_scalars[1 + reducer->rank] = interrupted ? kFailed : kGoOn;
            reducer->sum_scalars(step_scalars.data(), step_scalars.size());
            agree(*reducer, step_scalars.data() + 1, interrupted, "during a step", false);
            loss = step_scalars[0] + l2_penalty(options.alpha);
            if (!std::isfinite(loss)) throw cost_diverged(epoch, step, loss, lr);
            add_l2_gradient(options.alpha, divisor);
            if (!optimizer_update(params_.data(), grads_.data(), params_.size(), run.optimizer, optimizer, lr)) {
                throw update_diverged(epoch, step, lr);
            }
            cost.add(loss);
        }
        const double epoch_cost = cost.finish();
        history.push_back(epoch_cost);
        run.epochs += 1;
        run.records += static_cast<std::uint64_t>(all_records);
        random.get_state(run.generator);
        run.seed = run_seed;
        run.seeded = true;

        bool stop = false;
        if (options.tol && stalled(run, epoch_cost, *options.tol, options.n_iter_no_change)) {
            if (options.schedule.kind == ScheduleKind::adaptive && !options.schedule.custom) {
                // scikit-learn's adaptive rate: divide by 5 and start counting again, down to 1e-6.
                run.epochs_without_improvement = 0;
                const double current = run.learning_rate > 0.0 ? run.learning_rate : options.learning_rate;
                stop = current / 5.0 < kAdaptiveMinRate;
                if (!stop) run.learning_rate = current / 5.0;
            } else {
                stop = true;
            }
        }
        window.open();
        if (reducer) {
            // The callback and the checks after it may fail, or ask to stop, on
            // one process only: all of them learn it here, and act alike.
            std::exception_ptr failure;
            bool asked_to_stop = false;
            try {
                asked_to_stop = on_epoch && !on_epoch(EpochReport{epoch, epoch_cost});
                if (on_epoch && !stop && epoch + 1 < options.epochs) check_inputs_again(epoch);
                window.close();
                if (on_epoch) check_params_finite();  // the callback may have written through params()
            } catch (...) {
                failure = std::current_exception();
            }
            if (agree_on(*reducer, asked_to_stop ? kStop : kGoOn, failure, "after an epoch") || stop) break;
            continue;
        }
        if (on_epoch && !on_epoch(EpochReport{epoch, epoch_cost})) stop = true;
        if (stop) break;
        if (on_epoch && epoch + 1 < options.epochs) check_inputs_again(epoch);
        window.close();
        if (on_epoch) check_params_finite();  // the callback may have written through params()
    }
    return history;
}

#define CHAINRULE_INSTANTIATE(T)                                                                              \
    template std::vector<double> Network<T>::fit(ConstMatrixView<T>, ConstMatrixView<T>, const FitOptions&,   \
                                                 const EpochCallback&, const InterruptCheck&, TrainingState<T>*, \
                                                 const T*, const Reducer<T>*);                                 \
    template std::vector<double> Network<T>::Impl::fit_records(const detail::Records<T>&, ConstMatrixView<T>, \
                                                               const FitOptions&, const EpochCallback&,        \
                                                               const InterruptCheck&, TrainingState<T>*,       \
                                                               const T*, const Reducer<T>*);

#define CHAINRULE_INSTANTIATE_CSR(T, Index)                                                                    \
    template std::vector<double> Network<T>::fit<Index>(CsrMatrixView<T, Index>, ConstMatrixView<T>,           \
                                                        const FitOptions&, const EpochCallback&,               \
                                                        const InterruptCheck&, TrainingState<T>*, const T*,    \
                                                        const Reducer<T>*);

CHAINRULE_INSTANTIATE(float)
CHAINRULE_INSTANTIATE(double)
CHAINRULE_INSTANTIATE_CSR(float, std::int32_t)
CHAINRULE_INSTANTIATE_CSR(float, std::int64_t)
CHAINRULE_INSTANTIATE_CSR(double, std::int32_t)
CHAINRULE_INSTANTIATE_CSR(double, std::int64_t)

}  // namespace chainrule
