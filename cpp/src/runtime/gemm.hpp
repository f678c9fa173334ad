// The one matrix-multiply entry point of the core. Which library does the
// work is a build option (CMake CHAINRULE_BLAS): a CBLAS (the Python wheel
// links scipy-openblas32, an embedder may bring any CBLAS), or, with none,
// the plain loops in gemm.cpp.
#pragma once

#include <cstddef>

namespace chainrule::detail {

// A product is cut into tiles of whole rows (or columns: the longer side) of
// C, as many as the largest power of two, at most kGemmMaxTiles, that leaves
// each tile at least kGemmTileMinWork multiply-adds and kGemmTileAlign rows:
// every tile is one more call to the backend, which costs a little on one
// thread, and packs the whole of the other operand again, which costs more
// than a thinner tile saves. Smaller products are one call, on the calling
// thread.
constexpr double kGemmTileMinWork = double(std::size_t{1} << 21);
constexpr std::size_t kGemmMaxTiles = 8;
constexpr std::size_t kGemmTileAlign = 64;

// How gemm cuts a product of C (M, N) with inner size K: the side (rows of C
// when `rows`, else its columns) in `tiles` tiles, each a run of whole blocks
// of kGemmTileAlign (the last block may be short), the blocks shared out as
// evenly as they go. A function of M, N and K alone, never of the thread
// count, so that every element of C is summed by the same backend call, in
// the same order, however many threads share the tiles.
struct GemmTiling {
    bool rows;
    std::size_t side;
    std::size_t tiles;

    // The first row (or column) of tile i, for i in [0, tiles]; begin(tiles) == side.
    std::size_t begin(std::size_t i) const {
        const std::size_t blocks = (side + kGemmTileAlign - 1) / kGemmTileAlign;
        const std::size_t at = i * blocks / tiles * kGemmTileAlign;
        return at < side ? at : side;
    }
};
GemmTiling gemm_tiling(std::size_t M, std::size_t N, std::size_t K);

// C (M, N) = alpha op(A) (M, K) @ op(B) (K, N) + beta * C, all row-major,
// where op(A) is A (M, K; row stride lda) or, with transpose_a, A^T for A
// (K, M). Where alpha enters the rounding is the backend's (OpenBLAS: into
// each block's sum, as it adds it to C).
template <typename T>
void gemm(bool transpose_a, bool transpose_b, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A,
          std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc);

// The name of the backend: "openblas" (scipy-openblas32), "cblas", or "loops".
const char* gemm_backend();

// Whether gemm tiles large products across the core's threads: true for
// OpenBLAS and the loops; false for a generic CBLAS, which threads by itself
// as its user configured it.
bool gemm_tiles_products();

// Threads the GEMM library may use (1 for the loops backend).
void set_gemm_threads(int threads);
int gemm_threads();

}  // namespace chainrule::detail
