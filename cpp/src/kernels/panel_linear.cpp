#include "kernels/panel_linear.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "runtime/gemm.hpp"
#include "runtime/thread_pool.hpp"

#if defined(__GNUC__) && defined(__x86_64__) && defined(__ELF__) && !defined(CHAINRULE_NO_TARGET_CLONES)
#define CHAINRULE_PANEL_LINEAR 1
#include <immintrin.h>
#endif

namespace chainrule::detail {

#if defined(CHAINRULE_PANEL_LINEAR)

namespace {

#define CHAINRULE_AVX512_INLINE __attribute__((target("avx512f"), always_inline)) inline

// A panel is kPanel columns of W^T (12: three vectors of 4 doubles); a tile
// is R rows of out by one panel, its 4R or fewer accumulators in registers
// (AVX2 has 16: 12 accumulators, 3 panel vectors and a broadcast record value).
constexpr std::size_t kPanel = 12;

bool cpu_has_avx2_fma() {
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return has;
}

// Rows [0, R) of out, columns [0, 4 V) of the panel (its first `width` are
// real, width > 4 (V - 1)): acc = sum_k x_rk w_k in order, then acc + b.
template <int R, int V, bool kRelu>
__attribute__((target("avx2,fma"), always_inline)) inline void tile(std::size_t K, const double* inp,
                                                                    std::size_t ldi, const double* panel,
                                                                    const double* bias, double* out,
                                                                    std::size_t ldo, __m256i last_lanes,
                                                                    bool last_partial) {
    __m256d acc[R][V];
    for (int r = 0; r < R; ++r) {
        for (int v = 0; v < V; ++v) acc[r][v] = _mm256_setzero_pd();
    }
    for (std::size_t k = 0; k < K; ++k) {
        __m256d w[V];
        for (int v = 0; v < V; ++v) w[v] = _mm256_loadu_pd(panel + k * (4 * V) + 4 * v);
        for (int r = 0; r < R; ++r) {
            const __m256d x = _mm256_broadcast_sd(inp + r * ldi + k);
            for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_pd(x, w[v], acc[r][v]);
        }
    }
    for (int v = 0; v < V; ++v) {
        const __m256d b = _mm256_loadu_pd(bias + 4 * v);  // padded with zeros past the layer's width
        for (int r = 0; r < R; ++r) {
            __m256d z = _mm256_add_pd(acc[r][v], b);
            // max_pd(z, 0) is z > 0 ? z : 0, the second operand for NaN and for -0: Relu's values.
            if constexpr (kRelu) z = _mm256_max_pd(z, _mm256_setzero_pd());
            double* o = out + r * ldo + 4 * v;
            if (v == V - 1 && last_partial) {
                _mm256_maskstore_pd(o, last_lanes, z);
            } else {
                _mm256_storeu_pd(o, z);
            }
        }
    }
}

// Every row of out for one panel of V vectors: tiles of kRows rows, then the rest.
template <int V, bool kRelu>
__attribute__((target("avx2,fma"))) void panel_rows(std::size_t rows, std::size_t K, const double* inp,
                                                    const double* panel, const double* bias, double* out,
                                                    std::size_t ldo, __m256i last_lanes, bool last_partial) {
    constexpr int kRows = V == 3 ? 4 : 6;
    std::size_t r = 0;
    for (; r + kRows <= rows; r += kRows) {
        tile<kRows, V, kRelu>(K, inp + r * K, K, panel, bias, out + r * ldo, ldo, last_lanes, last_partial);
    }
    const double* x = inp + r * K;
    double* o = out + r * ldo;
    switch (rows - r) {
        case 0: break;
        case 1: tile<1, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes, last_partial); break;
        case 2: tile<2, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes, last_partial); break;
        case 3: tile<3, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes, last_partial); break;
        case 4: tile<4, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes, last_partial); break;
        default: tile<5, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes, last_partial); break;  // 5 (kRows 6)
    }
}

