// The linear layer's products for small layers (small_linear.cpp): what
// linear_forward and linear_backward call instead of the GEMM, or of their
// loops, for the layers that fit. Written with GCC/Clang vector types;
// elsewhere (CHAINRULE_SMALL_LINEAR 0) linear.cpp keeps its other paths.
#pragma once

#include <cstddef>

#include "chainrule/names.hpp"

#if defined(__GNUC__)
#define CHAINRULE_SMALL_LINEAR 1
#else
#define CHAINRULE_SMALL_LINEAR 0
#endif

namespace chainrule::detail {

// The most values of W^T, padded to whole vectors of outputs, that the
// forward kernel copies (on the stack) per call, and the most weights of a
// layer that the backward kernels take: 8 KiB of float, 16 KiB of double,
// well inside L1.
constexpr std::size_t kSmallLinearMaxPacked = 2048;
constexpr std::size_t kSmallLinearMaxWeights = 2048;
constexpr std::size_t kSmallLinearMaxRecords = 64;
constexpr std::size_t kSmallLinearMaxInputs = 128;

// Whether small_linear_forward takes a layer: 2 to 32 outputs (float; 16
// double), and W^T padded to whole vectors within kSmallLinearMaxPacked.
template <typename T>
bool small_linear_forward_fits(std::size_t in_features, std::size_t out_features);

// Whether small_linear_backward takes a layer and batch: at least one vector
// of inputs (8 float, 4 double) and at most kSmallLinearMaxWeights weights;
// with more than 3 outputs, also at most kSmallLinearMaxRecords records and
// kSmallLinearMaxInputs inputs. dW reads the batch's inputs once per block
// of rows, where the GEMM reads them once: a few times over from L1 beats
// the GEMM's packing for a batch of 32, not for one of 256, nor for many
// inputs (256 inputs and 8 outputs) (docs/performance.md, "Small layers").
template <typename T>
bool small_linear_backward_fits(std::size_t in_features, std::size_t out_features, std::size_t num_records);

// Whether single_output_forward takes a layer of one output: inputs a
// multiple of 8 (detail::dot's lanes), at least 8.
template <typename T>
bool single_output_fits(std::size_t in_features);

// out (B, 1) = inp (B, C) @ weight^T (1, C) + bias (1), each z_r = detail::dot(w, x_r) + b,
// with the bits of linear_forward's loop of dot products.
//   docs/math.md: Z_l = A_{l-1} W_l^T + b_l
template <typename T>
void single_output_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t num_records,
                           std::size_t in_features);

// Whether linear_forward (linear.cpp) sends a product of num_records records
// to small_linear_forward: the layer fits, and the product is large enough
// for linear_forward to take its matrix path at all.
template <typename T>
bool small_linear_forward_takes(std::size_t num_records, std::size_t in_features, std::size_t out_features);

// predict's fast path for a network of one small hidden layer and one output
// (the benchmark's W2, 30-16-1, and W3, 10-32-1): whether
// small_network_predict takes it. The hidden layer must fit
// small_linear_forward and the output single_output_forward, each activation
// sigmoid or identity (elementwise and vectorized).
template <typename T>
bool small_network_predict_fits(std::size_t in_features, std::size_t hidden_units, std::size_t outputs,
                                Activation hidden, Activation output);

// out (B) = f_output(f_hidden(inp W_1^T + b_1) w_2^T + b_2), forward only: the
// two layers' products, biases and activations a block of 96 records at a
// time, the block's hidden values kept in L1, instead of one pass per product
// and per activation over a chunk. Each value is computed by the
// functions of the plain path (small_linear_forward, single_output_forward,
// the activations' homes), so each output has the same bits. Returns false
// when a hidden z or an output is not finite: with finite parameters, a
// non-finite input makes every hidden z of its record non-finite, so the
// caller checks X only then (and the outputs, for an overflow). One thread;
// only for batches that small_linear_forward_takes.
//   docs/math.md: Z_l = A_{l-1} W_l^T + b_l, A_l = f_l(Z_l); "Forward pass", predict through a small network
template <typename T>
bool small_network_predict(T* out, const T* inp, const T* hidden_weight, const T* hidden_bias,
                           const T* output_weight, const T* output_bias, std::size_t num_records,
                           std::size_t in_features, std::size_t hidden_units, Activation hidden, Activation output);

// out (B, OC) = inp (B, C) @ weight^T (OC, C) + bias (OC)
//   docs/math.md: Z_l = A_{l-1} W_l^T + b_l, each z_rj summed over k in order from 0, then + b_j
template <typename T>
void small_linear_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t num_records,
                          std::size_t in_features, std::size_t out_features);

// small_linear_forward, then the sigmoid of each value (activations.hpp's
// Sigmoid::f in activation_forward's loop): the same bits as the two calls,
// in one, for a hidden sigmoid layer (linear_sigmoid_forward).
//   docs/math.md: A_l = sigma(A_{l-1} W_l^T + b_l)
template <typename T>
void small_linear_sigmoid_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t num_records,
                                  std::size_t in_features, std::size_t out_features);

// Whether single_output_backward_through takes a layer of one output and
// batch below which lies a hidden layer of activation `below`: sigmoid or
// relu, where small_linear_backward makes one pass over the records.
template <typename T>
bool single_output_backward_through_fits(Activation below, std::size_t in_features, std::size_t num_records);

// small_linear_backward for a layer of one output whose inputs inp are the
// outputs a of a hidden layer of activation `below`, then activation_backward
// on dinp through a (dinp = dinp f'): the same bits as the two calls, each
// vector of dinp multiplied as it is computed (linear_activation_backward).
//   docs/math.md: dZ_{l-1} = (dZ_l W_l) * f'_{l-1}(Z_{l-1})
template <typename T>
void single_output_backward_through(Activation below, T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                                    const T* weight, std::size_t num_records, std::size_t in_features,
                                    bool accumulate, bool one_sum);

// linear_backward for a layer that fits: dweight (OC, C) (+)= dout^T @ inp,
// dbias (OC) (+)= sum over records of dout, dinp (B, C) = dout @ weight
// (skipped when dinp is null). Each sum runs in record order (dW, db) or
// output order (dA). With one_sum, each dW_jk is summed from 0 and then, with
// accumulate, added to dW_jk (a GEMM's order); without, the records' terms
// go one by one into dW_jk, the first term written as it is without
// accumulate (linear.cpp's loops' order).
//   docs/math.md: dW_l = (1/B) dZ_l^T A_{l-1}, db_l = (1/B) sum dZ_l, dZ_l W_l; "Small layers"
template <typename T>
void small_linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                           std::size_t num_records, std::size_t in_features, std::size_t out_features,
                           bool accumulate, bool one_sum);

}  // namespace chainrule::detail
