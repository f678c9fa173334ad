// The softmax output and the categorical cross-entropy: chainrule's
// extension of MATH.md, written up in docs/math.md ("Softmax and categorical
// cross-entropy"). Unlike the activations of kernels.cpp they work on whole
// rows: each record's outputs are one probability distribution.
#include <algorithm>
#include <cassert>
#include <cmath>

#include "chainrule/kernels.hpp"

namespace chainrule {

namespace {

// log sum_k e^{z_k} of one row, as m + log sum_k e^{z_k - m} with m = max_k z_k:
// every exponent is <= 0, so nothing overflows, and the largest term is
// e^0 = 1, so the sum is >= 1 and its log never sees 0.
template <typename T>
double log_sum_exp(const T* z, std::size_t num_outputs) {
    const double m = *std::max_element(z, z + num_outputs);
    double sum = 0.0;
    for (std::size_t k = 0; k < num_outputs; ++k) sum += std::exp(static_cast<double>(z[k]) - m);
    return m + std::log(sum);
}

}  // namespace

template <typename T>
void softmax_forward(T* out, const T* inp, std::size_t num_records, std::size_t num_outputs) {
    // out (B, K) = softmax of each row of inp (B, K); out may equal inp.
    //   docs/math.md: a_k = e^{z_k - m} / sum_j e^{z_j - m},  m = max_j z_j
    assert(out && inp && num_outputs > 0);
    for (std::size_t r = 0; r < num_records; ++r) {
        const T* z = inp + r * num_outputs;
        T* a = out + r * num_outputs;
        const T m = *std::max_element(z, z + num_outputs);  // e^{z - m} <= 1: no overflow
        T sum = T(0);
        for (std::size_t k = 0; k < num_outputs; ++k) {
            a[k] = std::exp(z[k] - m);
            sum += a[k];  // >= 1: the largest term is e^0
        }
        const T inverse = T(1) / sum;
        for (std::size_t k = 0; k < num_outputs; ++k) a[k] *= inverse;
    }
}

template <typename T>
double cce_forward(const T* logits, const T* targets, std::size_t num_records, std::size_t num_outputs) {
    // Sum over records of L = - sum_k y_k log a_k = sum_k y_k (lse(z) - z_k), from the logits.
    //   docs/math.md: log a_k = z_k - lse(z), lse(z) = m + log sum_j e^{z_j - m}
    // Each lse(z) - z_k >= 0 is finite for finite z: a softmax output that
    // rounds to 0 costs its (large, finite) logit gap, never log(0).
    double total = 0.0;
    for (std::size_t r = 0; r < num_records; ++r) {
        const T* z = logits + r * num_outputs;
        const T* y = targets + r * num_outputs;
        const double lse = log_sum_exp(z, num_outputs);
        for (std::size_t k = 0; k < num_outputs; ++k) {
            if (y[k] != T(0)) total += static_cast<double>(y[k]) * (lse - static_cast<double>(z[k]));
        }
    }
    return total;
}

template <typename T>
void cce_backward(T* dlogits, const T* out, const T* targets, std::size_t n, T scale) {
    // Fused output delta of a softmax output with CCE: dlogits = scale (A - Y).
    // Valid for that pair only, and for targets whose rows sum to 1:
    // dL/dz_j = sum_k (-y_k / a_k) a_k ([j = k] - a_j) = a_j sum_k y_k - y_j = a_j - y_j.
    //   docs/math.md: dZ_L = A_L - Y   (CCE + softmax)
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) dlogits[i] = scale * (out[i] - targets[i]);
}

#define CHAINRULE_INSTANTIATE_SOFTMAX_KERNELS(T)                                       \
    template void softmax_forward<T>(T*, const T*, std::size_t, std::size_t);          \
    template double cce_forward<T>(const T*, const T*, std::size_t, std::size_t);      \
    template void cce_backward<T>(T*, const T*, const T*, std::size_t, T);

CHAINRULE_INSTANTIATE_SOFTMAX_KERNELS(float)
CHAINRULE_INSTANTIATE_SOFTMAX_KERNELS(double)

}  // namespace chainrule
