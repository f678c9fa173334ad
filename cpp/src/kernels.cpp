// The kernels declared in chainrule/kernels.hpp: loops over raw buffers,
// written so that the compiler vectorizes the inner loop (`omp simd` needs
// -fopenmp-simd, which adds no OpenMP runtime); large matrix products go to
// the GEMM backend.
#include "chainrule/kernels.hpp"

#include "fast_math.hpp"
#include "gemm.hpp"
#include "prefetch.hpp"
#include "thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace chainrule {

template <typename T>
T sigmoid(T z) {
    // e^{-|z|} lies in (0, 1], so nothing overflows; for z < 0,
    // 1/(1+e^{-z}) = e^{z}/(1+e^{z}), which underflows to 0 instead of 1/inf.
    // The numerator is selected, not the result: branch-free, one rounding,
    // and no multiply after the division on the critical path.
    const T e = detail::exp_nonpositive(-std::abs(z));
    return (z >= T(0) ? T(1) : e) / (T(1) + e);
}

namespace {
// Below this many multiply-adds a plain loop beats a library call's overhead.
constexpr std::size_t kGemmMinWork = std::size_t{1} << 12;

// Elementwise work over at least twice this many values is shared by the
// core's threads, one range each (detail::for_ranges); less stays on the
// calling thread, where it takes a few microseconds at most. Each value is
// computed alone, so the results do not depend on the thread count.
constexpr std::size_t kElementwiseMinPart = std::size_t{1} << 13;

// A CBLAS counts in int: larger sizes (only a network of 2^31 units in one
// layer, or a batch that large, has them) stay with the loops.
constexpr std::size_t kGemmMaxSize = static_cast<std::size_t>(std::numeric_limits<int>::max());

bool worth_a_gemm(std::size_t m, std::size_t n, std::size_t k) {
    if (m > kGemmMaxSize || n > kGemmMaxSize || k > kGemmMaxSize) return false;
    return m * n * k >= kGemmMinWork;
}

// w . x (n): eight partial sums (one vector), then a fixed pairwise tree: no
// serial horizontal sum on the critical path. The last n % 8 elements are
// read as the last 8 of the row, lanes that were summed already adding 0, so
// that the tail is vector work too (a scalar tail through the lane array made
// a chain of stores and reloads). One order of summation for linear_forward
// and dense_record_steps alike. (Four accumulators, for shorter chains, measured
// slower: GCC keeps them on the stack.)
template <typename T>
inline T dot(const T* w, const T* x, std::size_t n) {
    T lanes[8] = {};  // never -0: adding +0 to a lane leaves it as it was
    std::size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        for (std::size_t l = 0; l < 8; ++l) lanes[l] += x[k + l] * w[k + l];
    }
    const std::size_t rest = n - k;
    if (rest > 0 && n >= 8) {  // lane l takes element n - 8 + l, if it was not summed above
        const std::size_t base = n - 8;
        for (std::size_t l = 0; l < 8; ++l) lanes[l] += l + rest >= 8 ? x[base + l] * w[base + l] : T(0);
    } else {
        for (std::size_t l = 0; l < rest; ++l) lanes[l] += x[k + l] * w[k + l];
    }
    return ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
}

// f(z) for one value, and f'(z) written through a = f(z): the elementwise
// activations (not softmax) as activation_forward and activation_backward
// compute them.
template <typename T>
inline T activate(T z, Activation activation) {
    switch (activation) {
        case Activation::sigmoid: return sigmoid(z);
        case Activation::tanh: return std::tanh(z);
        case Activation::relu: return z > T(0) ? z : T(0);
        default: return z;  // identity (softmax never reaches here)
    }
}

template <typename T>
inline T times_derivative(T d, T a, Activation activation) {
    switch (activation) {
        case Activation::sigmoid: return d * (a * (T(1) - a));
        case Activation::tanh: return d * (T(1) - a * a);
        case Activation::relu: return a > T(0) ? d : T(0);
        default: return d;  // identity
    }
}

// 1 when v is inf or NaN (its exponent bits all set), else 0: an integer, so
// that an OR of these over a loop vectorizes and has no floating-point chain
// to wait on (a bool OR does not vectorize).
template <typename T>
using FloatBits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

