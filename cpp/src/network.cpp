// Network<T>: the forward pass, the loss, the backward pass and SGD of
// docs/math.md, composed from the kernels in kernels.cpp over preallocated buffers.
#include "chainrule/network.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_set>
#include <utility>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define CHAINRULE_HAS_ATFORK 1
#endif

#include "chainrule/errors.hpp"
#include "kernels/kernels.hpp"
#include "network_internals.hpp"
#include "kernels/losses.hpp"
#include "kernels/small_linear.hpp"
#include "runtime/gemm.hpp"
#include "runtime/macros.hpp"
#include "runtime/memory.hpp"
#include "runtime/prefetch.hpp"
#include "runtime/random.hpp"
#include "runtime/thread_pool.hpp"

namespace chainrule {

namespace detail {

namespace {

// Every network's locks (NetworkLocks registers them). Never destroyed: a
// network may outlive the static objects of this file.
std::mutex& registry_mutex() {
    static std::mutex* mutex = new std::mutex();
    return *mutex;
}

std::unordered_set<NetworkLocks*>& registry() {
    static auto* locks = new std::unordered_set<NetworkLocks*>();
    return *locks;
}

#if defined(CHAINRULE_HAS_ATFORK)
// Before fork: every network at a step boundary, held there until the fork
// is done (a fit in another thread waits at its next step).
void before_fork() {
    registry_mutex().lock();
    for (NetworkLocks* locks : registry()) locks->params.lock();
}

void after_fork_in_parent() {
    for (NetworkLocks* locks : registry()) locks->params.unlock();
    registry_mutex().unlock();
}

// In the child only the forking thread exists: a lock held or waited for by
// any other thread would never be let go. Each is made anew, in place (a
// lock object in the forking thread's frames points to it), but the training
// lock that the forking thread holds itself.
void after_fork_in_child() {
    const std::thread::id self = std::this_thread::get_id();
    for (NetworkLocks* locks : registry()) {
        new (&locks->params) WriterFirstMutex();
        if (locks->trainer.load() != self) {
            new (&locks->train) std::mutex();
            locks->trainer.store(std::thread::id());
        }
    }
    new (&registry_mutex()) std::mutex();
}

std::once_flag g_fork_handlers_once;
#endif

}  // namespace

NetworkLocks::NetworkLocks() {
#if defined(CHAINRULE_HAS_ATFORK)
    std::call_once(g_fork_handlers_once,
                   [] { pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child); });
#endif
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry().insert(this);
}

NetworkLocks::~NetworkLocks() {
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry().erase(this);
}

}  // namespace detail

namespace {

using detail::concat;
using detail::first_non_finite;
using detail::kChunkRecords;

// predict shares its chunks among the threads when gemm tiles no product of a
// chunk, in ranges of chunks of at least this many multiply-adds, and at most
// kPredictMaxParts ranges (each range but the one that takes the kept workspace,
// below, allocates one).
constexpr std::size_t kPredictMinPartWork = std::size_t{1} << 18;
constexpr std::size_t kPredictMaxParts = 16;
// Where gemm tiles a product of a chunk of kChunkRecords (a large network),
// predict takes chunks of up to kPredictLargeChunkRecords instead, halved
// while their workspace exceeds kPredictLargeChunkBytes: a product's tiles
// are then up to 256 rows, and each call to the GEMM library packs the
// weights once for 256 records rather than 64. The threads share each
// product's tiles, so fewer chunks leave them no less work to share.
constexpr std::size_t kPredictLargeChunkRecords = 2048;
constexpr std::size_t kPredictLargeChunkBytes = std::size_t{1} << 24;
// predict keeps a workspace between calls up to this size (a record of a
// network of 8,000 units in float64): a small predict's allocations cost
// as much as its arithmetic.
constexpr std::size_t kKeptPredictWorkspaceBytes = std::size_t{1} << 16;

template <typename T>
Buffer<T> copy_while_reading(const Buffer<T>& values, detail::WriterFirstMutex& mutex) {
    std::shared_lock<detail::WriterFirstMutex> reading(mutex);
    return values;
}

// What predict/cost/gradients say when finite inputs and parameters overflow.
template <typename T>
std::string overflow_message(const char* call, const std::string& what) {
    return concat(call, " overflowed: ", what, " although the inputs and parameters are finite; the values "
                  "exceed the range of ", dtype_name<T>(), ": scale the inputs (e.g. standardize them)",
                  sizeof(T) == 4 ? " or use float64" : "", ", or lower the learning rate if training made the "
                  "parameters this large");
}

}  // namespace

template <typename T>
Network<T>::Impl::Impl(std::vector<std::size_t> layer_sizes, std::vector<Activation> activations, Loss loss,
                    std::uint64_t seed)
    : layer_sizes_(std::move(layer_sizes)), activations_(std::move(activations)), loss_(loss) {
    if (layer_sizes_.size() < 2) {
        throw std::invalid_argument(concat("layer_sizes: need at least two sizes (inputs and outputs), got ",
                                           layer_sizes_.size()));
    }
    for (std::size_t i = 0; i < layer_sizes_.size(); ++i) {
        if (layer_sizes_[i] == 0) {
            throw std::invalid_argument(concat("layer_sizes[", i, "] is 0; every layer needs at least one unit"));
        }
    }
    const std::size_t num_layers = layer_sizes_.size() - 1;
    if (activations_.size() != num_layers) {
        throw std::invalid_argument(concat("activations: expected ", num_layers, " (one per layer), got ",
                                           activations_.size()));
    }
    const std::string pairing_problem = detail::loss_pairing_problem(activations_, loss_, layer_sizes_.back());
    if (!pairing_problem.empty()) throw std::invalid_argument(pairing_problem);

    const char* what = "layer_sizes: the network";
    std::size_t total = 0;
    for (std::size_t l = 0; l < num_layers; ++l) {
        offsets_.push_back(total);
        const std::size_t weights = detail::checked_mul(layer_sizes_[l + 1], layer_sizes_[l], what);
        total = detail::checked_add(total, detail::checked_add(weights, layer_sizes_[l + 1], what), what);
    }
    detail::check_fits_in_memory(detail::checked_mul(total, 2 * sizeof(T), what),
                                 concat("layer_sizes: a network of ", total, " parameters (with their gradients)"));
    params_.assign(total, T(0));
    grads_.assign(total, T(0));
    locks_ = std::make_unique<detail::NetworkLocks>();

    // Glorot-uniform: U(-r, r), r = sqrt(6 / (fan_in + fan_out)); He-uniform
    // for relu and leaky_relu layers: r = sqrt(6 / fan_in). Drawn in double, then rounded,
    // so float and double networks from one seed start from the same values.
    detail::Random random(seed);
    for (std::size_t l = 0; l < num_layers; ++l) {
        const double fan_in = static_cast<double>(layer_sizes_[l]);
        const double fan_out = static_cast<double>(layer_sizes_[l + 1]);
        const bool he = activations_[l] == Activation::relu || activations_[l] == Activation::leaky_relu;
        const double limit = he ? std::sqrt(6.0 / fan_in) : std::sqrt(6.0 / (fan_in + fan_out));
        T* weight = params_.data() + offsets_[l];
        const std::size_t count = layer_sizes_[l + 1] * layer_sizes_[l];
        for (std::size_t i = 0; i < count; ++i) weight[i] = static_cast<T>((2.0 * random.uniform() - 1.0) * limit);
    }
}