// W^T in panels of `panel_width` columns: panel p holds columns [p w, p w +
// width) as rows of `stride` values (k = 0..K-1; stride: width rounded up to
// whole vectors of `lanes`), the last panel's padding zeros, and the bias
// padded the same way. Per thread, grown once: the forward pass may run on
// several threads at once (predict on several Python threads).
struct Packed {
    const double* panels;
    const double* bias;
};
Packed pack_panels(const double* weight, const double* bias, std::size_t K, std::size_t N, std::size_t panel_width,
                   std::size_t lanes) {
    thread_local std::vector<double> packed, padded_bias;
    const std::size_t panels = (N + panel_width - 1) / panel_width;
    if (packed.size() < panels * panel_width * K) packed.resize(panels * panel_width * K);
    if (padded_bias.size() < panels * panel_width) padded_bias.resize(panels * panel_width);
    for (std::size_t p = 0; p < panels; ++p) {
        const std::size_t first = p * panel_width, width = std::min(panel_width, N - first);
        const std::size_t stride = lanes * ((width + lanes - 1) / lanes);
        double* panel = packed.data() + first * K;
        for (std::size_t j = 0; j < width; ++j) {
            const double* w = weight + (first + j) * K;
            for (std::size_t k = 0; k < K; ++k) panel[k * stride + j] = w[k];
        }
        for (std::size_t j = width; j < stride; ++j) {
            for (std::size_t k = 0; k < K; ++k) panel[k * stride + j] = 0.0;
        }
        for (std::size_t j = 0; j < stride; ++j) padded_bias[first + j] = j < width ? bias[first + j] : 0.0;
    }
    return {packed.data(), padded_bias.data()};
}

__attribute__((target("avx2,fma"))) void forward_avx2(double* out, const double* inp, const double* weight,
                                                      const double* bias, std::size_t rows, std::size_t K,
                                                      std::size_t N, bool relu) {
    const Packed packed = pack_panels(weight, bias, K, N, kPanel, 4);
    for (std::size_t first = 0; first < N; first += kPanel) {
        const std::size_t width = std::min(kPanel, N - first);
        const int vectors = static_cast<int>((width + 3) / 4);
        const int last = static_cast<int>(width - 4 * (vectors - 1));  // 1..4 columns in the last vector
        const __m256i lanes = _mm256_setr_epi64x(-1, last > 1 ? -1 : 0, last > 2 ? -1 : 0, last > 3 ? -1 : 0);
        const bool partial = last < 4;
        const double* panel = packed.panels + first * K;
        const double* b = packed.bias + first;
        double* o = out + first;
        if (vectors == 3) {
            (relu ? panel_rows<3, true> : panel_rows<3, false>)(rows, K, inp, panel, b, o, N, lanes, partial);
        } else if (vectors == 2) {
            (relu ? panel_rows<2, true> : panel_rows<2, false>)(rows, K, inp, panel, b, o, N, lanes, partial);
        } else {
            (relu ? panel_rows<1, true> : panel_rows<1, false>)(rows, K, inp, panel, b, o, N, lanes, partial);
        }
    }
    // Clear the vector registers' upper halves for the SSE code that runs
    // next (libm's exp in the softmax, the baseline kernels): left dirty,
    // each of its instructions waits on them.
    _mm256_zeroupper();
}

// The same with AVX-512, in float32 and float64, and for larger products:
// panels of V vectors (float32: 2 of 16 values; float64: 3 of 8), tiles of up
// to 8 rows (at most 24 accumulators of the 32 registers). Each element is
// the same chain as above, so the two give the same bits; where a core does
// 512-bit multiply-adds at full width (Zen 5, Intel's server cores), twice
// the lanes per instruction. A panel is packed right before its tiles use it
// (it stays in cache), by one thread, with 16 x 16 (8 x 8) blocks transposed
// in registers; the threads share out the panels.
bool cpu_has_avx512f() {
    static const bool has = __builtin_cpu_supports("avx512f");
    return has;
}

// The AVX-512 operations the kernel uses, per element type.
template <typename T>
struct Avx512;

