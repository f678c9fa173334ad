// The softmax output with categorical cross-entropy (chainrule's extension of
// docs/math.md): the kernels against naive formulas, the fused delta
// against the unfused chain rule through the softmax Jacobian, the network's
// gradient against central differences, the pairing rules and the targets.
#include <cmath>
#include <string>
#include <vector>

#include "chainrule/chainrule.hpp"
#include "check.hpp"
#include "random_values.hpp"
#include "kernels/kernels.hpp"
#include "runtime/random.hpp"

using namespace chainrule;

namespace {

using test_data::random_values;

// Rows of K soft labels: positive values normalised to sum to 1.
std::vector<double> random_distributions(std::size_t rows, std::size_t K, std::uint64_t seed) {
    detail::Random random(seed);
    std::vector<double> y(rows * K);
    for (std::size_t r = 0; r < rows; ++r) {
        double sum = 0.0;
        for (std::size_t k = 0; k < K; ++k) sum += y[r * K + k] = random.uniform() + 0.01;
        for (std::size_t k = 0; k < K; ++k) y[r * K + k] /= sum;
    }
    return y;
}

const std::size_t B = 5, K = 4;

}  // namespace

TEST(softmax_forward_matches_naive_and_rows_sum_to_one) {
    const auto z = random_values(B * K, 1, 6.0);
    std::vector<double> a(z.size());
    softmax_forward(a.data(), z.data(), B, K);
    for (std::size_t r = 0; r < B; ++r) {
        double denominator = 0.0, sum = 0.0;
        for (std::size_t k = 0; k < K; ++k) denominator += std::exp(z[r * K + k]);  // naive: no overflow at |z| <= 6
        for (std::size_t k = 0; k < K; ++k) {
            CHECK_CLOSE(a[r * K + k], std::exp(z[r * K + k]) / denominator, 1e-15);
            sum += a[r * K + k];
        }
        CHECK_CLOSE(sum, 1.0, 1e-15);
    }
    std::vector<double> in_place = z;  // out may equal inp
    softmax_forward(in_place.data(), in_place.data(), B, K);
    CHECK(in_place == a);
}