template <typename T>
Network<T>::Impl::Impl(const Impl& other)
    : layer_sizes_(other.layer_sizes_),
      activations_(other.activations_),
      loss_(other.loss_),
      offsets_(other.offsets_),
      params_(copy_while_reading(other.params_, other.locks_->params)),
      grads_(other.grads_.size(), T(0), StaggeredAllocator<T>(1)),  // not other.grads_: a fit in another thread may be writing them
      locks_(std::make_unique<detail::NetworkLocks>()) {}

template <typename T>
void Network<T>::Impl::assign(const Impl& other) {
    Impl copy(other);
    std::lock_guard<std::mutex> training(locks_->train);
    std::unique_lock<detail::WriterFirstMutex> writing(locks_->params);
    layer_sizes_ = std::move(copy.layer_sizes_);
    activations_ = std::move(copy.activations_);
    loss_ = copy.loss_;
    offsets_ = std::move(copy.offsets_);
    params_ = std::move(copy.params_);
    grads_ = std::move(copy.grads_);
    train_workspace_.reset();
    predict_workspace_.reset();  // no predict reads it: they hold params
}

template <typename T>
LayerView<T> Network<T>::Impl::layer(std::size_t l) {
    if (l >= num_layers()) throw std::invalid_argument(concat("layer: index ", l, " out of range"));
    T* weight = params_.data() + offsets_[l];
    return {weight, weight + layer_sizes_[l + 1] * layer_sizes_[l], layer_sizes_[l], layer_sizes_[l + 1]};
}

template <typename T>
LayerView<const T> Network<T>::Impl::layer(std::size_t l) const {
    LayerView<T> view = const_cast<Impl*>(this)->layer(l);
    return {view.weight, view.bias, view.in_features, view.out_features};
}

template <typename T>
LayerView<const T> Network<T>::Impl::layer_grads(std::size_t l) const {
    LayerView<const T> view = layer(l);
    const std::ptrdiff_t shift = grads_.data() - params_.data();
    return {view.weight + shift, view.bias + shift, view.in_features, view.out_features};
}

template <typename T>
double Network<T>::Impl::check_inputs(const detail::Records<T>& records, bool values) const {
    if (records.rows == 0) throw std::invalid_argument("X is empty: it has 0 records; pass at least one record");
    if (records.cols != num_inputs()) {
        throw std::invalid_argument(concat("X has ", records.cols, " features per record, but the network takes ",
                                           num_inputs(), " inputs (layer_sizes[0])"));
    }
    if (records.kind == detail::Records<T>::Kind::csr32) {
        detail::check_csr(records.csr32);
        return -1.0;
    }
    if (records.kind == detail::Records<T>::Kind::csr64) {
        detail::check_csr(records.csr64);
        return -1.0;
    }
    if (records.dense.data == nullptr) throw std::invalid_argument("X: null data pointer");
    return values ? check_input_values(records.dense) : -1.0;
}

template <typename T>
double Network<T>::Impl::check_input_values(ConstMatrixView<T> X) const {
    // One pass: the largest |x| is finite exactly when every x is (largest_magnitude).
    const double largest = largest_magnitude(X.data, X.size());
    if (!std::isfinite(largest)) {
        const auto [r, c] = first_non_finite(X);
        throw std::invalid_argument(concat("X contains a non-finite value (nan or inf) at record ", r,
                                           ", feature ", c));
    }
    return largest;
}

template <typename T>
double Network<T>::Impl::check_targets(const detail::Records<T>& X, ConstMatrixView<T> Y) const {
    const double largest = check_inputs(X);
    if (Y.rows != X.rows) throw std::invalid_argument(concat("y has ", Y.rows, " records but X has ", X.rows));
    if (Y.cols != num_outputs()) {
        throw std::invalid_argument(concat("y has ", Y.cols, " outputs per record, but the network has ",
                                           num_outputs(), " outputs (layer_sizes[-1])"));
    }
    if (Y.data == nullptr) throw std::invalid_argument("y: null data pointer");
    if (!all_finite(Y.data, Y.size())) {
        const auto [r, c] = first_non_finite(Y);
        throw std::invalid_argument(concat("y contains a non-finite value (nan or inf) at record ", r,
                                           ", output ", c));
    }
    detail::check_targets_for(loss_, Y.data, Y.rows, Y.cols);
    return largest;
}

template <typename T>
void Network<T>::Impl::check_params_finite() const {
    // One vectorized pass; the search for the culprit runs only when it fails.
    // Training never leaves a non-finite parameter (it refuses such a step),
    // so one came from outside: params(), layer(), Python's writable views.
    if (all_finite(params_.data(), params_.size())) return;
    const char* why = "; the network's parameters must be finite (they were set so through params() or the "
                      "weight and bias views: training never makes one non-finite)";
    for (std::size_t l = 0; l < num_layers(); ++l) {
        const LayerView<const T> p = layer(l);
        const ConstMatrixView<T> weight{p.weight, p.out_features, p.in_features};
        const auto [r, c] = first_non_finite(weight);
        if (r < weight.rows) {
            throw std::invalid_argument(concat("weights[", l, "] holds a non-finite value (", weight.row(r)[c],
                                               ") at (", r, ", ", c, ")", why));
        }
        const auto [i, zero] = first_non_finite(ConstMatrixView<T>{p.bias, p.out_features, 1});
        if (i < p.out_features) {
            throw std::invalid_argument(concat("biases[", l, "] holds a non-finite value (", p.bias[i], ") at (",
                                               i, ",)", why));
        }
    }
}

