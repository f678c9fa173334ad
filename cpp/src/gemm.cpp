#include "gemm.hpp"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <stdexcept>
#include <string>
#include <thread>

#include "chainrule/threads.hpp"

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

template <>
void gemm<float>(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
                 const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc) {
    CHAINRULE_CBLAS(sgemm)(CblasRowMajor, op(ta), op(tb), static_cast<int>(M), static_cast<int>(N),
                           static_cast<int>(K), 1.0f, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
                           static_cast<int>(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A, std::size_t lda,
                  const double* B, std::size_t ldb, double beta, double* C, std::size_t ldc) {
    CHAINRULE_CBLAS(dgemm)(CblasRowMajor, op(ta), op(tb), static_cast<int>(M), static_cast<int>(N),
                           static_cast<int>(K), 1.0, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
                           static_cast<int>(ldc));
}

#if defined(CHAINRULE_BLAS_SCIPY_OPENBLAS)
const char* gemm_backend() { return "openblas"; }
void set_gemm_threads(int threads) { scipy_openblas_set_num_threads(threads); }
int gemm_threads() { return scipy_openblas_get_num_threads(); }
#else
const char* gemm_backend() { return "cblas"; }
void set_gemm_threads(int) {}  // a generic CBLAS has no standard thread control
int gemm_threads() { return 1; }
#endif

#else  // no BLAS: cache-friendly loops, vectorized by the compiler

template <typename T>
void gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda, const T* B,
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

template void gemm<float>(bool, bool, std::size_t, std::size_t, std::size_t, const float*, std::size_t, const float*,
                          std::size_t, float, float*, std::size_t);
template void gemm<double>(bool, bool, std::size_t, std::size_t, std::size_t, const double*, std::size_t,
                           const double*, std::size_t, double, double*, std::size_t);

const char* gemm_backend() { return "loops"; }
void set_gemm_threads(int) {}
int gemm_threads() { return 1; }

#endif

}  // namespace chainrule::detail

namespace chainrule {

namespace {
std::atomic<int> g_num_threads{0};  // 0: not set yet, take the GEMM library's default

int all_cores() {
    const unsigned cores = std::thread::hardware_concurrency();
    return cores == 0 ? 1 : static_cast<int>(cores);
}
}  // namespace

void set_num_threads(int threads) {
    if (threads < 1) {
        throw std::invalid_argument("set_num_threads: threads must be >= 1, got " + std::to_string(threads));
    }
    g_num_threads.store(threads);
    detail::set_gemm_threads(threads);
}

int get_num_threads() {
    const int threads = g_num_threads.load();
    if (threads > 0) return threads;
    // Not set: OpenBLAS starts with all cores unless OPENBLAS_NUM_THREADS says otherwise.
    return std::string(detail::gemm_backend()) == "openblas" ? detail::gemm_threads() : all_cores();
}

}  // namespace chainrule