TEST(softmax_forward_is_stable_for_huge_logits) {
    // e^{1000} overflows; subtracting the row maximum keeps every exponent <= 0.
    const double z[] = {1000.0, 999.0, -1000.0, -5000.0, -5001.0, -5000.0};
    double a[6];
    softmax_forward(a, z, 2, 3);
    for (double value : a) CHECK(std::isfinite(value));
    CHECK_CLOSE(a[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-15);
    CHECK(a[2] == 0.0);  // e^{-2000} underflows to exactly 0
    CHECK_CLOSE(a[3], a[5], 0.0);
    const float zf[] = {200.0f, 0.0f};
    float af[2];
    softmax_forward(af, zf, 1, 2);
    CHECK(af[0] == 1.0f && af[1] == 0.0f);
}

TEST(cce_forward_matches_naive_and_never_takes_log_zero) {
    const auto z = random_values(B * K, 2, 5.0);
    const auto y = random_distributions(B, K, 3);
    double expected = 0.0;
    for (std::size_t r = 0; r < B; ++r) {
        double denominator = 0.0;
        for (std::size_t k = 0; k < K; ++k) denominator += std::exp(z[r * K + k]);
        for (std::size_t k = 0; k < K; ++k) expected -= y[r * K + k] * std::log(std::exp(z[r * K + k]) / denominator);
    }
    CHECK_CLOSE(cce_forward(z.data(), y.data(), B, K), expected, 1e-12);
    // The target's softmax output rounds to 0 (e^{-2000}): the loss is the finite logit gap 2000.
    const double zs[] = {1000.0, -1000.0}, ys[] = {0.0, 1.0};
    CHECK(cce_forward(zs, ys, 1, 2) == 2000.0);
    const float zf[] = {-150.0f, 150.0f}, yf[] = {1.0f, 0.0f};
    CHECK(cce_forward(zf, yf, 1, 2) == 300.0);
}

TEST(the_softmax_leaves_the_lse_cce_forward_would_compute_bit_for_bit) {
    // float64: each row's lse from softmax_forward gives cce_forward's own
    // loss exactly, on rows of every size (1 to 33 outputs) and of large logits.
    for (std::size_t k = 1; k <= 33; k += 4) {
        const auto z = random_values(B * k, 40 + k, k == 33 ? 700.0 : 6.0);
        const auto y = random_distributions(B, k, 41 + k);
        std::vector<double> a(z.size()), lse(B + 1, -1.0);
        softmax_forward(a.data(), z.data(), B, k, lse.data());
        CHECK(lse[B] == -1.0);  // B rows: nothing past them
        CHECK(cce_forward(z.data(), y.data(), B, k, lse.data()) == cce_forward(z.data(), y.data(), B, k));
        for (std::size_t r = 0; r < B; ++r) {  // one row at a time, as the weighted batch loss reads them
            CHECK(cce_forward(z.data() + r * k, y.data() + r * k, 1, k, lse.data() + r) ==
                  cce_forward(z.data() + r * k, y.data() + r * k, 1, k));
        }
    }
    // float32 exponentiates in float: the row_lse it is given stays as it was.
    const float zf[] = {0.5f, -1.0f, 2.0f};
    float af[3];
    double untouched = -1.0;
    softmax_forward(af, zf, 1, 3, &untouched);
    CHECK(untouched == -1.0);
}

TEST(fused_cce_delta_equals_unfused_chain_rule_through_the_softmax_jacobian) {
    // Unfused: dL/da_k = -y_k / a_k, then dZ_j = sum_k dL/da_k * da_k/dz_j with
    // the full Jacobian da_k/dz_j = a_k ([j = k] - a_j). cce_backward fuses it to a - y.
    const auto z = random_values(B * K, 4, 3.0);
    const auto y = random_distributions(B, K, 5);
    std::vector<double> a(z.size()), fused(z.size());
    softmax_forward(a.data(), z.data(), B, K);
    const double scale = 1.0 / B;
    cce_backward(fused.data(), a.data(), y.data(), z.size(), scale);
    for (std::size_t r = 0; r < B; ++r) {
        const double* ar = a.data() + r * K;
        const double* yr = y.data() + r * K;
        for (std::size_t j = 0; j < K; ++j) {
            double unfused = 0.0;
            for (std::size_t k = 0; k < K; ++k) unfused += (-yr[k] / ar[k]) * ar[k] * ((j == k ? 1.0 : 0.0) - ar[j]);
            CHECK_CLOSE(fused[r * K + j], scale * unfused, 1e-14);
        }
    }
}

TEST(network_gradient_matches_central_differences) {
    for (std::size_t depth = 1; depth <= 3; ++depth) {
        std::vector<std::size_t> sizes = {3};
        std::vector<Activation> activations;
        for (std::size_t l = 1; l < depth; ++l) {
            sizes.push_back(5);
            activations.push_back(Activation::tanh);
        }
        sizes.push_back(K);
        activations.push_back(Activation::softmax);
        Network<double> net(sizes, activations, Loss::cce, 8 + depth);
        const auto X = random_values(B * 3, 9, 1.0);
        const auto Y = random_distributions(B, K, 10);
        const ConstMatrixView<double> x{X.data(), B, 3}, y{Y.data(), B, K};
        net.compute_gradients(x, y);
        const std::vector<double> analytic(net.grads(), net.grads() + net.num_params());
        const double h = 1e-6;
        for (std::size_t i = 0; i < net.num_params(); ++i) {
            const double original = net.params()[i];
            net.params()[i] = original + h;
            const double plus = net.cost(x, y);
            net.params()[i] = original - h;
            const double minus = net.cost(x, y);
            net.params()[i] = original;
            CHECK_CLOSE(analytic[i], (plus - minus) / (2 * h), 1e-8);
        }
    }
}

TEST(softmax_and_cce_only_together_and_only_at_the_output) {
    using A = Activation;
    CHECK(parse_activation("softmax") == A::softmax && parse_loss("cce") == Loss::cce);
    CHECK(std::string(activation_name(A::softmax)) == "softmax" && std::string(loss_name(Loss::cce)) == "cce");
    CHECK(static_cast<std::uint32_t>(A::softmax) == 4 && static_cast<std::uint32_t>(Loss::cce) == 2);
    CHECK_THROWS(std::invalid_argument, Network<double>({3, 4}, {A::softmax}, Loss::bce, 0));
    CHECK_THROWS(std::invalid_argument, Network<double>({3, 4}, {A::softmax}, Loss::mse, 0));
    CHECK_THROWS(std::invalid_argument, Network<double>({3, 4}, {A::sigmoid}, Loss::cce, 0));
    CHECK_THROWS(std::invalid_argument, Network<double>({3, 4}, {A::identity}, Loss::cce, 0));
    CHECK_THROWS(std::invalid_argument, Network<double>({3, 5, 4}, {A::softmax, A::softmax}, Loss::cce, 0));
    CHECK_THROWS(std::invalid_argument, Network<double>({3, 1}, {A::softmax}, Loss::cce, 0));  // always 1
    Network<float> ok({3, 5, 4}, {A::relu, A::softmax}, Loss::cce, 0);
    CHECK(ok.loss() == Loss::cce && ok.activations().back() == A::softmax);
}

TEST(cce_targets_must_be_distributions) {
    Network<double> net({2, 3}, {Activation::softmax}, Loss::cce, 1);
    const std::vector<double> before(net.params(), net.params() + net.num_params());
    const double X[] = {0.5, -1.0, 2.0, 0.25};
    const double one_hot[] = {0, 1, 0, 1, 0, 0}, soft[] = {0.2, 0.3, 0.5, 0.1, 0.1, 0.8};
    const double short_row[] = {0, 1, 0, 0.5, 0.4, 0}, negative[] = {-0.5, 1.5, 0, 1, 0, 0};
    const double two_hot[] = {1, 1, 0, 1, 0, 0};
    const ConstMatrixView<double> x{X, 2, 2};
    CHECK(std::isfinite(net.cost(x, {one_hot, 2, 3})) && std::isfinite(net.cost(x, {soft, 2, 3})));
    for (const double* bad : {short_row, negative, two_hot}) {
        CHECK_THROWS(std::invalid_argument, net.cost(x, {bad, 2, 3}));
        CHECK_THROWS(std::invalid_argument, net.sgd_step(x, {bad, 2, 3}, 0.1));
        CHECK_THROWS(std::invalid_argument, net.fit(x, {bad, 2, 3}, FitOptions{}));
    }
    CHECK(std::vector<double>(net.params(), net.params() + net.num_params()) == before);
    // Within the tolerance sqrt(eps): a float row off by 1e-5 is accepted.
    Network<float> f({2, 3}, {Activation::softmax}, Loss::cce, 1);
    const float Xf[] = {0.5f, -1.0f}, nearly[] = {0.2f, 0.3f, 0.50001f}, off[] = {0.2f, 0.3f, 0.51f};
    CHECK(std::isfinite(f.cost({Xf, 1, 2}, {nearly, 1, 3})));
    CHECK_THROWS(std::invalid_argument, f.cost({Xf, 1, 2}, {off, 1, 3}));
}

TEST(training_lowers_the_cost_and_the_model_file_round_trips) {
    // Three well-separated blobs, one-hot targets.
    const std::size_t N = 60;
    std::vector<double> X(N * 2), Y(N * 3, 0.0);
    const auto noise = random_values(N * 2, 12, 0.3);
    const double centres[3][2] = {{2, 0}, {-2, 1}, {0, -2}};
    for (std::size_t r = 0; r < N; ++r) {
        X[r * 2] = centres[r % 3][0] + noise[r * 2];
        X[r * 2 + 1] = centres[r % 3][1] + noise[r * 2 + 1];
        Y[r * 3 + r % 3] = 1.0;
    }
    Network<double> net({2, 8, 3}, {Activation::tanh, Activation::softmax}, Loss::cce, 13);
    FitOptions options;
    options.epochs = 50;
    options.learning_rate = 0.5;
    options.batch_size = 10;
    const std::vector<double> history = net.fit({X.data(), N, 2}, {Y.data(), N, 3}, options);
    CHECK(history.back() < 0.1 * history.front());
    save(net, "chainrule_test_softmax.crnn");
    const Network<double> loaded = load<double>("chainrule_test_softmax.crnn");
    CHECK(loaded.activations() == net.activations() && loaded.loss() == Loss::cce);
    CHECK(std::vector<double>(loaded.params(), loaded.params() + loaded.num_params()) ==
          std::vector<double>(net.params(), net.params() + net.num_params()));
    std::remove("chainrule_test_softmax.crnn");
}

TEST_MAIN()
