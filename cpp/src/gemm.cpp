#include "gemm.hpp"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "chainrule/threads.hpp"
#include "thread_pool.hpp"

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

void gemm_one(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
              const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc) {
    CHAINRULE_CBLAS(sgemm)(CblasRowMajor, op(ta), op(tb), static_cast<int>(M), static_cast<int>(N),
                           static_cast<int>(K), 1.0f, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
                           static_cast<int>(ldc));
}

void gemm_one(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A, std::size_t lda,
              const double* B, std::size_t ldb, double beta, double* C, std::size_t ldc) {
    CHAINRULE_CBLAS(dgemm)(CblasRowMajor, op(ta), op(tb), static_cast<int>(M), static_cast<int>(N),
                           static_cast<int>(K), 1.0, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
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
void gemm_one(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda, const T* B,
              std::size_t ldb, T beta, T* C, std::size_t ldc) {
    // Scale C by beta first, then accumulate rank-1 updates along K with the
    // innermost loop running over a contiguous row of C.
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
                const T a = ta ? A[k * lda + i] : A[i * lda + k];
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
                c[j] += acc;
            }
        }
    }
}

constexpr bool kSplitProducts = true;  // the loops sum each element in one order, whatever the block
const char* gemm_backend() { return "loops"; }
void set_gemm_threads(int) {}
int gemm_threads() { return 1; }

#endif

namespace {
// Parts are whole multiples of this many rows or columns of C.
constexpr std::size_t kBlock = 16;
}  // namespace

template <typename T>
void gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda, const T* B,
          std::size_t ldb, T beta, T* C, std::size_t ldc) {
    // A large product is cut into blocks of rows of C (or of columns, the
    // longer side), one per thread, each computed by the backend on one
    // thread: every element of C gets the same sum in the same order as in
    // one call, so results do not depend on the thread count.
    if (!kSplitProducts || double(M) * double(N) * double(K) < kGemmSplitMinWork) {
        gemm_one(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (M >= N) {  // rows [begin, end) of C and of op(A)
        for_ranges(M, kBlock, kBlock, [&](std::size_t begin, std::size_t end) {
            gemm_one(ta, tb, end - begin, N, K, ta ? A + begin : A + begin * lda, lda, B, ldb, beta,
                     C + begin * ldc, ldc);
        });
    } else {  // columns [begin, end) of C and of op(B)
        for_ranges(N, kBlock, kBlock, [&](std::size_t begin, std::size_t end) {
            gemm_one(ta, tb, M, end - begin, K, A, lda, tb ? B + begin * ldb : B + begin, ldb, beta, C + begin,
                     ldc);
        });
    }
}

template void gemm<float>(bool, bool, std::size_t, std::size_t, std::size_t, const float*, std::size_t, const float*,
                          std::size_t, float, float*, std::size_t);
template void gemm<double>(bool, bool, std::size_t, std::size_t, std::size_t, const double*, std::size_t,
                           const double*, std::size_t, double, double*, std::size_t);

}  // namespace chainrule::detail

namespace chainrule {

namespace {
std::atomic<int> g_num_threads{0};  // 0: not set yet
std::once_flag g_threads_once;

int all_cores() {
    const unsigned cores = std::thread::hardware_concurrency();
    return cores == 0 ? 1 : static_cast<int>(cores);
}

// Once: the default thread count (OpenBLAS's own start-up count, which
// honours OPENBLAS_NUM_THREADS, else all cores), and the GEMM library set to
// one thread: chainrule's pool runs the parts of a product.
void init_threads() {
    std::call_once(g_threads_once, [] {
        const int initial = std::string(detail::gemm_backend()) == "openblas" ? detail::gemm_threads() : all_cores();
        if (detail::kSplitProducts) detail::set_gemm_threads(1);
        g_num_threads.store(initial);  // every other store waits for this once
        detail::set_pool_threads(initial);
    });
}
}  // namespace

void set_num_threads(int threads) {
    if (threads < 1) {
        throw std::invalid_argument("set_num_threads: threads must be >= 1, got " + std::to_string(threads));
    }
    init_threads();
    g_num_threads.store(threads);
    detail::set_pool_threads(threads);
}

int get_num_threads() {
    init_threads();
    return g_num_threads.load();
}

}  // namespace chainrule
