// The fast path of one-layer networks trained one record at a time
// (logistic and linear regression): the forward pass, the output delta and
// the update of a step in one loop, many steps per call. It computes the
// values of the general path (the batch kernels with B = 1) bit for bit,
// through the same activation homes and the same dot product.
#include <cassert>
#include <cmath>

#include "kernels/activations.hpp"
#include "kernels/helpers.hpp"
#include "kernels/kernels.hpp"
#include "runtime/macros.hpp"
#include "runtime/prefetch.hpp"

namespace chainrule {

namespace {
// One step of dense_record_steps (see there), inlined into its loop.
template <typename Home, typename T>
CHAINRULE_ALWAYS_INLINE RecordStep record_step(T* weight, T* bias, T* z, T* a, double* loss, const T* x, const T* y,
                                               std::size_t in_features, std::size_t out_features, Loss loss_kind,
                                               T lr) {
    for (std::size_t j = 0; j < out_features; ++j) {
        z[j] = detail::dot(weight + j * in_features, x, in_features) + bias[j];  // z = W x + b
        a[j] = Home::f(z[j]);                                                     // a = f(z)
    }
    if (loss_kind == Loss::bce) {  // finite logits and targets in [0, 1]: a finite loss (the caller's)
        for (std::size_t j = 0; j < out_features; ++j) {
            if (detail::non_finite_bits(z[j]) != 0) return RecordStep::loss_not_finite;
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
        return loss_kind == Loss::bce ? a[j] - y[j] : Home::times_derivative(T(2) * (a[j] - y[j]), a[j]);
    };
    // First every updated value is checked, then written: a step that would
    // leave a non-finite parameter leaves them all as they were (sgd_update).
    detail::FloatBits<T> non_finite = 0;
    for (std::size_t j = 0; j < out_features; ++j) {
        const T d = delta(j);
        const T* w = weight + j * in_features;
        for (std::size_t k = 0; k < in_features; ++k) non_finite |= detail::non_finite_bits(w[k] - lr * (d * x[k]));
        non_finite |= detail::non_finite_bits(bias[j] - lr * d);
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

namespace {
// The steps for one activation home, compiled for each instruction set.
template <typename Home, typename T>
CHAINRULE_TARGET_CLONES RecordSteps record_steps_with(T* weight, T* bias, T* z, T* a, double* losses, const T* X,
                                                      const T* Y, const std::size_t* rows, std::size_t count,
                                                      std::size_t in_features, std::size_t out_features,
                                                      Loss loss_kind, T lr) {
    constexpr std::size_t kAhead = 16;  // records prefetched ahead of a shuffled step: it is shorter than a miss
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t r = rows ? rows[i] : i;
        if (rows && i + kAhead < count) {
            detail::prefetch_bytes(X + rows[i + kAhead] * in_features, in_features * sizeof(T));
            detail::prefetch_bytes(Y + rows[i + kAhead] * out_features, out_features * sizeof(T));
        }
        const RecordStep done = record_step<Home>(weight, bias, z + i * out_features, a, losses + i,
                                                  X + r * in_features, Y + r * out_features, in_features,
                                                  out_features, loss_kind, lr);
        if (done != RecordStep::ok) return {i, done};
    }
    return {count, RecordStep::ok};
}
}  // namespace

template <typename T>
RecordSteps dense_record_steps(T* weight, T* bias, T* z, T* a, double* losses, const T* X, const T* Y,
                               const std::size_t* rows, std::size_t count, std::size_t in_features,
                               std::size_t out_features, Activation activation, Loss loss_kind, T lr) {
    // weight (OC, C), bias (OC), X (., C), Y (., OC), rows (count) or null; z (count, OC), a (OC), losses (count)
    // docs/math.md with B = 1, for each step: z = W x + b, a = f(z), dZ = a - y
    // (BCE + sigmoid) or 2 (a - y) f'(z) (MSE); W <- W - lr dZ x^T, b <- b - lr dZ
    assert(activation != Activation::softmax && loss_kind != Loss::cce);
    return detail::with_activation(activation, [&](auto home) {
        return record_steps_with<decltype(home)>(weight, bias, z, a, losses, X, Y, rows, count, in_features,
                                                 out_features, loss_kind, lr);
    });
}

template RecordSteps dense_record_steps<float>(float*, float*, float*, float*, double*, const float*, const float*,
                                               const std::size_t*, std::size_t, std::size_t, std::size_t,
                                               Activation, Loss, float);
template RecordSteps dense_record_steps<double>(double*, double*, double*, double*, double*, const double*,
                                                const double*, const std::size_t*, std::size_t, std::size_t,
                                                std::size_t, Activation, Loss, double);

}  // namespace chainrule
