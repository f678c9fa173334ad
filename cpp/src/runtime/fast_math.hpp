// exp and log1p for the ranges the kernels need, written without branches or
// calls so that a loop over them vectorizes (`omp simd`); std::exp and
// std::log1p are calls into libm, one element at a time. Both are accurate to
// a few units in the last place (Cody-Waite reduction with Taylor/fdlibm
// polynomials), far inside docs/math.md's 1e-10 agreement in float64. The same
// functions serve scalar and vector code, so a value never depends on which;
// always inlined, so that each kernel computes them in its own instruction set
// (a copy left out of line is compiled for the baseline, without fused
// multiply-adds, and rounds differently).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "runtime/macros.hpp"

namespace chainrule::detail {

template <typename To, typename From>
inline To bit_cast(From from) {
    static_assert(sizeof(To) == sizeof(From), "bit_cast between types of one size");
    To to;
    std::memcpy(&to, &from, sizeof(To));
    return to;
}

// The x from which e^x is a normal number with a margin: n = round(x /
// ln 2) >= -124 in float, >= -1010 in double, and the smallest normal
// numbers are 2^-126 and 2^-1022 (exp_nonpositive's kNormal).
template <typename T>
constexpr T kExpNormalFrom = sizeof(T) == 4 ? T(-86.0) : T(-700.0);

// e^x for x <= 0 (and NaN, which it returns). Exact limits: 1 at 0, 0 where
// e^x rounds to 0 (x below about -745 in double, -104 in float); subnormal
// results in between are kept. kNormal: for x >= kExpNormalFrom<T> alone
// (not NaN), the same bits in fewer operations: no clamp, no select, and 2^n
// in one factor (below).
template <typename T, bool kNormal = false>
CHAINRULE_ALWAYS_INLINE T exp_nonpositive(T x) {
    static_assert(std::is_floating_point_v<T>, "float or double");
    constexpr bool single = sizeof(T) == 4;
    using Bits = std::conditional_t<single, std::int32_t, std::int64_t>;
    constexpr int mantissa_bits = single ? 23 : 52;
    // Round x / ln2 to the nearest integer n by adding 1.5 * 2^mantissa_bits:
    // n then sits in the low bits of `shifted`.
    constexpr T shifter = single ? T(12582912.0) : T(6755399441055744.0);
    constexpr T log2e = T(1.4426950408889634);
    constexpr T ln2_hi = single ? T(0.693145751953125) : T(0.6931471803691238);
    constexpr T ln2_lo = single ? T(1.428606765330187e-06) : T(1.9082149292705877e-10);
    constexpr T underflow = single ? T(-104.0) : T(-746.0);  // e^x rounds to 0 below these

    const T xc = kNormal || !(x < underflow) ? x : underflow;  // keeps n in range; the select below gives 0
    const T n = (xc * log2e + shifter) - shifter;
    const T r = (xc - n * ln2_hi) - n * ln2_lo;  // x = n ln2 + r, |r| <= ln2/2
    // e^r by its Taylor series: 8 terms in float (error < 2^-26), 14 in double
    // (< 2^-57), as 1 + q, q = r + r^2 t(r): the two largest terms are added last,
    // so the result keeps the accuracy of Horner's scheme, while t is
    // evaluated in Estrin's scheme (pairs, then pairs of pairs, in powers r^2,
    // r^4, r^8): its dependency chain is 3-4 multiply-adds long where Horner's
    // is 6-12, and a loop over exp is bound by that chain's latency.
    const T r2 = r * r;
    const T r4 = r2 * r2;
    T t;
    if constexpr (single) {
        const T t01 = T(1.0 / 2) + T(1.0 / 6) * r;
        const T t23 = T(1.0 / 24) + T(1.0 / 120) * r;
        const T t45 = T(1.0 / 720) + T(1.0 / 5040) * r;
        t = (t01 + t23 * r2) + t45 * r4;
    } else {
        const T r8 = r4 * r4;
        const T t01 = T(1.0 / 2) + T(1.0 / 6) * r;
        const T t23 = T(1.0 / 24) + T(1.0 / 120) * r;
        const T t45 = T(1.0 / 720) + T(1.0 / 5040) * r;
        const T t67 = T(1.0 / 40320) + T(1.0 / 362880) * r;
        const T t89 = T(1.0 / 3628800) + T(1.0 / 39916800) * r;
        const T t1011 = T(1.0 / 479001600) + T(1.0 / 6227020800.0) * r;
        t = ((t01 + t23 * r2) + (t45 + t67 * r2) * r4) + (t89 + t1011 * r2) * r8;
    }
    const T q = r + r2 * t;  // e^r = 1 + q
    // 2^v for an integer v: v + shifter + bias holds v + bias in its low bits,
    // which the left shift moves into the exponent field (the shifter's own
    // bit falls off the top). No integer conversion, no arithmetic shift
    // (AVX2 has none for 64-bit lanes).
    using UBits = std::make_unsigned_t<Bits>;
    constexpr T biased_shifter = shifter + T(single ? 127 : 1023);
    if constexpr (kNormal) {
        // 1 + q rounded, times 2^n: the bits of the two factors below, which
        // round (1 + q) 2^a once and scale a normal number by 2^b. Not the
        // multiply-add q 2^n + 2^n: without FMA (the baseline copy), q 2^n
        // could be subnormal and rounded twice.
        const T scale = bit_cast<T>(static_cast<UBits>(bit_cast<UBits>(n + biased_shifter) << mantissa_bits));
        return (T(1) + q) * scale;
    }
    // 2^n in two factors 2^a 2^b (a = n/2 rounded, b = n - a), each a normal
    // number, so that subnormal results come out right with one rounding.
    const T a = (n * T(0.5) + shifter) - shifter;
    const T b = n - a;
    const T scale_a = bit_cast<T>(static_cast<UBits>(bit_cast<UBits>(a + biased_shifter) << mantissa_bits));
    const T scale_b = bit_cast<T>(static_cast<UBits>(bit_cast<UBits>(b + biased_shifter) << mantissa_bits));
    const T result = (q * scale_a + scale_a) * scale_b;  // (1 + q) 2^a 2^b, the 1 + q in the multiply-add
    return x < underflow ? T(0) : result;
}

// log(1 + e) for e in [0, 1], in double (fdlibm's log kernel): the
// log(1 + e^{-|z|}) term of the binary cross-entropy.
CHAINRULE_ALWAYS_INLINE double log1p_unit(double e) {
    // 1 + e = 2^k (1 + f) with 1 + f in [sqrt(2)/2, sqrt(2)]; f is exact for k = 0
    // and within an ulp of it for k = 1.
    const bool k = e > 0.41421356237309503;
    const double f_half = (e - 1.0) * 0.5;  // computed either way: selects, no branches
    const double f = k ? f_half : e;
    const double s = f / (2.0 + f);
    const double z = s * s;
    // The coefficients below are fdlibm's Lg1..Lg7 (e_log.c; s_log1p.c has the
    // same as Lp1..Lp7), and the scheme around them (s = f / (2 + f), hfsq)
    // follows fdlibm's log. fdlibm's notice, kept as it asks:
    //   Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
    //   Developed at SunSoft, a Sun Microsystems, Inc. business.
    //   Permission to use, copy, modify, and distribute this
    //   software is freely granted, provided that this notice
    //   is preserved.
    const double R = z * (6.666666666666735130e-01 +
                     z * (3.999999999940941908e-01 +
                     z * (2.857142874366239149e-01 +
                     z * (2.222219843214978396e-01 +
                     z * (1.818357216161805012e-01 +
                     z * (1.531383769920937332e-01 +
                     z * 1.479819860511658591e-01))))));
    const double hfsq = 0.5 * f * f;
    const double log1pf = f - (hfsq - s * (hfsq + R));
    const double with_ln2 = 0.6931471805599453 + log1pf;
    return k ? with_ln2 : log1pf;
}

}  // namespace chainrule::detail
