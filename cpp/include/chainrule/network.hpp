// A dense feed-forward network of any depth, trained by SGD (docs/math.md).
//
// Layer l (0-based here, 1-based in docs/math.md) maps layer_sizes[l] inputs to
// layer_sizes[l+1] outputs with weights W of shape (out, in), a bias b of
// shape (out), and an activation. All parameters live in one contiguous
// buffer, layer by layer [W_1, b_1, W_2, b_2, ...]; the gradients live in a
// second buffer of the same layout, so the optimizer is one loop.
//
// Threads: predict and cost may run from any number of threads at once.
// fit, sgd_step and compute_gradients use the network's one training
// workspace; a second such call while one runs throws busy_error. A predict
// or cost that overlaps a fit waits for a step boundary (fit lets readers in
// every few milliseconds and after each epoch), so it never sees a half-done
// update. Writing parameters through params()/layer() while another thread
// trains is a data race: don't.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chainrule/matrix.hpp"
#include "chainrule/names.hpp"
#include "chainrule/optimizer.hpp"

namespace chainrule {

// Views of one layer's weights (out_features, in_features) and bias (out_features).
template <typename T>
struct LayerView {
    T* weight = nullptr;
    T* bias = nullptr;
    std::size_t in_features = 0;
    std::size_t out_features = 0;
};

struct FitOptions {
    std::size_t epochs = 10;
    double learning_rate = 0.1;
    std::size_t batch_size = 32;      // clipped to the number of records
    bool shuffle = true;              // a new permutation each epoch, else in order
    std::uint64_t seed = 0;           // seeds the shuffling
    std::optional<double> tol;        // stop when the cost has not improved by tol ...
    std::size_t n_iter_no_change = 10;  // ... for this many epochs in a row
    OptimizerOptions optimizer;       // plain SGD unless set (optimizer.hpp)
    ScheduleOptions schedule;         // the learning rate of each epoch: constant unless set
    double alpha = 0.0;               // L2 penalty on the weights (not the biases), >= 0 (docs/math.md)
    std::vector<double> dropout;      // empty, or the dropout rate of each hidden layer, in [0, 1)
    // Whether the epoch callback may write to X, y or the sample weights: if
    // so, fit checks them again after it (a pass over X) before the next
    // epoch. false promises it writes none of them; CSR X is checked again
    // all the same (its indices address memory).
    bool callback_writes_data = true;
};

// What fit reports after each epoch: the 0-based epoch and its cost (docs/math.md,
// SGD: the mean record loss, each taken before its batch's update).
struct EpochReport {
    std::size_t epoch = 0;
    double cost = 0.0;
};

// Called after each epoch; return false to stop training after that epoch.
using EpochCallback = std::function<bool(const EpochReport&)>;

// Data-parallel training (docs/math.md, "Distributed training"): `size`
// processes, each with its own shard of the records, train one network
// together. The host supplies the collective (the core knows no MPI): `sum`
// and `sum_scalars` replace values[0..count) by their elementwise sum over
// the processes, every process receiving the same bits. For a run to repeat
// bit for bit the sum must be taken in a fixed order (rank order, or a fixed
// tree), not in the order messages arrive. Every process calls them in the
// same sequence with the same count; neither may return on one process
// while blocking on another. An exception thrown by either propagates out
// of fit, the step it was called for not taken (the parameters and the
// optimizer state are those of the last step; while they are being copied
// from rank 0 on entry, a buffer is replaced whole or not at all).
// cpp/examples/mpi_train.cpp builds one on MPI.
template <typename T>
struct Reducer {
    std::size_t rank = 0;  // this process, in [0, size)
    std::size_t size = 1;  // the processes training together
    std::function<void(T* values, std::size_t count)> sum;                // the gradient
    std::function<void(double* values, std::size_t count)> sum_scalars;  // losses, counts, flags
};

// Called every few milliseconds of training (about 2^20 multiply-adds), between
// two steps; it stops training by throwing, which leaves the parameters of the
// last completed step. Python's bindings deliver Ctrl-C through it.
using InterruptCheck = std::function<void()>;

template <typename T>
class Network {
public:
    using value_type = T;

