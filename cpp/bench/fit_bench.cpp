// Microbenchmark of Network<T>::fit on the issue-6 workloads, in C++ (no
// Python in the way): nanoseconds per SGD step, best and median of repeats.
// Not a test and not the benchmark suite; built with -DCHAINRULE_BUILD_BENCH=ON
// (with -DCHAINRULE_BLAS=scipy-openblas for the GEMM backend of the wheel):
//   <build dir>/fit_bench [float|double] [W1,W2,...] [threads] [repeats]
// W1-W6 are bench/'s workloads on random data (W6 here through Network::fit,
// without the estimator's alpha; OPTIMIZER=adam for its optimizer); L1 is W1 as linear regression
// (identity output, MSE): W1 less the sigmoid. With NO_SHUFFLE set in the
// environment the records are visited in order, which separates the cost of a
// step from that of fetching random records; with PREDICT set, predict over
// all the records is timed instead (nanoseconds per record), and with
// PREDICT=one a predict of one record at a time, the call a Python user's
// single-record predict makes (nanoseconds per call); OPTIMIZER picks
// the optimizer (sgd, momentum, nesterov, adam, adamw) and BATCH another
// batch size than the workload's (BATCH=1: online learning). Compare two builds by
// alternating them, several rounds, best of each: this machine is shared.
// Training also prints the best processor time per step ("cpu": std::clock,
// the process's, so all its threads'): on a machine shared with other jobs,
// with one thread, it leaves out the time the process waited for a core.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "chainrule/chainrule.hpp"

using namespace chainrule;
using A = Activation;

struct Workload {
    const char* name;
    std::vector<std::size_t> sizes;
    std::vector<Activation> activations;
    Loss loss;
    std::size_t batch, records;
};

