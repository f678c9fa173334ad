// One home per optimizer: the update rule of each, elementwise over the flat
// parameter buffer (docs/math.md, "Optimizers"). Every rule is one fused loop:
// it reads a parameter, its gradient and its state, and writes them back.
// The update is all or nothing: a first pass computes every new value without
// writing and checks that each is finite (Adam: first a cheaper bound), a
// second pass writes; both are
// shared by the threads in ranges that depend on the size alone, each value
// computed alone, so the bits do not depend on the thread count.
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <stdexcept>

#include "kernels/helpers.hpp"
#include "kernels/kernels.hpp"
#include "kernels/optimizer_rules.hpp"
#include "runtime/macros.hpp"
#include "runtime/thread_pool.hpp"

namespace chainrule {

namespace {

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

// Adam's cheaper check: the largest of Rule::bound and the new moments over
// [begin, end), as the bits of a float (all are >= 0, whose bits order as
// their values do; a NaN or an infinity is larger than any finite value);
// writes nothing. Integer maxima vectorize where float ones may not.
template <typename Rule, typename T>
CHAINRULE_TARGET_CLONES detail::FloatBits<T> rule_largest_bound(const T* params, const T* grads, const T* slot0,
                                                                const T* slot1, std::size_t n, StepScalars<T> c) {
    using Bits = detail::FloatBits<T>;
    Bits largest = 0;
    for (std::size_t i = 0; i < n; ++i) {
        T m = slot0[i], v = slot1[i];
        const T b = Rule::bound(params[i], grads[i], m, v, c);
        Bits here[3];
        const T values[3] = {b, std::abs(m), v};
        std::memcpy(here, values, sizeof(values));
        for (const Bits bits : here) largest = largest > bits ? largest : bits;
    }
    return largest;
}

template <typename Rule, typename = void>
struct HasBound : std::false_type {};
template <typename Rule>
struct HasBound<Rule, std::void_t<decltype(&Rule::template bound<float>)>> : std::true_type {};

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

// State slot `slot`'s values from `offset` on. A slot the rule does not use
// stays empty: its pointer, null, is never read.
template <typename T>
T* slot_at(Buffer<T>* state, int slot, std::size_t offset) {
    T* const data = state[slot].data();
    return data == nullptr ? data : data + offset;
}

// The rule over [first, first + n) of the buffers, unchecked, shared by the threads.
template <typename Rule, int kSlots, typename T>
void apply_with(T* params, const T* grads, std::size_t first, std::size_t n, Buffer<T>* state,
                const StepScalars<T>& c) {
    detail::for_ranges(n, detail::kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
        const std::size_t at = first + begin;
        rule_apply<Rule, kSlots>(params + at, grads + at, slot_at(state, 0, at), slot_at(state, 1, at),
                                 slot_at(state, 2, at), end - begin, c);
    });
}

template <typename Rule, int kSlots, typename T>
bool update_with(T* params, const T* grads, std::size_t n, Buffer<T>* state, const StepScalars<T>& c) {
    // Adam's rules first try a check without the square root and division
    // (adam_bound_holds), when the step's scalars allow it: it costs less
    // than computing every new value, and when it holds the exact check would
    // pass too.
    bool surely_finite = false;
    if constexpr (HasBound<Rule>::value) {
        if (adam_bound_applies(c)) {
            std::atomic<bool> bounded{true};
            detail::for_ranges(n, detail::kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
                const detail::FloatBits<T> largest =
                    rule_largest_bound<Rule>(params + begin, grads + begin, slot_at(state, 0, begin),
                                             slot_at(state, 1, begin), end - begin, c);
                if (!adam_bound_holds<T>(largest)) bounded.store(false, std::memory_order_relaxed);
            });
            surely_finite = bounded.load(std::memory_order_relaxed);
        }
    }
    if (!surely_finite) {
        std::atomic<bool> finite{true};
        detail::for_ranges(n, detail::kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
            if (rule_non_finite<Rule, kSlots>(params + begin, grads + begin, slot_at(state, 0, begin),
                                              slot_at(state, 1, begin), slot_at(state, 2, begin), end - begin,
                                              c) != 0) {
                finite.store(false, std::memory_order_relaxed);
            }
        });
        if (!finite.load(std::memory_order_relaxed)) return false;
    }
    apply_with<Rule, kSlots>(params, grads, 0, n, state, c);
    return true;
}

template <typename R>
struct RuleTag {
    using Rule = R;
};

