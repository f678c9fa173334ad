// The fast path of one-layer networks trained one record at a time
// (logistic and linear regression) with SGD (plain, momentum, Nesterov):
// the forward pass, the output delta and the update of a step
// in one loop, many steps per call. It computes the
// values of the general path (the batch kernels with B = 1) bit for bit,
// through the same activation homes and the same dot product.
#include <cassert>
#include <cmath>

#include "kernels/activations.hpp"
#include "kernels/helpers.hpp"
#include "kernels/kernels.hpp"
#include "kernels/optimizer_rules.hpp"
#include "runtime/macros.hpp"
#include "runtime/prefetch.hpp"

namespace chainrule {

namespace {
// How a fused step updates a parameter from its gradient g: plain SGD, the
// general path's sgd_update (p - lr g), or one of SGD's momentum rules
// (optimizer_rules.hpp) with its velocity slot. Each takes the values
// optimizer_update takes with B = 1. Not weight decay: g + wd p, with g a
// product here but a loaded value there, may be contracted into a
// different fused multiply-add, and then the bits would differ.
struct PlainSgd {
    static constexpr bool kSlot = false;
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T step(T p, T g, T&, const StepScalars<T>& c) {
        return p - c.lr * g;
    }
};

template <typename Rule>
struct SgdRule {
    static constexpr bool kSlot = true;
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T step(T p, T g, T& v, const StepScalars<T>& c) {
        T unused1 = T(0), unused2 = T(0);
        return Rule::step(p, g, v, unused1, unused2, c);
    }
};

// The step's update of the parameters (OC, C) and (OC) and of their velocity
// (same layout; null without a slot), from the deltas d(j) and the record x.
// First every updated value is checked, then written: a step that would
// leave a non-finite parameter (or velocity) leaves them all as they were.
template <typename Update, typename T, typename Delta>
CHAINRULE_ALWAYS_INLINE bool update_record(T* weight, T* bias, T* velocity, const T* x, std::size_t in_features,
                                           std::size_t out_features, const Delta& delta,
                                           const StepScalars<T>& c) {
    T* const vweight = velocity;
    T* const vbias = Update::kSlot ? velocity + out_features * in_features : nullptr;
    detail::FloatBits<T> non_finite = 0;
    for (std::size_t j = 0; j < out_features; ++j) {
        const T d = delta(j);
        const T* w = weight + j * in_features;
        for (std::size_t k = 0; k < in_features; ++k) {
            T v = Update::kSlot ? vweight[j * in_features + k] : T(0);
            non_finite |= detail::non_finite_bits(Update::step(w[k], d * x[k], v, c)) | detail::non_finite_bits(v);
        }
        T v = Update::kSlot ? vbias[j] : T(0);
        non_finite |= detail::non_finite_bits(Update::step(bias[j], d, v, c)) | detail::non_finite_bits(v);
    }
    if (non_finite != 0) return false;
    for (std::size_t j = 0; j < out_features; ++j) {
        const T d = delta(j);
        T* w = weight + j * in_features;
        if constexpr (Update::kSlot) {
            T* vw = vweight + j * in_features;
#pragma omp simd
            for (std::size_t k = 0; k < in_features; ++k) w[k] = Update::step(w[k], d * x[k], vw[k], c);
            bias[j] = Update::step(bias[j], d, vbias[j], c);
        } else {
            T unused = T(0);
#pragma omp simd
            for (std::size_t k = 0; k < in_features; ++k) w[k] = Update::step(w[k], d * x[k], unused, c);
            bias[j] = Update::step(bias[j], d, unused, c);  // W <- W - lr dZ x^T, b <- b - lr dZ (plain SGD)
        }
    }
    return true;
}

// One step of dense_record_steps (see there), inlined into its loop.
template <typename Home, typename Update, typename T>
CHAINRULE_ALWAYS_INLINE RecordStep record_step(T* weight, T* bias, T* velocity, T* z, T* a, double* loss,
                                               const T* x, const T* y, std::size_t in_features,
                                               std::size_t out_features, Loss loss_kind, const StepScalars<T>& c) {
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
    // passes of the update (a one-layer network has few outputs).
    auto delta = [&](std::size_t j) {
        return loss_kind == Loss::bce ? a[j] - y[j] : Home::times_derivative(T(2) * (a[j] - y[j]), a[j]);
    };
    if (!update_record<Update>(weight, bias, velocity, x, in_features, out_features, delta, c)) {
        return RecordStep::update_not_finite;
    }
    return RecordStep::ok;
}
}  // namespace

namespace {
// The steps for one activation home and one update rule, compiled for each instruction set.
template <typename Home, typename Update, typename T>
CHAINRULE_TARGET_CLONES RecordSteps record_steps_with(T* weight, T* bias, T* velocity, T* z, T* a, double* losses,
                                                      const T* X, const T* Y, const std::size_t* rows,
                                                      std::size_t count, std::size_t in_features,
                                                      std::size_t out_features, Loss loss_kind,
                                                      StepScalars<T> c) {
    constexpr std::size_t kAhead = 16;  // records prefetched ahead of a shuffled step: it is shorter than a miss
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t r = rows ? rows[i] : i;
        if (rows && i + kAhead < count) {
            detail::prefetch_bytes(X + rows[i + kAhead] * in_features, in_features * sizeof(T));
            detail::prefetch_bytes(Y + rows[i + kAhead] * out_features, out_features * sizeof(T));
        }
        const RecordStep done = record_step<Home, Update>(weight, bias, velocity, z + i * out_features, a,
                                                          losses + i, X + r * in_features, Y + r * out_features,
                                                          in_features, out_features, loss_kind, c);
        if (done != RecordStep::ok) return {i, done};
        c.first = false;  // torch's momentum buffer starts as the first gradient
    }
    return {count, RecordStep::ok};
}
}  // namespace

