// The one matrix-multiply entry point of the core. Which library does the
// work is a build option (CMake CHAINRULE_BLAS): a CBLAS (the Python wheel
// links scipy-openblas32, an embedder may bring any CBLAS), or, with none,
// the plain loops in gemm.cpp.
#pragma once

#include <cstddef>

namespace chainrule::detail {

// Products of at least this many multiply-adds are split across the core's
// threads (each part then has ~2^20 or more: well clear of the sizes where a
// library's small-matrix path, with another order of summation, would take
// over); smaller ones, and every small layer, stay on the calling thread.
constexpr double kGemmSplitMinWork = double(std::size_t{1} << 21);

// C (M, N) = op(A) (M, K) @ op(B) (K, N) + beta * C, all row-major, where
// op(A) is A (M, K; row stride lda) or, with transpose_a, A^T for A (K, M).
template <typename T>
void gemm(bool transpose_a, bool transpose_b, std::size_t M, std::size_t N, std::size_t K, const T* A,
          std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc);

// The name of the backend: "openblas" (scipy-openblas32), "cblas", or "loops".
const char* gemm_backend();

// Threads the GEMM library may use (1 for the loops backend).
void set_gemm_threads(int threads);
int gemm_threads();

}  // namespace chainrule::detail
