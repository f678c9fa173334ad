// The kernels declared in chainrule/kernels.hpp: loops over raw buffers,
// written so that the compiler vectorizes the inner loop (`omp simd` needs
// -fopenmp-simd, which adds no OpenMP runtime); large matrix products go to
// the GEMM backend.
#include "chainrule/kernels.hpp"

#include "fast_math.hpp"
#include "gemm.hpp"

#include <algorithm>
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
    const T e = detail::exp_nonpositive(-std::abs(z));
    const T s = T(1) / (T(1) + e);
    const T es = e * s;  // both sides computed, so that a loop over sigmoid is branch-free
    return z >= T(0) ? s : es;
}

namespace {
// Below this many multiply-adds a plain loop beats a library call's overhead.
constexpr std::size_t kGemmMinWork = std::size_t{1} << 12;

// A CBLAS counts in int: larger sizes (only a network of 2^31 units in one
// layer, or a batch that large, has them) stay with the loops.
constexpr std::size_t kGemmMaxSize = static_cast<std::size_t>(std::numeric_limits<int>::max());

bool worth_a_gemm(std::size_t m, std::size_t n, std::size_t k) {
    if (m > kGemmMaxSize || n > kGemmMaxSize || k > kGemmMaxSize) return false;
    return m * n * k >= kGemmMinWork;
}
}  // namespace

template <typename T>
CHAINRULE_TARGET_CLONES void linear_forward(T* out, const T* inp, const T* weight, const T* bias,
                    std::size_t num_records, std::size_t in_features, std::size_t out_features) {
    // out (B, OC) = inp (B, C) @ weight^T (OC, C) + bias (OC)
    assert(out && inp && weight && bias);
    if (worth_a_gemm(num_records, out_features, in_features)) {
        for (std::size_t r = 0; r < num_records; ++r) {  // Z = b, then Z += A W^T
            std::memcpy(out + r * out_features, bias, out_features * sizeof(T));
        }
        detail::gemm(false, true, num_records, out_features, in_features, inp, in_features, weight, in_features,
                     T(1), out, out_features);
        return;
    }
    for (std::size_t r = 0; r < num_records; ++r) {
        const T* x = inp + r * in_features;
        T* z = out + r * out_features;
        for (std::size_t j = 0; j < out_features; ++j) {
            const T* w = weight + j * in_features;
            // Eight partial sums (one vector), then a fixed pairwise tree: no
            // serial horizontal sum and no scalar tail chain on the critical path.
            T lanes[8] = {};
            std::size_t k = 0;
            for (; k + 8 <= in_features; k += 8) {
                for (std::size_t l = 0; l < 8; ++l) lanes[l] += x[k + l] * w[k + l];  // z_j = w_j . x
            }
            for (std::size_t l = 0; k + l < in_features; ++l) lanes[l] += x[k + l] * w[k + l];
            const T acc = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
            z[j] = acc + bias[j];  //       + b_j
        }
    }
}

template <typename T>
CHAINRULE_TARGET_CLONES void activation_forward(T* out, const T* inp, std::size_t n, Activation activation) {
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
CHAINRULE_TARGET_CLONES void activation_backward(T* dinp, const T* dout, const T* out, std::size_t n, Activation activation) {
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

template <typename T>
CHAINRULE_TARGET_CLONES bool sgd_update(T* params, const T* grads, std::size_t n, T lr) {
    // An updated value is inf or NaN exactly when its exponent bits are all
    // set: an OR of integer compares (as in all_finite) has no floating-point
    // add chain to wait on, and its horizontal reduction is cheap and exact.
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    constexpr Bits kExponent = static_cast<Bits>(sizeof(T) == 4 ? 0x7F800000u : 0x7FF0000000000000u);
    // (No `omp simd reduction`: GCC lowers it through a stack array whose
    // scalar-tail stores the final vector load cannot forward from, a stall
    // on every tiny step. An integer OR vectorizes without it.)
    Bits non_finite = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const T updated = params[i] - lr * grads[i];
        Bits bits;
        std::memcpy(&bits, &updated, sizeof(T));
        non_finite |= static_cast<Bits>((bits & kExponent) == kExponent);
    }
    if (non_finite != 0) return false;
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) params[i] -= lr * grads[i];  // W <- W - lr dW
    return true;
}

template <typename T>
CHAINRULE_TARGET_CLONES bool all_finite(const T* data, std::size_t n) {
    // inf and NaN are the values whose exponent bits are all set. An OR of
    // integer compares has no floating-point add chain to wait on (a sum of
    // x * 0 is bound by the add latency): this runs at load speed, cheap
    // enough for the network to check its parameters on entry to every call.
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    constexpr Bits kExponent = static_cast<Bits>(sizeof(T) == 4 ? 0x7F800000u : 0x7FF0000000000000u);
    Bits non_finite = 0;
#pragma omp simd reduction(| : non_finite)
    for (std::size_t i = 0; i < n; ++i) {
        Bits bits;
        std::memcpy(&bits, data + i, sizeof(T));
        non_finite |= static_cast<Bits>((bits & kExponent) == kExponent);
    }
    return non_finite == 0;
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
    template bool all_finite<T>(const T*, std::size_t);

CHAINRULE_INSTANTIATE_KERNELS(float)
CHAINRULE_INSTANTIATE_KERNELS(double)

}  // namespace chainrule
