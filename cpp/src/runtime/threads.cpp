// The process-wide thread setting of chainrule/threads.hpp.
#include "chainrule/threads.hpp"

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "runtime/gemm.hpp"
#include "runtime/thread_pool.hpp"

namespace chainrule {

namespace {
std::atomic<int> g_num_threads{0};  // 0: not set yet
std::once_flag g_threads_once;

int all_cores() {
    const unsigned cores = std::thread::hardware_concurrency();
    return cores == 0 ? 1 : static_cast<int>(cores);
}
}  // namespace

namespace detail {

void init_threads() {
    // The default count: OpenBLAS's own start-up count (which honours
    // OPENBLAS_NUM_THREADS), else all cores. When the core tiles products
    // itself, the library is kept at one thread of its own from here on.
    std::call_once(g_threads_once, [] {
        const int initial = std::string(gemm_backend()) == "openblas" ? gemm_threads() : all_cores();
        if (gemm_tiles_products()) set_gemm_threads(1);
        g_num_threads.store(initial);  // every other store waits for this once
        set_pool_threads(initial);
    });
}

}  // namespace detail

void set_num_threads(int threads) {
    if (threads < 1) {
        throw std::invalid_argument("set_num_threads: threads must be >= 1, got " + std::to_string(threads));
    }
    detail::init_threads();
    g_num_threads.store(threads);
    detail::set_pool_threads(threads);
}

int get_num_threads() {
    detail::init_threads();
    return g_num_threads.load();
}

const char* gemm_backend() { return detail::gemm_backend(); }

}  // namespace chainrule
