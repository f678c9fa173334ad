// The kernels of a dense network, in the order of the forward pass, each a
// free function over raw row-major buffers. Outputs come first, then inputs
// and caches, then weights, then sizes (llm.c's convention). A gradient has
// its value's name with a `d` prefix. The equations are those of
// docs/math.md; B is the number of records in the batch. Internal to the
// core: the public API is chainrule/chainrule.hpp.
//
// One home per concept, each explicitly instantiated for float and double:
// activations.hpp/.cpp (each activation's f and f'), softmax.cpp, linear.cpp
// (with its naive twin in reference.cpp; small layers' products in
// small_linear.cpp), sparse_linear.cpp (the first
// layer on CSR records, its twin in reference.cpp too), losses.cpp (each loss's value,
// delta and rules), update.cpp, and record_steps.cpp (the fused one-record
// fast path). Large products go to the GEMM backend (runtime/gemm.hpp); large
// products and large elementwise work (2^14 values or more) run on the core's
// threads (chainrule/threads.hpp), with the same bits as on one thread; the
// kernels may be called from several threads at once.
#pragma once

#include <cstddef>
#include <cstdint>

#include "chainrule/names.hpp"
#include "chainrule/optimizer.hpp"

namespace chainrule {

// The logistic function, stable for every finite z: never overflows, never
// NaN, and returns exactly 0 or 1 where the result rounds there.
template <typename T>
T sigmoid(T z);

// out (B, OC) = inp (B, C) @ weight^T (OC, C) + bias (OC)
//   docs/math.md: Z_l = A_{l-1} W_l^T + b_l
template <typename T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias,
                    std::size_t num_records, std::size_t in_features, std::size_t out_features);

// out (n) = f(inp (n)); out may equal inp.
//   docs/math.md: A_l = f_l(Z_l)
template <typename T>
void activation_forward(T* out, const T* inp, std::size_t n, Activation activation);

// out (B, OC) = relu(inp (B, C) @ weight^T (OC, C) + bias (OC)): linear_forward
// then activation_forward's relu, the same values bit for bit; where the
// small-shape product applies (kernels/panel_linear.hpp) the relu is taken in
// its last step, with no second pass over out.
//   docs/math.md: A_l = max(0, A_{l-1} W_l^T + b_l)
template <typename T>
void linear_relu_forward(T* out, const T* inp, const T* weight, const T* bias,
                         std::size_t num_records, std::size_t in_features, std::size_t out_features);

// out (B, OC) = sigmoid(inp (B, C) @ weight^T (OC, C) + bias (OC)): linear_forward
// then activation_forward's sigmoid, the same values bit for bit, in one call
// where the small layers' product applies (kernels/small_linear.hpp).
//   docs/math.md: A_l = sigma(A_{l-1} W_l^T + b_l)
template <typename T>
void linear_sigmoid_forward(T* out, const T* inp, const T* weight, const T* bias,
                            std::size_t num_records, std::size_t in_features, std::size_t out_features);

// linear_backward into dinp, then activation_backward of `below` through
// inp, the outputs a of the hidden layer below (dinp = dinp f'_below): the
// same values bit for bit; for a layer of one output that the small layers'
// kernel takes, below it a sigmoid or relu layer, each vector of dinp is
// multiplied as it is computed, with no pass of its own. dinp must not be null.
//   docs/math.md: dZ_{l-1} = (dZ_l W_l) * f'_{l-1}(Z_{l-1})
template <typename T>
void linear_activation_backward(Activation below, T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                                const T* weight, std::size_t num_records, std::size_t in_features,
                                std::size_t out_features, bool accumulate);

// dinp (n) = dout (n) * f'(z), with f'(z) written through the cached output
// out = f(z) (activations.hpp). dinp may equal dout.
//   docs/math.md: dZ_l = dA_l * f'_l(Z_l)
template <typename T>
void activation_backward(T* dinp, const T* dout, const T* out, std::size_t n, Activation activation);

