// The update rule of each optimizer, one home each (docs/math.md,
// "Optimizers"): the new parameter from its value p, its gradient g and its
// state slots, which the rule updates in place. optimizer_update
// (optimizers.cpp) runs a rule over the flat parameter buffer; the fused
// one-record steps (record_steps.cpp) run SGD's and Adam's rules inside their
// loop, on the same values, so both paths give the same bits.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "chainrule/optimizer.hpp"
#include "runtime/macros.hpp"

namespace chainrule {

// The scalars of one step, in the parameters' dtype.
template <typename T>
struct StepScalars {
    T lr, momentum, weight_decay, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size;
    T inv_eps;  // 1 / eps, for Adam's bound (below)
    T inv_bc2_sqrt;  // 1 / sqrt(1 - beta2^t)
    bool first, nesterov;
};

// Each rule: the new parameter from (p, g) and its state slots s0, s1, s2,
// which it updates in place (they are the caller's copies). The rules take
// the values as V, T itself or a vector of T (the fused one-record steps hold
// a row in vector registers): the same operations on each element, so the
// same bits.

// SGD with momentum as torch.optim.SGD (dampening 0): b = g (first step) or
// mu b + g; d = g + mu b (Nesterov) or b; p - lr d. g includes wd p.
struct SgdTorch {
    template <typename V, typename T>
    CHAINRULE_ALWAYS_INLINE static V step(V p, V g, V& b, V&, V&, const StepScalars<T>& c) {
        g = g + c.weight_decay * p;
        b = c.first ? g : c.momentum * b + g;
        const V d = c.nesterov ? g + c.momentum * b : b;
        return p + (-c.lr) * d;
    }
};

// SGD with momentum as scikit-learn's SGDOptimizer: v = mu v - lr g;
// p + v, or p + (mu v - lr g) with Nesterov.
struct SgdSklearn {
    template <typename V, typename T>
    CHAINRULE_ALWAYS_INLINE static V step(V p, V g, V& v, V&, V&, const StepScalars<T>& c) {
        g = g + c.weight_decay * p;
        v = c.momentum * v - c.lr * g;
        return c.nesterov ? p + (c.momentum * v - c.lr * g) : p + v;
    }
};

// The square root of a value, or of each lane of a vector (GCC's vector
// extensions: Adam's rules in the fused one-record steps).
template <typename V>
CHAINRULE_ALWAYS_INLINE V sqrt_of(V x) {
    if constexpr (std::is_floating_point_v<V>) {
        return std::sqrt(x);
    } else {
        constexpr int kLanes = static_cast<int>(sizeof(V) / sizeof(x[0]));
        V root;
        for (int e = 0; e < kLanes; ++e) root[e] = std::sqrt(x[e]);
        return root;
    }
}

// Adam and AdamW as torch.optim: m = lerp(m, g, 1 - beta1), v = beta2 v +
// (1 - beta2) g^2, (amsgrad: vmax = max(vmax, v)), p - (lr / bc1) m /
// (sqrt(v) / sqrt(bc2) + eps). Adam adds wd p to g; AdamW first scales p by
// 1 - lr wd (c.decay), with c.weight_decay 0. The division by sqrt(bc2) is
// a multiplication by its reciprocal, computed once per step: one division
// per parameter fewer, at the price of a rounding that may differ from
// torch's in the last bit of the denominator (docs/math.md, "Optimizers").
template <bool kAmsgrad>
struct AdamTorch {
    template <typename V, typename T>
    CHAINRULE_ALWAYS_INLINE static V step(V p, V g, V& m, V& v, V& vmax, const StepScalars<T>& c) {
        p = p * c.decay;
        g = g + c.weight_decay * p;
        m = m + c.one_minus_beta1 * (g - m);
        v = c.beta2 * v + c.one_minus_beta2 * (g * g);
        V second = v;
        if constexpr (kAmsgrad) {
            vmax = vmax > v ? vmax : v;
            second = vmax;
        }
        const V denom = sqrt_of(second) * c.inv_bc2_sqrt + c.eps;
        return p + (-c.step_size) * (m / denom);
    }

