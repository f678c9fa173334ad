// The numerics contract (network.hpp): parameters made non-finite from
// outside are refused on entry to every computation, naming the parameter; a
// forward or backward pass that overflows with finite parameters and inputs is
// a divergence_error, never an inf or NaN handed back; and sums of huge but
// finite losses do not overflow.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "chainrule/chainrule.hpp"
#include "check.hpp"

using namespace chainrule;

TEST(non_finite_parameters_are_refused_on_entry) {
    // Parameters made non-finite from outside (params(), layer()) are refused by
    // every computation, naming the parameter, with nothing changed, and never
    // with divergence_error's "last finite values", which would be false.
    std::vector<double> X = {0.5, 1.0, -1.0, 2.0}, Y = {1.0, 0.0};
    std::vector<double> out(2);
    const double poisons[] = {NAN, INFINITY, -INFINITY};
    for (double poison : poisons) {
        for (int where = 0; where < 3; ++where) {
            Network<double> net({2, 3, 1}, {Activation::tanh, Activation::sigmoid}, Loss::bce, 3);
            double* target = where == 0 ? &net.layer(0).weight[4] : where == 1 ? net.layer(1).bias : net.params();
            *target = poison;
            const std::vector<double> before(net.params(), net.params() + net.num_params());
            const char* expected = where == 0 ? "weights[0] holds" : where == 1 ? "biases[1] holds" : "weights[0]";
            auto refused = [&](const std::function<void()>& call) {
                try {
                    call();
                } catch (const std::invalid_argument& e) {
                    const std::string message = e.what();
                    return message.find(expected) != std::string::npos &&
                           message.find("last finite") == std::string::npos;
                } catch (...) {
                }
                return false;
            };
            FitOptions options;
            CHECK(refused([&] { net.predict({out.data(), 2, 1}, {X.data(), 2, 2}); }));
            CHECK(refused([&] { net.cost({X.data(), 2, 2}, {Y.data(), 2, 1}); }));
            CHECK(refused([&] { net.compute_gradients({X.data(), 2, 2}, {Y.data(), 2, 1}); }));
            CHECK(refused([&] { net.sgd_step({X.data(), 2, 2}, {Y.data(), 2, 1}, 0.1); }));
            CHECK(refused([&] { net.fit({X.data(), 2, 2}, {Y.data(), 2, 1}, options); }));
            CHECK(std::equal(before.begin(), before.end(), net.params(), [](double a, double b) {
                return a == b || (std::isnan(a) && std::isnan(b));
            }));
        }
    }
    Network<double> net({2, 3, 1}, {Activation::tanh, Activation::sigmoid}, Loss::bce, 3);
    net.layer(0).weight[4] = NAN;
    try {
        net.cost({X.data(), 2, 2}, {Y.data(), 2, 1});
    } catch (const std::invalid_argument& e) {  // row 1, column 1 of the (3, 2) W_1
        CHECK(std::string(e.what()).find("weights[0] holds a non-finite value (nan) at (2, 0)") != std::string::npos);
    }
}

TEST(an_overflowing_forward_or_backward_pass_is_a_divergence_error) {
    // Finite parameters and inputs whose products exceed the dtype's range
    // (terms of both signs: inf - inf = NaN) never come back as inf or NaN.
    const double big = std::sqrt(std::numeric_limits<double>::max());
    Network<double> net({2, 2, 1}, {Activation::identity, Activation::identity}, Loss::mse, 0);
    const double weights[] = {big, big, big, -big, 0, 0, big, -big};  // W_1, b_1, W_2
    std::copy(weights, weights + 8, net.params());
    std::vector<double> X = {4, 4, 4, -4}, Y = {0, 0}, out(2);
    CHECK_THROWS(divergence_error, net.predict({out.data(), 2, 1}, {X.data(), 2, 2}));
    CHECK_THROWS(divergence_error, net.cost({X.data(), 2, 2}, {Y.data(), 2, 1}));
    CHECK_THROWS(divergence_error, net.compute_gradients({X.data(), 2, 2}, {Y.data(), 2, 1}));
    // float32 gradients of 1e30 inputs: dW = dZ^T X reaches 1e60.
    Network<float> small({3, 2}, {Activation::identity}, Loss::mse, 1);
    std::vector<float> Xf = {1e30f, -1e30f, 1e30f}, Yf = {0, 0};
    try {
        small.compute_gradients({Xf.data(), 1, 3}, {Yf.data(), 1, 2});
        CHECK(false);
    } catch (const divergence_error& e) {
        CHECK(std::string(e.what()).find("scale the inputs") != std::string::npos);
    }
}

TEST(epoch_cost_of_huge_finite_losses_does_not_overflow) {
    // 64 records, each with a loss near 9e306 (finite); their sum is not.
    std::vector<double> X(64, 1.0), Y(64, 3e153);
    Network<double> net({1, 1}, {Activation::identity}, Loss::mse, 0);
    FitOptions options;
    options.epochs = 1;
    options.batch_size = 1;
    options.learning_rate = 1e-300;
    const auto history = net.fit({X.data(), 64, 1}, {Y.data(), 64, 1}, options);
    CHECK(history.size() == 1 && std::isfinite(history[0]) && history[0] > 8e306);
    CHECK(std::isfinite(net.cost({X.data(), 64, 1}, {Y.data(), 64, 1})));
}

TEST_MAIN()
