// The core's own threads: a small process-wide pool that runs the tiles of a
// large matrix product (gemm.cpp), and the ranges of large elementwise work
// and of predict's chunks (for_ranges, below). Why not the GEMM library's
// threads: how it splits a product depends on the thread count, and so do the
// last bits of its results. The core cuts work into parts whose bounds depend
// on the sizes alone, never on the thread count, and each part is computed
// whole on one thread: any number of threads computes the same parts the same
// way.
#pragma once

#include <algorithm>
#include <cstddef>

namespace chainrule::detail {

// Runs body(context, part) for part = 0 .. parts-1 and returns when all are
// done. The calling thread and the pool's workers claim the parts one at a
// time, in order, so a thread that is slowed down takes fewer of them. When
// another thread is using the pool, the caller runs every part itself. body
// must not throw, and must compute each part the same way whichever thread
// runs it.
void run_parts(int parts, void (*body)(void* context, int part), void* context);

// Once per process, before the first product: the default thread count, and
// the GEMM library's own threads off where the core tiles products itself
// (threads.cpp). Every entry point that computes calls it (gemm does).
void init_threads();

// Keeps threads - 1 workers (started on first use, at most this many).
void set_pool_threads(int threads);

// The most parts one call cuts its work into.
constexpr std::size_t kMaxParts = std::size_t{1} << 12;

// Calls body(begin, end) on ranges that cover [0, n): n / min_part ranges
// (at most kMaxParts), each a multiple of `align` long but the last, shared
// among the threads; body(0, n) on the calling thread when n holds fewer than
// two ranges of min_part. The ranges depend on n, min_part and align alone,
// never on the thread count. body must not throw.
template <typename Body>
void for_ranges(std::size_t n, std::size_t min_part, std::size_t align, const Body& body) {
    const std::size_t parts = std::min(kMaxParts, n / std::max<std::size_t>(min_part, 1));
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
