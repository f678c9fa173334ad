// The core's own threads: a small process-wide pool that runs the parts of a
// split matrix product (gemm.cpp), and the ranges of large elementwise work
// and of predict's chunks (for_ranges, below). Why not the GEMM library's threads: its
// split of a product depends on the thread count (OpenBLAS's 1- and 2-thread
// results differ in the last bits), while one product cut into blocks of rows
// or columns, each computed by the library on one thread, gives the same bits
// for any number of blocks; and it was as fast or faster on the W4 and W5
// products measured on this project's machine.
#pragma once

#include <algorithm>
#include <cstddef>

#include "chainrule/threads.hpp"

namespace chainrule::detail {

// Runs body(context, part) for part = 0 .. parts-1 and returns when all are
// done: part 0 on the calling thread, the others on the pool's workers. When
// another thread is using the pool, the caller runs every part itself (the
// same results, one thread). body must not throw.
void run_parts(int parts, void (*body)(void* context, int part), void* context);

// Keeps threads - 1 workers (started on first use, at most this many).
void set_pool_threads(int threads);

// Calls body(begin, end) on ranges that cover [0, n) in order, one per thread
// (get_num_threads()), each a multiple of `align` long but the last, when n
// holds two or more ranges of min_part; otherwise body(0, n) on the calling
// thread. For work whose every element (or row) is computed alone: the
// results are those of one call, whatever the thread count. body must not
// throw.
template <typename Body>
void for_ranges(std::size_t n, std::size_t min_part, std::size_t align, const Body& body) {
    if (n < 2 * min_part) {  // the common small case, without a look at the setting
        body(std::size_t{0}, n);
        return;
    }
    const std::size_t threads = static_cast<std::size_t>(get_num_threads());
    const std::size_t parts = std::min(threads, n / std::max<std::size_t>(min_part, 1));
    if (parts < 2) {
        body(std::size_t{0}, n);
        return;
    }
    const std::size_t step = ((n + parts - 1) / parts + align - 1) / align * align;  // <= parts ranges
    struct Context {
        const Body* body;
        std::size_t n, step;
    } context{&body, n, step};
    run_parts(
        static_cast<int>((n + step - 1) / step),
        [](void* opaque, int part) {
            const Context& c = *static_cast<const Context*>(opaque);
            const std::size_t begin = static_cast<std::size_t>(part) * c.step;
            (*c.body)(begin, std::min(c.n, begin + c.step));
        },
        &context);
}

}  // namespace chainrule::detail