template <typename T>
void run(Workload w, int repeats) {
    if (const char* batch = std::getenv("BATCH")) w.batch = std::max(1, std::atoi(batch));
    std::vector<T> X(w.records * w.sizes.front()), Y(w.records * w.sizes.back());
    std::srand(1);
    for (T& x : X) x = T(std::rand()) / T(RAND_MAX) * 2 - 1;
    for (T& y : Y) y = std::rand() % 2 ? T(1) : T(0);
    Network<T> net(w.sizes, w.activations, w.loss, 1);
    FitOptions options;
    options.batch_size = w.batch;
    options.learning_rate = 0.01;
    options.shuffle = std::getenv("NO_SHUFFLE") == nullptr;
    // OPTIMIZER=momentum (SGD, momentum 0.9), nesterov, adam or adamw (torch's forms).
    const std::string optimizer = std::getenv("OPTIMIZER") ? std::getenv("OPTIMIZER") : "sgd";
    if (optimizer == "momentum" || optimizer == "nesterov") {
        options.optimizer.momentum = 0.9;
        options.optimizer.nesterov = optimizer == "nesterov";
    } else if (optimizer == "adam" || optimizer == "adamw") {
        options.optimizer.kind = optimizer == "adam" ? OptimizerKind::adam : OptimizerKind::adamw;
        options.learning_rate = 1e-3;
    } else if (optimizer != "sgd") {
        std::fprintf(stderr, "OPTIMIZER must be sgd, momentum, nesterov, adam or adamw\n");
        std::exit(2);
    }
    const std::size_t steps_per_epoch = (w.records + w.batch - 1) / w.batch;
    // Epochs for about 0.1 s a repeat.
    double flops = 0;
    for (std::size_t l = 0; l + 1 < w.sizes.size(); ++l) flops += 6.0 * w.sizes[l] * w.sizes[l + 1] * w.batch;
    options.epochs = std::max<std::size_t>(1, std::size_t(2e8 / (flops * steps_per_epoch) + 0.5));
    std::vector<double> ns;
    if (std::getenv("PREDICT") && std::string(std::getenv("PREDICT")) == "one") {  // nanoseconds per call
        const std::size_t n_in = w.sizes.front(), n_out = w.sizes.back();
        std::vector<T> out(n_out);
        for (int r = 0; r < repeats; ++r) {
            constexpr std::size_t kCalls = 2000;  // short rounds: the best catches the machine's fast moments
            for (int round = 0; round < 20; ++round) {
                const auto t0 = std::chrono::steady_clock::now();
                for (std::size_t c = 0; c < kCalls; ++c) {
                    const std::size_t record = c % w.records;
                    net.predict({out.data(), 1, n_out}, {X.data() + record * n_in, 1, n_in});
                }
                const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                ns.push_back(dt * 1e9 / double(kCalls));
            }
        }
        std::sort(ns.begin(), ns.end());
        std::printf("%-3s %-6s ns/call best %10.1f median %10.1f  (predict of one record)\n", w.name,
                    sizeof(T) == 4 ? "float" : "double", ns.front(), ns[ns.size() / 2]);
        return;
    }
    if (std::getenv("PREDICT")) {  // predict over all the records instead: nanoseconds per record
        std::vector<T> out(w.records * w.sizes.back());
        const std::size_t calls = std::max<std::size_t>(1, std::size_t(1e8 / (flops / 3 * w.records / w.batch)));
        for (int r = 0; r < repeats; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            for (std::size_t c = 0; c < calls; ++c) {
                net.predict({out.data(), w.records, w.sizes.back()}, {X.data(), w.records, w.sizes.front()});
            }
            const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            ns.push_back(dt * 1e9 / double(calls * w.records));
        }
        std::sort(ns.begin(), ns.end());
        std::printf("%-3s %-6s ns/rec  best %10.1f median %10.1f  records/s best %10.4g median %10.4g\n", w.name,
                    sizeof(T) == 4 ? "float" : "double", ns.front(), ns[ns.size() / 2], 1e9 / ns.front(),
                    1e9 / ns[ns.size() / 2]);
        return;
    }
    std::vector<double> cpu_ns;
    for (int r = 0; r < repeats; ++r) {
        options.seed = r;
        const std::clock_t c0 = std::clock();
        const auto t0 = std::chrono::steady_clock::now();
        net.fit({X.data(), w.records, w.sizes.front()}, {Y.data(), w.records, w.sizes.back()}, options);
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
        ns.push_back(dt * 1e9 / double(options.epochs * steps_per_epoch));
        cpu_ns.push_back(cpu * 1e9 / double(options.epochs * steps_per_epoch));
    }
    std::sort(ns.begin(), ns.end());
    const double best = ns.front(), median = ns[ns.size() / 2];
    std::printf("%-3s %-6s ns/step best %10.0f median %10.0f  samples/s best %10.4g median %10.4g  cpu best %8.1f\n",
                w.name, sizeof(T) == 4 ? "float" : "double", best, median, w.batch * 1e9 / best,
                w.batch * 1e9 / median, *std::min_element(cpu_ns.begin(), cpu_ns.end()));
}

int main(int argc, char** argv) {
    const std::string dtype = argc > 1 ? argv[1] : "float";
    const std::string which = argc > 2 ? argv[2] : "W1,W2,W3,W4,W5,W6";
    if (argc > 3) set_num_threads(std::atoi(argv[3]));
    const int repeats = argc > 4 ? std::atoi(argv[4]) : 9;
    const Workload all[] = {
        {"W1", {30, 1}, {A::sigmoid}, Loss::bce, 1, 20000},
        {"L1", {30, 1}, {A::identity}, Loss::mse, 1, 20000},
        {"W2", {30, 16, 1}, {A::sigmoid, A::sigmoid}, Loss::bce, 32, 20000},
        {"W3", {10, 32, 1}, {A::sigmoid, A::identity}, Loss::mse, 32, 20000},
        {"W4", {784, 256, 256, 10}, {A::sigmoid, A::sigmoid, A::sigmoid}, Loss::bce, 64, 6400},
        {"W5", {1024, 4096, 4096, 16}, {A::sigmoid, A::sigmoid, A::sigmoid}, Loss::bce, 1024, 2048},
        {"W6", {50, 100, 1}, {A::relu, A::identity}, Loss::mse, 200, 15000},
    };
    for (const Workload& w : all) {
        if (which.find(w.name) == std::string::npos) continue;
        if (dtype == "double") run<double>(w, repeats); else run<float>(w, repeats);
    }
}