// f(RuleTag<Rule>{}, std::integral_constant<int, kSlots>{}) for the options' rule.
template <typename F>
auto with_rule(const OptimizerOptions& o, F&& f) {
    using One = std::integral_constant<int, 1>;
    if (o.kind == OptimizerKind::sgd) {
        if (optimizer_slots(o) == 0) return f(RuleTag<SgdTorch>{}, std::integral_constant<int, 0>{});  // wd alone
        return o.form == OptimizerForm::sklearn ? f(RuleTag<SgdSklearn>{}, One{}) : f(RuleTag<SgdTorch>{}, One{});
    }
    if (o.form == OptimizerForm::sklearn) return f(RuleTag<AdamSklearn>{}, std::integral_constant<int, 2>{});
    return o.amsgrad ? f(RuleTag<AdamTorch<true>>{}, std::integral_constant<int, 3>{})
                     : f(RuleTag<AdamTorch<false>>{}, std::integral_constant<int, 2>{});
}

}  // namespace

int optimizer_slots(const OptimizerOptions& o) {
    if (o.kind == OptimizerKind::sgd) return o.momentum > 0.0 ? 1 : 0;
    return o.amsgrad ? 3 : 2;
}

template <typename T>
void prepare_slots(OptimizerState<T>& state, const OptimizerOptions& o, std::size_t n) {
    for (int s = 0; s < optimizer_slots(o); ++s) {
        if (state.slots[s].size() != n) state.slots[s].assign(n, T(0));  // before the first step: zeros
    }
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
    prepare_slots(state, o, n);
    const StepScalars<T> c = step_scalars<T>(o, lr, state.steps);
    const bool done = with_rule(o, [&](auto rule, auto kSlots) {
        return update_with<typename decltype(rule)::Rule, decltype(kSlots)::value>(params, grads, n, state.slots, c);
    });
    if (done) ++state.steps;
    return done;
}

template <typename T>
void optimizer_apply(T* params, const T* grads, std::size_t first, std::size_t n, OptimizerState<T>& state,
                     const OptimizerOptions& o, double lr) {
    if (o.kind == OptimizerKind::sgd && optimizer_slots(o) == 0 && o.weight_decay == 0.0) {
        sgd_apply(params + first, grads + first, n, static_cast<T>(lr));  // sgd_update's rounding
        return;
    }
    const StepScalars<T> c = step_scalars<T>(o, lr, state.steps);
    with_rule(o, [&](auto rule, auto kSlots) {
        apply_with<typename decltype(rule)::Rule, decltype(kSlots)::value>(params, grads, first, n, state.slots, c);
        return true;
    });
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
    // In double, in kNormLanes partial sums (value i goes to lane i mod
    // kNormLanes), then the lanes added pairwise: one fixed order whatever
    // the thread count, and independent chains of additions instead of one
    // chain as long as the weights. Not compiled per instruction set: with
    // FMA the compiler would fuse the square into the sum on some CPUs only.
    constexpr std::size_t kNormLanes = 16;
    double lanes[kNormLanes] = {};
    std::size_t i = 0;
    for (; i + kNormLanes <= n; i += kNormLanes) {
        for (std::size_t j = 0; j < kNormLanes; ++j) {
            const double v = static_cast<double>(values[i + j]);
            lanes[j] += v * v;
        }
    }
    for (std::size_t j = 0; i < n; ++i, ++j) {
        const double v = static_cast<double>(values[i]);
        lanes[j] += v * v;
    }
    for (std::size_t width = kNormLanes / 2; width > 0; width /= 2) {
        for (std::size_t j = 0; j < width; ++j) lanes[j] += lanes[j + width];
    }
    return lanes[0];
}

#define CHAINRULE_INSTANTIATE(T)                                                                             \
    template void prepare_slots<T>(OptimizerState<T>&, const OptimizerOptions&, std::size_t);                \
    template bool optimizer_update<T>(T*, const T*, std::size_t, OptimizerState<T>&, const OptimizerOptions&, \
                                      double);                                                              \
    template void optimizer_apply<T>(T*, const T*, std::size_t, std::size_t, OptimizerState<T>&,            \
                                     const OptimizerOptions&, double);                                      \
    template void add_l2_gradient<T>(T*, const T*, std::size_t, T);                                          \
    template double squared_norm<T>(const T*, std::size_t);

CHAINRULE_INSTANTIATE(float)
CHAINRULE_INSTANTIATE(double)

}  // namespace chainrule
