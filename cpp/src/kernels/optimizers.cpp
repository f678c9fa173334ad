// One home per optimizer: the update rule of each, elementwise over the flat
// parameter buffer (docs/math.md, "Optimizers"). Every rule is one fused loop:
// it reads a parameter, its gradient and its state, and writes them back.
// The update is all or nothing: a first pass computes every new value without
// writing and checks that each is finite, a second pass writes; both are
// shared by the threads in ranges that depend on the size alone, each value
// computed alone, so the bits do not depend on the thread count.
#include <atomic>
#include <cmath>
#include <stdexcept>

#include "kernels/helpers.hpp"
#include "kernels/kernels.hpp"
#include "runtime/macros.hpp"
#include "runtime/thread_pool.hpp"

namespace chainrule {

namespace {

// The scalars of one step, in the parameters' dtype.
template <typename T>
struct StepScalars {
    T lr, momentum, weight_decay, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, bc2_sqrt;
    bool first, nesterov;
};

// Each rule: the new parameter from (p, g) and its state slots s0, s1, s2,
// which it updates in place (they are the caller's copies).

// SGD with momentum as torch.optim.SGD (dampening 0): b = g (first step) or
// mu b + g; d = g + mu b (Nesterov) or b; p - lr d. g includes wd p.
struct SgdTorch {
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T step(T p, T g, T& b, T&, T&, const StepScalars<T>& c) {
        g = g + c.weight_decay * p;
        b = c.first ? g : c.momentum * b + g;
        const T d = c.nesterov ? g + c.momentum * b : b;
        return p + (-c.lr) * d;
    }
};

// SGD with momentum as scikit-learn's SGDOptimizer: v = mu v - lr g;
// p + v, or p + (mu v - lr g) with Nesterov.
struct SgdSklearn {
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T step(T p, T g, T& v, T&, T&, const StepScalars<T>& c) {
        g = g + c.weight_decay * p;
        v = c.momentum * v - c.lr * g;
        return c.nesterov ? p + (c.momentum * v - c.lr * g) : p + v;
    }
};

// Adam and AdamW as torch.optim: m = lerp(m, g, 1 - beta1), v = beta2 v +
// (1 - beta2) g^2, (amsgrad: vmax = max(vmax, v)), p - (lr / bc1) m /
// (sqrt(v) / sqrt(bc2) + eps). Adam adds wd p to g; AdamW first scales p by
// 1 - lr wd (c.decay), with c.weight_decay 0.
template <bool kAmsgrad>
struct AdamTorch {
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T step(T p, T g, T& m, T& v, T& vmax, const StepScalars<T>& c) {
        p = p * c.decay;
        g = g + c.weight_decay * p;
        m = m + c.one_minus_beta1 * (g - m);
        v = c.beta2 * v + c.one_minus_beta2 * (g * g);
        T second = v;
        if constexpr (kAmsgrad) {
            vmax = vmax > v ? vmax : v;
            second = vmax;
        }
        const T denom = std::sqrt(second) / c.bc2_sqrt + c.eps;
        return p + (-c.step_size) * (m / denom);
    }
};

// Adam as scikit-learn's AdamOptimizer: m = beta1 m + (1 - beta1) g, v =
// beta2 v + (1 - beta2) g^2, p + (-lr_t m) / (sqrt(v) + eps), lr_t = lr
// sqrt(bc2) / bc1 (c.step_size).
struct AdamSklearn {
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T step(T p, T g, T& m, T& v, T&, const StepScalars<T>& c) {
        g = g + c.weight_decay * p;
        m = c.beta1 * m + c.one_minus_beta1 * g;
        v = c.beta2 * v + c.one_minus_beta2 * (g * g);
        return p + (-c.step_size * m) / (std::sqrt(v) + c.eps);
    }
};

// 1 when some new value of [begin, end) would not be finite; writes nothing.
template <typename Rule, int kSlots, typename T>
CHAINRULE_TARGET_CLONES detail::FloatBits<T> rule_non_finite(const T* params, const T* grads, const T* slot0,
                                                             const T* slot1, const T* slot2, std::size_t n,
                                                             StepScalars<T> c) {
    detail::FloatBits<T> non_finite = 0;
    for (std::size_t i = 0; i < n; ++i) {
        T s0 = kSlots > 0 ? slot0[i] : T(0), s1 = kSlots > 1 ? slot1[i] : T(0), s2 = kSlots > 2 ? slot2[i] : T(0);
        const T p = Rule::step(params[i], grads[i], s0, s1, s2, c);
        non_finite |= detail::non_finite_bits(p) | detail::non_finite_bits(s0) | detail::non_finite_bits(s1) |
                      detail::non_finite_bits(s2);
    }
    return non_finite;
}

template <typename Rule, int kSlots, typename T>
CHAINRULE_TARGET_CLONES void rule_apply(T* params, const T* grads, T* slot0, T* slot1, T* slot2, std::size_t n,
                                        StepScalars<T> c) {
    for (std::size_t i = 0; i < n; ++i) {
        T s0 = kSlots > 0 ? slot0[i] : T(0), s1 = kSlots > 1 ? slot1[i] : T(0), s2 = kSlots > 2 ? slot2[i] : T(0);
        params[i] = Rule::step(params[i], grads[i], s0, s1, s2, c);
        if constexpr (kSlots > 0) slot0[i] = s0;
        if constexpr (kSlots > 1) slot1[i] = s1;
        if constexpr (kSlots > 2) slot2[i] = s2;
    }
}

template <typename Rule, int kSlots, typename T>
bool update_with(T* params, const T* grads, std::size_t n, std::vector<T>* state, const StepScalars<T>& c) {
    // A slot the rule does not use stays empty: its pointer is never read.
    T* const s0 = state[0].data();
    T* const s1 = state[1].data();
    T* const s2 = state[2].data();
    auto at = [](T* slot, std::size_t begin) { return slot == nullptr ? slot : slot + begin; };
    std::atomic<bool> finite{true};
    detail::for_ranges(n, detail::kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
        if (rule_non_finite<Rule, kSlots>(params + begin, grads + begin, at(s0, begin), at(s1, begin),
                                          at(s2, begin), end - begin, c) != 0) {
            finite.store(false, std::memory_order_relaxed);
        }
    });
    if (!finite.load(std::memory_order_relaxed)) return false;
    detail::for_ranges(n, detail::kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
        rule_apply<Rule, kSlots>(params + begin, grads + begin, at(s0, begin), at(s1, begin), at(s2, begin),
                                 end - begin, c);
    });
    return true;
}

}  // namespace