template <typename T>
inline FloatBits<T> non_finite_bits(T v) {
    constexpr FloatBits<T> kExponent = static_cast<FloatBits<T>>(sizeof(T) == 4 ? 0x7F800000u : 0x7FF0000000000000u);
    FloatBits<T> bits;
    std::memcpy(&bits, &v, sizeof(T));
    return static_cast<FloatBits<T>>((bits & kExponent) == kExponent);
}
}  // namespace

template <typename T>
CHAINRULE_TARGET_CLONES void linear_forward(T* out, const T* inp, const T* weight, const T* bias,
                    std::size_t num_records, std::size_t in_features, std::size_t out_features) {
    // out (B, OC) = inp (B, C) @ weight^T (OC, C) + bias (OC)
    assert(out && inp && weight && bias);
    // One output is a matrix-vector product, where the library's packing costs
    // more than it saves: one dot product per record instead (W2's output
    // layer in predict: ~10% more records/s).
    if (out_features > 1 && worth_a_gemm(num_records, out_features, in_features)) {
        const std::size_t min_rows = std::max<std::size_t>(1, kElementwiseMinPart / out_features);
        detail::for_ranges(num_records, min_rows, 1, [&](std::size_t begin, std::size_t end) {
            for (std::size_t r = begin; r < end; ++r) {  // Z = b, then Z += A W^T
                std::memcpy(out + r * out_features, bias, out_features * sizeof(T));
            }
        });
        detail::gemm(false, true, num_records, out_features, in_features, inp, in_features, weight, in_features,
                     T(1), out, out_features);
        return;
    }
    for (std::size_t r = 0; r < num_records; ++r) {
        const T* x = inp + r * in_features;
        T* z = out + r * out_features;
        for (std::size_t j = 0; j < out_features; ++j) {
            z[j] = dot(weight + j * in_features, x, in_features) + bias[j];  // z_j = w_j . x + b_j
        }
    }
}

namespace {
template <typename T>
CHAINRULE_TARGET_CLONES void activation_forward_range(T* out, const T* inp, std::size_t n, Activation activation) {
    switch (activation) {
        case Activation::sigmoid:
#pragma omp simd
            for (std::size_t i = 0; i < n; ++i) out[i] = sigmoid(inp[i]);
            break;
        case Activation::identity:
            if (out != inp) std::memmove(out, inp, n * sizeof(T));
            break;
        case Activation::tanh:
            for (std::size_t i = 0; i < n; ++i) out[i] = std::tanh(inp[i]);
            break;
        case Activation::relu:
#pragma omp simd
            for (std::size_t i = 0; i < n; ++i) out[i] = inp[i] > T(0) ? inp[i] : T(0);
            break;
        case Activation::softmax:  // row-wise, not elementwise: the network calls softmax_forward
            assert(false && "softmax is row-wise: use softmax_forward");
            break;
    }
}

template <typename T>
CHAINRULE_TARGET_CLONES void activation_backward_range(T* dinp, const T* dout, const T* out, std::size_t n,
                                                       Activation activation) {
    switch (activation) {
        case Activation::sigmoid:  // sigma'(z) = a (1 - a)
#pragma omp simd
            for (std::size_t i = 0; i < n; ++i) dinp[i] = dout[i] * (out[i] * (T(1) - out[i]));
            break;
        case Activation::identity:  // f'(z) = 1
            if (dinp != dout) std::memmove(dinp, dout, n * sizeof(T));
            break;
        case Activation::tanh:  // tanh'(z) = 1 - a^2
#pragma omp simd
            for (std::size_t i = 0; i < n; ++i) dinp[i] = dout[i] * (T(1) - out[i] * out[i]);
            break;
        case Activation::relu:  // relu'(z) = 1 if a > 0 else 0
#pragma omp simd
            for (std::size_t i = 0; i < n; ++i) dinp[i] = out[i] > T(0) ? dout[i] : T(0);
            break;
        case Activation::softmax:  // its Jacobian is not diagonal: only the fused cce_backward applies it
            assert(false && "softmax has no elementwise derivative: use cce_backward");
            break;
    }
}

}  // namespace

template <typename T>
void activation_forward(T* out, const T* inp, std::size_t n, Activation activation) {
    detail::for_ranges(n, kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
        activation_forward_range(out + begin, inp + begin, end - begin, activation);
    });
}

