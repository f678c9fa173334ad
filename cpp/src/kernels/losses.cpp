// One home per loss: its value (summed over records, from the logits where
// that keeps log(0) away), its output delta, and its rules (losses.hpp). The
// equations are those of docs/math.md, "Losses and cost".
#include "kernels/losses.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "kernels/kernels.hpp"
#include "runtime/fast_math.hpp"
#include "runtime/macros.hpp"

namespace chainrule {

// -- bce: binary cross-entropy, with a sigmoid output ------------------------

using detail::bce_term;  // losses.hpp

template <typename T>
CHAINRULE_TARGET_CLONES double bce_forward(const T* logits, const T* targets, std::size_t num_records, std::size_t num_outputs) {
    // In double, for the report.
    double total = 0.0;
    const std::size_t n = num_records * num_outputs;
#pragma omp simd reduction(+ : total)
    for (std::size_t i = 0; i < n; ++i) total += bce_term(logits[i], targets[i]);
    return total;
}

template <typename T>
CHAINRULE_TARGET_CLONES void bce_losses(double* losses, const T* logits, const T* targets, std::size_t n) {
    // The terms of bce_forward one by one: the loss of each of n one-output records.
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) losses[i] = bce_term(logits[i], targets[i]);
}

template <typename T>
CHAINRULE_TARGET_CLONES void bce_backward(T* dlogits, const T* out, const T* targets, std::size_t n, T scale) {
    // Fused: holds for a sigmoid output with BCE only (docs/math.md, "Backward pass").
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) dlogits[i] = scale * (out[i] - targets[i]);
}

// -- mse: squared error, summed over the outputs (not halved) -----------------

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
    const T two_scale = T(2) * scale;  // the factor 2 of d(a - y)^2/da stays (docs/math.md)
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) dout[i] = two_scale * (out[i] - targets[i]);
}

// -- cce: categorical cross-entropy, with a softmax output -------------------

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
double cce_forward(const T* logits, const T* targets, std::size_t num_records, std::size_t num_outputs,
                   const double* row_lse) {
    // Sum over records of L = - sum_k y_k log a_k = sum_k y_k (lse(z) - z_k), from the logits.
    //   docs/math.md: log a_k = z_k - lse(z), lse(z) = m + log sum_j e^{z_j - m}
    // Each lse(z) - z_k >= 0 is finite for finite z: a softmax output that
    // rounds to 0 costs its (large, finite) logit gap, never log(0).
    double total = 0.0;
    for (std::size_t r = 0; r < num_records; ++r) {
        const T* z = logits + r * num_outputs;
        const T* y = targets + r * num_outputs;
        const double lse = row_lse != nullptr ? row_lse[r] : log_sum_exp(z, num_outputs);
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

// -- the rules ----------------------------------------------------------------

namespace detail {

namespace {
template <typename... Parts>
std::string concat(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    return out.str();
}
}  // namespace

std::string loss_pairing_problem(const std::vector<Activation>& activations, Loss loss, std::size_t num_outputs) {
    for (std::size_t l = 0; l + 1 < activations.size(); ++l) {
        if (activations[l] == Activation::softmax) {
            return concat("activation: 'softmax' is allowed only as the output activation (with loss='cce'), "
                          "not in hidden layer ", l + 1);
        }
    }
    const char* output = activations.empty() ? "none" : activation_name(activations.back());
    const bool softmax_output = !activations.empty() && activations.back() == Activation::softmax;
    if (softmax_output && loss != Loss::cce) {
        return concat("output: 'softmax' needs loss='cce' (categorical cross-entropy), got loss='", loss_name(loss),
                      "'");
    }
    if (loss == Loss::cce && !softmax_output) {
        return concat("loss: 'cce' needs a softmax output, but the output activation is '", output,
                      "'; use output='softmax'");
    }
    if (softmax_output && num_outputs < 2) {
        return "output: 'softmax' over a single output unit is always 1; use at least 2 outputs, or "
               "output='sigmoid' with loss='bce'";
    }
    if (loss == Loss::bce && (activations.empty() || activations.back() != Activation::sigmoid)) {
        return concat("loss: 'bce' needs a sigmoid output, but the output activation is '", output,
                      "'; use output='sigmoid' or loss='mse'");
    }
    return "";
}

template <typename T>
void check_targets_for(Loss loss, const T* Y, std::size_t rows, std::size_t cols) {
    if (loss == Loss::bce) {
        for (std::size_t i = 0; i < rows * cols; ++i) {
            if (Y[i] < T(0) || Y[i] > T(1)) {
                throw std::invalid_argument(concat("y holds ", Y[i], " at record ", i / cols, ", output ", i % cols,
                                                   "; targets of the bce loss must lie in [0, 1]"));
            }
        }
    } else if (loss == Loss::cce) {
        // The fused delta A - Y of cce_backward needs each row to sum to 1; summed in double.
        const double tolerance = std::sqrt(static_cast<double>(std::numeric_limits<T>::epsilon()));
        for (std::size_t r = 0; r < rows; ++r) {
            const T* y = Y + r * cols;
            double sum = 0.0;
            for (std::size_t k = 0; k < cols; ++k) {
                if (y[k] < T(0) || y[k] > T(1)) {
                    throw std::invalid_argument(concat("y holds ", y[k], " at record ", r, ", output ", k,
                                                       "; targets of the cce loss must lie in [0, 1]"));
                }
                sum += static_cast<double>(y[k]);
            }
            if (std::abs(sum - 1.0) > tolerance) {
                throw std::invalid_argument(concat("y at record ", r, " sums to ", sum, "; targets of the cce loss "
                                                   "must sum to 1 over the outputs of each record (within ",
                                                   tolerance, "): one-hot or soft labels"));
            }
        }
    }
}

}  // namespace detail

#define CHAINRULE_INSTANTIATE(T)                                                                    \
    template double bce_forward<T>(const T*, const T*, std::size_t, std::size_t);                   \
    template void bce_losses<T>(double*, const T*, const T*, std::size_t);                          \
    template void bce_backward<T>(T*, const T*, const T*, std::size_t, T);                          \
    template double mse_forward<T>(const T*, const T*, std::size_t, std::size_t);                   \
    template void mse_backward<T>(T*, const T*, const T*, std::size_t, T);                          \
    template double cce_forward<T>(const T*, const T*, std::size_t, std::size_t, const double*);    \
    template void cce_backward<T>(T*, const T*, const T*, std::size_t, T);                          \
    template void detail::check_targets_for<T>(Loss, const T*, std::size_t, std::size_t);

CHAINRULE_INSTANTIATE(float)
CHAINRULE_INSTANTIATE(double)

}  // namespace chainrule
