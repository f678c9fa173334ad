// The first linear layer on sparse (CSR) records: Z = X W^T + b forward, and
// the weight and bias gradients backward, reading only the stored entries
// of X. The weights stay in the network's layout, W (OC, C) row-major: one
// output unit's weights are one contiguous row, so a thread that owns a few
// units reads the stored entries of the batch against those rows alone.
// Their naive twins are in reference.cpp.
#include <algorithm>
#include <cassert>
#include <cstdint>
#include <cstring>

#include "kernels/helpers.hpp"
#include "kernels/kernels.hpp"
#include "runtime/thread_pool.hpp"

namespace chainrule {

namespace {
// Output units are taken this many at a time, so that each stored entry's
// index and value are loaded once for all of them.
constexpr std::size_t kUnitBlock = 4;

// The stored entries of the batch (the work of one output unit).
template <typename T, typename Index>
std::size_t batch_entries(const SparseRows<T, Index>& inp, std::size_t num_records) {
    std::size_t entries = 0;
    for (std::size_t r = 0; r < num_records; ++r) entries += inp.end(r) - inp.begin(r);
    return entries;
}

// Units per part: enough that a part holds kElementwiseMinPart multiply-adds.
std::size_t min_units(std::size_t work_per_unit) {
    return std::max<std::size_t>(1, detail::kElementwiseMinPart / std::max<std::size_t>(1, work_per_unit));
}
}  // namespace

template <typename T, typename Index>
void sparse_linear_forward(T* out, const SparseRows<T, Index>& inp, const T* weight, const T* bias,
                           std::size_t num_records, std::size_t in_features, std::size_t out_features) {
    assert(out && weight && bias && inp.indptr);
    const std::size_t entries = batch_entries(inp, num_records);
    detail::for_ranges(out_features, min_units(entries), kUnitBlock, [&](std::size_t first, std::size_t last) {
        std::size_t j = first;
        for (; j + kUnitBlock <= last; j += kUnitBlock) {  // kUnitBlock units per pass over the entries
            const T* w = weight + j * in_features;
            for (std::size_t r = 0; r < num_records; ++r) {
                T z[kUnitBlock] = {};
                for (std::size_t e = inp.begin(r), stop = inp.end(r); e < stop; ++e) {
                    const std::size_t k = static_cast<std::size_t>(inp.indices[e]);
                    const T x = inp.values[e];
                    for (std::size_t u = 0; u < kUnitBlock; ++u) z[u] += x * w[u * in_features + k];  // z_j += x_k W_jk
                }
                for (std::size_t u = 0; u < kUnitBlock; ++u) out[r * out_features + j + u] = z[u] + bias[j + u];
            }
        }
        for (; j < last; ++j) {  // the units left over, one at a time (the same sums)
            const T* w = weight + j * in_features;
            for (std::size_t r = 0; r < num_records; ++r) {
                T z = T(0);
                for (std::size_t e = inp.begin(r), stop = inp.end(r); e < stop; ++e) {
                    z += inp.values[e] * w[static_cast<std::size_t>(inp.indices[e])];
                }
                out[r * out_features + j] = z + bias[j];
            }
        }
    });
}

template <typename T, typename Index>
void sparse_linear_backward(T* dweight, T* dbias, const T* dout, const SparseRows<T, Index>& inp,
                            std::size_t num_records, std::size_t in_features, std::size_t out_features,
                            bool accumulate) {
    assert(dweight && dbias && dout && inp.indptr);
    for (std::size_t r = 0; r < num_records; ++r) {  // db = sum over records of dZ, as linear_backward
        const T* d = dout + r * out_features;
        if (r == 0 && !accumulate) {
            std::memcpy(dbias, d, out_features * sizeof(T));
            continue;
        }
        for (std::size_t j = 0; j < out_features; ++j) dbias[j] += d[j];
    }
    // Each unit's row of dW is zeroed (without accumulate), then every stored
    // entry scatters into it: its work is the row plus the batch's entries.
    const std::size_t entries = batch_entries(inp, num_records);
    detail::for_ranges(out_features, min_units(entries + in_features), 1, [&](std::size_t first, std::size_t last) {
        for (std::size_t j = first; j < last; ++j) {
            T* dw = dweight + j * in_features;
            if (!accumulate) std::fill(dw, dw + in_features, T(0));
            for (std::size_t r = 0; r < num_records; ++r) {
                const T g = dout[r * out_features + j];
                for (std::size_t e = inp.begin(r), stop = inp.end(r); e < stop; ++e) {
                    dw[static_cast<std::size_t>(inp.indices[e])] += g * inp.values[e];  // dW_jk += dz_j x_k
                }
            }
        }
    });
}

#define CHAINRULE_INSTANTIATE(T, Index)                                                                          \
    template void sparse_linear_forward<T, Index>(T*, const SparseRows<T, Index>&, const T*, const T*,        \
                                                  std::size_t, std::size_t, std::size_t);                     \
    template void sparse_linear_backward<T, Index>(T*, T*, const T*, const SparseRows<T, Index>&, std::size_t, \
                                                   std::size_t, std::size_t, bool);

CHAINRULE_INSTANTIATE(float, std::int32_t)
CHAINRULE_INSTANTIATE(float, std::int64_t)
CHAINRULE_INSTANTIATE(double, std::int32_t)
CHAINRULE_INSTANTIATE(double, std::int64_t)

}  // namespace chainrule
