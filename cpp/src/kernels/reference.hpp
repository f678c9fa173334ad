// The naive twins of the optimized kernels: the plainest loops that compute
// docs/math.md's equations, kept as the reference the fast kernels are tested
// against (cpp/tests/test_kernels.cpp). Not used by the network.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kernels.hpp"

namespace chainrule::reference {

// out (B, OC) = inp (B, C) @ weight^T (OC, C) + bias (OC)
template <typename T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t num_records,
                    std::size_t in_features, std::size_t out_features);

// dweight (OC, C) (+)= dout^T @ inp, dbias (OC) (+)= column sums of dout,
// dinp (B, C) = dout @ weight when dinp is not null.
template <typename T>
void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     std::size_t num_records, std::size_t in_features, std::size_t out_features, bool accumulate);

// sparse_linear_forward's and sparse_linear_backward's sums, record by
// record: the same terms in the same order, so the same bits.
template <typename T, typename Index>
void sparse_linear_forward(T* out, const SparseRows<T, Index>& inp, const T* weight, const T* bias,
                           std::size_t num_records, std::size_t in_features, std::size_t out_features);
template <typename T, typename Index>
void sparse_linear_backward(T* dweight, T* dbias, const T* dout, const SparseRows<T, Index>& inp,
                            std::size_t num_records, std::size_t in_features, std::size_t out_features,
                            bool accumulate);

}  // namespace chainrule::reference
