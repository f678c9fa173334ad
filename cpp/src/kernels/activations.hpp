// One home per elementwise activation: f(z) and its derivative beside it,
// written through the output a = f(z) (docs/math.md, "Activations"). The batch
// kernels (activation_forward and activation_backward) and the fused
// one-record step (record_steps.cpp) both call these, so the two compute the
// same bits. softmax is row-wise, not elementwise: softmax.cpp.
//
// Adding an activation: a struct here, a case in with_activation, its name in
// names.cpp (and an enum value appended in chainrule/names.hpp).
#pragma once

#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "chainrule/names.hpp"
#include "runtime/fast_math.hpp"
#include "runtime/macros.hpp"

namespace chainrule::detail {

// Each home: f(z); times_derivative(d, a) = d * f'(z) given a = f(z); and
// whether a loop of f vectorizes (std::tanh is a libm call per element).
// Always inlined, so that every kernel compiles them for its own
// instruction set (runtime/macros.hpp) and the fused and batch paths agree.
struct Sigmoid {
    static constexpr bool kVectorizes = true;
    // The logistic function, stable for every finite z: e^{-|z|} lies in
    // (0, 1], so nothing overflows; for z < 0, 1/(1+e^{-z}) = e^{z}/(1+e^{z}),
    // which underflows to 0 instead of 1/inf. The numerator is selected, not
    // the result: branch-free, one rounding, and no multiply after the
    // division on the critical path.
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T f(T z) {
        const T e = exp_nonpositive(-std::abs(z));
        return (z >= T(0) ? T(1) : e) / (T(1) + e);
    }
    // f's bits for |z| <= in_range<T>() (not NaN), in fewer operations:
    // e^{-|z|} is a normal number there (exp_nonpositive's kNormal).
    template <typename T>
    static constexpr T in_range() { return -kExpNormalFrom<T>; }
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T f_in_range(T z) {
        const T e = exp_nonpositive<T, true>(-std::abs(z));
        return (z >= T(0) ? T(1) : e) / (T(1) + e);
    }
    // T may also be a vector of values (small_linear.cpp): 1 - a takes the 1 into each lane.
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T times_derivative(T d, T a) { return d * (a * (1 - a)); }  // sigma'(z) = a (1 - a)
};

struct Identity {
    static constexpr bool kVectorizes = true;
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T f(T z) { return z; }
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T times_derivative(T d, T) { return d; }  // f'(z) = 1
};

struct Tanh {
    static constexpr bool kVectorizes = false;
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T f(T z) { return std::tanh(z); }
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T times_derivative(T d, T a) { return d * (T(1) - a * a); }  // tanh'(z) = 1 - a^2
};

struct Relu {
    static constexpr bool kVectorizes = true;
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T f(T z) { return z > T(0) ? z : T(0); }
    // T may also be a vector of values (small_linear.cpp): the compare and the select work lane by lane.
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T times_derivative(T d, T a) { return a > 0 ? d : T{}; }  // 1 if a > 0 else 0 (0 at z = 0)
};

// max(z, 0) + 0.01 min(z, 0), torch.nn.LeakyReLU's default slope. a > 0
// exactly when z > 0, so the derivative reads the output as relu's does.
struct LeakyRelu {
    static constexpr bool kVectorizes = true;
    static constexpr double kSlope = 0.01;
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T f(T z) { return z > T(0) ? z : T(kSlope) * z; }
    template <typename T>
    CHAINRULE_ALWAYS_INLINE static T times_derivative(T d, T a) { return a > T(0) ? d : T(kSlope) * d; }  // 1 if a > 0 else 0.01
};

// The largest of the bits of |v[i]| over i < n (0 for n = 0): a value's
// bits without its sign order as the magnitudes do, inf above every finite
// value and NaN above inf, so an integer maximum finds it, in signed
// integers (AVX2 has their maximum). All |v[i]| <= limit (no NaN) exactly
// when this is at most magnitude_bits(limit); some v[i] is inf or NaN exactly
// when it is at least magnitude_bits(inf).
template <typename T>
using MagnitudeBits = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;

template <typename T>
CHAINRULE_ALWAYS_INLINE MagnitudeBits<T> magnitude_bits(T v) {
    return bit_cast<MagnitudeBits<T>>(v) & std::numeric_limits<MagnitudeBits<T>>::max();
}

template <typename T>
CHAINRULE_ALWAYS_INLINE MagnitudeBits<T> largest_magnitude_bits_of(const T* v, std::size_t n) {
    MagnitudeBits<T> largest = 0;
#pragma omp simd reduction(max : largest)
    for (std::size_t i = 0; i < n; ++i) {
        const MagnitudeBits<T> bits = magnitude_bits(v[i]);
        largest = bits > largest ? bits : largest;
    }
    return largest;
}

// out[i] = Home::f(inp[i]) for i < n, given largest_magnitude_bits_of(inp,
// n): the loop of activation_forward (activations.cpp), of the small layers'
// product with its sigmoid and of their predict (small_linear.cpp), compiled
// in the instruction set of its caller. simdlen asks for 64 bytes of values
// an iteration: one AVX-512 register (GCC 12 keeps the AVX2 copy at one
// 32-byte vector, and two of them written out by hand measured no faster).
// Each value is computed alone, so the width changes no bit. The sigmoid
// takes f_in_range when every input is in its range (about eight operations
// a vector fewer).
template <typename Home, typename T>
CHAINRULE_ALWAYS_INLINE void forward_values_knowing(T* out, const T* inp, std::size_t n,
                                                    MagnitudeBits<T> largest) {
    if constexpr (std::is_same_v<Home, Sigmoid>) {
        if (largest <= magnitude_bits(Sigmoid::in_range<T>())) {
#pragma omp simd simdlen(64 / sizeof(T))
            for (std::size_t i = 0; i < n; ++i) out[i] = Sigmoid::f_in_range(inp[i]);
            return;
        }
    }
#pragma omp simd simdlen(64 / sizeof(T))
    for (std::size_t i = 0; i < n; ++i) out[i] = Home::f(inp[i]);
}

// The same, reading the inputs' largest magnitude first where f needs it
// (the sigmoid: a pass of three operations a vector).
template <typename Home, typename T>
CHAINRULE_ALWAYS_INLINE void forward_values(T* out, const T* inp, std::size_t n) {
    const MagnitudeBits<T> largest = std::is_same_v<Home, Sigmoid> ? largest_magnitude_bits_of(inp, n) : 0;
    forward_values_knowing<Home>(out, inp, n, largest);
}

// op(Home{}) for the home of `activation` (not softmax: it has none).
template <typename Op>
decltype(auto) with_activation(Activation activation, Op&& op) {
    switch (activation) {
        case Activation::sigmoid: return op(Sigmoid{});
        case Activation::tanh: return op(Tanh{});
        case Activation::relu: return op(Relu{});
        case Activation::leaky_relu: return op(LeakyRelu{});
        case Activation::softmax: assert(false && "softmax is row-wise: softmax_forward, cce_backward"); break;
        case Activation::identity: break;
    }
    return op(Identity{});
}

}  // namespace chainrule::detail