    // The values of step without its square root and division: the new
    // moments, and |p| + step_size |m| / eps, a bound on the new |p| (the
    // denominator is at least eps). adam_bound_applies and adam_bound_holds
    // (below) turn these into a proof that step's values are all finite.
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T bound(T p, T g, T& m, T& v, const StepScalars<T>& c) {
        p = p * c.decay;
        g = g + c.weight_decay * p;
        m = m + c.one_minus_beta1 * (g - m);
        v = c.beta2 * v + c.one_minus_beta2 * (g * g);
        return std::abs(p) + c.step_size * (std::abs(m) * c.inv_eps);
    }
};

// Adam as scikit-learn's AdamOptimizer: m = beta1 m + (1 - beta1) g, v =
// beta2 v + (1 - beta2) g^2, p + (-lr_t m) / (sqrt(v) + eps), lr_t = lr
// sqrt(bc2) / bc1 (c.step_size).
struct AdamSklearn {
    template <typename V, typename T>
    CHAINRULE_ALWAYS_INLINE static V step(V p, V g, V& m, V& v, V&, const StepScalars<T>& c) {
        g = g + c.weight_decay * p;
        m = c.beta1 * m + c.one_minus_beta1 * g;
        v = c.beta2 * v + c.one_minus_beta2 * (g * g);
        return p + (-c.step_size * m) / (sqrt_of(v) + c.eps);
    }

    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T bound(T p, T g, T& m, T& v, const StepScalars<T>& c) {
        g = g + c.weight_decay * p;
        m = c.beta1 * m + c.one_minus_beta1 * g;
        v = c.beta2 * v + c.one_minus_beta2 * (g * g);
        return std::abs(p) + c.step_size * (std::abs(m) * c.inv_eps);
    }
};

// Adam's bound (bound above) proves the step finite when the largest of its
// values and of the new moments over all parameters stays below a quarter of
// the dtype's range: the new parameter is p' = p'' - s m' / d with
// |p''| <= |p| and d >= eps, so |p'| is below the bound up to a few
// roundings, and sqrt(v') / sqrt(bc2) stays finite when 1 / sqrt(bc2) <=
// 1e10. The margin of 4 covers the roundings, in which the two computations
// may differ. adam_bound_applies says whether the step's scalars allow the
// proof at all; adam_bound_holds compares one range's largest value, given as
// the bits of a float (rule_largest_bound: a NaN or an infinity is larger
// than any finite value). When either fails, the exact check decides.
template <typename T>
T adam_bound_limit() {
    return std::numeric_limits<T>::max() / 4;
}

template <typename T>
bool adam_bound_applies(const StepScalars<T>& c) {
    const T limit = adam_bound_limit<T>();
    return c.eps > T(0) && c.inv_eps <= limit && c.step_size <= limit && c.inv_bc2_sqrt <= T(1e10);
}

template <typename T, typename Bits>
bool adam_bound_holds(Bits largest) {
    const T limit = adam_bound_limit<T>();
    Bits limit_bits;
    std::memcpy(&limit_bits, &limit, sizeof(limit));
    return largest <= limit_bits;
}

// The first t from which 1 - beta^t rounds to 1 in double (beta in [0, 1)):
// where beta^t is at most 2^-54, half the spacing of the doubles below 1 (a
// tie goes to 1, the even one). Near 54 ln 2 / -ln beta; pow itself decides,
// and beta^t only falls from there, by a factor of beta each step, far more
// than pow's rounding.
inline double bias_correction_saturates(double beta) {
    constexpr double kHalfSpacingBelowOne = 0x1p-54;
    double t = beta > 0.0 ? std::ceil(54.0 * 0.6931471805599453 / -std::log(beta)) : 1.0;
    while (t > 1.0 && std::pow(beta, t - 1.0) <= kHalfSpacingBelowOne) t -= 1.0;
    while (std::pow(beta, t) > kHalfSpacingBelowOne) t += 1.0;
    return t;
}

// 1 - beta^t, bit for bit as 1.0 - std::pow(beta, t) computes it (t >= 1),
// without the pow from the step where it rounds to 1 on. Adam asks for two
// every step, and pow is a call into libm, slower still once beta^t
// underflows (beta1 = 0.9 after ~6,700 steps): on one-record steps a large
// share of the step (docs/performance.md, "Adam's one-record steps"). Each
// thread keeps the last two betas it was asked for (Adam's pair) with the
// step where each saturates.
inline double bias_correction(double beta, double t) {
    struct Saturation {
        double beta, from;
    };
    thread_local Saturation seen[2] = {{-1.0, 0.0}, {-1.0, 0.0}};
    if (seen[0].beta != beta) {
        if (seen[1].beta == beta) {
            std::swap(seen[0], seen[1]);
        } else {
            seen[1] = seen[0];
            seen[0] = {beta, bias_correction_saturates(beta)};
        }
    }
    return t >= seen[0].from ? 1.0 : 1.0 - std::pow(beta, t);
}

// Adam's scalars that change from step to step, for its step t (from 1):
// StepScalars' step_size and inv_bc2_sqrt. `settled`: both bias
// corrections are 1, and so are they for every later step.
template <typename T>
struct AdamStepScalars {
    T step_size, inv_bc2_sqrt;
    bool settled;
};

template <typename T>
AdamStepScalars<T> adam_step_scalars(const OptimizerOptions& o, double lr, double t) {
    const double bc1 = bias_correction(o.beta1, t), bc2 = bias_correction(o.beta2, t);
    return {static_cast<T>(o.form == OptimizerForm::sklearn ? lr * std::sqrt(bc2) / bc1 : lr / bc1),
            static_cast<T>(1.0 / std::sqrt(bc2)), bc1 == 1.0 && bc2 == 1.0};
}

// The scalars of the step after `steps` steps of the run, at rate lr.
template <typename T>
StepScalars<T> step_scalars(const OptimizerOptions& o, double lr, std::uint64_t steps) {
    const double t = static_cast<double>(steps + 1);
    const bool adamw = o.kind == OptimizerKind::adamw;
    StepScalars<T> c{};
    c.lr = static_cast<T>(lr);
    c.momentum = static_cast<T>(o.momentum);
    c.weight_decay = static_cast<T>(adamw ? 0.0 : o.weight_decay);
    c.decay = static_cast<T>(adamw ? 1.0 - lr * o.weight_decay : 1.0);
    c.beta1 = static_cast<T>(o.beta1);
    c.one_minus_beta1 = static_cast<T>(1.0 - o.beta1);
    c.beta2 = static_cast<T>(o.beta2);
    c.one_minus_beta2 = static_cast<T>(1.0 - o.beta2);
    c.eps = static_cast<T>(o.eps);
    c.inv_eps = T(1) / c.eps;
    const AdamStepScalars<T> adam = adam_step_scalars<T>(o, lr, t);
    c.step_size = adam.step_size;
    c.inv_bc2_sqrt = adam.inv_bc2_sqrt;
    c.first = steps == 0;
    c.nesterov = o.nesterov;
    return c;
}

}  // namespace chainrule