    // layer_sizes: n_0 (inputs), n_1, ..., n_L (outputs), each >= 1, at least two.
    // activations: one per layer (L of them), the last being the output's.
    // The BCE loss needs a sigmoid output. Weights are Glorot-uniform
    // (He-uniform for relu and leaky_relu layers) drawn from `seed`; biases are zero.
    Network(std::vector<std::size_t> layer_sizes, std::vector<Activation> activations, Loss loss,
            std::uint64_t seed);
    Network(const Network& other);             // copies the parameters (under the reader lock); zeroed gradients
    // Replaces this network's structure and parameters: not while another
    // thread uses this network, and LayerViews taken before are invalidated.
    Network& operator=(const Network& other);
    ~Network();

    std::size_t num_layers() const;   // L
    std::size_t num_inputs() const;   // n_0
    std::size_t num_outputs() const;  // n_L
    std::size_t num_params() const;
    const std::vector<std::size_t>& layer_sizes() const;
    const std::vector<Activation>& activations() const;
    Loss loss() const;

    // The flat parameter and gradient buffers, num_params() values each.
    T* params();
    const T* params() const;
    const T* grads() const;
    // A copy of the parameters into out (num_params() values) taken at a step
    // boundary: a fit in another thread is never seen half way through a step.
    void copy_params(T* out) const;

    // Views of layer l (0-based) in the parameter or gradient buffer.
    LayerView<T> layer(std::size_t l);
    LayerView<const T> layer(std::size_t l) const;
    LayerView<const T> layer_grads(std::size_t l) const;

    // No NaN or inf comes out of the five calls below. On entry each checks,
    // in one pass, that the parameters are finite: a non-finite one (written
    // through params() or layer(); training never makes one) throws
    // std::invalid_argument naming it ("weights[1] holds a non-finite value
    // (nan) at (2, 3)"). A result that overflows although the parameters and
    // inputs are finite (e.g. inputs of 1e30 through identity or relu layers)
    // throws divergence_error.

    // out (B, n_L) = A_L for the records of X (B, n_0). Thread-safe. On
    // divergence_error, rows of `out` before the overflowing chunk may be written.
    void predict(MatrixView<T> out, ConstMatrixView<T> X) const;

    // The mean record loss over the records of X (B, n_0) with targets Y (B, n_L).
    // With sample_weight (X.rows values, finite, >= 0, not all 0): sum_i s_i L_i / sum_i s_i.
    double cost(ConstMatrixView<T> X, ConstMatrixView<T> Y, const T* sample_weight = nullptr) const;

    // The gradient of cost(X, Y) at the current parameters, into grads();
    // returns the cost. divergence_error if a gradient or the cost overflows.
    double compute_gradients(ConstMatrixView<T> X, ConstMatrixView<T> Y);
    // The same, also copied to `gradient` (num_params() values, the layout of
    // params()) before another thread's training can overwrite grads().
    // With sample_weight, the gradient of the weighted cost (as cost).
    double compute_gradients(ConstMatrixView<T> X, ConstMatrixView<T> Y, T* gradient,
                             const T* sample_weight = nullptr);

    // Full-batch training's objective and its gradient in one pass over X:
    // (sum_i s_i L_i + alpha/2 sum_l ||W_l||^2) / sum_i s_i (s_i = 1 without
    // sample_weight), fit's batch cost with the whole of X as the batch
    // (docs/math.md, "The L2 penalty"), at the parameters in params(); its
    // gradient into `gradient` (num_params() values, the layout of params()).
    // What an optimizer over the flat parameter vector (L-BFGS) calls once per
    // evaluation. std::invalid_argument if alpha is not finite and >= 0.
    double cost_and_gradient(ConstMatrixView<T> X, ConstMatrixView<T> Y, T* gradient, double alpha = 0.0,
                             const T* sample_weight = nullptr);

    // One SGD step on the batch (X, Y); returns the cost before the step.
    // Throws divergence_error (parameters unchanged) if the cost or an
    // updated parameter would not be finite.
    double sgd_step(ConstMatrixView<T> X, ConstMatrixView<T> Y, double learning_rate);

