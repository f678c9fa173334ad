// The core's own threads: a small process-wide pool that runs the parts of a
// split matrix product (gemm.cpp). Why not the GEMM library's threads: its
// split of a product depends on the thread count (OpenBLAS's 1- and 2-thread
// results differ in the last bits), while one product cut into blocks of rows
// or columns, each computed by the library on one thread, gives the same bits
// for any number of blocks; and it was as fast or faster on the W4 and W5
// products measured on this project's machine.
#pragma once

namespace chainrule::detail {

// Runs body(context, part) for part = 0 .. parts-1 and returns when all are
// done: part 0 on the calling thread, the others on the pool's workers. When
// another thread is using the pool, the caller runs every part itself (the
// same results, one thread). body must not throw.
void run_parts(int parts, void (*body)(void* context, int part), void* context);

// Keeps threads - 1 workers (started on first use, at most this many).
void set_pool_threads(int threads);

}  // namespace chainrule::detail
