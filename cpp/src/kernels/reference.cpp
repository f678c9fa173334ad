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

template <typename T, typename Index>
void sparse_linear_forward(T* out, const SparseRows<T, Index>& inp, const T* weight, const T* bias,
                           std::size_t num_records, std::size_t in_features, std::size_t out_features) {
    for (std::size_t r = 0; r < num_records; ++r) {
        for (std::size_t j = 0; j < out_features; ++j) {
            T z = T(0);
            for (std::size_t e = inp.begin(r); e < inp.end(r); ++e) {
                z += inp.values[e] * weight[j * in_features + static_cast<std::size_t>(inp.indices[e])];
            }
            out[r * out_features + j] = z + bias[j];
        }
    }
}

template <typename T, typename Index>
void sparse_linear_backward(T* dweight, T* dbias, const T* dout, const SparseRows<T, Index>& inp,
                            std::size_t num_records, std::size_t in_features, std::size_t out_features,
                            bool accumulate) {
    if (!accumulate) {
        for (std::size_t i = 0; i < out_features * in_features; ++i) dweight[i] = T(0);
    }
    for (std::size_t j = 0; j < out_features; ++j) {
        T db = accumulate ? dbias[j] + dout[j] : dout[j];
        for (std::size_t r = 1; r < num_records; ++r) db += dout[r * out_features + j];
        dbias[j] = db;
    }
    for (std::size_t r = 0; r < num_records; ++r) {
        for (std::size_t e = inp.begin(r); e < inp.end(r); ++e) {
            const std::size_t k = static_cast<std::size_t>(inp.indices[e]);
            for (std::size_t j = 0; j < out_features; ++j) {
                dweight[j * in_features + k] += dout[r * out_features + j] * inp.values[e];
            }
        }
    }
}

#define CHAINRULE_REFERENCE_SPARSE(T, Index)                                                                     \
    template void sparse_linear_forward<T, Index>(T*, const SparseRows<T, Index>&, const T*, const T*,        \
                                                  std::size_t, std::size_t, std::size_t);                     \
    template void sparse_linear_backward<T, Index>(T*, T*, const T*, const SparseRows<T, Index>&, std::size_t, \
                                                   std::size_t, std::size_t, bool);
CHAINRULE_REFERENCE_SPARSE(float, std::int32_t)
CHAINRULE_REFERENCE_SPARSE(float, std::int64_t)
CHAINRULE_REFERENCE_SPARSE(double, std::int32_t)
CHAINRULE_REFERENCE_SPARSE(double, std::int64_t)

template void linear_forward<float>(float*, const float*, const float*, const float*, std::size_t, std::size_t,
                                    std::size_t);
template void linear_forward<double>(double*, const double*, const double*, const double*, std::size_t, std::size_t,
                                     std::size_t);
template void linear_backward<float>(float*, float*, float*, const float*, const float*, const float*, std::size_t,
                                     std::size_t, std::size_t, bool);
template void linear_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                      std::size_t, std::size_t, std::size_t, bool);

}  // namespace chainrule::reference
