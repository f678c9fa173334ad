// Microbenchmark of the kernels of one W2 or W3 step (batch 32), each alone
// and in cache: nanoseconds per call, best of 60 rounds of 1000 calls, in
// the order the step calls them, and their sum (then, apart, the hidden
// layer's sigmoid alone). What a step's time is made
// of, apart from fit's own work (the batch's gather, the loop, the checks),
// which the difference with fit_bench's time per step measures. Not a test
// and not the benchmark suite; built with -DCHAINRULE_BUILD_BENCH=ON:
//   <build dir>/step_bench [float|double] [W2,W3]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "chainrule/chainrule.hpp"
#include "kernels/kernels.hpp"

using namespace chainrule;

namespace {

template <typename F>
double best_ns(const F& call) {
    double best = 1e30;
    for (int round = 0; round < 60; ++round) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 1000; ++i) {
            call();
            asm volatile("" ::: "memory");  // each call's results count
        }
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e6);
    }
    return best;  // ns per call: seconds / 1000 calls * 1e9
}

// inputs-hidden-1, sigmoid hidden; BCE with a sigmoid output, else MSE with an identity one.
template <typename T>
void step(const char* name, std::size_t inputs, std::size_t hidden, bool bce) {
    const std::size_t B = 32;
    std::vector<T> x(B * inputs, T(0.1)), w1(hidden * inputs, T(0.05)), b1(hidden), a1(B * hidden),
        w2(hidden, T(0.1)), b2(1), z2(B), a2(B), y(B, T(1)), d2(B), dw2(hidden), db2(1), da1(B * hidden),
        dw1(hidden * inputs), db1(hidden), params(hidden * inputs + 2 * hidden + 1),
        grads(params.size(), T(1e-3));
    const char* dtype = sizeof(T) == 4 ? "float" : "double";
    double total = 0.0;
    auto row = [&](const char* what, double ns) {
        total += ns;
        std::printf("%s %-6s %-26s %7.0f ns\n", name, dtype, what, ns);
    };
    // The hidden sigmoid layer's product and sigmoid, one call (Network<T>::forward).
    row("layer 1 linear_sigmoid_fwd",
        best_ns([&] { linear_sigmoid_forward(a1.data(), x.data(), w1.data(), b1.data(), B, inputs, hidden); }));
    row("layer 2 linear_forward",
        best_ns([&] { linear_forward(z2.data(), a1.data(), w2.data(), b2.data(), B, hidden, 1); }));
    if (bce) {
        row("layer 2 sigmoid",
            best_ns([&] { activation_forward(a2.data(), z2.data(), B, Activation::sigmoid); }));
        row("bce_forward (the loss)", best_ns([&] {
                volatile double loss = bce_forward(z2.data(), y.data(), B, 1);
                (void)loss;
            }));
        row("bce_backward", best_ns([&] { bce_backward(d2.data(), a2.data(), y.data(), B, T(1) / T(B)); }));
    } else {
        row("layer 2 identity", best_ns([&] { activation_forward(a2.data(), z2.data(), B, Activation::identity); }));
        row("mse_forward (the loss)", best_ns([&] {
                volatile double loss = mse_forward(a2.data(), y.data(), B, 1);
                (void)loss;
            }));
        row("mse_backward, identity'", best_ns([&] {
                mse_backward(d2.data(), a2.data(), y.data(), B, T(1) / T(B));
                activation_backward(d2.data(), d2.data(), a2.data(), B, Activation::identity);
            }));
    }
    // Layer 2's gradients and dZ_1 = (dZ_2 W_2) * sigmoid', one call (Network<T>::backward).
    row("layer 2 linear_sigmoid_bwd", best_ns([&] {
            linear_activation_backward(Activation::sigmoid, da1.data(), dw2.data(), db2.data(), d2.data(),
                                       a1.data(), w2.data(), B, hidden, 1, false);
        }));
    row("layer 1 linear_backward", best_ns([&] {
            linear_backward<T>(nullptr, dw1.data(), db1.data(), da1.data(), x.data(), w1.data(), B, inputs, hidden,
                               false);
        }));
    // A rate so small that the parameters stay as they are, round after round.
    row("sgd_update", best_ns([&] { sgd_update(params.data(), grads.data(), params.size(), T(1e-30)); }));
    std::printf("%s %-6s %-26s %7.0f ns\n", name, dtype, "sum", total);
    // Not in the sum: layer 1's sigmoid alone, over its B x hidden values,
    // the part of linear_sigmoid_fwd that is not the product.
    std::vector<T> s1(a1.size());
    std::printf("%s %-6s %-26s %7.0f ns\n", name, dtype, "(of which layer 1 sigmoid)",
                best_ns([&] { activation_forward(s1.data(), a1.data(), B * hidden, Activation::sigmoid); }));
}

}  // namespace

int main(int argc, char** argv) {
    const std::string dtype = argc > 1 ? argv[1] : "float";
    const std::string which = argc > 2 ? argv[2] : "W2,W3";
    set_num_threads(1);
    if (which.find("W2") != std::string::npos) {
        if (dtype == "double") step<double>("W2", 30, 16, true); else step<float>("W2", 30, 16, true);
    }
    if (which.find("W3") != std::string::npos) {
        if (dtype == "double") step<double>("W3", 10, 32, false); else step<float>("W3", 10, 32, false);
    }
}