namespace {
// One record's units through the mask, compiled for each instruction set
// (AVX-512 has the 64-bit multiplies of the hash in its vectors).
template <typename T>
CHAINRULE_TARGET_CLONES void dropout_record(T* out, const T* in, std::size_t units, std::uint64_t record_key,
                                            std::uint64_t layer, double rate, T scale) {
    for (std::size_t j = 0; j < units; ++j) {
        const bool keep = detail::dropout_unit_draw(record_key, layer, j) >= rate;
        out[j] = keep ? in[j] * scale : T(0);
    }
}

// Inverted dropout of hidden layer `layer`'s output (rows, units) into
// `out`: each value kept with probability 1 - rate and scaled by 1 / (1 -
// rate), else 0. With out == in, the same mask applied to a gradient.
template <typename T>
void apply_dropout(T* out, const T* in, std::size_t rows, std::size_t units, std::size_t layer,
                   const detail::DropoutStep& drop) {
    const double rate = (*drop.rates)[layer];
    const T scale = static_cast<T>(1.0 / (1.0 - rate));
    const std::uint64_t step_key = detail::dropout_step_key(drop);
    detail::for_ranges(rows, std::max<std::size_t>(1, (std::size_t{1} << 13) / units), 1,
                       [&](std::size_t begin, std::size_t end) {
                           for (std::size_t r = begin; r < end; ++r) {
                               dropout_record(out + r * units, in + r * units, units,
                                              detail::dropout_record_key(step_key, drop.first_record + r), layer,
                                              rate, scale);
                           }
                       });
}

bool drops(const detail::DropoutStep* drop, std::size_t layer) {
    return drop != nullptr && (*drop->rates)[layer] > 0.0;
}

// The share of hidden layer `layer`'s units that dropout keeps: 1 - rate, 1 without dropout.
double kept_share(const detail::DropoutStep* drop, std::size_t layer) {
    return drops(drop, layer) ? 1.0 - (*drop->rates)[layer] : 1.0;
}
}  // namespace

template <typename T>
const T* Network<T>::Impl::forward(Workspace& ws, const detail::RecordBatch<T>& X, std::size_t rows,
                             const detail::DropoutStep* drop) const {
    // A_0 = X;  Z_l = A_{l-1} W_l^T + b_l;  A_l = f_l(Z_l) (then, training with
    // dropout, the dropped A_l feeds layer l + 1; ws.output(l) keeps A_l for f').
    // The first layer reads X dense or CSR (detail::first_layer_forward).
    const std::size_t last = num_layers() - 1;
    const T* inp = nullptr;
    for (std::size_t l = 0; l <= last; ++l) {
        const LayerView<const T> p = layer(l);
        T* a = ws.output(l);
        T* z = l == last ? ws.logits.data() : a;  // Z_L is kept for the BCE; hidden Z_l become A_l in place
        const bool dense_hidden = l < last && (l > 0 || X.dense);
        if (dense_hidden && activations_[l] == Activation::relu) {
            // A hidden relu layer on dense input: Z_l and A_l in one call (linear_relu_forward).
            linear_relu_forward(a, l == 0 ? X.dense : inp, p.weight, p.bias, rows, p.in_features, p.out_features);
        } else if (dense_hidden && activations_[l] == Activation::sigmoid) {
            // The same for a hidden sigmoid layer (linear_sigmoid_forward).
            linear_sigmoid_forward(a, l == 0 ? X.dense : inp, p.weight, p.bias, rows, p.in_features,
                                   p.out_features);
        } else {
            if (l == 0) {
                detail::first_layer_forward(z, X, p.weight, p.bias, rows, p.in_features, p.out_features);
            } else {
                linear_forward(z, inp, p.weight, p.bias, rows, p.in_features, p.out_features);
            }
            if (activations_[l] == Activation::softmax) {
                softmax_forward(a, z, rows, p.out_features, ws.row_lse.data());  // row-wise: the output layer only
            } else {
                activation_forward(a, z, rows * p.out_features, activations_[l]);
            }
        }
        inp = a;
        if (l < last && drops(drop, l)) {
            T* dropped = ws.dropped_output(l);
            apply_dropout(dropped, a, rows, p.out_features, l, *drop);
            inp = dropped;
        }
    }
    return inp;
}

template <typename T>
double Network<T>::Impl::batch_loss(const Workspace& ws, const T* Y, std::size_t rows, const T* weights) const {
    const std::size_t k = num_outputs();
    const T* values = loss_ == Loss::mse ? ws.outputs.data() + ws.output_offset.back() : ws.logits.data();
    // float64: the forward pass's softmax left each row's lse (softmax_forward).
    const double* lse = std::is_same_v<T, double> ? ws.row_lse.data() : nullptr;
    auto loss_of = [&](const T* v, const T* y, std::size_t n, std::size_t first) {
        if (loss_ == Loss::bce) return bce_forward(v, y, n, k);
        if (loss_ == Loss::cce) return cce_forward(v, y, n, k, lse ? lse + first : nullptr);
        return mse_forward(v, y, n, k);
    };
    if (weights == nullptr) return loss_of(values, Y, rows, 0);
    double sum = 0.0;  // sum_i s_i L_i, record by record
    for (std::size_t r = 0; r < rows; ++r) {
        if (weights[r] != T(0)) sum += static_cast<double>(weights[r]) * loss_of(values + r * k, Y + r * k, 1, r);
    }
    return sum;
}

