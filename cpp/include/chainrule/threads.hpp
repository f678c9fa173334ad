// How many threads the core may use. Only the large matrix products of the
// forward and backward passes (the GEMM library's) run on several threads;
// small layers, the elementwise work and the SGD update always run on the
// calling thread. The setting is process-wide, like the GEMM library's own.
//
// With the "loops" GEMM backend (a CMake build without a BLAS) the core is
// single-threaded whatever the setting.
#pragma once

namespace chainrule {

// Use at most `threads` threads (>= 1); throws std::invalid_argument otherwise.
// Also sets the GEMM library's thread count. Call it between trainings, not
// while another thread trains.
void set_num_threads(int threads);

// The current setting; by default all cores (or what OPENBLAS_NUM_THREADS
// asked the GEMM library for at start-up).
int get_num_threads();

}  // namespace chainrule