template <typename T>
void activation_backward(T* dinp, const T* dout, const T* out, std::size_t n, Activation activation) {
    detail::for_ranges(n, kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
        activation_backward_range(dinp + begin, dout + begin, out + begin, end - begin, activation);
    });
}

template <typename T>
CHAINRULE_TARGET_CLONES void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     std::size_t num_records, std::size_t in_features, std::size_t out_features, bool accumulate) {
    assert(dweight && dbias && dout && inp && weight);
    // Without accumulate, the first record's terms are written rather than
    // added to zeros: no fill, and no reload of what was just stored (a
    // batch-1 step is all first record).
    for (std::size_t r = 0; r < num_records; ++r) {  // db = sum over records of dZ
        const T* d = dout + r * out_features;
        if (r == 0 && !accumulate) {
            std::memcpy(dbias, d, out_features * sizeof(T));
            continue;
        }
#pragma omp simd
        for (std::size_t j = 0; j < out_features; ++j) dbias[j] += d[j];
    }
    if (worth_a_gemm(out_features, in_features, num_records)) {
        // dW (OC, C) (+)= dZ^T (OC, B) @ A (B, C)
        detail::gemm(true, false, out_features, in_features, num_records, dout, out_features, inp, in_features,
                     accumulate ? T(1) : T(0), dweight, in_features);
    } else {
        for (std::size_t r = 0; r < num_records; ++r) {
            const T* d = dout + r * out_features;
            const T* x = inp + r * in_features;
            const bool first = r == 0 && !accumulate;
            for (std::size_t j = 0; j < out_features; ++j) {
                const T g = d[j];
                T* dw = dweight + j * in_features;
                if (first) {
#pragma omp simd
                    for (std::size_t k = 0; k < in_features; ++k) dw[k] = g * x[k];  // dW_jk = dz_j a_k
                } else {
#pragma omp simd
                    for (std::size_t k = 0; k < in_features; ++k) dw[k] += g * x[k];  // dW_jk += dz_j a_k
                }
            }
        }
    }
    if (dinp == nullptr) return;  // the first layer passes nothing down
    if (worth_a_gemm(num_records, in_features, out_features)) {
        // dA (B, C) = dZ (B, OC) @ W (OC, C)
        detail::gemm(false, false, num_records, in_features, out_features, dout, out_features, weight, in_features,
                     T(0), dinp, in_features);
        return;
    }
    for (std::size_t r = 0; r < num_records; ++r) {
        const T* d = dout + r * out_features;
        T* di = dinp + r * in_features;
        std::fill(di, di + in_features, T(0));
        for (std::size_t j = 0; j < out_features; ++j) {
            const T g = d[j];
            const T* w = weight + j * in_features;
#pragma omp simd
            for (std::size_t k = 0; k < in_features; ++k) di[k] += g * w[k];  // (dZ W)_k += dz_j W_jk
        }
    }
}

template <typename T>
CHAINRULE_TARGET_CLONES double bce_forward(const T* logits, const T* targets, std::size_t num_records, std::size_t num_outputs) {
    // log(1 + e^{-|z|}) never sees log(0); in double, for the report.
    double total = 0.0;
    const std::size_t n = num_records * num_outputs;
#pragma omp simd reduction(+ : total)
    for (std::size_t i = 0; i < n; ++i) {
        const double z = logits[i];
        const double y = targets[i];
        total += (z > 0.0 ? z : 0.0) - z * y + detail::log1p_unit(detail::exp_nonpositive(-std::abs(z)));
    }
    return total;
}

template <typename T>
CHAINRULE_TARGET_CLONES void bce_losses(double* losses, const T* logits, const T* targets, std::size_t n) {
    // The terms of bce_forward one by one: the loss of each of n one-output records.
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) {
        const double z = logits[i];
        const double y = targets[i];
        losses[i] = (z > 0.0 ? z : 0.0) - z * y + detail::log1p_unit(detail::exp_nonpositive(-std::abs(z)));
    }
}

template <typename T>
CHAINRULE_TARGET_CLONES void bce_backward(T* dlogits, const T* out, const T* targets, std::size_t n, T scale) {
    // Fused: holds for a sigmoid output with BCE only (MATH.md, backward pass).
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) dlogits[i] = scale * (out[i] - targets[i]);
}