template <typename T>
bool Network<T>::Impl::backward(Workspace& ws, const detail::RecordBatch<T>& X, const T* Y, std::size_t rows, T scale,
                          bool accumulate, const T* row_scale, const detail::DropoutStep* drop,
                          detail::StepInBackward<T>* step) {
    // grads_ (+)= scale * (the gradient of the summed record losses of these
    // rows), each record's term also scaled by row_scale[r] when given. With
    // `step` and a bounded step, the optimizer's step itself instead (below).
    const std::size_t last = num_layers() - 1;
    const std::size_t n = rows * num_outputs();
    T* delta = ws.delta.data();
    T* spare = ws.spare_delta.data();
    const T* out = ws.output(last);
    if (loss_ == Loss::bce) {
        bce_backward(delta, out, Y, n, scale);  // sigmoid + BCE (the constructor enforces the pair)
    } else if (loss_ == Loss::cce) {
        cce_backward(delta, out, Y, n, scale);  // softmax + CCE, rows of Y summing to 1 (check_targets)
    } else {
        mse_backward(delta, out, Y, n, scale);                       // dA_L = 2 (A_L - Y)
        activation_backward(delta, delta, out, n, activations_[last]);  // dZ_L = dA_L * f'(Z_L)
    }
    if (row_scale != nullptr) {  // sample weights: record r's delta times s_r / sum s
        const std::size_t k = num_outputs();
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t j = 0; j < k; ++j) delta[r * k + j] *= row_scale[r];
        }
    }
    // The step inside the backward pass: layer l steps as soon as its
    // backward is done, the last use of W_l (docs/math.md, "The step inside
    // the backward pass").
    const bool stepping = step != nullptr && !accumulate && step_bounded(ws, X, delta, rows, drop, *step);
    if (stepping) prepare_slots(*step->state, *step->optimizer, params_.size());  // momentum's first step: zeros
    for (std::size_t l = last + 1; l-- > 0;) {
        const LayerView<T> p = layer(l);
        const std::size_t num_weights = p.out_features * p.in_features;
        T* dweight = grads_.data() + offsets_[l];
        T* dbias = dweight + num_weights;
        const bool dropped = l > 0 && drops(drop, l - 1);
        const T* inp = l == 0 ? X.dense : dropped ? ws.dropped_output(l - 1) : ws.output(l - 1);
        T* dinp = l == 0 ? nullptr : spare;  // the first layer passes nothing down
        if (stepping && linear_backward_takes_gemm<T>(rows, p.in_features, p.out_features)) {
            // The weights' step is the dW product's own (X is dense: step_bounded), the biases' by the rule.
            const OptimizerOptions& o = *step->optimizer;
            const T lr = static_cast<T>(step->lr);
            if (o.momentum == 0.0) {  // W <- W - lr dW
                linear_backward_into(dinp, dbias, p.weight, -lr, T(1), delta, inp, p.weight, rows, p.in_features,
                                     p.out_features);
            } else {
                T* velocity = step->state->slots[0].data() + offsets_[l];
                const T mu = static_cast<T>(o.momentum);
                if (o.form == OptimizerForm::sklearn) {  // v <- mu v - lr dW; W <- W + v
                    linear_backward_into(dinp, dbias, velocity, -lr, mu, delta, inp, p.weight, rows, p.in_features,
                                         p.out_features);
                    sgd_apply(p.weight, velocity, num_weights, T(-1));
                } else {  // b <- mu b + dW (dW on the first step); W <- W - lr b
                    const T beta = step->state->steps == 0 ? T(0) : mu;
                    linear_backward_into(dinp, dbias, velocity, T(1), beta, delta, inp, p.weight, rows,
                                         p.in_features, p.out_features);
                    sgd_apply(p.weight, velocity, num_weights, lr);
                }
            }
            optimizer_apply(params_.data(), grads_.data(), offsets_[l] + num_weights, p.out_features, *step->state,
                            o, step->lr);
            if (l > 0) {
                if (dropped) apply_dropout(dinp, dinp, rows, p.in_features, l - 1, *drop);
                activation_backward(dinp, dinp, ws.output(l - 1), rows * p.in_features, activations_[l - 1]);
            }
        } else {
            // W_l before any update: plain backward, then (stepping) the layer's step from its gradient
            if (l == 0) {  // dense or CSR
                detail::first_layer_backward(dweight, dbias, delta, X, p.weight, rows, p.in_features,
                                             p.out_features, accumulate);
            } else if (!dropped) {
                // dZ_{l-1} in one call: f' reads A_{l-1}, the product's input (linear_activation_backward).
                linear_activation_backward(activations_[l - 1], dinp, dweight, dbias, delta, inp, p.weight, rows,
                                           p.in_features, p.out_features, accumulate);
            } else {  // dropout between: dZ_l W_l through the same mask, then f'
                linear_backward(dinp, dweight, dbias, delta, inp, p.weight, rows, p.in_features, p.out_features,
                                accumulate);
                apply_dropout(dinp, dinp, rows, p.in_features, l - 1, *drop);
                activation_backward(dinp, dinp, ws.output(l - 1), rows * p.in_features, activations_[l - 1]);
            }
            if (stepping) {  // the rule over W_l and b_l
                optimizer_apply(params_.data(), grads_.data(), offsets_[l], num_weights + p.out_features,
                                *step->state, *step->optimizer, step->lr);
            }
        }
        if (l > 0) std::swap(delta, spare);
    }
    return stepping;
}

namespace {
// step_bounded reads a relu or identity layer's outputs for their largest
// value only where the bound through its inputs and weights exceeds this:
// below it, every bound of the step stays far from overflow anyway.
constexpr double kReadOutputsAbove = 0x1p40;
}  // namespace

template <typename T>
bool Network<T>::Impl::step_bounded(const Workspace& ws, const detail::RecordBatch<T>& X, const T* delta,
                                    std::size_t rows, const detail::DropoutStep* drop,
                                    detail::StepInBackward<T>& step) const {
    // From the largest |dZ_L|, layer by layer down: every dW_jk = sum over
    // the B records of dz_rj a_rk is at most B |dZ_l| |A_{l-1}| in
    // magnitude, and db_j at most B |dZ_l|; the delta passed down, (dZ_l
    // W_l) * f', at most n_l |dZ_l| |W_l| times dropout's 1 / (1 - rate)
    // (every f' of docs/math.md is at most 1 in magnitude). |A_0| is the
    // records' (step.largest_input, else the batch's); a hidden sigmoid or
    // tanh output is at most 1, any other at most its |Z_l| <= C |A_{l-1}|
    // |W_l| + |b_l|, read from the outputs themselves where that bound is
    // large; each times dropout's 1 / (1 - rate). Twice these bounds covers
    // the roundings of sums of fewer than 1 / (2 eps) terms; the rule's
    // bounds carry a factor 1 + 8 eps for its few roundings, which the new
    // bounds carry into the next step without compounding faster than
    // that. A step whose every bound stays below a quarter of the dtype's
    // largest value leaves every value finite, whatever the order of the
    // sums. NaN and infinity fail every comparison below.
    if (!X.dense) return false;
    constexpr double eps = static_cast<double>(std::numeric_limits<T>::epsilon());
    const double limit = static_cast<double>(std::numeric_limits<T>::max()) / 4.0;
    const double r = 1.0 + 8.0 * eps;
    const OptimizerOptions& o = *step.optimizer;
    const bool momentum = o.momentum > 0.0, sklearn = o.form == OptimizerForm::sklearn;
    const double lr = static_cast<double>(static_cast<T>(step.lr));
    const double mu = step.state->steps == 0 && !sklearn ? 0.0 : o.momentum;  // torch's b = g first
    const std::size_t last = num_layers() - 1;
    // The largest |A_l| of the layers' inputs, from the records up (inputs[l] feeds layer l).
    std::vector<double>& inputs = step.largest_inputs;
    inputs.assign(num_layers(), 0.0);
    inputs[0] = step.largest_input >= 0.0 ? step.largest_input : largest_magnitude(X.dense, rows * num_inputs());
    for (std::size_t l = 1; l <= last; ++l) {
        const Activation f = activations_[l - 1];
        double a = 1.0;  // sigmoid, tanh
        if (f != Activation::sigmoid && f != Activation::tanh) {
            a = 2.0 * (static_cast<double>(layer_sizes_[l - 1]) * inputs[l - 1] + 1.0) * step.largest[l - 1];
            if (!(a <= kReadOutputsAbove)) a = largest_magnitude(ws.output(l - 1), rows * layer_sizes_[l]);
        }
        inputs[l] = r * a / kept_share(drop, l - 1);
    }
    double dz = largest_magnitude(delta, rows * num_outputs());
    step.next.assign(num_layers(), 0.0);
    step.next_velocity.assign(num_layers(), 0.0);
    for (std::size_t l = last + 1; l-- > 0;) {
        const LayerView<const T> p = layer(l);
        if (!(static_cast<double>(std::max(rows, p.out_features)) <= 0.5 / eps)) return false;
        const double g = 2.0 * static_cast<double>(rows) * dz * std::max(inputs[l], 1.0);  // >= |dW|, |db|
        double change = lr * g;                                                             // >= |new w - w|
        if (momentum) {  // b = mu b + g, w - lr b (torch); v = mu v - lr g, w + v (sklearn)
            const double velocity = r * (mu * step.largest_velocity[l] + (sklearn ? lr * g : g));
            step.next_velocity[l] = velocity;
            change = sklearn ? velocity : lr * velocity;
            if (!(velocity <= limit)) return false;
        }
        step.next[l] = r * (step.largest[l] + change);
        if (!(step.next[l] <= limit)) return false;
        if (l > 0) {
            dz = 2.0 * static_cast<double>(p.out_features) * dz * step.largest[l] / kept_share(drop, l - 1);
            if (!(dz <= limit)) return false;
        }
    }
    return true;
}

