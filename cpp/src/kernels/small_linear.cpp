// The linear layer's products for small layers, the records streamed through
// blocks of the result held in registers, the weights read from L1: for the
// shapes of the benchmark's W2 (30-16-1) and W3 (10-32-1), where a product
// of a 32-record batch is ~15k multiply-adds and the GEMM's packing and call
// cost as much as the math. linear.cpp decides which layers come here
// (small_linear_forward_fits, single_output_fits, small_linear_backward_fits).
//
// Shapes: B records, C inputs, OC outputs; V the lanes of a 32-byte vector
// (8 float, 4 double); the output units, or the inputs, are cut into vectors
// of V, the last one overlapping its neighbour when V does not divide them
// (each lane computes a whole value, so a value computed twice is the same).
//   small_linear_forward   out (B, OC) = inp (B, C) @ weight^T (OC, C) + bias (OC)   2 <= OC <= 4V, C (4V) <= 2048
//   single_output_forward  out (B, 1) = inp (B, C) @ weight^T (1, C) + bias (1)      C a multiple of 8
//   small_linear_backward  dweight (OC, C) (+)= dout^T @ inp,  dbias (OC) (+)= sum_r dout,
//                          dinp (B, C) = dout @ weight              V <= C, OC C <= 2048, and OC <= 3
//                                                                   or B <= 64 and C <= 128
// Orders of summation (docs/math.md, "The order of each sum"), FMA where the target has it:
//   z_rj   = (((0 + x_r0 w_j0) + x_r1 w_j1) + ... ) + b_j
//   z_r    = detail::dot(w, x_r) + b                                               (one output)
//   dW_jk  = (((0 + dz_0j x_0k) + dz_1j x_1k) + ...), then + dW_jk with accumulate  (one_sum)
//          = (((dW_jk or dz_0j x_0k) + dz_1j x_1k) + ...)                         (!one_sum)
//   db_j   = (((db_j or dz_0j) + dz_1j) + ...)
//   dA_rk  = (((0 + dz_r0 W_0k) + dz_r1 W_1k) + ...)
// one_sum is the order of a GEMM call (each value a sum from zero, then added
// to C), !one_sum that of linear.cpp's loops (record by record into dW).
// How a kernel blocks its work (which registers hold which sums, dW or dW^T)
// never changes a value: every value is one of these sums, whole.
// The vector helpers below (and Sigmoid::times_derivative, which they call on
// vectors) are always inlined, in this file only: no vector crosses a call,
// so the compiler's note that returning one without AVX changes the ABI
// concerns no call here. (Before the includes: the note is reported where the
// function is written. GCC and Clang both read this pragma.)
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#include <algorithm>
#include <cassert>
#include <cstring>
#include <numeric>
#include <type_traits>

#include "kernels/activations.hpp"
#include "kernels/helpers.hpp"
#include "kernels/small_linear.hpp"
#include "runtime/macros.hpp"
#include "runtime/thread_pool.hpp"

#if CHAINRULE_SMALL_LINEAR

