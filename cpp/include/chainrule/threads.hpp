// How many threads the core may use. Work is cut into parts whose bounds
// depend on the sizes alone, never on the thread count, and the threads share
// the parts (a slower one takes fewer): a matrix product of 2^22 multiply-adds
// or more into up to 8 tiles of whole rows or columns of its result, each
// computed by the GEMM backend in one call on one thread (the scipy-openblas
// library is kept at one thread of its own); elementwise work over 2^14 values
// or more (bias, activations and their derivatives, the update) and the
// gathering of a large shuffled batch into ranges; predict on a network whose
// products are too small to tile, into ranges of its 256-record chunks. One
// thread computes the same parts the same way as eight do, so results are the
// same bits for any setting. If the system refuses to start a thread, the
// core carries on with those it has. The setting is process-wide.
//
// With the "cblas" backend (a CBLAS chosen by the embedder) products are not
// tiled: that library threads as it is configured to.
#pragma once

namespace chainrule {

// Use at most `threads` threads (>= 1); throws std::invalid_argument otherwise.
// Call it between trainings, not while another thread trains.
void set_num_threads(int threads);

// The current setting; by default what OPENBLAS_NUM_THREADS asked OpenBLAS
// for at start-up, else all cores.
int get_num_threads();

// The library that computes the matrix products of this build: "openblas"
// (scipy-openblas32), "cblas" (a CBLAS chosen by the embedder) or "loops"
// (none: the core's own loops).
const char* gemm_backend();

}  // namespace chainrule