    // Mini-batch training over (X, Y) with options.optimizer; returns the cost
    // of each epoch run (with alpha, the L2 penalty included). On
    // divergence_error the parameters (and the optimizer state) are those
    // before the offending step (finite: they were checked on entry).
    // options.epochs is only a bound. The buffers of its batches are freed
    // when it returns (the parameters and gradients stay). With `state`, the
    // run continues from it (optimizer state, shuffling stream, schedule,
    // stopping rule) and leaves it where it stopped: two calls with one state
    // train as one call with their epochs added; without, each call is a run
    // of its own.
    // X and Y are read in place: when on_epoch is set, they are checked again
    // after each call of it (it may write to them), and std::invalid_argument
    // is thrown, the parameters being those after that epoch, should they no
    // longer pass the checks made on entry. With sample_weight (X.rows values,
    // finite, >= 0, not all 0), a batch's cost is sum_i s_i L_i / sum_i s_i
    // over its records and its gradient that cost's (scikit-learn's); a batch
    // whose weights are all 0 takes no step.
    //
    // With `reducer`, X, Y (and sample_weight) are this process's shard and
    // every process calls fit with the same options: step j takes records
    // [j b, (j + 1) b) of every shard's epoch order (b = batch_size; a shard
    // that has run out gives none), and the processes sum their gradients
    // and losses, so that all of them take the step one process would take
    // on the union of those records (docs/math.md). The parameters (and a
    // continued run's optimizer state) are first copied from rank 0. With
    // shuffle, each shard is permuted per epoch from (seed, rank, epoch)
    // (distributed_order). An error on one process stops all of them at the
    // same step: a failed entry check throws std::invalid_argument on every
    // process, naming the rank and its message; later (the callback, the
    // interrupt check) the failing process rethrows its own error and the
    // others throw std::runtime_error naming it. Nothing is trained unless
    // every process passed its entry checks.
    std::vector<double> fit(ConstMatrixView<T> X, ConstMatrixView<T> Y, const FitOptions& options,
                            const EpochCallback& on_epoch = {}, const InterruptCheck& check_interrupt = {},
                            TrainingState<T>* state = nullptr, const T* sample_weight = nullptr,
                            const Reducer<T>* reducer = nullptr);

    // Sparse X: predict, cost, compute_gradients, cost_and_gradient and fit on records in CSR
    // form (matrix.hpp), Index std::int32_t or std::int64_t, read in place
    // and never densified: the first layer's product and its weight gradient
    // run over the stored entries alone (docs/math.md, "Sparse inputs"). The
    // results equal those of the dense calls on the same matrix within
    // rounding (the sums run in another order), bit for bit the same for any
    // thread count. The same checks and messages, and these too: indptr
    // non-decreasing from >= 0 to <= nnz, each index in [0, cols), each
    // stored value finite. Unsorted and repeated column indices are taken as
    // scipy takes them (repeats add up). fit's fused one-record steps are
    // dense only: one-record CSR steps take the general path.
    template <typename Index>
    void predict(MatrixView<T> out, CsrMatrixView<T, Index> X) const;
    template <typename Index>
    double cost(CsrMatrixView<T, Index> X, ConstMatrixView<T> Y, const T* sample_weight = nullptr) const;
    template <typename Index>
    double compute_gradients(CsrMatrixView<T, Index> X, ConstMatrixView<T> Y, T* gradient,
                             const T* sample_weight = nullptr);
    template <typename Index>
    double cost_and_gradient(CsrMatrixView<T, Index> X, ConstMatrixView<T> Y, T* gradient, double alpha = 0.0,
                             const T* sample_weight = nullptr);
    template <typename Index>
    std::vector<double> fit(CsrMatrixView<T, Index> X, ConstMatrixView<T> Y, const FitOptions& options,
                            const EpochCallback& on_epoch = {}, const InterruptCheck& check_interrupt = {},
                            TrainingState<T>* state = nullptr, const T* sample_weight = nullptr,
                            const Reducer<T>* reducer = nullptr);

private:
    struct Impl;  // the structure, the buffers, the locks and the passes (cpp/src/network_internals.hpp)
    std::unique_ptr<Impl> impl_;
};

// The order in which process `rank` visits the records [0, num_records) of
// its shard in epoch `epoch` of a shuffled distributed fit whose run was
// seeded with `seed` (FitOptions::seed, or the continued run's).
std::vector<std::size_t> distributed_order(std::size_t num_records, std::uint64_t seed, std::size_t rank,
                                           std::uint64_t epoch);

extern template class Network<float>;
extern template class Network<double>;

}  // namespace chainrule
