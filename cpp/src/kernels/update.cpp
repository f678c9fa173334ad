// The parameter update over the flat parameter buffer, and the finiteness
// and magnitude checks the network runs on its parameters and inputs.
#include <atomic>
#include <cstring>

#include "kernels/helpers.hpp"
#include "kernels/kernels.hpp"
#include "runtime/macros.hpp"
#include "runtime/thread_pool.hpp"

namespace chainrule {

namespace {
// 1 when some params - lr * grads (n) is not finite. An updated value is inf
// or NaN exactly when its exponent bits are all set: an OR of integer
// compares (non_finite_bits) has no floating-point add chain to wait on, and
// its horizontal reduction is cheap and exact. (No `omp simd reduction`: GCC
// lowers it through a stack array whose scalar-tail stores the final vector
// load cannot forward from, a stall on every tiny step. An integer OR
// vectorizes without it.)
template <typename T>
CHAINRULE_TARGET_CLONES detail::FloatBits<T> sgd_non_finite(const T* params, const T* grads, std::size_t n, T lr) {
    detail::FloatBits<T> non_finite = 0;
    for (std::size_t i = 0; i < n; ++i) non_finite |= detail::non_finite_bits(params[i] - lr * grads[i]);
    return non_finite;
}

template <typename T>
CHAINRULE_TARGET_CLONES void sgd_apply_range(T* params, const T* grads, std::size_t n, T lr) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) params[i] -= lr * grads[i];  // W <- W - lr dW
}

}  // namespace

template <typename T>
void sgd_apply(T* params, const T* grads, std::size_t n, T lr) {
    detail::for_ranges(n, detail::kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
        sgd_apply_range(params + begin, grads + begin, end - begin, lr);
    });
}

template <typename T>
bool sgd_update(T* params, const T* grads, std::size_t n, T lr) {
    // Every range is checked before any is written: all or nothing. Both
    // passes are shared by the threads.
    std::atomic<bool> finite{true};
    detail::for_ranges(n, detail::kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
        if (sgd_non_finite(params + begin, grads + begin, end - begin, lr) != 0) {
            finite.store(false, std::memory_order_relaxed);
        }
    });
    if (!finite.load(std::memory_order_relaxed)) return false;
    sgd_apply(params, grads, n, lr);
    return true;
}

namespace {
// The largest bits of |x| over data (n): the bits of |x| order as the values
// do, inf above every finite value and NaN above inf, so an integer maximum
// finds it without a floating-point compare chain. kLanes running maxima
// (four 64-byte vectors' worth) keep the maxima's dependency chains apart,
// so that the loop runs at load speed, as all_finite's does.
template <typename T>
CHAINRULE_TARGET_CLONES detail::FloatBits<T> largest_magnitude_bits(const T* data, std::size_t n) {
    using Bits = detail::FloatBits<T>;
    constexpr Bits kMagnitude = static_cast<Bits>(~Bits{0} >> 1);
    constexpr std::size_t kLanes = 4 * 64 / sizeof(T);
    Bits lanes[kLanes] = {};
    std::size_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
        for (std::size_t j = 0; j < kLanes; ++j) {
            Bits bits;
            std::memcpy(&bits, data + i + j, sizeof(T));
            bits &= kMagnitude;
            lanes[j] = lanes[j] > bits ? lanes[j] : bits;
        }
    }
    Bits largest = 0;
    for (; i < n; ++i) {
        Bits bits;
        std::memcpy(&bits, data + i, sizeof(T));
        bits &= kMagnitude;
        largest = largest > bits ? largest : bits;
    }
    for (const Bits lane : lanes) largest = largest > lane ? largest : lane;
    return largest;
}

// A scan's part: below this many values, one more thread costs more than it saves.
constexpr std::size_t kScanMinPart = std::size_t{1} << 16;
}  // namespace

template <typename T>
double largest_magnitude(const T* data, std::size_t n) {
    // Shared by the threads (it checks every fit's and predict's X): the
    // parts' maxima, bits again, combine by their maximum, whatever the
    // parts and their order.
    std::atomic<detail::FloatBits<T>> largest{0};
    detail::for_ranges(n, kScanMinPart, 16, [&](std::size_t begin, std::size_t end) {
        const detail::FloatBits<T> part = largest_magnitude_bits(data + begin, end - begin);
        detail::FloatBits<T> seen = largest.load(std::memory_order_relaxed);
        while (seen < part && !largest.compare_exchange_weak(seen, part, std::memory_order_relaxed)) {
        }
    });
    const detail::FloatBits<T> bits = largest.load(std::memory_order_relaxed);
    T value;
    std::memcpy(&value, &bits, sizeof(T));
    return static_cast<double>(value);
}

template <typename T>
CHAINRULE_TARGET_CLONES bool all_finite(const T* data, std::size_t n) {
    // inf and NaN are the values whose exponent bits are all set. An OR of
    // integer compares has no floating-point add chain to wait on (a sum of
    // x * 0 is bound by the add latency), and four vectors of them side by
    // side run at load speed: cheap enough for the network to check its
    // parameters on entry to every call. Written with vectors, not `omp simd
    // reduction`, whose epilogue goes through the stack (sgd_non_finite).
    using Bits = detail::FloatBits<T>;
    Bits non_finite = 0;
    std::size_t i = 0;
#if defined(__GNUC__)
    typedef Bits Vec __attribute__((vector_size(32)));
    constexpr std::size_t kWidth = 32 / sizeof(T);
    constexpr Bits kExponent = detail::kExponentBits<T>;
    auto mark = [&](Vec& lanes, std::size_t at) {  // all ones in the lanes holding inf or NaN
        Vec bits;
        std::memcpy(&bits, data + at, sizeof(Vec));
        lanes |= (Vec)((bits & kExponent) == kExponent);
    };
    Vec a = {}, b = {}, c = {}, d = {};
    for (; i + 4 * kWidth <= n; i += 4 * kWidth) {
        mark(a, i);
        mark(b, i + kWidth);
        mark(c, i + 2 * kWidth);
        mark(d, i + 3 * kWidth);
    }
    for (; i + kWidth <= n; i += kWidth) mark(a, i);
    a |= (b | c) | d;
    for (std::size_t l = 0; l < kWidth; ++l) non_finite |= a[l];
#endif
    for (; i < n; ++i) non_finite |= detail::non_finite_bits(data[i]);
    return non_finite == 0;
}

#define CHAINRULE_INSTANTIATE(T)                                        \
    template bool sgd_update<T>(T*, const T*, std::size_t, T);        \
    template void sgd_apply<T>(T*, const T*, std::size_t, T);         \
    template double largest_magnitude<T>(const T*, std::size_t);      \
    template bool all_finite<T>(const T*, std::size_t);

CHAINRULE_INSTANTIATE(float)
CHAINRULE_INSTANTIATE(double)

}  // namespace chainrule