template <typename T>
RecordSteps dense_record_steps(T* weight, T* bias, T* velocity, T* z, T* a, double* losses, const T* X, const T* Y,
                               const std::size_t* rows, std::size_t count, std::size_t in_features,
                               std::size_t out_features, Activation activation, Loss loss_kind,
                               const OptimizerOptions& optimizer, double lr, std::uint64_t steps) {
    // weight (OC, C), bias (OC), velocity (OC * C + OC) or null, X (., C), Y (., OC), rows (count) or null;
    // z (count, OC), a (OC), losses (count)
    // docs/math.md with B = 1, for each step: z = W x + b, a = f(z), dZ = a - y
    // (BCE + sigmoid) or 2 (a - y) f'(z) (MSE); g = dZ x^T and dZ, then SGD's rule
    // (plain: W <- W - lr dZ x^T, b <- b - lr dZ)
    assert(activation != Activation::softmax && loss_kind != Loss::cce);
    assert(optimizer.kind == OptimizerKind::sgd && optimizer.weight_decay == 0.0);
    const StepScalars<T> c = step_scalars<T>(optimizer, lr, steps);
    const bool momentum = optimizer_slots(optimizer) == 1;
    assert(momentum == (velocity != nullptr));
    const bool torch = optimizer.form == OptimizerForm::torch;
    return detail::with_activation(activation, [&](auto home) {
        using Home = decltype(home);
        auto run = [&](auto update) {
            return record_steps_with<Home, decltype(update)>(weight, bias, velocity, z, a, losses, X, Y, rows, count,
                                                             in_features, out_features, loss_kind, c);
        };
        if (!momentum) return run(PlainSgd{});
        return torch ? run(SgdRule<SgdTorch>{}) : run(SgdRule<SgdSklearn>{});
    });
}

template RecordSteps dense_record_steps<float>(float*, float*, float*, float*, float*, double*, const float*,
                                               const float*, const std::size_t*, std::size_t, std::size_t,
                                               std::size_t, Activation, Loss, const OptimizerOptions&, double,
                                               std::uint64_t);
template RecordSteps dense_record_steps<double>(double*, double*, double*, double*, double*, double*, const double*,
                                                const double*, const std::size_t*, std::size_t, std::size_t,
                                                std::size_t, Activation, Loss, const OptimizerOptions&, double,
                                                std::uint64_t);

}  // namespace chainrule
