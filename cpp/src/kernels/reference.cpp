#include "kernels/reference.hpp"

namespace chainrule::reference {

template <typename T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t num_records,
                    std::size_t in_features, std::size_t out_features) {
    for (std::size_t r = 0; r < num_records; ++r) {
        for (std::size_t j = 0; j < out_features; ++j) {
            T z = bias[j];
            for (std::size_t k = 0; k < in_features; ++k) z += inp[r * in_features + k] * weight[j * in_features + k];
            out[r * out_features + j] = z;
        }
    }
}

template <typename T>
void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     std::size_t num_records, std::size_t in_features, std::size_t out_features, bool accumulate) {
    for (std::size_t j = 0; j < out_features; ++j) {
        T db = accumulate ? dbias[j] : T(0);
        for (std::size_t r = 0; r < num_records; ++r) db += dout[r * out_features + j];
        dbias[j] = db;
        for (std::size_t k = 0; k < in_features; ++k) {
            T dw = accumulate ? dweight[j * in_features + k] : T(0);
            for (std::size_t r = 0; r < num_records; ++r) dw += dout[r * out_features + j] * inp[r * in_features + k];
            dweight[j * in_features + k] = dw;
        }
    }
    if (dinp == nullptr) return;
    for (std::size_t r = 0; r < num_records; ++r) {
        for (std::size_t k = 0; k < in_features; ++k) {
            T da = T(0);
            for (std::size_t j = 0; j < out_features; ++j) da += dout[r * out_features + j] * weight[j * in_features + k];
            dinp[r * in_features + k] = da;
        }
    }
}

template void linear_forward<float>(float*, const float*, const float*, const float*, std::size_t, std::size_t,
                                    std::size_t);
template void linear_forward<double>(double*, const double*, const double*, const double*, std::size_t, std::size_t,
                                     std::size_t);
template void linear_backward<float>(float*, float*, float*, const float*, const float*, const float*, std::size_t,
                                     std::size_t, std::size_t, bool);
template void linear_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                      std::size_t, std::size_t, std::size_t, bool);

}  // namespace chainrule::reference