template <typename T>
bool Network<T>::Impl::step_inside_pays(std::size_t rows) const {
    for (std::size_t l = 0; l < num_layers(); ++l) {
        if (linear_backward_takes_gemm<T>(rows, layer_sizes_[l], layer_sizes_[l + 1])) return true;
    }
    return false;
}

template <typename T>
void Network<T>::Impl::measure_parameters(detail::StepInBackward<T>& step) const {
    step.largest.resize(num_layers());
    step.largest_velocity.assign(num_layers(), 0.0);  // no velocity yet: zeros
    const T* velocity = step.state->slots[0].data();
    for (std::size_t l = 0; l < num_layers(); ++l) {
        const LayerView<const T> p = layer(l);
        const std::size_t n = p.out_features * (p.in_features + 1);  // W_l then b_l
        step.largest[l] = largest_magnitude(p.weight, n);
        if (velocity != nullptr) step.largest_velocity[l] = largest_magnitude(velocity + offsets_[l], n);
    }
}

template <typename T>
double Network<T>::Impl::accumulate_gradients(Workspace& ws, const detail::Records<T>& X, ConstMatrixView<T> Y,
                                        const T* weights) {
    // grads_ = gradient of the mean record loss over all of X (with weights:
    // sum_i s_i L_i / sum_i s_i), chunk by chunk; returns that mean. Each
    // chunk's loss is divided before it is added, so huge but finite record
    // losses cannot overflow the sum.
    const double total = weights ? weight_sum(weights, X.rows) : static_cast<double>(X.rows);
    const T scale = weights ? T(1) : T(1) / static_cast<T>(X.rows);
    std::vector<T> row_scale(weights ? ws.capacity : 0);
    double mean = 0.0;
    for (std::size_t start = 0; start < X.rows; start += ws.capacity) {
        const std::size_t rows = std::min(ws.capacity, X.rows - start);
        const T* w = weights ? weights + start : nullptr;
        for (std::size_t r = 0; w && r < rows; ++r) row_scale[r] = static_cast<T>(static_cast<double>(w[r]) / total);
        forward(ws, X.from(start), rows);
        mean += batch_loss(ws, Y.row(start), rows, w) / total;
        backward(ws, X.from(start), Y.row(start), rows, scale, /*accumulate=*/start > 0,
                 w ? row_scale.data() : nullptr);
    }
    return mean;
}

template <typename T>
double Network<T>::Impl::weight_sum(const T* weights, std::size_t n) {
    double sum = 0.0;
    for (std::size_t i = 0; i < n; ++i) sum += static_cast<double>(weights[i]);
    return sum;
}

template <typename T>
void Network<T>::Impl::check_sample_weight(const T* weights, std::size_t n) {
    if (weights == nullptr) return;
    for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(weights[i]) || weights[i] < T(0)) {
            throw std::invalid_argument(concat("sample_weight holds ", weights[i], " at record ", i,
                                               "; sample weights must be finite and >= 0"));
        }
    }
    if (!(weight_sum(weights, n) > 0.0)) {
        throw std::invalid_argument("sample_weight is all zero; at least one record needs a weight > 0");
    }
}

template <typename T>
double Network<T>::Impl::l2_penalty(double alpha) const {
    if (alpha == 0.0) return 0.0;
    double sum = 0.0;
    for (std::size_t l = 0; l < num_layers(); ++l) {
        const LayerView<const T> p = layer(l);
        sum += squared_norm(p.weight, p.out_features * p.in_features);
    }
    return 0.5 * alpha * sum;
}

template <typename T>
void Network<T>::Impl::add_l2_gradient(double alpha, double divisor) {
    if (alpha == 0.0) return;
    const T scale = static_cast<T>(alpha / divisor);
    for (std::size_t l = 0; l < num_layers(); ++l) {
        const LayerView<const T> p = std::as_const(*this).layer(l);
        chainrule::add_l2_gradient(grads_.data() + offsets_[l], p.weight, p.out_features * p.in_features, scale);
    }
}

template <typename T>
bool Network<T>::Impl::has_fused_record_step() const {
    return num_layers() == 1 && loss_ != Loss::cce;  // cce comes with softmax, which is row-wise
}

template <typename T>
RecordSteps Network<T>::Impl::record_steps(Workspace& ws, T* logits, double* losses, const T* X, const T* Y,
                                     const std::size_t* rows, std::size_t count, OptimizerState<T>& state,
                                     const OptimizerOptions& optimizer, double lr) {
    // count fused one-record steps (dense_record_steps). The kernel gives
    // each step's loss (and a refused one's), but the BCE of several outputs:
    // that one is computed here from the logits.
    assert(count <= detail::kDeferredSteps);
    const std::size_t inputs = num_inputs(), outputs = num_outputs();
    T* weight = params_.data();
    T* bias = weight + outputs * inputs;
    prepare_slots(state, optimizer, params_.size());
    T* slots[2] = {};  // record_steps_take: at most two
    for (int k = 0; k < optimizer_slots(optimizer); ++k) slots[k] = state.slots[k].data();
    const RecordSteps steps = dense_record_steps(weight, bias, slots, logits, ws.output(0), losses, X, Y, rows,
                                                 count, inputs, outputs, activations_[0], loss_, optimizer, lr,
                                                 state.steps);
    state.steps += steps.done;
    if (loss_ == Loss::bce && outputs > 1) {  // one output: the kernel's
        const std::size_t n = steps.done + (steps.stopped == RecordStep::ok ? 0 : 1);
        auto targets_of = [&](std::size_t i) { return Y + (rows ? rows[i] : i) * outputs; };
        for (std::size_t i = 0; i < n; ++i) losses[i] = bce_forward(logits + i * outputs, targets_of(i), 1, outputs);
    }
    return steps;
}

