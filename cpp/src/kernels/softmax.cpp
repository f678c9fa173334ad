// The softmax output activation: row-wise, not elementwise (each record's
// outputs are one probability distribution), so it has no home in
// activations.hpp; its derivative is applied only through cce_backward
// (losses.cpp). docs/math.md, "Softmax and categorical cross-entropy".
#include <algorithm>
#include <cassert>
#include <cmath>
#include <type_traits>

#include "kernels/kernels.hpp"

namespace chainrule {

template <typename T>
void softmax_forward(T* out, const T* inp, std::size_t num_records, std::size_t num_outputs, double* row_lse) {
    // out (B, K) = softmax of each row of inp (B, K); out may equal inp.
    //   docs/math.md: a_k = e^{z_k - m} / sum_j e^{z_j - m},  m = max_j z_j
    // In double, m, each e^{z_k - m} and their sum in k order are those of
    // cce_forward's log_sum_exp (losses.cpp), so m + log(sum) is its lse, bit for bit.
    assert(out && inp && num_outputs > 0);
    for (std::size_t r = 0; r < num_records; ++r) {
        const T* z = inp + r * num_outputs;
        T* a = out + r * num_outputs;
        const T m = *std::max_element(z, z + num_outputs);  // e^{z - m} <= 1: no overflow
        T sum = T(0);
        for (std::size_t k = 0; k < num_outputs; ++k) {
            a[k] = std::exp(z[k] - m);
            sum += a[k];  // >= 1: the largest term is e^0
        }
        if constexpr (std::is_same_v<T, double>) {
            if (row_lse != nullptr) row_lse[r] = m + std::log(sum);
        }
        const T inverse = T(1) / sum;
        for (std::size_t k = 0; k < num_outputs; ++k) a[k] *= inverse;
    }
}

template void softmax_forward<float>(float*, const float*, std::size_t, std::size_t, double*);
template void softmax_forward<double>(double*, const double*, std::size_t, std::size_t, double*);

}  // namespace chainrule