// The gradients of a linear layer, written (or, with accumulate, added) into
// dweight and dbias and, when dinp is not null, the delta it passes down.
// dout (B, OC) is dZ_l, already scaled by 1/B.
//   dweight (OC, C) (+)= dout^T @ inp          docs/math.md: dW_l = (1/B) dZ_l^T A_{l-1}
//   dbias   (OC)    (+)= sum over records dout  docs/math.md: db_l = (1/B) sum dZ_l
//   dinp    (B, C)    = dout @ weight          docs/math.md: (dZ_l W_l), before f'_{l-1}
template <typename T>
void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     std::size_t num_records, std::size_t in_features, std::size_t out_features, bool accumulate);

// Whether linear_backward computes dW with the GEMM at this shape.
template <typename T>
bool linear_backward_takes_gemm(std::size_t num_records, std::size_t in_features, std::size_t out_features);

// linear_backward (without accumulate) with dW never written: for a shape
// where linear_backward_takes_gemm, dinp from weight (when not null), db
// into dbias, then the dW product added into `target` (OC, C) by the GEMM
// itself, target = beta target + alpha dout^T inp: the weights themselves
// (SGD: alpha -lr, beta 1) or the velocity (momentum), which may be
// `weight`, read for dinp first. Each sum in linear_backward's order.
//   docs/math.md, "The step inside the backward pass"
template <typename T>
void linear_backward_into(T* dinp, T* dbias, T* target, T alpha, T beta, const T* dout, const T* inp,
                          const T* weight, std::size_t num_records, std::size_t in_features,
                          std::size_t out_features);

// A batch of rows of a CSR matrix (chainrule/matrix.hpp): batch row r is
// record rows[r] of the matrix, or record first + r when rows is null. A
// shuffled batch is read through its list of records, never gathered.
template <typename T, typename Index>
struct SparseRows {
    const Index* indptr = nullptr;
    const Index* indices = nullptr;
    const T* values = nullptr;
    const std::size_t* rows = nullptr;
    std::size_t first = 0;

    std::size_t record(std::size_t r) const { return rows ? rows[r] : first + r; }
    std::size_t begin(std::size_t r) const { return static_cast<std::size_t>(indptr[record(r)]); }
    std::size_t end(std::size_t r) const { return static_cast<std::size_t>(indptr[record(r) + 1]); }
};

// linear_forward with a sparse inp: each z[r][j] is b_j plus the sum over
// the stored entries (k, x) of record r, in their stored order, of x W_jk.
// Threads share the output units; each z is summed whole on one thread.
//   out (B, OC) = inp (B, C, CSR) @ weight^T (OC, C) + bias (OC)
//   docs/math.md: Z_1 = X W_1^T + b_1, "Sparse inputs"
template <typename T, typename Index>
void sparse_linear_forward(T* out, const SparseRows<T, Index>& inp, const T* weight, const T* bias,
                           std::size_t num_records, std::size_t in_features, std::size_t out_features);

// linear_backward's weight and bias gradients with a sparse inp (the first
// layer passes no delta down): dW_jk (+)= the sum over records r, in batch
// order, and over the stored entries (k, x) of record r, in stored order,
// of dout[r][j] x. Threads share the output units (rows of dweight).
//   dweight (OC, C) (+)= dout^T @ inp (B, C, CSR)   docs/math.md: dW_1 = (1/B) dZ_1^T X
//   dbias   (OC)    (+)= sum over records dout
template <typename T, typename Index>
void sparse_linear_backward(T* dweight, T* dbias, const T* dout, const SparseRows<T, Index>& inp,
                            std::size_t num_records, std::size_t in_features, std::size_t out_features,
                            bool accumulate);

// Sum over the records of the binary cross-entropy, computed from the logits
// so that a saturated sigmoid never takes log(0).
//   docs/math.md: L = sum_k [ max(z,0) - z y + log(1 + e^{-|z|}) ]
template <typename T>
double bce_forward(const T* logits, const T* targets, std::size_t num_records, std::size_t num_outputs);

// losses (n) = the binary cross-entropy of each of n one-output records, in
// double: the terms that bce_forward sums, computed together (fit evaluates
// the losses of many batch-1 steps at once).
template <typename T>
void bce_losses(double* losses, const T* logits, const T* targets, std::size_t n);

