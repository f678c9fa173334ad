// The elementwise activations over whole buffers: the batch kernels of
// kernels.hpp, looping over the homes of activations.hpp.
#include <cstring>

#include "kernels/activations.hpp"
#include "kernels/helpers.hpp"
#include "kernels/kernels.hpp"
#include "runtime/macros.hpp"
#include "runtime/thread_pool.hpp"

namespace chainrule {

template <typename T>
T sigmoid(T z) {
    return detail::Sigmoid::f(z);
}

namespace {

// The loops over one home: compiled for each instruction set (the lambdas of
// with_activation only pick which; a lambda would not be cloned).
template <typename Home, typename T>
CHAINRULE_TARGET_CLONES void activation_forward_range(T* out, const T* inp, std::size_t n) {
    if constexpr (std::is_same_v<Home, detail::Identity>) {
        if (out != inp) std::memmove(out, inp, n * sizeof(T));
    } else if constexpr (Home::kVectorizes) {
        detail::forward_values<Home>(out, inp, n);
    } else {
        for (std::size_t i = 0; i < n; ++i) out[i] = Home::f(inp[i]);
    }
}

template <typename Home, typename T>
CHAINRULE_TARGET_CLONES void activation_backward_range(T* dinp, const T* dout, const T* out, std::size_t n) {
    if constexpr (std::is_same_v<Home, detail::Identity>) {
        if (dinp != dout) std::memmove(dinp, dout, n * sizeof(T));
    } else {
#pragma omp simd
        for (std::size_t i = 0; i < n; ++i) dinp[i] = Home::times_derivative(dout[i], out[i]);
    }
}

}  // namespace

template <typename T>
void activation_forward(T* out, const T* inp, std::size_t n, Activation activation) {
    detail::with_activation(activation, [&](auto home) {
        detail::for_ranges(n, detail::kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
            activation_forward_range<decltype(home)>(out + begin, inp + begin, end - begin);
        });
    });
}

template <typename T>
void activation_backward(T* dinp, const T* dout, const T* out, std::size_t n, Activation activation) {
    detail::with_activation(activation, [&](auto home) {
        detail::for_ranges(n, detail::kElementwiseMinPart, 16, [&](std::size_t begin, std::size_t end) {
            activation_backward_range<decltype(home)>(dinp + begin, dout + begin, out + begin, end - begin);
        });
    });
}

#define CHAINRULE_INSTANTIATE(T)                                                                \
    template T sigmoid<T>(T);                                                                   \
    template void activation_forward<T>(T*, const T*, std::size_t, Activation);                 \
    template void activation_backward<T>(T*, const T*, const T*, std::size_t, Activation);

CHAINRULE_INSTANTIATE(float)
CHAINRULE_INSTANTIATE(double)

}  // namespace chainrule
