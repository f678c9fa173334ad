// Microbenchmark of the optimizer update alone (kernels/optimizers.cpp) over
// a flat buffer the size of W4's parameters: microseconds per update, best of
// repeats, for plain SGD, SGD with momentum and Adam. Not a test and not the
// benchmark suite; built with -DCHAINRULE_BUILD_BENCH=ON:
//   <build dir>/update_bench [float|double] [threads] [repeats]
// With STAGGER=0 in the environment the parameters and gradient are plain
// std::vectors (as every large buffer was before chainrule::Buffer), all at
// one offset in their pages, instead of buffers in their lanes, to show what
// the lanes are for (the optimizer's slots are in their lanes either way).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "chainrule/chainrule.hpp"
#include "kernels/kernels.hpp"

using namespace chainrule;

template <typename T, typename Vector>
void run(Vector& p, Vector& g, int repeats) {
    std::mt19937 random(1);
    std::normal_distribution<double> normal(0.0, 0.1);
    for (auto& x : p) x = static_cast<T>(normal(random));
    for (auto& x : g) x = static_cast<T>(0.01 * normal(random));
    const char* names[] = {"sgd", "momentum", "adam"};
    for (int kind = 0; kind < 3; ++kind) {
        OptimizerOptions o;
        if (kind == 1) o.momentum = 0.9;
        if (kind == 2) o.kind = OptimizerKind::adam;
        OptimizerState<T> state;
        double best = 1e30;
        for (int r = 0; r < repeats; ++r) {
            const auto start = std::chrono::steady_clock::now();
            if (!optimizer_update(p.data(), g.data(), p.size(), state, o, 1e-6)) std::abort();
            const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - start;
            best = std::min(best, took.count());
        }
        std::printf("%-9s %s  %zu parameters  us/update best %8.1f\n", names[kind], sizeof(T) == 4 ? "float " : "double",
                    p.size(), best);
    }
}

template <typename T>
void run(bool stagger, int repeats) {
    const std::size_t n = 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10;  // W4
    if (stagger) {
        Buffer<T> p(n, T(0), StaggeredAllocator<T>(0)), g(n, T(0), StaggeredAllocator<T>(1));
        run<T>(p, g, repeats);
    } else {
        std::vector<T> p(n), g(n);
        run<T>(p, g, repeats);
    }
}

int main(int argc, char** argv) {
    const std::string dtype = argc > 1 ? argv[1] : "float";
    set_num_threads(argc > 2 ? std::atoi(argv[2]) : 1);
    const int repeats = argc > 3 ? std::atoi(argv[3]) : 500;
    const char* stagger = std::getenv("STAGGER");
    const bool staggered = !(stagger && std::string(stagger) == "0");
    if (dtype == "double") {
        run<double>(staggered, repeats);
    } else {
        run<float>(staggered, repeats);
    }
}