template <typename T>
CHAINRULE_TARGET_CLONES double mse_forward(const T* out, const T* targets, std::size_t num_records, std::size_t num_outputs) {
    double total = 0.0;
    const std::size_t n = num_records * num_outputs;
#pragma omp simd reduction(+ : total)
    for (std::size_t i = 0; i < n; ++i) {
        const double diff = static_cast<double>(out[i]) - static_cast<double>(targets[i]);
        total += diff * diff;
    }
    return total;
}

template <typename T>
CHAINRULE_TARGET_CLONES void mse_backward(T* dout, const T* out, const T* targets, std::size_t n, T scale) {
    const T two_scale = T(2) * scale;  // the factor 2 of d(a - y)^2/da stays (MATH.md)
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) dout[i] = two_scale * (out[i] - targets[i]);
}

namespace {
// 1 when some params - lr * grads (n) is not finite. An updated value is inf
// or NaN exactly when its exponent bits are all set: an OR of integer
// compares (non_finite_bits) has no floating-point add chain to wait on, and
// its horizontal reduction is cheap and exact. (No `omp simd reduction`: GCC
// lowers it through a stack array whose scalar-tail stores the final vector
// load cannot forward from, a stall on every tiny step. An integer OR
// vectorizes without it.)
template <typename T>
CHAINRULE_TARGET_CLONES FloatBits<T> sgd_non_finite(const T* params, const T* grads, std::size_t n, T lr) {
    FloatBits<T> non_finite = 0;
    for (std::size_t i = 0; i < n; ++i) non_finite |= non_finite_bits(params[i] - lr * grads[i]);
    return non_finite;
}

template <typename T>
CHAINRULE_TARGET_CLONES void sgd_apply(T* params, const T* grads, std::size_t n, T lr) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) params[i] -= lr * grads[i];  // W <- W - lr dW
}

}  // namespace

template <typename T>
bool sgd_update(T* params, const T* grads, std::size_t n, T lr) {
    // Every range is checked before any is written: all or nothing. (W4's
    // update of 270k parameters, left on one thread, was 11% of a two-thread
    // step.)
    std::atomic<bool> finite{true};
    detail::for_ranges(n, kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
        if (sgd_non_finite(params + begin, grads + begin, end - begin, lr) != 0) {
            finite.store(false, std::memory_order_relaxed);
        }
    });
    if (!finite.load(std::memory_order_relaxed)) return false;
    detail::for_ranges(n, kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
        sgd_apply(params + begin, grads + begin, end - begin, lr);
    });
    return true;
}

template <typename T>
CHAINRULE_TARGET_CLONES bool all_finite(const T* data, std::size_t n) {
    // inf and NaN are the values whose exponent bits are all set. An OR of
    // integer compares has no floating-point add chain to wait on (a sum of
    // x * 0 is bound by the add latency): this runs at load speed, cheap
    // enough for the network to check its parameters on entry to every call.
    FloatBits<T> non_finite = 0;
#pragma omp simd reduction(| : non_finite)
    for (std::size_t i = 0; i < n; ++i) non_finite |= non_finite_bits(data[i]);
    return non_finite == 0;
}

namespace {
// One step of dense_record_steps (see there), inlined into its loop.
template <typename T>
CHAINRULE_ALWAYS_INLINE RecordStep record_step(T* weight, T* bias, T* z, T* a, double* loss, const T* x, const T* y,
                                               std::size_t in_features, std::size_t out_features,
                                               Activation activation, Loss loss_kind, T lr) {
    for (std::size_t j = 0; j < out_features; ++j) {
        z[j] = dot(weight + j * in_features, x, in_features) + bias[j];  // z = W x + b
        a[j] = activate(z[j], activation);                                // a = f(z)
    }
    if (loss_kind == Loss::bce) {  // finite logits and targets in [0, 1]: a finite loss (the caller's)
        for (std::size_t j = 0; j < out_features; ++j) {
            if (non_finite_bits(z[j]) != 0) return RecordStep::loss_not_finite;
        }
    } else {
        double sum = 0.0;  // L = sum_k (a_k - y_k)^2
        for (std::size_t j = 0; j < out_features; ++j) {
            const double diff = static_cast<double>(a[j]) - static_cast<double>(y[j]);
            sum += diff * diff;
        }
        *loss = sum;
        if (!std::isfinite(sum)) return RecordStep::loss_not_finite;
    }
    // The output deltas, as bce_backward, or mse_backward and
    // activation_backward, compute them with scale 1; recomputed in both
    // passes below (a one-layer network has few outputs).
    auto delta = [&](std::size_t j) {
        return loss_kind == Loss::bce ? a[j] - y[j] : times_derivative(T(2) * (a[j] - y[j]), a[j], activation);
    };
    // First every updated value is checked, then written: a step that would
    // leave a non-finite parameter leaves them all as they were (sgd_update).
    FloatBits<T> non_finite = 0;
    for (std::size_t j = 0; j < out_features; ++j) {
        const T d = delta(j);
        const T* w = weight + j * in_features;
        for (std::size_t k = 0; k < in_features; ++k) non_finite |= non_finite_bits(w[k] - lr * (d * x[k]));
        non_finite |= non_finite_bits(bias[j] - lr * d);
    }
    if (non_finite != 0) return RecordStep::update_not_finite;
    for (std::size_t j = 0; j < out_features; ++j) {
        const T d = delta(j);
        T* w = weight + j * in_features;
#pragma omp simd
        for (std::size_t k = 0; k < in_features; ++k) w[k] -= lr * (d * x[k]);  // W <- W - lr dZ x^T
        bias[j] -= lr * d;                                                       // b <- b - lr dZ
    }
    return RecordStep::ok;
}
}  // namespace

