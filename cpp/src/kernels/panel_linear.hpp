// The forward product of a dense layer at a training batch's shapes, bias
// added, without the GEMM library: out (B, N) = bias + inp (B, K) W^T, W (N, K).
//
// At a training batch's sizes (tens to hundreds of records) a library call
// spends much of its time packing both operands into its blocked layouts,
// and with N a little above a vector's width (10 classes) its kernel leaves
// most lanes idle. Here only W is packed (as W^T, in panels of 12 columns,
// zero-padded; with AVX-512, 32 in float32 and 24 in float64, each panel
// packed just before its tiles read it); the records are read in place, and
// the bias is added as each tile is stored, where linear_forward otherwise
// first copies it into every row of out. With AVX-512 the threads share out
// the panels of a large product; with AVX2 alone it takes small float64
// products only, on the calling thread.
//
// Each element is one chain: acc = 0, acc = fma(x_k, w_k, acc) for k = 0, 1,
// ..., K - 1 in order, then out = acc + b (docs/math.md, "Forward pass").
// OpenBLAS's x86-64 kernels sum most products of these sizes in that order
// too, but not all (on some shapes they split the sum over k), so the last
// bits may differ from the library's there. Whichever rows a thread
// computes, every element is that chain: the bits do not depend on the
// thread count, or on how the rows are tiled.
#pragma once

#include <cstddef>

namespace chainrule::detail {

// With AVX-512: the most records and the largest inner size it takes (a
// panel, K rows of 32 floats or 24 doubles, stays within 192 KiB).
constexpr std::size_t kPanelLinearMaxRows512 = 256;
constexpr std::size_t kPanelLinearMaxInner512 = 1024;
// With AVX2 alone (float64): the largest inner size (in_features) it takes,
constexpr std::size_t kPanelLinearMaxInner = 256;
// The most weights (in_features x out_features) it packs.
constexpr std::size_t kPanelLinearMaxWeights = std::size_t{1} << 16;
// The most multiply-adds: products the GEMM entry point would not cut in
// tiles for the threads (runtime/gemm.hpp: below 2 kGemmTileMinWork).
constexpr double kPanelLinearMaxWork = double(std::size_t{1} << 22);

// Whether panel_linear_forward computes a product of these sizes on this
// machine, in a build that dispatches on the CPU (CHAINRULE_TARGET_CLONES):
// on an x86-64 CPU with AVX-512F, float32 or float64 within the AVX-512
// limits above; else float64 on a CPU with AVX2 and FMA, within the AVX2
// limits (float32 stays with the library there). A function of the sizes and
// the machine alone, never of the thread count.
template <typename T>
bool panel_linear_fits(std::size_t rows, std::size_t in_features, std::size_t out_features);

// out (rows, out_features) = bias + inp (rows, in_features) @ weight^T, and
// with `relu` max(that, 0) as activations.hpp's Relu takes it (z > 0 ? z :
// +0; NaN gives 0); call it only where panel_linear_fits is true. With
// AVX-512 the core's threads share a large product's panels; else on the
// calling thread.
// Which vectors panel_linear_forward computes with: the widest the CPU has
// (AVX-512 where it has it, else AVX2), or AVX2 (float64, for the tests,
// which check both paths on a CPU that has both). Both give the same bits.
enum class PanelVectors { widest, avx2 };

template <typename T>
void panel_linear_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t rows,
                          std::size_t in_features, std::size_t out_features, bool relu,
                          PanelVectors vectors = PanelVectors::widest);

}  // namespace chainrule::detail