template <typename T>
typename Network<T>::Impl::Workspace& Network<T>::Impl::training_workspace(std::size_t capacity, bool gather_inputs) {
    const bool can_gather = train_workspace_ && train_workspace_->batch_inputs.size() >= capacity * num_inputs();
    if (!train_workspace_ || train_workspace_->capacity < capacity || (gather_inputs && !can_gather)) {
        train_workspace_.reset();  // free the old one before sizing the new one
        train_workspace_ = std::make_unique<Workspace>(layer_sizes_, capacity, true, gather_inputs);
    }
    return *train_workspace_;
}

template <typename T>
bool Network<T>::Impl::small_network_predicts(const detail::Records<T>& X) const {
#if CHAINRULE_SMALL_LINEAR
    return X.kind == detail::Records<T>::Kind::dense && num_layers() == 2 &&
           detail::small_network_predict_fits<T>(layer_sizes_[0], layer_sizes_[1], layer_sizes_[2], activations_[0],
                                                 activations_[1]);
#else
    (void)X;
    return false;
#endif
}

template <typename T>
void Network<T>::Impl::predict_records(MatrixView<T> out, const detail::Records<T>& X) const {
    // The fast path (small_network_predict) checks X's values as it reads
    // them; any error met before then is preceded by the same scan of X as
    // the plain path's, so that a non-finite input is always the error named.
    const bool small = small_network_predicts(X);
    check_inputs(X, /*values=*/!small);
    try {
        predict_chunks(out, X, small);
    } catch (...) {
        if (small) check_input_values(X.dense);
        throw;
    }
}

