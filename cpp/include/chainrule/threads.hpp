// How many threads the core may use. The large matrix products of the
// forward and backward passes run on several threads: a product of 2^21
// multiply-adds or more is cut into one block of rows or columns of its
// result per thread, each block computed whole by the GEMM backend on one
// thread (the scipy-openblas library is kept at one thread of its own). Every
// element is then summed in the same order whatever the thread count, so
// results are identical for any setting. Elementwise work over 2^14 values
// or more (bias, activations and their derivatives, the SGD update) and the
// gathering of a large shuffled batch are cut into one range per thread (each
// value computed alone, so again the same bits). predict on a network whose
// products are all too small to split gives each thread a range of its
// 256-record chunks instead. Small layers run on the calling thread. The
// setting is process-wide.
//
// With the "cblas" backend (a CBLAS chosen by the embedder) products are not
// split: that library threads as it is configured to.
#pragma once

namespace chainrule {

// Use at most `threads` threads (>= 1); throws std::invalid_argument otherwise.
// Call it between trainings, not while another thread trains.
void set_num_threads(int threads);

// The current setting; by default what OPENBLAS_NUM_THREADS asked OpenBLAS
// for at start-up, else all cores.
int get_num_threads();

}  // namespace chainrule
