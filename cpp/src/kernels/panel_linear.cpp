#include "kernels/panel_linear.hpp"

#include <algorithm>
#include <cassert>
#include <type_traits>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__ELF__) && !defined(CHAINRULE_NO_TARGET_CLONES)
#define CHAINRULE_PANEL_LINEAR 1
#include <immintrin.h>
#endif

namespace chainrule::detail {

#if defined(CHAINRULE_PANEL_LINEAR)

namespace {

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

// The same with AVX-512: panels of 24 columns (three vectors of 8 doubles),
// tiles of up to 8 rows (24 accumulators of the 32 registers). Each element
// is the same chain as above, so the two give the same bits; where a core
// does 512-bit multiply-adds at full width (Zen 5, Intel's server cores),
// twice the lanes per instruction.
constexpr std::size_t kPanel512 = 24;

bool cpu_has_avx512f() {
    static const bool has = __builtin_cpu_supports("avx512f");
    return has;
}

template <int R, int V, bool kRelu>
__attribute__((target("avx512f"), always_inline)) inline void tile512(std::size_t K, const double* inp,
                                                                      std::size_t ldi, const double* panel,
                                                                      const double* bias, double* out,
                                                                      std::size_t ldo, __mmask8 last_lanes) {
    __m512d acc[R][V];
    for (int r = 0; r < R; ++r) {
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_pd();
    }
    for (std::size_t k = 0; k < K; ++k) {
        __m512d w[V];
        for (int v = 0; v < V; ++v) w[v] = _mm512_loadu_pd(panel + k * (8 * V) + 8 * v);
        for (int r = 0; r < R; ++r) {
            const __m512d x = _mm512_set1_pd(inp[r * ldi + k]);
            for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_pd(x, w[v], acc[r][v]);
        }
    }
    for (int v = 0; v < V; ++v) {
        const __m512d b = _mm512_loadu_pd(bias + 8 * v);  // padded with zeros past the layer's width
        for (int r = 0; r < R; ++r) {
            __m512d z = _mm512_add_pd(acc[r][v], b);
            // As _mm256_max_pd above (the second operand for NaN and for -0); the
            // zero-masked form, whose unmasked form GCC 12 reads as uninitialized.
            if constexpr (kRelu) z = _mm512_maskz_max_pd(__mmask8(0xFF), z, _mm512_setzero_pd());
            _mm512_mask_storeu_pd(out + r * ldo + 8 * v, v == V - 1 ? last_lanes : __mmask8(0xFF), z);
        }
    }
}

template <int V, bool kRelu>
__attribute__((target("avx512f"))) void panel_rows512(std::size_t rows, std::size_t K, const double* inp,
                                                      const double* panel, const double* bias, double* out,
                                                      std::size_t ldo, __mmask8 last_lanes) {
    constexpr int kRows = 8;
    std::size_t r = 0;
    for (; r + kRows <= rows; r += kRows) {
        tile512<kRows, V, kRelu>(K, inp + r * K, K, panel, bias, out + r * ldo, ldo, last_lanes);
    }
    const double* x = inp + r * K;
    double* o = out + r * ldo;
    switch (rows - r) {
        case 0: break;
        case 1: tile512<1, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        case 2: tile512<2, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        case 3: tile512<3, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        case 4: tile512<4, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        case 5: tile512<5, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        case 6: tile512<6, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
        default: tile512<7, V, kRelu>(K, x, K, panel, bias, o, ldo, last_lanes); break;
    }
}

__attribute__((target("avx512f"))) void forward_avx512(double* out, const double* inp, const double* weight,
                                                       const double* bias, std::size_t rows, std::size_t K,
                                                       std::size_t N, bool relu) {
    const Packed packed = pack_panels(weight, bias, K, N, kPanel512, 8);
    for (std::size_t first = 0; first < N; first += kPanel512) {
        const std::size_t width = std::min(kPanel512, N - first);
        const int vectors = static_cast<int>((width + 7) / 8);
        const int last = static_cast<int>(width - 8 * (vectors - 1));  // 1..8 columns in the last vector
        const __mmask8 lanes = static_cast<__mmask8>((1u << last) - 1u);
        const double* panel = packed.panels + first * K;
        const double* b = packed.bias + first;
        double* o = out + first;
        if (vectors == 3) {
            (relu ? panel_rows512<3, true> : panel_rows512<3, false>)(rows, K, inp, panel, b, o, N, lanes);
        } else if (vectors == 2) {
            (relu ? panel_rows512<2, true> : panel_rows512<2, false>)(rows, K, inp, panel, b, o, N, lanes);
        } else {
            (relu ? panel_rows512<1, true> : panel_rows512<1, false>)(rows, K, inp, panel, b, o, N, lanes);
        }
    }
    _mm256_zeroupper();  // as above: the SSE code that runs next
}

}  // namespace

template <typename T>
bool panel_linear_fits(std::size_t rows, std::size_t in_features, std::size_t out_features) {
    if constexpr (!std::is_same_v<T, double>) {
        return false;
    } else {
        return rows > 0 && in_features > 0 && out_features > 0 && in_features <= kPanelLinearMaxInner &&
               in_features * out_features <= kPanelLinearMaxWeights &&
               double(rows) * double(in_features) * double(out_features) < kPanelLinearMaxWork && cpu_has_avx2_fma();
    }
}

void panel_linear_forward(double* out, const double* inp, const double* weight, const double* bias,
                          std::size_t rows, std::size_t in_features, std::size_t out_features, bool relu,
                          PanelVectors vectors) {
    assert(panel_linear_fits<double>(rows, in_features, out_features));
    if (vectors == PanelVectors::widest && cpu_has_avx512f()) {
        forward_avx512(out, inp, weight, bias, rows, in_features, out_features, relu);
    } else {
        forward_avx2(out, inp, weight, bias, rows, in_features, out_features, relu);
    }
}

#else  // no dispatch on the CPU: the library computes every product

template <typename T>
bool panel_linear_fits(std::size_t, std::size_t, std::size_t) {
    return false;
}

void panel_linear_forward(double*, const double*, const double*, const double*, std::size_t, std::size_t,
                          std::size_t, bool, PanelVectors) {
    assert(false && "panel_linear_forward without panel_linear_fits");
}

#endif

template bool panel_linear_fits<float>(std::size_t, std::size_t, std::size_t);
template bool panel_linear_fits<double>(std::size_t, std::size_t, std::size_t);

}  // namespace chainrule::detail