template <typename T>
void Network<T>::Impl::predict_chunks(MatrixView<T> out, const detail::Records<T>& X, bool small) const {
    if (out.rows != X.rows || out.cols != num_outputs() || out.data == nullptr) {
        throw std::invalid_argument(concat("out must have shape (", X.rows, ", ", num_outputs(), "), got (",
                                           out.rows, ", ", out.cols, ")"));
    }
    std::size_t capacity = std::min(X.rows, kChunkRecords);
    std::shared_lock<detail::WriterFirstMutex> reading(locks_->params);
    check_params_finite();
    // Chunks of records are independent. When gemm tiles no product of a
    // chunk (small networks), the threads share the chunks instead, a range
    // of them at a time with a workspace of its own; every record is still
    // computed exactly as on one thread. An error stops its own range; the
    // one of the earliest chunk is thrown. Otherwise the chunks are larger
    // (kPredictLargeChunkRecords), one after the other.
    bool share_chunks = true;
    for (std::size_t l = X.sparse() ? 1 : 0; l < num_layers(); ++l) {  // a CSR first layer is no gemm
        share_chunks = share_chunks && detail::gemm_tiling(capacity, layer_sizes_[l + 1], layer_sizes_[l]).tiles == 1;
    }
    if (!share_chunks) {
        std::size_t large = kPredictLargeChunkRecords;
        while (large > kChunkRecords && Workspace::predict_bytes(layer_sizes_, large) > kPredictLargeChunkBytes) {
            large /= 2;
        }
        capacity = std::min(X.rows, large);
    }
    const std::size_t chunks = (X.rows + capacity - 1) / capacity;
    const std::size_t min_chunks =
        share_chunks ? std::max({std::size_t{1}, kPredictMinPartWork / (capacity * num_params()),
                                 (chunks + kPredictMaxParts - 1) / kPredictMaxParts})
                     : chunks;
    std::mutex failure_mutex;
    std::size_t failed_chunk = chunks;
    std::exception_ptr failure;
    // A workspace this small is kept between calls, for the range that gets it first.
    const bool keep_workspace = Workspace::predict_bytes(layer_sizes_, capacity) <= kKeptPredictWorkspaceBytes;
    detail::for_ranges(chunks, min_chunks, 1, [&](std::size_t first, std::size_t last) {
        try {
            std::unique_lock<std::mutex> kept;
            std::optional<Workspace> own;
            Workspace* ws = nullptr;  // for the chunks that take the plain path, made at the first
            auto workspace = [&]() -> Workspace& {
                if (ws != nullptr) return *ws;
                if (keep_workspace) kept = std::unique_lock<std::mutex>(locks_->predict_workspace, std::try_to_lock);
                if (kept.owns_lock()) {
                    if (!predict_workspace_ || predict_workspace_->capacity != capacity) {
                        predict_workspace_.emplace(layer_sizes_, capacity, false);
                    }
                    ws = &*predict_workspace_;
                } else {
                    ws = &own.emplace(layer_sizes_, capacity, false);
                }
                return *ws;
            };
            for (std::size_t chunk = first; chunk < last; ++chunk) {
                const std::size_t start = chunk * capacity, rows = std::min(capacity, X.rows - start);
#if CHAINRULE_SMALL_LINEAR
                if (small && detail::small_linear_forward_takes<T>(rows, layer_sizes_[0], layer_sizes_[1])) {
                    predict_small_chunk(out, X.dense, start, rows);
                    continue;
                }
#endif
                if (small && !all_finite(X.dense.row(start), rows * num_inputs())) check_input_values(X.dense);
                predict_chunk(workspace(), out, X, start);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(failure_mutex);
            if (first < failed_chunk) {
                failed_chunk = first;
                failure = std::current_exception();
            }
        }
    });
    if (failure) std::rethrow_exception(failure);
}

template <typename T>
void Network<T>::Impl::predict_small_chunk(MatrixView<T> out, ConstMatrixView<T> X, std::size_t start,
                                           std::size_t rows) const {
#if CHAINRULE_SMALL_LINEAR
    const LayerView<const T> hidden = layer(0), output = layer(1);
    T* a = out.row(start);
    if (detail::small_network_predict(a, X.row(start), hidden.weight, hidden.bias, output.weight, output.bias, rows,
                                      hidden.in_features, hidden.out_features, activations_[0], activations_[1])) {
        return;
    }
    // A hidden z or an output is not finite: a non-finite input (the plain
    // path's message), or an overflow (predict_chunk's).
    if (!all_finite(X.row(start), rows * num_inputs())) check_input_values(X);
    check_predictions_finite(a, start, rows);
#else
    (void)out, (void)X, (void)start, (void)rows;
#endif
}

template <typename T>
void Network<T>::Impl::predict_chunk(Workspace& ws, MatrixView<T> out, const detail::Records<T>& X,
                               std::size_t start) const {
    const std::size_t rows = std::min(ws.capacity, X.rows - start);
    const T* a = forward(ws, X.from(start), rows);
    check_predictions_finite(a, start, rows);
    std::memcpy(out.row(start), a, rows * num_outputs() * sizeof(T));
}

template <typename T>
void Network<T>::Impl::check_predictions_finite(const T* a, std::size_t start, std::size_t rows) const {
    // Finite inputs and parameters can still overflow (1e30 inputs through
    // identity or relu layers): say so rather than return inf or NaN.
    if (all_finite(a, rows * num_outputs())) return;
    const auto [r, k] = first_non_finite(ConstMatrixView<T>{a, rows, num_outputs()});
    throw divergence_error(overflow_message<T>(
        "predict", concat("output ", k, " of record ", start + r, " is ", a[r * num_outputs() + k])));
}

template <typename T>
double Network<T>::Impl::cost_records(const detail::Records<T>& X, ConstMatrixView<T> Y, const T* sample_weight) const {
    // C = (1/B) sum over records of L, or sum_i s_i L_i / sum_i s_i (docs/math.md, losses and cost)
    check_targets(X, Y);
    check_sample_weight(sample_weight, X.rows);
    const double total = sample_weight ? weight_sum(sample_weight, X.rows) : static_cast<double>(X.rows);
    Workspace ws(layer_sizes_, std::min(X.rows, kChunkRecords), false);
    std::shared_lock<detail::WriterFirstMutex> reading(locks_->params);
    check_params_finite();
    // Each chunk's loss is divided before it is added; should a chunk's own sum
    // overflow, the records are summed one by one, each divided first, so that
    // only a record's loss that overflows by itself makes the cost overflow.
    auto mean_loss = [&](std::size_t chunk) {
        double mean = 0.0;
        for (std::size_t start = 0; start < X.rows; start += chunk) {
            const std::size_t rows = std::min(chunk, X.rows - start);
            forward(ws, X.from(start), rows);
            mean += batch_loss(ws, Y.row(start), rows, sample_weight ? sample_weight + start : nullptr) / total;
        }
        return mean;
    };
    double mean = mean_loss(ws.capacity);
    if (!std::isfinite(mean)) mean = mean_loss(1);
    if (!std::isfinite(mean)) throw divergence_error(overflow_message<T>("cost", concat("the cost is ", mean)));
    return mean;
}

template <typename T>
double Network<T>::Impl::compute_gradients(ConstMatrixView<T> X, ConstMatrixView<T> Y) {
    check_targets(X, Y);
    const detail::TrainingLock lock(*locks_);
    return compute_gradients_locked(X, Y);
}

template <typename T>
double Network<T>::Impl::compute_gradients_locked(const detail::Records<T>& X, ConstMatrixView<T> Y,
                                            const T* sample_weight) {
    Workspace& ws = training_workspace(std::min(X.rows, kChunkRecords));
    std::shared_lock<detail::WriterFirstMutex> reading(locks_->params);
    check_params_finite();
    const double cost = accumulate_gradients(ws, X, Y, sample_weight);
    if (!std::isfinite(cost)) throw divergence_error(overflow_message<T>("gradients", concat("the cost is ", cost)));
    if (!all_finite(grads_.data(), grads_.size())) {  // e.g. dW = dZ^T X with X of 1e30 in float32
        throw divergence_error(overflow_message<T>("gradients", "a gradient is not finite"));
    }
    return cost;
}

template <typename T>
double Network<T>::Impl::compute_gradients_records(const detail::Records<T>& X, ConstMatrixView<T> Y, T* gradient,
                                             const T* sample_weight) {
    check_targets(X, Y);
    check_sample_weight(sample_weight, X.rows);
    const detail::TrainingLock lock(*locks_);  // held until grads_ is copied
    const double cost = compute_gradients_locked(X, Y, sample_weight);
    std::copy(grads_.begin(), grads_.end(), gradient);
    return cost;
}

template <typename T>
double Network<T>::Impl::cost_and_gradient_records(const detail::Records<T>& X, ConstMatrixView<T> Y, T* gradient,
                                             double alpha, const T* sample_weight) {
    if (!(std::isfinite(alpha) && alpha >= 0.0)) {
        throw std::invalid_argument(concat("alpha must be a finite number >= 0, got ", alpha));
    }
    check_targets(X, Y);
    check_sample_weight(sample_weight, X.rows);
    // The divisor of the penalty: that of the mean loss (fit's batch rule, the batch being all of X).
    const double total = sample_weight ? weight_sum(sample_weight, X.rows) : static_cast<double>(X.rows);
    const detail::TrainingLock lock(*locks_);  // held until grads_ is copied
    double cost = compute_gradients_locked(X, Y, sample_weight);
    cost += l2_penalty(alpha) / total;
    add_l2_gradient(alpha, total);
    if (!std::isfinite(cost) || !all_finite(grads_.data(), grads_.size())) {
        throw divergence_error(overflow_message<T>("cost_and_gradient", "the L2 penalty or its gradient overflows"));
    }
    std::copy(grads_.begin(), grads_.end(), gradient);
    return cost;
}

template <typename T>
double Network<T>::Impl::sgd_step(ConstMatrixView<T> X, ConstMatrixView<T> Y, double learning_rate) {
    detail::check_learning_rate<T>(learning_rate);
    check_targets(X, Y);
    const detail::TrainingLock lock(*locks_);
    Workspace& ws = training_workspace(std::min(X.rows, kChunkRecords));
    std::unique_lock<detail::WriterFirstMutex> writing(locks_->params);
    check_params_finite();
    auto cost_diverged = [](double cost) {
        return divergence_error(concat("the cost is ", cost, " (not finite): the forward pass overflowed; the "
                                       "parameters were left unchanged; scale the inputs if they are large"));
    };
    auto update_diverged = [&] {
        return divergence_error(concat("the step with lr=", learning_rate,
                                       " would make a parameter non-finite; the parameters were left unchanged; "
                                       "lower the learning rate"));
    };
    if (X.rows == 1 && has_fused_record_step()) {  // the step fit takes for one record: the same values
        double cost = 0.0;
        OptimizerState<T> plain;  // plain SGD keeps no state
        const RecordSteps step = record_steps(ws, ws.logits.data(), &cost, X.data, Y.data, nullptr, 1, plain,
                                              OptimizerOptions{}, learning_rate);
        if (step.stopped == RecordStep::loss_not_finite) throw cost_diverged(cost);
        if (step.stopped == RecordStep::update_not_finite) throw update_diverged();
        return cost;
    }
    if (X.rows <= ws.capacity && step_inside_pays(X.rows)) {
        // The step fit takes for one batch of these records, inside the backward pass: the same values.
        const detail::Records<T> records(X);
        forward(ws, records.from(0), X.rows);
        const double cost = batch_loss(ws, Y.data, X.rows) / static_cast<double>(X.rows);
        if (!std::isfinite(cost)) throw cost_diverged(cost);
        const OptimizerOptions plain;
        OptimizerState<T> no_state;
        detail::StepInBackward<T> step;
        step.lr = learning_rate;
        step.optimizer = &plain;
        step.state = &no_state;
        measure_parameters(step);
        const bool stepped = backward(ws, records.from(0), Y.data, X.rows, T(1) / static_cast<T>(X.rows),
                                      /*accumulate=*/false, nullptr, nullptr, &step);
        if (!stepped && !sgd_update(params_.data(), grads_.data(), params_.size(), static_cast<T>(learning_rate))) {
            throw update_diverged();
        }
        return cost;
    }
    const double cost = accumulate_gradients(ws, X, Y);
    if (!std::isfinite(cost)) throw cost_diverged(cost);
    if (!sgd_update(params_.data(), grads_.data(), params_.size(), static_cast<T>(learning_rate))) {
        throw update_diverged();
    }
    return cost;
}

// Network's public calls: each forwards to its Impl.

template <typename T>
Network<T>::Network(std::vector<std::size_t> layer_sizes, std::vector<Activation> activations, Loss loss,
                    std::uint64_t seed)
    : impl_(std::make_unique<Impl>(std::move(layer_sizes), std::move(activations), loss, seed)) {}

template <typename T>
Network<T>::Network(const Network& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}

template <typename T>
Network<T>& Network<T>::operator=(const Network& other) {
    if (this != &other) impl_->assign(*other.impl_);
    return *this;
}

template <typename T>
Network<T>::~Network() = default;

template <typename T>
std::size_t Network<T>::num_layers() const { return impl_->num_layers(); }
template <typename T>
std::size_t Network<T>::num_inputs() const { return impl_->num_inputs(); }
template <typename T>
std::size_t Network<T>::num_outputs() const { return impl_->num_outputs(); }
template <typename T>
std::size_t Network<T>::num_params() const { return impl_->num_params(); }
template <typename T>
const std::vector<std::size_t>& Network<T>::layer_sizes() const { return impl_->layer_sizes_; }
template <typename T>
const std::vector<Activation>& Network<T>::activations() const { return impl_->activations_; }
template <typename T>
Loss Network<T>::loss() const { return impl_->loss_; }
template <typename T>
T* Network<T>::params() { return impl_->params_.data(); }
template <typename T>
const T* Network<T>::params() const { return impl_->params_.data(); }
template <typename T>
const T* Network<T>::grads() const { return impl_->grads_.data(); }

template <typename T>
void Network<T>::copy_params(T* out) const {
    std::shared_lock<detail::WriterFirstMutex> reading(impl_->locks_->params);
    std::copy(impl_->params_.begin(), impl_->params_.end(), out);
}

template <typename T>
LayerView<T> Network<T>::layer(std::size_t l) { return impl_->layer(l); }
template <typename T>
LayerView<const T> Network<T>::layer(std::size_t l) const { return std::as_const(*impl_).layer(l); }
template <typename T>
LayerView<const T> Network<T>::layer_grads(std::size_t l) const { return impl_->layer_grads(l); }

template <typename T>
void Network<T>::predict(MatrixView<T> out, ConstMatrixView<T> X) const {
    impl_->predict_records(out, X);
}

template <typename T>
double Network<T>::cost(ConstMatrixView<T> X, ConstMatrixView<T> Y, const T* sample_weight) const {
    return impl_->cost_records(X, Y, sample_weight);
}

template <typename T>
double Network<T>::compute_gradients(ConstMatrixView<T> X, ConstMatrixView<T> Y) {
    return impl_->compute_gradients(X, Y);
}

template <typename T>
double Network<T>::compute_gradients(ConstMatrixView<T> X, ConstMatrixView<T> Y, T* gradient,
                                     const T* sample_weight) {
    return impl_->compute_gradients_records(X, Y, gradient, sample_weight);
}

template <typename T>
double Network<T>::cost_and_gradient(ConstMatrixView<T> X, ConstMatrixView<T> Y, T* gradient, double alpha,
                                     const T* sample_weight) {
    return impl_->cost_and_gradient_records(X, Y, gradient, alpha, sample_weight);
}

template <typename T>
double Network<T>::sgd_step(ConstMatrixView<T> X, ConstMatrixView<T> Y, double learning_rate) {
    return impl_->sgd_step(X, Y, learning_rate);
}

template <typename T>
template <typename Index>
void Network<T>::predict(MatrixView<T> out, CsrMatrixView<T, Index> X) const {
    impl_->predict_records(out, X);
}

template <typename T>
template <typename Index>
double Network<T>::cost(CsrMatrixView<T, Index> X, ConstMatrixView<T> Y, const T* sample_weight) const {
    return impl_->cost_records(X, Y, sample_weight);
}

template <typename T>
template <typename Index>
double Network<T>::compute_gradients(CsrMatrixView<T, Index> X, ConstMatrixView<T> Y, T* gradient,
                                     const T* sample_weight) {
    return impl_->compute_gradients_records(X, Y, gradient, sample_weight);
}

template <typename T>
template <typename Index>
double Network<T>::cost_and_gradient(CsrMatrixView<T, Index> X, ConstMatrixView<T> Y, T* gradient, double alpha,
                                     const T* sample_weight) {
    return impl_->cost_and_gradient_records(X, Y, gradient, alpha, sample_weight);
}

// With its member class, Impl: the members of both defined in this file.
template class Network<float>;
template class Network<double>;

#define CHAINRULE_INSTANTIATE_CSR(T, Index)                                                                       \
    template void Network<T>::predict<Index>(MatrixView<T>, CsrMatrixView<T, Index>) const;                     \
    template double Network<T>::cost<Index>(CsrMatrixView<T, Index>, ConstMatrixView<T>, const T*) const;       \
    template double Network<T>::compute_gradients<Index>(CsrMatrixView<T, Index>, ConstMatrixView<T>, T*,       \
                                                         const T*);                                             \
    template double Network<T>::cost_and_gradient<Index>(CsrMatrixView<T, Index>, ConstMatrixView<T>, T*, double,  \
                                                         const T*);

CHAINRULE_INSTANTIATE_CSR(float, std::int32_t)
CHAINRULE_INSTANTIATE_CSR(float, std::int64_t)
CHAINRULE_INSTANTIATE_CSR(double, std::int32_t)
CHAINRULE_INSTANTIATE_CSR(double, std::int64_t)

}  // namespace chainrule