template <>
struct Avx512<float> {
    using Vec = __m512;
    using Mask = __mmask16;
    static constexpr std::size_t kLanes = 16;
    static constexpr int kVectors = 2;  // per panel: 32 columns
    CHAINRULE_AVX512_INLINE static Vec zero() { return _mm512_setzero_ps(); }
    CHAINRULE_AVX512_INLINE static Vec load(const float* p) { return _mm512_loadu_ps(p); }
    CHAINRULE_AVX512_INLINE static Vec set1(float x) { return _mm512_set1_ps(x); }
    CHAINRULE_AVX512_INLINE static Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
    CHAINRULE_AVX512_INLINE static Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
    CHAINRULE_AVX512_INLINE static Vec relu(Vec z) { return _mm512_maskz_max_ps(Mask(0xFFFF), z, zero()); }
    CHAINRULE_AVX512_INLINE static void store(float* p, Mask m, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
    // rows[0..16) become their transpose: unpacks within 128-bit lanes, then
    // lanes across rows (the zero-masked forms with every lane kept, which
    // GCC 12 does not read as uninitialized).
    CHAINRULE_AVX512_INLINE static void transpose(Vec r[16]) {
        Vec t[16];
        for (int i = 0; i < 8; ++i) {
            t[2 * i] = _mm512_maskz_unpacklo_ps(Mask(0xFFFF), r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_maskz_unpackhi_ps(Mask(0xFFFF), r[2 * i], r[2 * i + 1]);
        }
        for (int i = 0; i < 4; ++i) {  // r[4 i + c]: rows 4i..4i+3 at columns c, c + 4, c + 8, c + 12
            for (int h = 0; h < 2; ++h) {
                const __m512d a = _mm512_castps_pd(t[4 * i + h]), b = _mm512_castps_pd(t[4 * i + 2 + h]);
                r[4 * i + 2 * h] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(__mmask8(0xFF), a, b));
                r[4 * i + 2 * h + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(__mmask8(0xFF), a, b));
            }
        }
        for (int i = 0; i < 2; ++i) {
            for (int c = 0; c < 4; ++c) {
                t[8 * i + c] = _mm512_maskz_shuffle_f32x4(Mask(0xFFFF), r[8 * i + c], r[8 * i + 4 + c], 0x88);
                t[8 * i + 4 + c] = _mm512_maskz_shuffle_f32x4(Mask(0xFFFF), r[8 * i + c], r[8 * i + 4 + c], 0xDD);
            }
        }
        for (int c = 0; c < 4; ++c) {
            r[c] = _mm512_maskz_shuffle_f32x4(Mask(0xFFFF), t[c], t[8 + c], 0x88);
            r[8 + c] = _mm512_maskz_shuffle_f32x4(Mask(0xFFFF), t[c], t[8 + c], 0xDD);
            r[4 + c] = _mm512_maskz_shuffle_f32x4(Mask(0xFFFF), t[4 + c], t[12 + c], 0x88);
            r[12 + c] = _mm512_maskz_shuffle_f32x4(Mask(0xFFFF), t[4 + c], t[12 + c], 0xDD);
        }
    }
};

template <>
struct Avx512<double> {
    using Vec = __m512d;
    using Mask = __mmask8;
    static constexpr std::size_t kLanes = 8;
    static constexpr int kVectors = 3;  // per panel: 24 columns
    CHAINRULE_AVX512_INLINE static Vec zero() { return _mm512_setzero_pd(); }
    CHAINRULE_AVX512_INLINE static Vec load(const double* p) { return _mm512_loadu_pd(p); }
    CHAINRULE_AVX512_INLINE static Vec set1(double x) { return _mm512_set1_pd(x); }
    CHAINRULE_AVX512_INLINE static Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_pd(a, b, c); }
    CHAINRULE_AVX512_INLINE static Vec add(Vec a, Vec b) { return _mm512_add_pd(a, b); }
    // As _mm256_max_pd above (the second operand for NaN and for -0); the
    // zero-masked form, whose unmasked form GCC 12 reads as uninitialized.
    CHAINRULE_AVX512_INLINE static Vec relu(Vec z) { return _mm512_maskz_max_pd(Mask(0xFF), z, zero()); }
    CHAINRULE_AVX512_INLINE static void store(double* p, Mask m, Vec v) { _mm512_mask_storeu_pd(p, m, v); }
    CHAINRULE_AVX512_INLINE static void transpose(Vec r[8]) {
        Vec t[8], u[8];
        for (int i = 0; i < 4; ++i) {
            t[2 * i] = _mm512_maskz_unpacklo_pd(Mask(0xFF), r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_maskz_unpackhi_pd(Mask(0xFF), r[2 * i], r[2 * i + 1]);
        }
        for (int i = 0; i < 2; ++i) {  // u[4 i + c]: rows 4i..4i+3 at columns c', c' + 4 (c' = 0, 2, 1, 3)
            for (int h = 0; h < 2; ++h) {
                u[4 * i + 2 * h] = _mm512_maskz_shuffle_f64x2(Mask(0xFF), t[4 * i + h], t[4 * i + 2 + h], 0x88);
                u[4 * i + 2 * h + 1] = _mm512_maskz_shuffle_f64x2(Mask(0xFF), t[4 * i + h], t[4 * i + 2 + h], 0xDD);
            }
        }
        constexpr int kColumn[4] = {0, 2, 1, 3};
        for (int c = 0; c < 4; ++c) {
            r[kColumn[c]] = _mm512_maskz_shuffle_f64x2(Mask(0xFF), u[c], u[4 + c], 0x88);
            r[kColumn[c] + 4] = _mm512_maskz_shuffle_f64x2(Mask(0xFF), u[c], u[4 + c], 0xDD);
        }
    }
};

template <typename T, int R, int V, bool kRelu>
CHAINRULE_AVX512_INLINE void tile512(std::size_t K, const T* inp, std::size_t ldi, const T* panel, const T* bias,
                                     T* out, std::size_t ldo, typename Avx512<T>::Mask last_lanes) {
    using A = Avx512<T>;
    constexpr std::size_t L = A::kLanes;
    typename A::Vec acc[R][V];
    for (int r = 0; r < R; ++r) {
        for (int v = 0; v < V; ++v) acc[r][v] = A::zero();
    }
    for (std::size_t k = 0; k < K; ++k) {
        typename A::Vec w[V];
        for (int v = 0; v < V; ++v) w[v] = A::load(panel + k * (L * V) + L * v);
        for (int r = 0; r < R; ++r) {
            const typename A::Vec x = A::set1(inp[r * ldi + k]);
            for (int v = 0; v < V; ++v) acc[r][v] = A::fmadd(x, w[v], acc[r][v]);
        }
    }
    for (int v = 0; v < V; ++v) {
        const typename A::Vec b = A::load(bias + L * v);  // padded with zeros past the layer's width
        for (int r = 0; r < R; ++r) {
            typename A::Vec z = A::add(acc[r][v], b);
            if constexpr (kRelu) z = A::relu(z);
            A::store(out + r * ldo + L * v, v == V - 1 ? last_lanes : typename A::Mask(~0u), z);
        }
    }
}

template <typename T, int V, bool kRelu>
__attribute__((target("avx512f"))) void panel_rows512(std::size_t rows, std::size_t K, const T* inp, const T* panel,
                                                      const T* bias, T* out, std::size_t ldo,
                                                      typename Avx512<T>::Mask last_lanes) {
    constexpr int kRows = 8;
    std::size_t r = 0;
    for (; r + kRows <= rows; r += kRows) {
        tile512<T, kRows, V, kRelu>(K, inp + r * K, K, panel, bias, out + r * ldo, ldo, last_lanes);
    }
    const T* x = inp + r * K;
    T* o = out + r * ldo;
    switch (rows - r) {
        case 0: break;
        case 1: tile512<T, 1, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        case 2: tile512<T, 2, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        case 3: tile512<T, 3, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        case 4: tile512<T, 4, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        case 5: tile512<T, 5, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        case 6: tile512<T, 6, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        default: tile512<T, 7, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
    }
}

// Columns [first, first + width) of W^T (rows of W) as rows of `stride`
// values, k = 0..K-1 (stride: width rounded up to whole vectors), the
// padding zeros; and the bias padded the same way.
template <typename T>
__attribute__((target("avx512f"))) void pack_panel512(T* panel, T* padded_bias, const T* weight, const T* bias,
                                                      std::size_t K, std::size_t first, std::size_t width,
                                                      std::size_t stride) {
    using A = Avx512<T>;
    constexpr std::size_t L = A::kLanes;
    for (std::size_t j0 = 0; j0 < stride; j0 += L) {  // L columns of the panel at a time
        const std::size_t real = std::min(L, width > j0 ? width - j0 : 0);
        const T* w = weight + (first + j0) * K;
        std::size_t k = 0;
        for (; k + L <= K; k += L) {
            typename A::Vec block[L];
            for (std::size_t j = 0; j < L; ++j) block[j] = j < real ? A::load(w + j * K + k) : A::zero();
            A::transpose(block);
            for (std::size_t i = 0; i < L; ++i) A::store(panel + (k + i) * stride + j0, typename A::Mask(~0u), block[i]);
        }
        for (; k < K; ++k) {
            for (std::size_t j = 0; j < L; ++j) panel[k * stride + j0 + j] = j < real ? w[j * K + k] : T(0);
        }
    }
    for (std::size_t j = 0; j < stride; ++j) padded_bias[j] = j < width ? bias[first + j] : T(0);
}

// Panels [begin, end) of out (rows, N), on the calling thread.
template <typename T>
__attribute__((target("avx512f"))) void forward_panels512(T* out, const T* inp, const T* weight, const T* bias,
                                                          std::size_t rows, std::size_t K, std::size_t N, bool relu,
                                                          std::size_t begin, std::size_t end) {
    using A = Avx512<T>;
    constexpr std::size_t L = A::kLanes;
    constexpr std::size_t kWidth = L * A::kVectors;
    // Per thread, grown once: the forward pass may run on several threads at
    // once (the panels of one product, or predict on several Python threads).
    thread_local std::vector<T> panel, padded_bias;
    if (panel.size() < kWidth * K) panel.resize(kWidth * K);
    if (padded_bias.size() < kWidth) padded_bias.resize(kWidth);
    for (std::size_t p = begin; p < end; ++p) {
        const std::size_t first = p * kWidth, width = std::min(kWidth, N - first);
        const int vectors = static_cast<int>((width + L - 1) / L);
        const std::size_t last = width - L * static_cast<std::size_t>(vectors - 1);  // 1..L columns in the last vector
        const auto lanes = static_cast<typename A::Mask>((std::uint32_t{1} << last) - 1u);
        pack_panel512(panel.data(), padded_bias.data(), weight, bias, K, first, width, L * vectors);
        const T* pp = panel.data();
        const T* b = padded_bias.data();
        T* o = out + first;
        if (vectors == 3) {
            (relu ? panel_rows512<T, 3, true> : panel_rows512<T, 3, false>)(rows, K, inp, pp, b, o, N, lanes);
        } else if (vectors == 2) {
            (relu ? panel_rows512<T, 2, true> : panel_rows512<T, 2, false>)(rows, K, inp, pp, b, o, N, lanes);
        } else {
            (relu ? panel_rows512<T, 1, true> : panel_rows512<T, 1, false>)(rows, K, inp, pp, b, o, N, lanes);
        }
    }
    _mm256_zeroupper();  // as above: the SSE code that runs next
}

// The panels shared out by the threads, each part at least kGemmTileMinWork
// multiply-adds (runtime/gemm.hpp: a tile of the library's product): a
// product that small is one part, on the calling thread.
template <typename T>
void forward_avx512(T* out, const T* inp, const T* weight, const T* bias, std::size_t rows, std::size_t K,
                    std::size_t N, bool relu) {
    constexpr std::size_t kWidth = Avx512<T>::kLanes * Avx512<T>::kVectors;
    const std::size_t panels = (N + kWidth - 1) / kWidth;
    const double per_panel = double(rows) * double(K) * double(kWidth);
    const auto min_panels = static_cast<std::size_t>(std::ceil(kGemmTileMinWork / per_panel));
    for_ranges(panels, std::max<std::size_t>(1, min_panels), 1, [&](std::size_t begin, std::size_t end) {
        forward_panels512(out, inp, weight, bias, rows, K, N, relu, begin, end);
    });
}

}  // namespace

