#include "runtime/gemm.hpp"

#include <algorithm>
#include <cassert>

#include "runtime/thread_pool.hpp"

#if defined(CHAINRULE_BLAS_SCIPY_OPENBLAS)
#include <cblas.h>  // scipy-openblas32: every symbol carries the scipy_ prefix
#define CHAINRULE_CBLAS(name) scipy_cblas_##name
#elif defined(CHAINRULE_BLAS_CBLAS)
#include <cblas.h>
#define CHAINRULE_CBLAS(name) cblas_##name
#endif

namespace chainrule::detail {

#if defined(CHAINRULE_CBLAS)

namespace {
CBLAS_TRANSPOSE op(bool transpose) { return transpose ? CblasTrans : CblasNoTrans; }
}  // namespace

// One product on the calling thread (the library's own threads stay at 1
// for scipy-openblas: chainrule splits large products itself, below).

void gemm_one(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, float alpha, const float* A,
              std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc) {
    CHAINRULE_CBLAS(sgemm)(CblasRowMajor, op(ta), op(tb), static_cast<int>(M), static_cast<int>(N),
                           static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
                           static_cast<int>(ldc));
}

void gemm_one(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, double alpha, const double* A,
              std::size_t lda, const double* B, std::size_t ldb, double beta, double* C, std::size_t ldc) {
    CHAINRULE_CBLAS(dgemm)(CblasRowMajor, op(ta), op(tb), static_cast<int>(M), static_cast<int>(N),
                           static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
                           static_cast<int>(ldc));
}

#if defined(CHAINRULE_BLAS_SCIPY_OPENBLAS)
constexpr bool kSplitProducts = true;
const char* gemm_backend() { return "openblas"; }
void set_gemm_threads(int threads) { scipy_openblas_set_num_threads(threads); }
int gemm_threads() { return scipy_openblas_get_num_threads(); }
#else
constexpr bool kSplitProducts = false;  // an unknown CBLAS threads by itself, as its user configured it
const char* gemm_backend() { return "cblas"; }
void set_gemm_threads(int) {}  // a generic CBLAS has no standard thread control
int gemm_threads() { return 1; }
#endif

#else  // no BLAS: cache-friendly loops, vectorized by the compiler

template <typename T>
void gemm_one(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, std::size_t lda,
              const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    // Scale C by beta first, then accumulate rank-1 updates along K with the
    // innermost loop running over a contiguous row of C, alpha taken into
    // each term's element of A (as the reference BLAS does), or into each
    // dot product.
    for (std::size_t i = 0; i < M; ++i) {
        T* c = C + i * ldc;
        if (beta == T(0)) {
            std::fill(c, c + N, T(0));
        } else if (beta != T(1)) {
            for (std::size_t j = 0; j < N; ++j) c[j] *= beta;
        }
    }
    if (!tb) {  // B (K, N): row k of B is contiguous
        for (std::size_t i = 0; i < M; ++i) {
            T* c = C + i * ldc;
            for (std::size_t k = 0; k < K; ++k) {
                const T a = alpha * (ta ? A[k * lda + i] : A[i * lda + k]);
                const T* b = B + k * ldb;
#pragma omp simd
                for (std::size_t j = 0; j < N; ++j) c[j] += a * b[j];
            }
        }
    } else {  // B^T with B (N, K): a dot product per element, both operands contiguous when !ta
        for (std::size_t i = 0; i < M; ++i) {
            T* c = C + i * ldc;
            for (std::size_t j = 0; j < N; ++j) {
                const T* b = B + j * ldb;
                T acc = T(0);
                if (!ta) {
                    const T* a = A + i * lda;
#pragma omp simd reduction(+ : acc)
                    for (std::size_t k = 0; k < K; ++k) acc += a[k] * b[k];
                } else {
                    for (std::size_t k = 0; k < K; ++k) acc += A[k * lda + i] * b[k];
                }
                c[j] += alpha * acc;
            }
        }
    }
}

constexpr bool kSplitProducts = true;  // the loops sum each element in one order, whatever the block
const char* gemm_backend() { return "loops"; }
void set_gemm_threads(int) {}
int gemm_threads() { return 1; }

#endif

bool gemm_tiles_products() { return kSplitProducts; }

GemmTiling gemm_tiling(std::size_t M, std::size_t N, std::size_t K) {
    const bool rows = M >= N;
    const std::size_t side = rows ? M : N;
    const double work = double(M) * double(N) * double(K);
    std::size_t tiles = 1;
    if (kSplitProducts) {
        while (tiles < kGemmMaxTiles && work / double(2 * tiles) >= kGemmTileMinWork &&
               side / (2 * tiles) >= kGemmTileAlign) {
            tiles *= 2;
        }
    }
    return {rows, side, tiles};
}

template <typename T>
void gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, std::size_t lda,
          const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    init_threads();  // the library's own threads are off before its first product
    const GemmTiling tiling = gemm_tiling(M, N, K);
    if (tiling.tiles == 1) {
        gemm_one(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    // Each tile is a product of its own, computed whole by the backend on one
    // thread; the tiles depend on the shape alone, so one thread computes the
    // same tiles, in the same shapes, as any number of threads does.
    struct Context {
        bool ta, tb;
        std::size_t M, N, K;
        T alpha;
        const T* A;
        std::size_t lda;
        const T* B;
        std::size_t ldb;
        T beta;
        T* C;
        std::size_t ldc;
        GemmTiling tiling;
    } context{ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, tiling};
    run_parts(
        static_cast<int>(tiling.tiles),
        [](void* opaque, int tile) {
            const Context& c = *static_cast<const Context*>(opaque);
            const std::size_t begin = c.tiling.begin(static_cast<std::size_t>(tile));
            const std::size_t width = c.tiling.begin(static_cast<std::size_t>(tile) + 1) - begin;
            if (c.tiling.rows) {  // rows [begin, begin + width) of C and of op(A)
                gemm_one(c.ta, c.tb, width, c.N, c.K, c.alpha, c.ta ? c.A + begin : c.A + begin * c.lda, c.lda, c.B, c.ldb,
                         c.beta, c.C + begin * c.ldc, c.ldc);
            } else {  // columns [begin, begin + width) of C and of op(B)
                gemm_one(c.ta, c.tb, c.M, width, c.K, c.alpha, c.A, c.lda, c.tb ? c.B + begin * c.ldb : c.B + begin, c.ldb,
                         c.beta, c.C + begin, c.ldc);
            }
        },
        &context);
}

template void gemm<float>(bool, bool, std::size_t, std::size_t, std::size_t, float, const float*, std::size_t,
                          const float*, std::size_t, float, float*, std::size_t);
template void gemm<double>(bool, bool, std::size_t, std::size_t, std::size_t, double, const double*, std::size_t,
                           const double*, std::size_t, double, double*, std::size_t);

}  // namespace chainrule::detail