template <typename T>
CHAINRULE_TARGET_CLONES RecordSteps dense_record_steps(T* weight, T* bias, T* z, T* a, double* losses, const T* X,
                                                       const T* Y, const std::size_t* rows, std::size_t count,
                                                       std::size_t in_features, std::size_t out_features,
                                                       Activation activation, Loss loss_kind, T lr) {
    // weight (OC, C), bias (OC), X (., C), Y (., OC), rows (count) or null; z (count, OC), a (OC), losses (count)
    // MATH.md with B = 1, for each step: z = W x + b, a = f(z), dZ = a - y
    // (BCE + sigmoid) or 2 (a - y) f'(z) (MSE); W <- W - lr dZ x^T, b <- b - lr dZ
    assert(activation != Activation::softmax && loss_kind != Loss::cce);
    constexpr std::size_t kAhead = 16;  // records prefetched ahead of a shuffled step: it is shorter than a miss
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t r = rows ? rows[i] : i;
        if (rows && i + kAhead < count) {
            detail::prefetch_bytes(X + rows[i + kAhead] * in_features, in_features * sizeof(T));
            detail::prefetch_bytes(Y + rows[i + kAhead] * out_features, out_features * sizeof(T));
        }
        const RecordStep done = record_step(weight, bias, z + i * out_features, a, losses + i, X + r * in_features,
                                            Y + r * out_features, in_features, out_features, activation, loss_kind, lr);
        if (done != RecordStep::ok) return {i, done};
    }
    return {count, RecordStep::ok};
}

#define CHAINRULE_INSTANTIATE_KERNELS(T)                                                              \
    template T sigmoid<T>(T);                                                                       \
    template void linear_forward<T>(T*, const T*, const T*, const T*, std::size_t, std::size_t,     \
                                    std::size_t);                                                   \
    template void activation_forward<T>(T*, const T*, std::size_t, Activation);                     \
    template void activation_backward<T>(T*, const T*, const T*, std::size_t, Activation);          \
    template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, std::size_t,         \
                                     std::size_t, std::size_t, bool);                               \
    template double bce_forward<T>(const T*, const T*, std::size_t, std::size_t);                   \
    template void bce_losses<T>(double*, const T*, const T*, std::size_t);                          \
    template void bce_backward<T>(T*, const T*, const T*, std::size_t, T);                          \
    template double mse_forward<T>(const T*, const T*, std::size_t, std::size_t);                   \
    template void mse_backward<T>(T*, const T*, const T*, std::size_t, T);                          \
    template bool sgd_update<T>(T*, const T*, std::size_t, T);                                      \
    template bool all_finite<T>(const T*, std::size_t);                                             \
    template RecordSteps dense_record_steps<T>(T*, T*, T*, T*, double*, const T*, const T*,              \
                                               const std::size_t*, std::size_t, std::size_t, std::size_t,    \
                                               Activation, Loss, T);

CHAINRULE_INSTANTIATE_KERNELS(float)
CHAINRULE_INSTANTIATE_KERNELS(double)

}  // namespace chainrule