template <typename T>
bool panel_linear_fits(std::size_t rows, std::size_t in_features, std::size_t out_features) {
    if (rows == 0 || in_features == 0 || out_features == 0) return false;
    // With AVX-512: a training batch or a small predict chunk, any width.
    if (rows <= kPanelLinearMaxRows512 && in_features <= kPanelLinearMaxInner512 && cpu_has_avx512f()) return true;
    if constexpr (!std::is_same_v<T, double>) {
        return false;
    } else {
        return in_features <= kPanelLinearMaxInner && in_features * out_features <= kPanelLinearMaxWeights &&
               double(rows) * double(in_features) * double(out_features) < kPanelLinearMaxWork && cpu_has_avx2_fma();
    }
}

template <typename T>
void panel_linear_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t rows,
                          std::size_t in_features, std::size_t out_features, bool relu, PanelVectors vectors) {
    assert(panel_linear_fits<T>(rows, in_features, out_features));
    if constexpr (std::is_same_v<T, double>) {
        if (vectors == PanelVectors::avx2 || !cpu_has_avx512f()) {
            forward_avx2(out, inp, weight, bias, rows, in_features, out_features, relu);
            return;
        }
    }
    forward_avx512(out, inp, weight, bias, rows, in_features, out_features, relu);
}

#else  // no dispatch on the CPU: the library computes every product

template <typename T>
bool panel_linear_fits(std::size_t, std::size_t, std::size_t) {
    return false;
}

template <typename T>
void panel_linear_forward(T*, const T*, const T*, const T*, std::size_t, std::size_t, std::size_t, bool,
                          PanelVectors) {
    assert(false && "panel_linear_forward without panel_linear_fits");
}

#endif

#define CHAINRULE_INSTANTIATE(T)                                                                              \
    template bool panel_linear_fits<T>(std::size_t, std::size_t, std::size_t);                                 \
    template void panel_linear_forward<T>(T*, const T*, const T*, const T*, std::size_t, std::size_t, std::size_t, \
                                          bool, PanelVectors);

CHAINRULE_INSTANTIATE(float)
CHAINRULE_INSTANTIATE(double)
#undef CHAINRULE_INSTANTIATE

}  // namespace chainrule::detail