namespace chainrule::detail {

namespace {

// A 32-byte vector: one ymm register with AVX2, two xmm in the baseline copy.
template <typename T>
struct VectorOf;
template <>
struct VectorOf<float> {
    typedef float type __attribute__((vector_size(32)));
};
template <>
struct VectorOf<double> {
    typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using Vec = typename VectorOf<T>::type;

template <typename T>
constexpr std::size_t kLanes = 32 / sizeof(T);

template <typename T>
CHAINRULE_ALWAYS_INLINE Vec<T> load(const T* p) {
    Vec<T> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <typename T>
CHAINRULE_ALWAYS_INLINE void store(T* p, const Vec<T>& v) {
    std::memcpy(p, &v, sizeof v);
}

// Where vector i of a run of n >= V values starts: V i, the last one
// overlapping so that it ends at n.
template <typename T>
CHAINRULE_ALWAYS_INLINE std::size_t vector_start(std::size_t i, std::size_t n) {
    return std::min(i * kLanes<T>, n - kLanes<T>);
}

template <typename T>
CHAINRULE_ALWAYS_INLINE std::size_t vectors_over(std::size_t n) {
    return (n + kLanes<T> - 1) / kLanes<T>;
}

// ---- forward ----

// R records of z (their J output vectors) at once: per input k, J vectors of
// W^T (packed) and one broadcast of x_rk per record. The R J accumulators
// stay in registers only if what else an input k holds fits beside them: with
// AVX2's 16 registers, J vectors of W^T and one broadcast at a time where
// J < R (W2's J = 2, R = 6: 15), else one vector of W^T and the R broadcasts
// (J = 4, R = 3: 16). The other order spills accumulators to the stack (a
// store and a reload in each one's chain of multiply-adds). Either order
// gives every accumulator the same multiply-adds in k order.
template <typename T, int J, int R>
CHAINRULE_ALWAYS_INLINE void forward_records(T* out, const T* inp, const T* packed, const Vec<T>* bias,
                                             std::size_t in_features, std::size_t out_features) {
    Vec<T> acc[R][J] = {};
    for (std::size_t k = 0; k < in_features; ++k) {
        const T* w = packed + k * J * kLanes<T>;
        if constexpr (J < R) {
            Vec<T> wv[J];
#pragma GCC unroll 4
            for (int j = 0; j < J; ++j) wv[j] = load(w + j * kLanes<T>);
#pragma GCC unroll 12
            for (int i = 0; i < R; ++i) {
                const T x = inp[i * in_features + k];
#pragma GCC unroll 4
                for (int j = 0; j < J; ++j) acc[i][j] += x * wv[j];  // z_rj += x_rk w_jk
            }
        } else {
#pragma GCC unroll 4
            for (int j = 0; j < J; ++j) {
                const Vec<T> wv = load(w + j * kLanes<T>);
#pragma GCC unroll 12
                for (int i = 0; i < R; ++i) acc[i][j] += inp[i * in_features + k] * wv;  // z_rj += x_rk w_jk
            }
        }
    }
    for (int i = 0; i < R; ++i) {
        T* z = out + i * out_features;
        if (out_features >= kLanes<T>) {
            for (int j = 0; j < J; ++j) store(z + vector_start<T>(std::size_t(j), out_features), acc[i][j] + bias[j]);
        } else {  // one vector, partly padding
            T lanes[kLanes<T>];
            store(lanes, acc[i][0] + bias[0]);
            std::memcpy(z, lanes, out_features * sizeof(T));
        }
    }
}

// The lanes I... of the concatenation of a and b (0 to V - 1: a's, V to
// 2V - 1: b's): GCC's __builtin_shuffle, or Clang's __builtin_shufflevector.
typedef int IndexOf4 __attribute__((vector_size(32)));
typedef long long IndexOf8 __attribute__((vector_size(32)));

template <int... I, typename Vector>
CHAINRULE_ALWAYS_INLINE Vector shuffle(const Vector& a, const Vector& b) {
#if defined(__clang__)
    return __builtin_shufflevector(a, b, I...);
#else
    using Index = std::conditional_t<sizeof(a[0]) == 4, IndexOf4, IndexOf8>;
    return __builtin_shuffle(a, b, Index{I...});
#endif
}

// rows[i] = column i of the V x V block that rows holds: three rounds of
// two-vector shuffles (the unpack, shuffle and 128-bit permute of AVX).
CHAINRULE_ALWAYS_INLINE void transpose_block(Vec<float>* rows) {
    Vec<float> a[8], b[8];
    for (int i = 0; i < 8; i += 2) {
        a[i] = shuffle<0, 8, 1, 9, 4, 12, 5, 13>(rows[i], rows[i + 1]);
        a[i + 1] = shuffle<2, 10, 3, 11, 6, 14, 7, 15>(rows[i], rows[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {  // b[i + c]: columns c and c + 4 of rows i to i + 3
        for (int h = 0; h < 2; ++h) {
            b[i + 2 * h] = shuffle<0, 1, 8, 9, 4, 5, 12, 13>(a[i + h], a[i + h + 2]);
            b[i + 2 * h + 1] = shuffle<2, 3, 10, 11, 6, 7, 14, 15>(a[i + h], a[i + h + 2]);
        }
    }
    for (int i = 0; i < 4; ++i) {
        rows[i] = shuffle<0, 1, 2, 3, 8, 9, 10, 11>(b[i], b[i + 4]);
        rows[i + 4] = shuffle<4, 5, 6, 7, 12, 13, 14, 15>(b[i], b[i + 4]);
    }
}

CHAINRULE_ALWAYS_INLINE void transpose_block(Vec<double>* rows) {
    const Vec<double> a0 = shuffle<0, 4, 2, 6>(rows[0], rows[1]);
    const Vec<double> a1 = shuffle<1, 5, 3, 7>(rows[0], rows[1]);
    const Vec<double> a2 = shuffle<0, 4, 2, 6>(rows[2], rows[3]);
    const Vec<double> a3 = shuffle<1, 5, 3, 7>(rows[2], rows[3]);
    rows[0] = shuffle<0, 1, 4, 5>(a0, a2);
    rows[1] = shuffle<0, 1, 4, 5>(a1, a3);
    rows[2] = shuffle<2, 3, 6, 7>(a0, a2);
    rows[3] = shuffle<2, 3, 6, 7>(a1, a3);
}

// W^T into packed (C, J V): row k holds w_jk for the output units of each
// vector in turn, 0 in the lanes past OC (OC < V only). With C >= V, in
// V x V blocks transposed in registers (the last block of inputs overlapping
// the one before it); else value by value.
template <typename T, int J>
CHAINRULE_ALWAYS_INLINE void pack_transposed(T* packed, Vec<T>* bias_vectors, const T* weight, const T* bias,
                                             std::size_t in_features, std::size_t out_features) {
    constexpr std::size_t V = kLanes<T>;
    constexpr std::size_t width = J * V;  // of a row of packed
    for (int j = 0; j < J; ++j) {
        const std::size_t first_unit = out_features >= V ? vector_start<T>(std::size_t(j), out_features) : 0;
        const std::size_t units = std::min(V, out_features);  // the rest of the vector is padding
        T lanes[V] = {};
        for (std::size_t l = 0; l < units; ++l) lanes[l] = bias[first_unit + l];
        bias_vectors[j] = load(lanes);
        T* column = packed + std::size_t(j) * V;
        if (in_features < V) {
            for (std::size_t l = 0; l < V; ++l) {
                for (std::size_t k = 0; k < in_features; ++k) {
                    column[k * width + l] = l < units ? weight[(first_unit + l) * in_features + k] : T(0);
                }
            }
            continue;
        }
        for (std::size_t block = 0; block < vectors_over<T>(in_features); ++block) {
            const std::size_t k0 = vector_start<T>(block, in_features);
            Vec<T> rows[V];
            for (std::size_t l = 0; l < V; ++l) {
                rows[l] = l < units ? load(weight + (first_unit + l) * in_features + k0) : Vec<T>{};
            }
            transpose_block(rows);  // rows[i]: input k0 + i of the V units
            for (std::size_t i = 0; i < V; ++i) store(column + (k0 + i) * width, rows[i]);
        }
    }
}

// The last records, fewer than a block: one block of their own size.
template <typename T, int J, int R>
CHAINRULE_ALWAYS_INLINE void forward_rest(T* out, const T* inp, const T* packed, const Vec<T>* bias, std::size_t rest,
                                          std::size_t in_features, std::size_t out_features) {
    if constexpr (R > 0) {
        if (rest == R) return forward_records<T, J, R>(out, inp, packed, bias, in_features, out_features);
        forward_rest<T, J, R - 1>(out, inp, packed, bias, rest, in_features, out_features);
    }
}

// The records forward_records takes at a time with J vectors of outputs:
// R J accumulators, 8 to 12 of the 16 vector registers of AVX2.
template <int J>
constexpr int kForwardRecords = J == 1 ? 8 : 12 / J;

// out = inp W^T + b for n records, W^T packed: R records at a time, then the rest.
template <typename T, int J>
CHAINRULE_ALWAYS_INLINE void forward_packed(T* out, const T* inp, const T* packed, const Vec<T>* bias_vectors,
                                            std::size_t n, std::size_t in_features, std::size_t out_features) {
    constexpr int R = kForwardRecords<J>;
    std::size_t r = 0;
    for (; r + R <= n; r += R) {
        forward_records<T, J, R>(out + r * out_features, inp + r * in_features, packed, bias_vectors, in_features,
                                 out_features);
    }
    forward_rest<T, J, R - 1>(out + r * out_features, inp + r * in_features, packed, bias_vectors, n - r,
                              in_features, out_features);
}

template <typename T, int J>
CHAINRULE_ALWAYS_INLINE void forward_with(T* out, const T* inp, const T* weight, const T* bias,
                                          std::size_t num_records, std::size_t in_features,
                                          std::size_t out_features) {
    alignas(32) T packed[kSmallLinearMaxPacked];
    Vec<T> bias_vectors[J];
    pack_transposed<T, J>(packed, bias_vectors, weight, bias, in_features, out_features);
    forward_packed<T, J>(out, inp, packed, bias_vectors, num_records, in_features, out_features);
}

// forward_with for the vectors of outputs the layer has.
template <typename T>
CHAINRULE_ALWAYS_INLINE void forward_any(T* out, const T* inp, const T* weight, const T* bias,
                                         std::size_t num_records, std::size_t in_features, std::size_t out_features) {
    switch (vectors_over<T>(out_features)) {
        case 1: return forward_with<T, 1>(out, inp, weight, bias, num_records, in_features, out_features);
        case 2: return forward_with<T, 2>(out, inp, weight, bias, num_records, in_features, out_features);
        case 3: return forward_with<T, 3>(out, inp, weight, bias, num_records, in_features, out_features);
        default: return forward_with<T, 4>(out, inp, weight, bias, num_records, in_features, out_features);
    }
}

template <typename T>
CHAINRULE_TARGET_CLONES void forward_range(T* out, const T* inp, const T* weight, const T* bias,
                                           std::size_t num_records, std::size_t in_features,
                                           std::size_t out_features) {
    forward_any(out, inp, weight, bias, num_records, in_features, out_features);
}

// forward_range, then the sigmoid of every value (a hidden sigmoid layer), in
// the loop of activation_forward (activations.hpp, forward_values): the same
// bits as the two calls, without a call of its own for the sigmoid.
template <typename T>
CHAINRULE_TARGET_CLONES void forward_sigmoid_range(T* out, const T* inp, const T* weight, const T* bias,
                                                   std::size_t num_records, std::size_t in_features,
                                                   std::size_t out_features) {
    forward_any(out, inp, weight, bias, num_records, in_features, out_features);
    forward_values<Sigmoid>(out, out, num_records * out_features);
}

// w . x_r for the V records from x on, one per lane, in detail::dot's order
// (single_output_range below).
template <typename T>
CHAINRULE_ALWAYS_INLINE Vec<T> single_output_records(const T* x, const T* weight, std::size_t in_features) {
    constexpr std::size_t V = kLanes<T>;
    Vec<T> lanes[8] = {};
    for (std::size_t k = 0; k < in_features; k += 8) {
        for (std::size_t half = 0; half < 8; half += V) {  // inputs k + half to k + half + V - 1
            Vec<T> columns[V];
            for (std::size_t i = 0; i < V; ++i) columns[i] = load(x + i * in_features + k + half);
            transpose_block(columns);  // columns[l]: input k + half + l of the V records
            for (std::size_t l = 0; l < V; ++l) lanes[half + l] += columns[l] * weight[k + half + l];
        }
    }
    return ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
}

// One output unit: z_r = w . x_r + b in detail::dot's order (8 lanes, lane l
// summing the terms k = l mod 8 in order from 0, then the fixed tree), for V
// records at once: each lane of a vector is a record, each of the 8 lane
// sums a vector, its terms the columns of V x V blocks of the inputs
// transposed in registers. For C a multiple of 8; the last records, fewer
// than V, go through detail::dot itself.
template <typename T>
CHAINRULE_ALWAYS_INLINE void single_output_loop(T* out, const T* inp, const T* weight, const T* bias,
                                                std::size_t num_records, std::size_t in_features) {
    constexpr std::size_t V = kLanes<T>;
    std::size_t r = 0;
    for (; r + V <= num_records; r += V) {
        const T* x = inp + r * in_features;
        store(out + r, single_output_records(x, weight, in_features) + bias[0]);
    }
    for (; r < num_records; ++r) out[r] = dot(weight, inp + r * in_features, in_features) + bias[0];
}

template <typename T>
CHAINRULE_TARGET_CLONES void single_output_range(T* out, const T* inp, const T* weight, const T* bias,
                                                 std::size_t num_records, std::size_t in_features) {
    single_output_loop(out, inp, weight, bias, num_records, in_features);
}

// ---- predict through one small hidden layer ----

// n <= kBlock records of small_network_predict: the hidden layer's z by
// forward_packed (as small_linear_forward), their largest magnitude (is one
// of them inf or NaN?), f_hidden in place (forward_values_knowing, as
// activation_forward), then the output
// unit by single_output_loop (as single_output_forward) and f_output,
// straight into out. The block's
// hidden values (at most 96 records x 4V: 12 KiB) stay in L1 between the two
// layers. Returns the OR of the non-finite bits of the hidden z and of the
// outputs.
template <typename Hidden, typename Output, typename T, int J>
CHAINRULE_ALWAYS_INLINE FloatBits<T> predict_block(T* out, const T* inp, T* hidden, const T* packed,
                                                   const Vec<T>* bias_vectors, const T* output_weight,
                                                   const T* output_bias, std::size_t n, std::size_t in_features,
                                                   std::size_t hidden_units) {
    forward_packed<T, J>(hidden, inp, packed, bias_vectors, n, in_features, hidden_units);
    const std::size_t values = n * hidden_units;
    // One pass over the z: whether one is not finite, and the sigmoid's range.
    const MagnitudeBits<T> largest = largest_magnitude_bits_of(hidden, values);
    FloatBits<T> non_finite = largest >= magnitude_bits(std::numeric_limits<T>::infinity()) ? 1 : 0;
    forward_values_knowing<Hidden>(hidden, hidden, values, largest);
    single_output_loop(out, hidden, output_weight, output_bias, n, hidden_units);
#pragma omp simd reduction(| : non_finite)
    for (std::size_t i = 0; i < n; ++i) {
        out[i] = Output::f(out[i]);
        non_finite |= non_finite_bits(out[i]);
    }
    return non_finite;
}

template <typename Hidden, typename Output, typename T, int J>
CHAINRULE_ALWAYS_INLINE bool predict_with(T* out, const T* inp, const T* hidden_weight, const T* hidden_bias,
                                          const T* output_weight, const T* output_bias, std::size_t num_records,
                                          std::size_t in_features, std::size_t hidden_units) {
    // Blocks of 96 records, whole blocks of both layers' kernels (R and V):
    // long enough runs of each loop, short enough to stay in L1.
    constexpr std::size_t kWhole = std::lcm(std::size_t(kForwardRecords<J>), kLanes<T>);
    constexpr std::size_t kBlock = kWhole * ((96 + kWhole - 1) / kWhole);
    alignas(32) T packed[kSmallLinearMaxPacked];
    alignas(32) T hidden[kBlock * J * kLanes<T>];
    Vec<T> bias_vectors[J];
    pack_transposed<T, J>(packed, bias_vectors, hidden_weight, hidden_bias, in_features, hidden_units);
    FloatBits<T> non_finite = 0;
    std::size_t r = 0;
    for (; r + kBlock <= num_records; r += kBlock) {
        non_finite |= predict_block<Hidden, Output, T, J>(out + r, inp + r * in_features, hidden, packed,
                                                             bias_vectors, output_weight, output_bias, kBlock,
                                                             in_features, hidden_units);
    }
    non_finite |= predict_block<Hidden, Output, T, J>(out + r, inp + r * in_features, hidden, packed, bias_vectors,
                                                         output_weight, output_bias, num_records - r, in_features,
                                                         hidden_units);
    return non_finite == 0;
}

template <typename Hidden, typename Output, typename T>
CHAINRULE_TARGET_CLONES bool predict_range(T* out, const T* inp, const T* hidden_weight, const T* hidden_bias,
                                           const T* output_weight, const T* output_bias, std::size_t num_records,
                                           std::size_t in_features, std::size_t hidden_units) {
    switch (vectors_over<T>(hidden_units)) {
        case 1: return predict_with<Hidden, Output, T, 1>(out, inp, hidden_weight, hidden_bias, output_weight,
                                                          output_bias, num_records, in_features, hidden_units);
        case 2: return predict_with<Hidden, Output, T, 2>(out, inp, hidden_weight, hidden_bias, output_weight,
                                                          output_bias, num_records, in_features, hidden_units);
        case 3: return predict_with<Hidden, Output, T, 3>(out, inp, hidden_weight, hidden_bias, output_weight,
                                                          output_bias, num_records, in_features, hidden_units);
        default: return predict_with<Hidden, Output, T, 4>(out, inp, hidden_weight, hidden_bias, output_weight,
                                                           output_bias, num_records, in_features, hidden_units);
    }
}

// ---- backward ----

// The backward kernels take the vectors of inputs in `runs` runs of 2 to 4
// (1 when there is one vector), as even as they go: more would not fit the
// registers. A last vector that overlaps its neighbour shares its run, so
// that each run reads every old value of dW it adds to before writing any.
// Writes run `run`'s starting columns and returns how many it has.
template <typename T>
CHAINRULE_ALWAYS_INLINE std::size_t fill_run(std::size_t* columns, std::size_t run, std::size_t runs,
                                             std::size_t vectors, std::size_t in_features) {
    const std::size_t begin = run * vectors / runs, end = (run + 1) * vectors / runs;
    for (std::size_t v = begin; v < end; ++v) columns[v - begin] = vector_start<T>(v, in_features);
    return end - begin;
}

// Rows [j0, j0 + JB) of dW over K vectors of inputs (starting at the given
// columns): per record, the K vectors of x_r and one broadcast of dz_rj per row.
template <typename T, int JB, int K>
CHAINRULE_ALWAYS_INLINE void weight_gradient_block(T* dweight, const T* dout, const T* inp, const std::size_t* columns,
                                                   std::size_t j0, std::size_t num_records, std::size_t in_features,
                                                   std::size_t out_features, bool accumulate, bool one_sum) {
    Vec<T> acc[JB][K];
    std::size_t r = 0;
    if (!one_sum && accumulate) {  // dW_jk + dz_0j x_0k + ...
        for (int j = 0; j < JB; ++j) {
            for (int v = 0; v < K; ++v) acc[j][v] = load(dweight + (j0 + j) * in_features + columns[v]);
        }
    } else if (!one_sum) {  // dz_0j x_0k + dz_1j x_1k + ...: the first term as it is
        for (int j = 0; j < JB; ++j) {
            for (int v = 0; v < K; ++v) acc[j][v] = dout[j0 + j] * load(inp + columns[v]);
        }
        r = 1;
    } else {  // 0 + dz_0j x_0k + ...
        for (int j = 0; j < JB; ++j) {
            for (int v = 0; v < K; ++v) acc[j][v] = Vec<T>{};
        }
    }
    for (; r < num_records; ++r) {
        const T* x = inp + r * in_features;
        const T* d = dout + r * out_features + j0;
        Vec<T> xv[K];
        for (int v = 0; v < K; ++v) xv[v] = load(x + columns[v]);
#pragma GCC unroll 12
        for (int j = 0; j < JB; ++j) {
            const T g = d[j];
            for (int v = 0; v < K; ++v) acc[j][v] += g * xv[v];  // dW_jk += dz_rj x_rk
        }
    }
    // Every old value is read before any is written: the last vector may
    // overlap the one before it.
    if (one_sum && accumulate) {
        for (int j = 0; j < JB; ++j) {
            for (int v = 0; v < K; ++v) acc[j][v] = load(dweight + (j0 + j) * in_features + columns[v]) + acc[j][v];
        }
    }
    for (int j = 0; j < JB; ++j) {
        for (int v = 0; v < K; ++v) store(dweight + (j0 + j) * in_features + columns[v], acc[j][v]);
    }
}

// The last rows, fewer than a block: one block of their own size.
template <typename T, int JB, int K>
CHAINRULE_ALWAYS_INLINE void weight_gradient_rest(T* dweight, const T* dout, const T* inp, const std::size_t* columns,
                                                  std::size_t j0, std::size_t rest, std::size_t num_records,
                                                  std::size_t in_features, std::size_t out_features, bool accumulate,
                                                  bool one_sum) {
    if constexpr (JB > 0) {
        if (rest == JB) {
            return weight_gradient_block<T, JB, K>(dweight, dout, inp, columns, j0, num_records, in_features,
                                                   out_features, accumulate, one_sum);
        }
        weight_gradient_rest<T, JB - 1, K>(dweight, dout, inp, columns, j0, rest, num_records, in_features,
                                           out_features, accumulate, one_sum);
    }
}

template <typename T, int K>
CHAINRULE_ALWAYS_INLINE void weight_gradient_columns(T* dweight, const T* dout, const T* inp,
                                                     const std::size_t* columns, std::size_t j_begin,
                                                     std::size_t j_end, std::size_t num_records,
                                                     std::size_t in_features, std::size_t out_features,
                                                     bool accumulate, bool one_sum) {
    constexpr int JB = 12 / K;  // JB K accumulators
    std::size_t j = j_begin;
    for (; j + JB <= j_end; j += JB) {
        weight_gradient_block<T, JB, K>(dweight, dout, inp, columns, j, num_records, in_features, out_features,
                                        accumulate, one_sum);
    }
    weight_gradient_rest<T, JB - 1, K>(dweight, dout, inp, columns, j, j_end - j, num_records, in_features,
                                       out_features, accumulate, one_sum);
}

template <typename T>
CHAINRULE_TARGET_CLONES void weight_gradient_rows(T* dweight, const T* dout, const T* inp, std::size_t j_begin,
                                                  std::size_t j_end, std::size_t num_records, std::size_t in_features,
                                                  std::size_t out_features, bool accumulate, bool one_sum) {
    const std::size_t vectors = vectors_over<T>(in_features);
    const std::size_t runs = (vectors + 3) / 4;
    for (std::size_t run = 0; run < runs; ++run) {
        std::size_t columns[4];
        const std::size_t K = fill_run<T>(columns, run, runs, vectors, in_features);
        switch (K) {
            case 1: weight_gradient_columns<T, 1>(dweight, dout, inp, columns, j_begin, j_end, num_records,
                                                  in_features, out_features, accumulate, one_sum); break;
            case 2: weight_gradient_columns<T, 2>(dweight, dout, inp, columns, j_begin, j_end, num_records,
                                                  in_features, out_features, accumulate, one_sum); break;
            case 3: weight_gradient_columns<T, 3>(dweight, dout, inp, columns, j_begin, j_end, num_records,
                                                  in_features, out_features, accumulate, one_sum); break;
            default: weight_gradient_columns<T, 4>(dweight, dout, inp, columns, j_begin, j_end, num_records,
                                                   in_features, out_features, accumulate, one_sum); break;
        }
    }
}

// dW transposed, for layers whose outputs fill their vectors better than
// their inputs do (W3's 32 outputs of 10 inputs): rows k of dW^T (C, J V),
// KB at a time, each row the J vectors of output units; per record, the J
// vectors of dz_r and one broadcast of x_rk per row. The same sums as
// weight_gradient_block's, in the same order, without accumulate: dW_jk =
// dz_0j x_0k (first term as it is) or 0 + dz_0j x_0k (one_sum), + dz_1j x_1k ...
template <typename T, int J, int KB>
CHAINRULE_ALWAYS_INLINE void transposed_gradient_block(T* packed, const T* dout, const T* inp, std::size_t k0,
                                                       std::size_t num_records, std::size_t in_features,
                                                       std::size_t out_features, bool one_sum) {
    Vec<T> acc[KB][J];
    std::size_t r = 0;
    if (one_sum) {
        for (int i = 0; i < KB; ++i) {
            for (int j = 0; j < J; ++j) acc[i][j] = Vec<T>{};
        }
    } else {
        for (int j = 0; j < J; ++j) {
            const Vec<T> dz = load(dout + vector_start<T>(std::size_t(j), out_features));
            for (int i = 0; i < KB; ++i) acc[i][j] = inp[k0 + i] * dz;
        }
        r = 1;
    }
    for (; r < num_records; ++r) {
        Vec<T> dz[J];
        const T* d = dout + r * out_features;
        for (int j = 0; j < J; ++j) dz[j] = load(d + vector_start<T>(std::size_t(j), out_features));
#pragma GCC unroll 12
        for (int i = 0; i < KB; ++i) {
            const T x = inp[r * in_features + k0 + i];
            for (int j = 0; j < J; ++j) acc[i][j] += x * dz[j];  // dW_jk += dz_rj x_rk
        }
    }
    for (int i = 0; i < KB; ++i) {
        for (int j = 0; j < J; ++j) store(packed + (k0 + i) * J * kLanes<T> + j * kLanes<T>, acc[i][j]);
    }
}

template <typename T, int J, int KB>
CHAINRULE_ALWAYS_INLINE void transposed_gradient_rest(T* packed, const T* dout, const T* inp, std::size_t k0,
                                                      std::size_t rest, std::size_t num_records,
                                                      std::size_t in_features, std::size_t out_features,
                                                      bool one_sum) {
    if constexpr (KB > 0) {
        if (rest == KB) {
            return transposed_gradient_block<T, J, KB>(packed, dout, inp, k0, num_records, in_features, out_features,
                                                       one_sum);
        }
        transposed_gradient_rest<T, J, KB - 1>(packed, dout, inp, k0, rest, num_records, in_features, out_features,
                                               one_sum);
    }
}

template <typename T, int J>
CHAINRULE_ALWAYS_INLINE void transposed_gradient_with(T* packed, const T* dout, const T* inp, std::size_t k_begin,
                                                      std::size_t k_end, std::size_t num_records,
                                                      std::size_t in_features, std::size_t out_features,
                                                      bool one_sum) {
    constexpr int KB = 12 / J;  // KB J accumulators
    std::size_t k = k_begin;
    for (; k + KB <= k_end; k += KB) {
        transposed_gradient_block<T, J, KB>(packed, dout, inp, k, num_records, in_features, out_features, one_sum);
    }
    transposed_gradient_rest<T, J, KB - 1>(packed, dout, inp, k, k_end - k, num_records, in_features, out_features,
                                           one_sum);
}

// Rows [k_begin, k_end) of dW^T into packed (C, J V).
template <typename T>
CHAINRULE_TARGET_CLONES void transposed_gradient_rows(T* packed, const T* dout, const T* inp, std::size_t k_begin,
                                                      std::size_t k_end, std::size_t num_records,
                                                      std::size_t in_features, std::size_t out_features,
                                                      bool one_sum) {
    switch (vectors_over<T>(out_features)) {
        case 1: return transposed_gradient_with<T, 1>(packed, dout, inp, k_begin, k_end, num_records, in_features,
                                                      out_features, one_sum);
        case 2: return transposed_gradient_with<T, 2>(packed, dout, inp, k_begin, k_end, num_records, in_features,
                                                      out_features, one_sum);
        case 3: return transposed_gradient_with<T, 3>(packed, dout, inp, k_begin, k_end, num_records, in_features,
                                                      out_features, one_sum);
        default: return transposed_gradient_with<T, 4>(packed, dout, inp, k_begin, k_end, num_records, in_features,
                                                       out_features, one_sum);
    }
}

// dW (OC, C) from packed dW^T (C, J V), in V x V blocks transposed in
// registers (pack_transposed's inverse; both sides' last vectors overlap).
template <typename T>
CHAINRULE_TARGET_CLONES void unpack_transposed(T* dweight, const T* packed, std::size_t in_features,
                                               std::size_t out_features) {
    constexpr std::size_t V = kLanes<T>;
    const std::size_t J = vectors_over<T>(out_features), width = J * V;
    for (std::size_t j = 0; j < J; ++j) {
        const std::size_t first_unit = vector_start<T>(j, out_features);
        for (std::size_t block = 0; block < vectors_over<T>(in_features); ++block) {
            const std::size_t k0 = vector_start<T>(block, in_features);
            Vec<T> rows[V];
            for (std::size_t i = 0; i < V; ++i) rows[i] = load(packed + (k0 + i) * width + j * V);
            transpose_block(rows);  // rows[l]: output unit first_unit + l, inputs k0 to k0 + V - 1
            for (std::size_t l = 0; l < V; ++l) store(dweight + (first_unit + l) * in_features + k0, rows[l]);
        }
    }
}

// Whether dW goes through dW^T: without accumulate (the old dW would have
// to be transposed too), with outputs that fill whole vectors, when that
// takes fewer multiply-adds per record (C J against OC times the vectors of
// C), counting the transposes at ~40 multiply-adds a block.
template <typename T>
bool transposed_gradient_pays(std::size_t num_records, std::size_t in_features, std::size_t out_features,
                              bool accumulate) {
    const std::size_t J = vectors_over<T>(out_features), K = vectors_over<T>(in_features);
    if (accumulate || out_features < kLanes<T> || J > 4 || in_features * J * kLanes<T> > kSmallLinearMaxPacked) {
        return false;
    }
    return num_records * in_features * J + 40 * J * K < num_records * out_features * K;
}

// db_j = (db_j or dz_0j) + dz_1j + ...: whole vectors of output units, then
// one by one those that fill no vector.
template <typename T>
CHAINRULE_TARGET_CLONES void bias_gradient(T* dbias, const T* dout, std::size_t num_records, std::size_t out_features,
                                           bool accumulate) {
    const std::size_t first = accumulate ? 0 : 1;
    std::size_t j = 0;
    for (; j + kLanes<T> <= out_features; j += kLanes<T>) {
        Vec<T> sum = accumulate ? load(dbias + j) : load(dout + j);
        for (std::size_t r = first; r < num_records; ++r) sum += load(dout + r * out_features + j);
        store(dbias + j, sum);
    }
    for (; j < out_features; ++j) {
        T sum = accumulate ? dbias[j] : dout[j];
        for (std::size_t r = first; r < num_records; ++r) sum += dout[r * out_features + j];
        dbias[j] = sum;
    }
}

// R records of dA (K vectors of inputs each) at once.
template <typename T, int K, int R>
CHAINRULE_ALWAYS_INLINE void input_gradient_records(T* dinp, const T* dout, const T* weight, const std::size_t* columns,
                                                    std::size_t in_features, std::size_t out_features) {
    Vec<T> acc[R][K] = {};
    for (std::size_t j = 0; j < out_features; ++j) {
        const T* w = weight + j * in_features;
        Vec<T> wv[K];
        for (int v = 0; v < K; ++v) wv[v] = load(w + columns[v]);
#pragma GCC unroll 12
        for (int i = 0; i < R; ++i) {
            const T g = dout[i * out_features + j];
            for (int v = 0; v < K; ++v) acc[i][v] += g * wv[v];  // dA_rk += dz_rj W_jk
        }
    }
    for (int i = 0; i < R; ++i) {
        for (int v = 0; v < K; ++v) store(dinp + i * in_features + columns[v], acc[i][v]);
    }
}

// The last records, fewer than a block: one block of their own size.
template <typename T, int K, int R>
CHAINRULE_ALWAYS_INLINE void input_gradient_rest(T* dinp, const T* dout, const T* weight, const std::size_t* columns,
                                                 std::size_t rest, std::size_t in_features, std::size_t out_features) {
    if constexpr (R > 0) {
        if (rest == R) return input_gradient_records<T, K, R>(dinp, dout, weight, columns, in_features, out_features);
        input_gradient_rest<T, K, R - 1>(dinp, dout, weight, columns, rest, in_features, out_features);
    }
}

template <typename T, int K>
CHAINRULE_ALWAYS_INLINE void input_gradient_columns(T* dinp, const T* dout, const T* weight, const std::size_t* columns,
                                                    std::size_t num_records, std::size_t in_features,
                                                    std::size_t out_features) {
    constexpr int R = 12 / K;
    std::size_t r = 0;
    for (; r + R <= num_records; r += R) {
        input_gradient_records<T, K, R>(dinp + r * in_features, dout + r * out_features, weight, columns, in_features,
                                        out_features);
    }
    input_gradient_rest<T, K, R - 1>(dinp + r * in_features, dout + r * out_features, weight, columns,
                                     num_records - r, in_features, out_features);
}

template <typename T>
CHAINRULE_TARGET_CLONES void input_gradient_range(T* dinp, const T* dout, const T* weight, std::size_t num_records,
                                                  std::size_t in_features, std::size_t out_features) {
    const std::size_t vectors = vectors_over<T>(in_features);
    const std::size_t runs = (vectors + 3) / 4;
    for (std::size_t run = 0; run < runs; ++run) {
        std::size_t columns[4];
        const std::size_t K = fill_run<T>(columns, run, runs, vectors, in_features);
        const std::size_t B = num_records, C = in_features, OC = out_features;
        switch (K) {
            case 1: input_gradient_columns<T, 1>(dinp, dout, weight, columns, B, C, OC); break;
            case 2: input_gradient_columns<T, 2>(dinp, dout, weight, columns, B, C, OC); break;
            case 3: input_gradient_columns<T, 3>(dinp, dout, weight, columns, B, C, OC); break;
            default: input_gradient_columns<T, 4>(dinp, dout, weight, columns, B, C, OC); break;
        }
    }
}

// A layer of one output unit (W2's and W3's last): db, dW and dA in one pass
// over the records, K vectors of inputs at a time (the first run also takes
// db), so that the chains of db's and dW's sums run side by side. Each sum
// as bias_gradient, weight_gradient_block and input_gradient_records take it.
// Below: the home of the hidden layer whose outputs a are the layer's inputs
// (Sigmoid or Relu), and dA_rk leaves as dZ_rk = Below::times_derivative(dA_rk,
// a_rk), on the vectors of x_r that dW reads anyway: activation_backward's
// values. Identity: dA itself, linear_backward's.
template <typename T, int K, typename Below = Identity>
CHAINRULE_ALWAYS_INLINE void single_output_run(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                                               const T* weight, const std::size_t* columns, std::size_t num_records,
                                               std::size_t in_features, bool accumulate, bool one_sum,
                                               bool with_bias) {
    Vec<T> acc[K], w[K];
    for (int v = 0; v < K; ++v) w[v] = load(weight + columns[v]);
    T db = accumulate ? dbias[0] : dout[0];
    std::size_t r = 0;
    if (!one_sum && accumulate) {
        for (int v = 0; v < K; ++v) acc[v] = load(dweight + columns[v]);
    } else if (!one_sum) {
        for (int v = 0; v < K; ++v) acc[v] = dout[0] * load(inp + columns[v]);
    } else {
        for (int v = 0; v < K; ++v) acc[v] = Vec<T>{};
    }
    if (!one_sum && !accumulate) {  // record 0's dW term is in acc already; its dA term here
        for (int v = 0; v < K; ++v) {
            Vec<T> da = {};
            da += dout[0] * w[v];  // dA_0k = 0 + dz_0 W_k
            da = Below::times_derivative(da, load(inp + columns[v]));
            if (dinp) store(dinp + columns[v], da);
        }
        r = 1;
    }
    for (; r < num_records; ++r) {
        const T g = dout[r];
        const T* x = inp + r * in_features;
        for (int v = 0; v < K; ++v) {
            const Vec<T> xv = load(x + columns[v]);
            acc[v] += g * xv;  // dW_k += dz_r x_rk
            Vec<T> da = {};
            da += g * w[v];  // dA_rk = 0 + dz_r W_k
            da = Below::times_derivative(da, xv);
            if (dinp) store(dinp + r * in_features + columns[v], da);
        }
        if (r > 0 || accumulate) db += g;  // db += dz_r
    }
    if (one_sum && accumulate) {
        for (int v = 0; v < K; ++v) acc[v] = load(dweight + columns[v]) + acc[v];
    }
    for (int v = 0; v < K; ++v) store(dweight + columns[v], acc[v]);
    if (with_bias) dbias[0] = db;
}

template <typename T, typename Below = Identity>
CHAINRULE_TARGET_CLONES void single_output_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                                                    const T* weight, std::size_t num_records, std::size_t in_features,
                                                    bool accumulate, bool one_sum) {
    const std::size_t vectors = vectors_over<T>(in_features);
    const std::size_t runs = (vectors + 3) / 4;
    for (std::size_t run = 0; run < runs; ++run) {
        std::size_t columns[4];
        const std::size_t K = fill_run<T>(columns, run, runs, vectors, in_features);
        const bool with_bias = run == 0;
        switch (K) {
            case 1: single_output_run<T, 1, Below>(dinp, dweight, dbias, dout, inp, weight, columns,
                                                           num_records, in_features, accumulate, one_sum, with_bias);
                break;
            case 2: single_output_run<T, 2, Below>(dinp, dweight, dbias, dout, inp, weight, columns,
                                                           num_records, in_features, accumulate, one_sum, with_bias);
                break;
            case 3: single_output_run<T, 3, Below>(dinp, dweight, dbias, dout, inp, weight, columns,
                                                           num_records, in_features, accumulate, one_sum, with_bias);
                break;
            default: single_output_run<T, 4, Below>(dinp, dweight, dbias, dout, inp, weight, columns,
                                                            num_records, in_features, accumulate, one_sum, with_bias);
                break;
        }
    }
}

// Work below this many multiply-adds a part stays on the calling thread.
constexpr std::size_t kMinPartWork = std::size_t{1} << 18;

// Whether small_linear_backward takes a layer of one output in one pass of
// single_output_backward, on the calling thread.
bool single_output_one_pass(std::size_t num_records, std::size_t in_features) {
    return num_records * in_features < kMinPartWork;
}

std::size_t min_part(std::size_t work_per_item) {
    return std::max<std::size_t>(1, kMinPartWork / std::max<std::size_t>(1, work_per_item));
}

}  // namespace

template <typename T>
bool small_linear_forward_fits(std::size_t in_features, std::size_t out_features) {
    const std::size_t vectors = vectors_over<T>(out_features);
    return out_features >= 2 && vectors <= 4 && in_features * vectors * kLanes<T> <= kSmallLinearMaxPacked;
}

template <typename T>
bool small_linear_backward_fits(std::size_t in_features, std::size_t out_features, std::size_t num_records) {
    return in_features >= kLanes<T> && out_features * in_features <= kSmallLinearMaxWeights &&
           (out_features <= 3 || (num_records <= kSmallLinearMaxRecords && in_features <= kSmallLinearMaxInputs));
}

template <typename T>
bool single_output_fits(std::size_t in_features) {
    return in_features >= 8 && in_features % 8 == 0;
}

template <typename T>
void single_output_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t num_records,
                           std::size_t in_features) {
    // out (B, 1) = inp (B, C) @ weight^T (1, C) + bias (1); each record on its own.
    assert(single_output_fits<T>(in_features));
    for_ranges(num_records, min_part(in_features), kLanes<T>, [&](std::size_t begin, std::size_t end) {
        single_output_range(out + begin, inp + begin * in_features, weight, bias, end - begin, in_features);
    });
}

template <typename T>
bool small_network_predict_fits(std::size_t in_features, std::size_t hidden_units, std::size_t outputs,
                                Activation hidden, Activation output) {
    auto vectorized = [](Activation a) { return a == Activation::sigmoid || a == Activation::identity; };
    return outputs == 1 && vectorized(hidden) && vectorized(output) &&
           small_linear_forward_fits<T>(in_features, hidden_units) && single_output_fits<T>(hidden_units);
}

template <typename T>
bool small_network_predict(T* out, const T* inp, const T* hidden_weight, const T* hidden_bias,
                           const T* output_weight, const T* output_bias, std::size_t num_records,
                           std::size_t in_features, std::size_t hidden_units, Activation hidden, Activation output) {
    assert(small_network_predict_fits<T>(in_features, hidden_units, 1, hidden, output));
    // The two activations that small_network_predict_fits takes, and no others.
    auto with_home = [](Activation activation, auto&& op) {
        return activation == Activation::sigmoid ? op(Sigmoid{}) : op(Identity{});
    };
    return with_home(hidden, [&](auto hidden_home) {
        return with_home(output, [&](auto output_home) {
            return predict_range<decltype(hidden_home), decltype(output_home)>(
                out, inp, hidden_weight, hidden_bias, output_weight, output_bias, num_records, in_features,
                hidden_units);
        });
    });
}

template <typename T>
void small_linear_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t num_records,
                          std::size_t in_features, std::size_t out_features) {
    // out (B, OC) = inp (B, C) @ weight^T (OC, C) + bias (OC); each record on its own.
    assert(small_linear_forward_fits<T>(in_features, out_features));
    for_ranges(num_records, min_part(in_features * out_features), 1, [&](std::size_t begin, std::size_t end) {
        forward_range(out + begin * out_features, inp + begin * in_features, weight, bias, end - begin, in_features,
                      out_features);
    });
}

template <typename T>
void small_linear_sigmoid_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t num_records,
                                  std::size_t in_features, std::size_t out_features) {
    // out (B, OC) = sigmoid(inp (B, C) @ weight^T (OC, C) + bias (OC)); each record on its own.
    assert(small_linear_forward_fits<T>(in_features, out_features));
    for_ranges(num_records, min_part(in_features * out_features), 1, [&](std::size_t begin, std::size_t end) {
        forward_sigmoid_range(out + begin * out_features, inp + begin * in_features, weight, bias, end - begin,
                              in_features, out_features);
    });
}

template <typename T>
bool single_output_backward_through_fits(Activation below, std::size_t in_features, std::size_t num_records) {
    // small_linear_backward's one-pass case for one output, below it a layer
    // whose derivative the kernel takes on its vectors with the bits of
    // activation_backward's loop (tanh's 1 - a^2 could fuse differently there).
    return (below == Activation::sigmoid || below == Activation::relu) &&
           small_linear_backward_fits<T>(in_features, 1, num_records) &&
           single_output_one_pass(num_records, in_features);
}

template <typename T>
void single_output_backward_through(Activation below, T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                                    const T* weight, std::size_t num_records, std::size_t in_features,
                                    bool accumulate, bool one_sum) {
    assert(dinp && single_output_backward_through_fits<T>(below, in_features, num_records));
    if (below == Activation::sigmoid) {
        single_output_backward<T, Sigmoid>(dinp, dweight, dbias, dout, inp, weight, num_records, in_features,
                                           accumulate, one_sum);
    } else {
        single_output_backward<T, Relu>(dinp, dweight, dbias, dout, inp, weight, num_records, in_features,
                                        accumulate, one_sum);
    }
}

template <typename T>
void small_linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                           std::size_t num_records, std::size_t in_features, std::size_t out_features,
                           bool accumulate, bool one_sum) {
    assert(small_linear_backward_fits<T>(in_features, out_features, num_records));
    if (out_features == 1 && single_output_one_pass(num_records, in_features)) {
        single_output_backward(dinp, dweight, dbias, dout, inp, weight, num_records, in_features, accumulate,
                               one_sum);
        return;
    }
    // db (OC) (+)= sum over records of dZ
    bias_gradient(dbias, dout, num_records, out_features, accumulate);
    // dW (OC, C) (+)= dZ^T (OC, B) @ A (B, C): each value summed whole on one thread
    if (transposed_gradient_pays<T>(num_records, in_features, out_features, accumulate)) {
        alignas(32) T packed[kSmallLinearMaxPacked];
        const std::size_t width = vectors_over<T>(out_features) * kLanes<T>;
        for_ranges(in_features, min_part(num_records * width), 1, [&](std::size_t begin, std::size_t end) {
            transposed_gradient_rows(packed, dout, inp, begin, end, num_records, in_features, out_features, one_sum);
        });
        unpack_transposed(dweight, packed, in_features, out_features);
    } else {
        for_ranges(out_features, min_part(num_records * in_features), 1, [&](std::size_t begin, std::size_t end) {
            weight_gradient_rows(dweight, dout, inp, begin, end, num_records, in_features, out_features, accumulate,
                                 one_sum);
        });
    }
    if (dinp == nullptr) return;  // the first layer passes nothing down
    // dA (B, C) = dZ (B, OC) @ W (OC, C); each record on its own
    for_ranges(num_records, min_part(in_features * out_features), 1, [&](std::size_t begin, std::size_t end) {
        input_gradient_range(dinp + begin * in_features, dout + begin * out_features, weight, end - begin,
                             in_features, out_features);
    });
}

#define CHAINRULE_INSTANTIATE(T)                                                                              \
    template bool small_linear_forward_fits<T>(std::size_t, std::size_t);                                    \
    template bool small_linear_backward_fits<T>(std::size_t, std::size_t, std::size_t);                      \
    template bool single_output_fits<T>(std::size_t);                                                        \
    template void single_output_forward<T>(T*, const T*, const T*, const T*, std::size_t, std::size_t);       \
    template bool small_network_predict_fits<T>(std::size_t, std::size_t, std::size_t, Activation, Activation); \
    template bool small_network_predict<T>(T*, const T*, const T*, const T*, const T*, const T*, std::size_t,    \
                                           std::size_t, std::size_t, Activation, Activation);                  \
    template void small_linear_forward<T>(T*, const T*, const T*, const T*, std::size_t, std::size_t,         \
                                          std::size_t);                                                      \
    template void small_linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, std::size_t, std::size_t, \
                                           std::size_t, bool, bool);                                          \
    template void small_linear_sigmoid_forward<T>(T*, const T*, const T*, const T*, std::size_t, std::size_t, \
                                                  std::size_t);                                              \
    template bool single_output_backward_through_fits<T>(Activation, std::size_t, std::size_t);              \
    template void single_output_backward_through<T>(Activation, T*, T*, T*, const T*, const T*, const T*,      \
                                                    std::size_t, std::size_t, bool, bool);

CHAINRULE_INSTANTIATE(float)
CHAINRULE_INSTANTIATE(double)

}  // namespace chainrule::detail

#endif  // CHAINRULE_SMALL_LINEAR