int optimizer_slots(const OptimizerOptions& o) {
    if (o.kind == OptimizerKind::sgd) return o.momentum > 0.0 ? 1 : 0;
    return o.amsgrad ? 3 : 2;
}

template <typename T>
bool optimizer_update(T* params, const T* grads, std::size_t n, OptimizerState<T>& state,
                      const OptimizerOptions& o, double lr) {
    const int slots = optimizer_slots(o);
    if (o.kind == OptimizerKind::sgd && slots == 0 && o.weight_decay == 0.0) {
        if (!sgd_update(params, grads, n, static_cast<T>(lr))) return false;  // plain SGD: W <- W - lr dW
        ++state.steps;
        return true;
    }
    for (int s = 0; s < slots; ++s) {
        if (state.slots[s].size() != n) state.slots[s].assign(n, T(0));  // the first step: zeros
    }
    const double t = static_cast<double>(state.steps + 1);
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
    const double bc1 = 1.0 - std::pow(o.beta1, t), bc2 = 1.0 - std::pow(o.beta2, t);
    c.step_size = static_cast<T>(o.form == OptimizerForm::sklearn ? lr * std::sqrt(bc2) / bc1 : lr / bc1);
    c.bc2_sqrt = static_cast<T>(std::sqrt(bc2));
    c.first = state.steps == 0;
    c.nesterov = o.nesterov;
    const bool sklearn = o.form == OptimizerForm::sklearn;
    bool done;
    if (o.kind == OptimizerKind::sgd) {
        done = slots == 0 ? update_with<SgdTorch, 0>(params, grads, n, state.slots, c)  // wd without momentum
               : sklearn  ? update_with<SgdSklearn, 1>(params, grads, n, state.slots, c)
                          : update_with<SgdTorch, 1>(params, grads, n, state.slots, c);
    } else if (sklearn) {
        done = update_with<AdamSklearn, 2>(params, grads, n, state.slots, c);
    } else {
        done = o.amsgrad ? update_with<AdamTorch<true>, 3>(params, grads, n, state.slots, c)
                         : update_with<AdamTorch<false>, 2>(params, grads, n, state.slots, c);
    }
    if (done) ++state.steps;
    return done;
}

template <typename T>
void add_l2_gradient(T* dweight, const T* weight, std::size_t n, T scale) {
    detail::for_ranges(n, detail::kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
#pragma omp simd
        for (std::size_t i = begin; i < end; ++i) dweight[i] += scale * weight[i];  // dW += (alpha / B) W
    });
}

template <typename T>
double squared_norm(const T* values, std::size_t n) {
    double sum = 0.0;  // in double, one order whatever the thread count
    for (std::size_t i = 0; i < n; ++i) sum += static_cast<double>(values[i]) * static_cast<double>(values[i]);
    return sum;
}

#define CHAINRULE_INSTANTIATE(T)                                                                             \
    template bool optimizer_update<T>(T*, const T*, std::size_t, OptimizerState<T>&, const OptimizerOptions&, \
                                      double);                                                              \
    template void add_l2_gradient<T>(T*, const T*, std::size_t, T);                                          \
    template double squared_norm<T>(const T*, std::size_t);

CHAINRULE_INSTANTIATE(float)
CHAINRULE_INSTANTIATE(double)

}  // namespace chainrule
