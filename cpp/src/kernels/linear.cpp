// The linear layer: Z = A W^T + b forward, and its weight, bias and input
// gradients backward. Large products go to the GEMM backend (runtime/gemm.hpp).
// Small layers skip it: those of a few dozen units to small_linear.cpp (the
// result's blocks in registers, forward and backward), the other forward
// products of a batch's shapes to panel_linear.cpp (W^T packed in panels;
// float64 with AVX2, float32 and float64 with AVX-512), each
// sum in the order of the path it replaces (docs/math.md, "The order of each
// sum"); the plain loops of reference.cpp are their twins in the tests.
#include <algorithm>
#include <cassert>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/helpers.hpp"
#include "kernels/kernels.hpp"
#include "kernels/panel_linear.hpp"
#include "kernels/small_linear.hpp"
#include "runtime/gemm.hpp"
#include "runtime/macros.hpp"
#include "runtime/thread_pool.hpp"

namespace chainrule {

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

#if CHAINRULE_SMALL_LINEAR
template <typename T>
bool detail::small_linear_forward_takes(std::size_t num_records, std::size_t in_features, std::size_t out_features) {
    return out_features > 1 && worth_a_gemm(num_records, out_features, in_features) &&
           small_linear_forward_fits<T>(in_features, out_features);
}
#endif

template <typename T>
CHAINRULE_TARGET_CLONES void linear_forward(T* out, const T* inp, const T* weight, const T* bias,
                    std::size_t num_records, std::size_t in_features, std::size_t out_features) {
    // out (B, OC) = inp (B, C) @ weight^T (OC, C) + bias (OC)
    assert(out && inp && weight && bias);
    // One output is a matrix-vector product, where the library's packing costs
    // more than it saves: one dot product per record instead.
    if (out_features > 1 && worth_a_gemm(num_records, out_features, in_features)) {
#if CHAINRULE_SMALL_LINEAR
        // z summed over k in order, then + b
        if (detail::small_linear_forward_takes<T>(num_records, in_features, out_features)) {
            detail::small_linear_forward(out, inp, weight, bias, num_records, in_features, out_features);
            return;
        }
#endif
        if (detail::panel_linear_fits<T>(num_records, in_features, out_features)) {
            // A batch's shapes: no library call, the bias added in the product's last step.
            detail::panel_linear_forward(out, inp, weight, bias, num_records, in_features, out_features,
                                         /*relu=*/false);
            return;
        }
        // One record is a matrix-vector product: the library would copy all of
        // W into its packed layout to use each weight once. The loop below
        // reads W once instead.
        if (num_records > 1) {
            const std::size_t min_rows = std::max<std::size_t>(1, detail::kElementwiseMinPart / out_features);
            detail::for_ranges(num_records, min_rows, 1, [&](std::size_t begin, std::size_t end) {
                for (std::size_t r = begin; r < end; ++r) {  // Z = b, then Z += A W^T
                    std::memcpy(out + r * out_features, bias, out_features * sizeof(T));
                }
            });
            detail::gemm(false, true, num_records, out_features, in_features, T(1), inp, in_features, weight,
                         in_features, T(1), out, out_features);
            return;
        }
    }
#if CHAINRULE_SMALL_LINEAR
    if (out_features == 1 && detail::single_output_fits<T>(in_features)) {  // the loop below, records side by side
        detail::single_output_forward(out, inp, weight, bias, num_records, in_features);
        return;
    }
#endif
    for (std::size_t r = 0; r < num_records; ++r) {
        const T* x = inp + r * in_features;
        T* z = out + r * out_features;
        for (std::size_t j = 0; j < out_features; ++j) {
            z[j] = detail::dot(weight + j * in_features, x, in_features) + bias[j];  // z_j = w_j . x + b_j
        }
    }
}

namespace {
// linear_backward's three products, each in its fixed order (docs/math.md,
// "The order of each sum"); the kernels below compose them.

// db (OC) (+)= the records' dZ, one by one in record order. Without
// accumulate, the first record's terms are written rather than added to
// zeros: no fill, and no reload of what was just stored (a batch-1 step is
// all first record).
template <typename T>
CHAINRULE_ALWAYS_INLINE void bias_gradient(T* dbias, const T* dout, std::size_t num_records, std::size_t out_features,
                                           bool accumulate) {
    for (std::size_t r = 0; r < num_records; ++r) {
        const T* d = dout + r * out_features;
        if (r == 0 && !accumulate) {
            std::memcpy(dbias, d, out_features * sizeof(T));
            continue;
        }
#pragma omp simd
        for (std::size_t j = 0; j < out_features; ++j) dbias[j] += d[j];
    }
}

// Whether dW = dZ^T A, (OC, C) summed over B records, is worth the library's
// call: the order of dW's sums on every path but the small layers' kernels.
bool weight_gradient_by_gemm(std::size_t num_records, std::size_t in_features, std::size_t out_features) {
    return worth_a_gemm(out_features, in_features, num_records);
}

// dA (B, C) = dZ (B, OC) @ W (OC, C). One record is a vector-matrix product:
// the loop, as linear_forward's (the library would pack all of W).
template <typename T>
CHAINRULE_ALWAYS_INLINE void input_gradient(T* dinp, const T* dout, const T* weight, std::size_t num_records,
                                            std::size_t in_features, std::size_t out_features) {
    if (num_records > 1 && worth_a_gemm(num_records, in_features, out_features)) {
        detail::gemm(false, false, num_records, in_features, out_features, T(1), dout, out_features, weight,
                     in_features, T(0), dinp, in_features);
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
}  // namespace

template <typename T>
bool linear_backward_takes_gemm(std::size_t num_records, std::size_t in_features, std::size_t out_features) {
#if CHAINRULE_SMALL_LINEAR
    if (detail::small_linear_backward_fits<T>(in_features, out_features, num_records)) return false;
#endif
    return weight_gradient_by_gemm(num_records, in_features, out_features);
}

template <typename T>
CHAINRULE_TARGET_CLONES void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     std::size_t num_records, std::size_t in_features, std::size_t out_features, bool accumulate) {
    assert(dweight && dbias && dout && inp && weight);
#if CHAINRULE_SMALL_LINEAR
    if (detail::small_linear_backward_fits<T>(in_features, out_features, num_records)) {  // the orders of the paths below
        detail::small_linear_backward(dinp, dweight, dbias, dout, inp, weight, num_records, in_features, out_features,
                                      accumulate, weight_gradient_by_gemm(num_records, in_features, out_features));
        return;
    }
#endif
    bias_gradient(dbias, dout, num_records, out_features, accumulate);
    if (linear_backward_takes_gemm<T>(num_records, in_features, out_features)) {
        // dW (OC, C) (+)= dZ^T (OC, B) @ A (B, C)
        detail::gemm(true, false, out_features, in_features, num_records, T(1), dout, out_features, inp, in_features,
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
    input_gradient(dinp, dout, weight, num_records, in_features, out_features);
}

template <typename T>
CHAINRULE_TARGET_CLONES void linear_backward_into(T* dinp, T* dbias, T* target, T alpha, T beta, const T* dout,
                                                  const T* inp, const T* weight, std::size_t num_records,
                                                  std::size_t in_features, std::size_t out_features) {
    assert(dbias && target && dout && inp && weight);
    assert(linear_backward_takes_gemm<T>(num_records, in_features, out_features));
    if (dinp != nullptr) input_gradient(dinp, dout, weight, num_records, in_features, out_features);  // before target
    bias_gradient(dbias, dout, num_records, out_features, /*accumulate=*/false);
    // target (OC, C) = beta target + alpha dZ^T (OC, B) @ A (B, C)
    detail::gemm(true, false, out_features, in_features, num_records, alpha, dout, out_features, inp, in_features,
                 beta, target, in_features);
}

template <typename T>
void linear_relu_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t num_records,
                         std::size_t in_features, std::size_t out_features) {
    // linear_forward's condition for its panel product, which then takes the relu too.
    if (out_features > 1 && worth_a_gemm(num_records, out_features, in_features) &&
#if CHAINRULE_SMALL_LINEAR
        !detail::small_linear_forward_takes<T>(num_records, in_features, out_features) &&
#endif
        detail::panel_linear_fits<T>(num_records, in_features, out_features)) {
        detail::panel_linear_forward(out, inp, weight, bias, num_records, in_features, out_features,
                                     /*relu=*/true);
        return;
    }
    linear_forward(out, inp, weight, bias, num_records, in_features, out_features);
    activation_forward(out, out, num_records * out_features, Activation::relu);
}

template <typename T>
void linear_sigmoid_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t num_records,
                            std::size_t in_features, std::size_t out_features) {
#if CHAINRULE_SMALL_LINEAR
    // linear_forward's condition for the small layers' product, which then takes the sigmoid too.
    if (detail::small_linear_forward_takes<T>(num_records, in_features, out_features)) {
        detail::small_linear_sigmoid_forward(out, inp, weight, bias, num_records, in_features, out_features);
        return;
    }
#endif
    linear_forward(out, inp, weight, bias, num_records, in_features, out_features);
    activation_forward(out, out, num_records * out_features, Activation::sigmoid);
}

template <typename T>
void linear_activation_backward(Activation below, T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                                const T* weight, std::size_t num_records, std::size_t in_features,
                                std::size_t out_features, bool accumulate) {
    assert(dinp);
#if CHAINRULE_SMALL_LINEAR
    // linear_backward's one-pass kernel for one output, which then takes f' too.
    if (out_features == 1 && detail::single_output_backward_through_fits<T>(below, in_features, num_records)) {
        detail::single_output_backward_through(below, dinp, dweight, dbias, dout, inp, weight, num_records,
                                               in_features, accumulate,
                                               weight_gradient_by_gemm(num_records, in_features, out_features));
        return;
    }
#endif
    linear_backward(dinp, dweight, dbias, dout, inp, weight, num_records, in_features, out_features, accumulate);
    activation_backward(dinp, dinp, inp, num_records * in_features, below);
}

#define CHAINRULE_INSTANTIATE(T)                                                                      \
    template void linear_sigmoid_forward<T>(T*, const T*, const T*, const T*, std::size_t,           \
                                            std::size_t, std::size_t);                              \
    template void linear_activation_backward<T>(Activation, T*, T*, T*, const T*, const T*, const T*, \
                                                std::size_t, std::size_t, std::size_t, bool);         \
    template void linear_relu_forward<T>(T*, const T*, const T*, const T*, std::size_t, std::size_t, \
                                         std::size_t);                                              \
    template void linear_forward<T>(T*, const T*, const T*, const T*, std::size_t, std::size_t,     \
                                    std::size_t);                                                   \
    template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, std::size_t,         \
                                     std::size_t, std::size_t, bool);                               \
    template bool linear_backward_takes_gemm<T>(std::size_t, std::size_t, std::size_t);            \
    template void linear_backward_into<T>(T*, T*, T*, T, T, const T*, const T*, const T*, std::size_t, \
                                          std::size_t, std::size_t);

CHAINRULE_INSTANTIATE(float)
CHAINRULE_INSTANTIATE(double)

#if CHAINRULE_SMALL_LINEAR
template bool detail::small_linear_forward_takes<float>(std::size_t, std::size_t, std::size_t);
template bool detail::small_linear_forward_takes<double>(std::size_t, std::size_t, std::size_t);
#endif

}  // namespace chainrule