// Fused output delta of a sigmoid output with BCE: dlogits = scale (A - Y).
// Valid for that pair only: dL/da = (a-y)/(a(1-a)) and sigma'(z) = a(1-a) cancel.
//   docs/math.md: dZ_L = A_L - Y   (BCE + sigmoid)
template <typename T>
void bce_backward(T* dlogits, const T* out, const T* targets, std::size_t n, T scale);

// Sum over the records of the squared error.
//   docs/math.md: L = sum_k (a_k - y_k)^2
template <typename T>
double mse_forward(const T* out, const T* targets, std::size_t num_records, std::size_t num_outputs);

// dout = scale * 2 (A - Y), the derivative of the MSE loss with respect to the
// output activation; activation_backward then applies f'(Z_L) (skipped for identity).
//   docs/math.md: dZ_L = 2 (A_L - Y) * f'(Z_L)
template <typename T>
void mse_backward(T* dout, const T* out, const T* targets, std::size_t n, T scale);

// out (B, K) = softmax of each row of inp (B, K), stable: the row's maximum
// is subtracted before exponentiating. Row-wise, so not an activation_forward
// case; out may equal inp. With row_lse (B) and T = double, also each row's
// lse(z) = m + log sum_j e^{z_j - m} from the same exponentials: the value
// cce_forward computes, bit for bit, which it can then take instead of
// exponentiating again (float32 rows exponentiate in float, not the double
// cce_forward sums in, so they leave row_lse alone).
//   docs/math.md: a_k = e^{z_k - m} / sum_j e^{z_j - m},  m = max_j z_j
template <typename T>
void softmax_forward(T* out, const T* inp, std::size_t num_records, std::size_t num_outputs,
                     double* row_lse = nullptr);

// Sum over the records of the categorical cross-entropy, computed from the
// logits with log-sum-exp so that a softmax output rounded to 0 never takes
// log(0). With row_lse (B), each row's lse(z) as softmax_forward left it.
//   docs/math.md: L = - sum_k y_k log a_k = sum_k y_k (lse(z) - z_k)
template <typename T>
double cce_forward(const T* logits, const T* targets, std::size_t num_records, std::size_t num_outputs,
                   const double* row_lse = nullptr);

// Fused output delta of a softmax output with CCE: dlogits = scale (A - Y).
// Valid for that pair only, with each target row summing to 1 (the network
// checks it): the softmax Jacobian a_j ([j = k] - a_k) times dL/da_k = -y_k / a_k
// sums to a_j sum_k y_k - y_j.
//   docs/math.md: dZ_L = A_L - Y   (CCE + softmax)
template <typename T>
void cce_backward(T* dlogits, const T* out, const T* targets, std::size_t n, T scale);

// One SGD update of a flat parameter buffer: params -= lr * grads.
// Checks first that every updated value is finite; if one is not, nothing is
// written and the function returns false.
//   docs/math.md: W_l <- W_l - lr dW_l,  b_l <- b_l - lr db_l
template <typename T>
bool sgd_update(T* params, const T* grads, std::size_t n, T lr);

// params -= lr * grads, unchecked: for a step the caller knows keeps every
// value finite (sgd_update's second pass).
template <typename T>
void sgd_apply(T* params, const T* grads, std::size_t n, T lr);

// The largest |x| over data (n) as a double: inf if some x is infinite, NaN
// if some x is NaN, 0 when n is 0.
template <typename T>
double largest_magnitude(const T* data, std::size_t n);

// How many state buffers the optimizer keeps (sgd: 1 with momentum, else 0;
// adam, adamw: 2, 3 with amsgrad).
int optimizer_slots(const OptimizerOptions& options);

// Sizes the state's slots for n parameters (zeros before the first step).
template <typename T>
void prepare_slots(OptimizerState<T>& state, const OptimizerOptions& options, std::size_t n);

