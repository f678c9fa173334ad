// Small pieces that several kernels share: the dot product whose order of
// summation linear_forward and the fused one-record step both keep, the
// exponent test behind every finiteness check, and how large elementwise work
// must be before the threads share it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "runtime/macros.hpp"

namespace chainrule::detail {

// Elementwise work over at least twice this many values is shared by the
// core's threads, in ranges of at least this many (for_ranges); less stays on
// the calling thread, where it takes a few microseconds at most. Each value is
// computed alone, so the results do not depend on the thread count.
constexpr std::size_t kElementwiseMinPart = std::size_t{1} << 13;

// w . x (n): eight partial sums (one vector), then a fixed pairwise tree: no
// serial horizontal sum on the critical path. The last n % 8 elements are
// read as the last 8 of the row, lanes that were summed already adding 0, so
// that the tail is vector work too: its products rounded alone, then masked
// and added (an AND of their bits, which no compiler fuses into a
// multiply-add). One order of summation for linear_forward and
// dense_record_steps alike: always inlined, so that both compile it for the
// same instruction set. (More accumulators would shorten the chains, but GCC
// keeps them on the stack.)
template <typename T>
CHAINRULE_ALWAYS_INLINE T dot(const T* w, const T* x, std::size_t n) {
#if defined(__GNUC__)
    // Written with vectors: GCC made the loop below's tail a scalar branch
    // per lane, most of a short dot's time. The eight lanes are held in
    // vectors of 32 bytes, one of 8 floats or two of 4 doubles: an AVX
    // register each. (One vector of 8 doubles, 64 bytes, went through the
    // stack at every step where the clone has no 64-byte registers.)
    if (n >= 8) {
        constexpr std::size_t kWidth = 32 / sizeof(T), kParts = 8 / kWidth;
        typedef T Lanes __attribute__((vector_size(32)));
        using Int = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
        typedef Int Mask __attribute__((vector_size(32)));
        Lanes lanes[kParts] = {};  // never -0: adding +0 to a lane leaves it as it was
        Lanes xs, ws;
        std::size_t k = 0;
        for (; k + 8 <= n; k += 8) {
            for (std::size_t p = 0; p < kParts; ++p) {
                std::memcpy(&xs, x + k + p * kWidth, sizeof(Lanes));
                std::memcpy(&ws, w + k + p * kWidth, sizeof(Lanes));
                lanes[p] += xs * ws;
            }
        }
        if (const std::size_t rest = n - k; rest > 0) {  // lane l takes element n - 8 + l, if l + rest >= 8
            for (std::size_t p = 0; p < kParts; ++p) {
                std::memcpy(&xs, x + n - 8 + p * kWidth, sizeof(Lanes));
                std::memcpy(&ws, w + n - 8 + p * kWidth, sizeof(Lanes));
                const Lanes product = xs * ws;
                Mask keep;
                for (std::size_t l = 0; l < kWidth; ++l) keep[l] = p * kWidth + l + rest >= 8 ? -1 : 0;
                lanes[p] += (Lanes)((Mask)product & keep);
            }
        }
        T sums[8];
        std::memcpy(sums, lanes, sizeof(sums));
        return ((sums[0] + sums[4]) + (sums[2] + sums[6])) + ((sums[1] + sums[5]) + (sums[3] + sums[7]));
    }
#endif
    T lanes[8] = {};
    std::size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        for (std::size_t l = 0; l < 8; ++l) lanes[l] += x[k + l] * w[k + l];
    }
    const std::size_t rest = n - k;
    if (rest > 0 && n >= 8) {  // lane l takes element n - 8 + l, if it was not summed above
        const std::size_t base = n - 8;
        for (std::size_t l = 0; l < 8; ++l) lanes[l] += l + rest >= 8 ? x[base + l] * w[base + l] : T(0);
    } else {
        for (std::size_t l = 0; l < rest; ++l) lanes[l] += x[k + l] * w[k + l];
    }
    return ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
}

// The bits of a T, and its exponent's bits: inf and NaN are the values whose
// exponent bits are all set.
template <typename T>
using FloatBits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

template <typename T>
inline constexpr FloatBits<T> kExponentBits =
    static_cast<FloatBits<T>>(sizeof(T) == 4 ? 0x7F800000u : 0x7FF0000000000000u);

// 1 when v is inf or NaN, else 0: an integer, so that an OR of these over a
// loop vectorizes and has no floating-point chain to wait on (a bool OR does
// not vectorize).
template <typename T>
CHAINRULE_ALWAYS_INLINE FloatBits<T> non_finite_bits(T v) {
    FloatBits<T> bits;
    std::memcpy(&bits, &v, sizeof(T));
    return static_cast<FloatBits<T>>((bits & kExponentBits<T>) == kExponentBits<T>);
}
}  // namespace chainrule::detail