// One step of the optimizer over the flat buffers params and grads (n), with
// learning rate lr; the first step sizes the state's buffers. Checks first
// that every new parameter and state value is finite; if one is not, nothing
// is written (parameters and state) and it returns false. Plain SGD is
// sgd_update. (optimizers.cpp; docs/math.md, "Optimizers".)
template <typename T>
bool optimizer_update(T* params, const T* grads, std::size_t n, OptimizerState<T>& state,
                      const OptimizerOptions& options, double lr);

// optimizer_update's rule over parameters [first, first + n) alone,
// unchecked, without counting a step: for a step the caller has shown to
// keep every value finite, taken a part at a time (the state's slots are
// sized already). The same values as optimizer_update's on those parameters.
template <typename T>
void optimizer_apply(T* params, const T* grads, std::size_t first, std::size_t n, OptimizerState<T>& state,
                     const OptimizerOptions& options, double lr);

// dweight (n) += scale * weight (n): the L2 penalty's gradient, scale = alpha / B.
template <typename T>
void add_l2_gradient(T* dweight, const T* weight, std::size_t n, T scale);

// sum of values^2, in double: 16 partial sums (value i in sum i mod 16),
// then added pairwise (docs/math.md, "The L2 penalty").
template <typename T>
double squared_norm(const T* values, std::size_t n);

// True when every value of data (n) is finite.
template <typename T>
bool all_finite(const T* data, std::size_t n);

// Why dense_record_steps stopped: it did not, or the step's loss (MSE) or a
// logit (BCE) was not finite, or an updated parameter would not have been.
enum class RecordStep { ok, loss_not_finite, update_not_finite };

// How many steps dense_record_steps took, and why it stopped (ok: all of them).
struct RecordSteps {
    std::size_t done;
    RecordStep stopped;
};

// Whether dense_record_steps takes this optimizer: SGD (plain, momentum,
// Nesterov, either form) and Adam (either form), without a weight decay
// added to the gradient (AdamW's decoupled decay is taken), not amsgrad.
bool record_steps_take(const OptimizerOptions& optimizer);

// count optimizer steps of a one-layer network, one record each, fused: the
// forward pass, the output delta and the update in one loop, for the
// per-record steps of logistic and linear regression, where five kernel
// calls a step and the round trips of z, a, dZ and dW through memory cost
// more than the math.
// Step i trains on record r = rows[i] of X and Y (r = i when rows is null),
// with the same values, bit for bit, as linear_forward, activation_forward,
// bce_backward (or mse_backward and activation_backward), linear_backward and
// optimizer_update with B = 1, for `optimizer` (record_steps_take) after
// `steps` steps of the run at rate lr; slots are its state buffers
// (prepare_slots: optimizer_slots of them; momentum's velocity, Adam's two
// moments). Any elementwise activation; loss bce (sigmoid output) or mse.
// z (count, OC) receives each step's logits and losses (count) each step's
// loss, with mse, and with bce and one output (bce_term, as bce_losses
// computes it; with more outputs the caller computes it from z; it is finite
// when z is); a (OC) is scratch. With one output and 8 to 32 inputs the
// steps hold the row in vector registers (record_steps.cpp), with the same
// values.
// It stops before the first step whose loss or updated parameters would not
// be finite, and returns {that step, why}: the parameters (and state) are
// those of the steps before it; its row of z (and, with mse, its loss) hold
// its values.
//   weight (OC, C), bias (OC), each slot (OC * C + OC), X (., C), Y (., OC)
//   docs/math.md with B = 1: z = W x + b, a = f(z), dZ = a - y or 2 (a - y) f'(z),
//   then the optimizer's rule on g = dZ x^T and dZ (plain SGD: W <- W - lr dZ x^T, b <- b - lr dZ)
template <typename T>
RecordSteps dense_record_steps(T* weight, T* bias, T* const* slots, T* z, T* a, double* losses, const T* X, const T* Y,
                               const std::size_t* rows, std::size_t count, std::size_t in_features,
                               std::size_t out_features, Activation activation, Loss loss_kind,
                               const OptimizerOptions& optimizer, double lr, std::uint64_t steps);

}  // namespace chainrule
