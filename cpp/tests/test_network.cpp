// Network<T> against central differences, its own invariants, and bad arguments.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "chainrule/chainrule.hpp"
#include "check.hpp"
#include "random_values.hpp"
#include "runtime/random.hpp"

using namespace chainrule;

// A counting allocator: every allocation in this program goes through here,
// so a test can show that training allocates nothing per step.
static std::atomic<long> g_allocations{0};
// Not inlined: GCC would otherwise see malloc's pointer reach operator delete
// at the call sites and warn of a mismatch (-Wmismatched-new-delete), when
// both operators are the malloc/free pair defined here.
#if defined(__GNUC__)
#define CHAINRULE_TEST_NOINLINE __attribute__((noinline))
#else
#define CHAINRULE_TEST_NOINLINE
#endif
CHAINRULE_TEST_NOINLINE void* operator new(std::size_t size) {
    ++g_allocations;
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
CHAINRULE_TEST_NOINLINE void operator delete(void* p) noexcept { std::free(p); }
CHAINRULE_TEST_NOINLINE void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using test_data::random_between;

struct Case {
    std::vector<std::size_t> sizes;
    std::vector<Activation> activations;
    Loss loss;
};

std::vector<Case> all_cases() {
    const Activation all[] = {Activation::sigmoid, Activation::identity, Activation::tanh, Activation::relu};
    std::vector<Case> cases;
    cases.push_back({{3, 1}, {Activation::sigmoid}, Loss::bce});  // the seeds' logistic regression
    for (Activation hidden : all) {
        cases.push_back({{4, 5, 3, 2}, {hidden, hidden, Activation::sigmoid}, Loss::bce});
        for (Activation out : all) cases.push_back({{4, 6, 5, 4, 2}, {hidden, hidden, hidden, out}, Loss::mse});
    }
    return cases;
}

}  // namespace

TEST(gradients_match_central_differences) {
    for (const Case& c : all_cases()) {
        Network<double> net(c.sizes, c.activations, c.loss, 7);
        const std::size_t B = 6, n_in = c.sizes.front(), n_out = c.sizes.back();
        const auto X = random_between<double>(B * n_in, 1, -1.0, 1.0);
        const auto Y = random_between<double>(B * n_out, 2, 0.0, 1.0);
        const ConstMatrixView<double> x(X.data(), B, n_in), y(Y.data(), B, n_out);
        net.compute_gradients(x, y);
        const std::vector<double> analytic(net.grads(), net.grads() + net.num_params());
        double norm = 0, error = 0;
        for (std::size_t i = 0; i < net.num_params(); ++i) {
            const double saved = net.params()[i], h = 1e-6;
            net.params()[i] = saved + h;
            const double up = net.cost(x, y);
            net.params()[i] = saved - h;
            const double down = net.cost(x, y);
            net.params()[i] = saved;
            const double numeric = (up - down) / (2 * h);
            norm += analytic[i] * analytic[i];
            error += (numeric - analytic[i]) * (numeric - analytic[i]);
        }
        CHECK(norm > 1e-12);                            // guard: an all-zero gradient passes nothing
        CHECK(std::sqrt(error) <= 1e-6 * std::sqrt(norm));
    }
}

TEST(cost_and_gradient_is_the_penalised_cost_and_its_gradient) {
    // cost_and_gradient(X, Y, g, alpha, s) = (sum s_i L_i + alpha/2 sum ||W_l||^2) / sum s_i, with g its
    // gradient (docs/math.md, "L-BFGS"): against cost + the penalty, and central differences of itself.
    for (const Case& c : all_cases()) {
        Network<double> net(c.sizes, c.activations, c.loss, 11);
        // Biases of 0.1, not the initial 0: a relu layer whose units are all off for a record would
        // otherwise hand the next relu layer z = b = 0 exactly, a kink central differences cannot see.
        for (std::size_t l = 0; l + 1 < c.sizes.size(); ++l) std::fill_n(net.layer(l).bias, c.sizes[l + 1], 0.1);
        const std::size_t B = 7, n_in = c.sizes.front(), n_out = c.sizes.back();
        const auto X = random_between<double>(B * n_in, 3, -1.0, 1.0);
        const auto Y = random_between<double>(B * n_out, 4, 0.0, 1.0);
        const auto s = random_between<double>(B, 5, 0.5, 2.0);
        const ConstMatrixView<double> x(X.data(), B, n_in), y(Y.data(), B, n_out);
        const double alpha = 0.3;
        double total = 0, squared = 0;
        for (double w : s) total += w;
        for (std::size_t l = 0; l + 1 < c.sizes.size(); ++l) {
            const LayerView<const double> p = std::as_const(net).layer(l);
            for (std::size_t i = 0; i < p.out_features * p.in_features; ++i) squared += p.weight[i] * p.weight[i];
        }
        std::vector<double> analytic(net.num_params());
        const double cost = net.cost_and_gradient(x, y, analytic.data(), alpha, s.data());
        CHECK_CLOSE(cost, net.cost(x, y, s.data()) + 0.5 * alpha * squared / total, 1e-12);
        double norm = 0, error = 0;
        std::vector<double> scratch(net.num_params());
        for (std::size_t i = 0; i < net.num_params(); ++i) {
            const double saved = net.params()[i], h = 1e-6;
            net.params()[i] = saved + h;
            const double up = net.cost_and_gradient(x, y, scratch.data(), alpha, s.data());
            net.params()[i] = saved - h;
            const double down = net.cost_and_gradient(x, y, scratch.data(), alpha, s.data());
            net.params()[i] = saved;
            const double numeric = (up - down) / (2 * h);
            norm += analytic[i] * analytic[i];
            error += (numeric - analytic[i]) * (numeric - analytic[i]);
        }
        CHECK(norm > 1e-12);
        CHECK(std::sqrt(error) <= 1e-6 * std::sqrt(norm));
    }
    Network<double> net({3, 1}, {Activation::sigmoid}, Loss::bce, 1);
    const std::vector<double> X(6, 0.5), Y(2, 1.0);
    std::vector<double> g(net.num_params());
    const std::vector<double> before(net.params(), net.params() + net.num_params());
    CHECK_THROWS(std::invalid_argument, net.cost_and_gradient({X.data(), 2, 3}, {Y.data(), 2, 1}, g.data(), -1.0));
    CHECK_THROWS(std::invalid_argument,
                 net.cost_and_gradient({X.data(), 2, 3}, {Y.data(), 2, 1}, g.data(), std::nan("")));
    CHECK(std::equal(before.begin(), before.end(), net.params()));
}

TEST(float_and_double_networks_agree) {
    Network<double> d({5, 8, 3}, {Activation::tanh, Activation::sigmoid}, Loss::bce, 3);
    Network<float> f({5, 8, 3}, {Activation::tanh, Activation::sigmoid}, Loss::bce, 3);
    for (std::size_t i = 0; i < d.num_params(); ++i) CHECK(f.params()[i] == static_cast<float>(d.params()[i]));
    const auto Xd = random_between<double>(10 * 5, 4, -2, 2);
    const std::vector<float> Xf(Xd.begin(), Xd.end());
    std::vector<double> out_d(30);
    std::vector<float> out_f(30);
    d.predict({out_d.data(), 10, 3}, {Xd.data(), 10, 5});
    f.predict({out_f.data(), 10, 3}, {Xf.data(), 10, 5});
    for (std::size_t i = 0; i < out_d.size(); ++i) CHECK_CLOSE(out_f[i], out_d[i], 1e-5);
}

TEST(same_seed_same_run_bitwise) {
    const auto X = random_between<float>(50 * 4, 5, -1, 1);
    const auto Y = random_between<float>(50, 6, 0, 1);
    FitOptions options;
    options.epochs = 4;
    options.batch_size = 7;
    options.seed = 11;
    std::vector<float> first;
    std::vector<double> first_history;
    for (int run = 0; run < 2; ++run) {
        Network<float> net({4, 6, 1}, {Activation::relu, Activation::sigmoid}, Loss::bce, 9);
        const auto history = net.fit({X.data(), 50, 4}, {Y.data(), 50, 1}, options);
        std::vector<float> params(net.params(), net.params() + net.num_params());
        if (run == 0) {
            first = params;
            first_history = history;
        } else {
            CHECK(params == first);
            CHECK(history == first_history);
        }
    }
}

TEST(in_order_fit_equals_sgd_steps) {
    const auto X = random_between<double>(10 * 3, 7, -1, 1);
    const auto Y = random_between<double>(10 * 2, 8, -1, 1);
    Network<double> a({3, 4, 2}, {Activation::sigmoid, Activation::identity}, Loss::mse, 1);
    Network<double> b(a);
    FitOptions options;
    options.epochs = 2;
    options.batch_size = 4;  // batches of 4, 4, 2
    options.shuffle = false;
    options.learning_rate = 0.05;
    const auto history = a.fit({X.data(), 10, 3}, {Y.data(), 10, 2}, options);
    for (int epoch = 0; epoch < 2; ++epoch) {
        double weighted = 0;
        for (std::size_t start = 0; start < 10; start += 4) {
            const std::size_t rows = std::min<std::size_t>(4, 10 - start);
            weighted += rows * b.sgd_step({X.data() + start * 3, rows, 3}, {Y.data() + start * 2, rows, 2}, 0.05);
        }
        CHECK_CLOSE(history[epoch], weighted / 10, 1e-14);
    }
    for (std::size_t i = 0; i < a.num_params(); ++i) CHECK(a.params()[i] == b.params()[i]);
}

TEST(in_order_one_record_fit_of_one_layer_equals_sgd_steps) {
    // The fused path (dense_record_steps): many steps a call in fit, one in sgd_step.
    const auto X = random_between<float>(300 * 11, 17, -1, 1);
    const auto Y = random_between<float>(300, 18, 0, 1);
    Network<float> a({11, 1}, {Activation::sigmoid}, Loss::bce, 3);
    Network<float> b(a);
    FitOptions options;
    options.epochs = 2;
    options.batch_size = 1;
    options.shuffle = false;
    options.learning_rate = 0.1;
    const auto history = a.fit({X.data(), 300, 11}, {Y.data(), 300, 1}, options);
    for (int epoch = 0; epoch < 2; ++epoch) {
        double cost = 0;
        for (std::size_t r = 0; r < 300; ++r) cost += b.sgd_step({X.data() + r * 11, 1, 11}, {Y.data() + r, 1, 1}, 0.1) / 300;
        CHECK(history[epoch] == cost);  // the same losses, added in the same order
    }
    for (std::size_t i = 0; i < a.num_params(); ++i) CHECK(a.params()[i] == b.params()[i]);
}

TEST(shuffled_one_record_fit_of_one_layer_equals_sgd_steps_in_that_order) {
    // The fused path with a shuffled order, in chunks of 256 steps and a
    // shorter last one: the same as sgd_step over the records in fit's order.
    const std::size_t n = 700;  // > 2 chunks of 256, and not a multiple of it
    const auto X = random_between<double>(n * 9, 27, -1, 1);
    const auto Y = random_between<double>(n * 2, 28, -1, 1);
    Network<double> a({9, 2}, {Activation::tanh}, Loss::mse, 5);
    Network<double> b(a);
    FitOptions options;
    options.epochs = 2;
    options.batch_size = 1;
    options.shuffle = true;
    options.seed = 99;
    options.learning_rate = 0.01;
    const auto history = a.fit({X.data(), n, 9}, {Y.data(), n, 2}, options);
    detail::Random random(options.seed);  // fit's shuffle, replayed
    std::vector<std::size_t> order(n);
    for (int epoch = 0; epoch < 2; ++epoch) {
        for (std::size_t i = 0; i < n; ++i) order[i] = i;
        random.shuffle(order.data(), n);
        double cost = 0;
        for (std::size_t r : order) cost += b.sgd_step({X.data() + r * 9, 1, 9}, {Y.data() + r * 2, 1, 2}, 0.01) / n;
        CHECK(history[epoch] == cost);
    }
    for (std::size_t i = 0; i < a.num_params(); ++i) CHECK(a.params()[i] == b.params()[i]);
}

// Trains a network at 1 to 4 threads and returns, per thread count, the
// final parameters, the epoch costs and predict's outputs.
template <typename T>
std::vector<std::vector<T>> train_at_each_thread_count(const std::vector<std::size_t>& sizes,
                                                         std::size_t num_records, std::size_t batch_size,
                                                         bool shuffle) {
    const std::size_t n_in = sizes.front(), n_out = sizes.back();
    const auto X = random_between<T>(num_records * n_in, 31 + sizes.size(), -1, 1);
    const auto Y = random_between<T>(num_records * n_out, 32 + batch_size, 0, 1);
    std::vector<Activation> activations(sizes.size() - 2, Activation::tanh);
    activations.push_back(Activation::sigmoid);
    const int before = get_num_threads();
    std::vector<std::vector<T>> runs;
    for (int threads : {1, 2, 3, 4}) {
        set_num_threads(threads);
        Network<T> net(sizes, activations, Loss::bce, 4);
        FitOptions options;
        options.epochs = 2;
        options.batch_size = batch_size;
        options.learning_rate = 0.05;
        options.shuffle = shuffle;
        options.seed = 5;
        const std::vector<double> history = net.fit({X.data(), num_records, n_in}, {Y.data(), num_records, n_out},
                                                    options);
        std::vector<T> out(num_records * n_out);
        net.predict({out.data(), num_records, n_out}, {X.data(), num_records, n_in});
        std::vector<T> all(net.params(), net.params() + net.num_params());
        all.insert(all.end(), out.begin(), out.end());
        for (double cost : history) all.push_back(static_cast<T>(cost));
        runs.push_back(all);
    }
    set_num_threads(before);
    return runs;
}

template <typename T>
void check_results_do_not_depend_on_the_thread_count() {
    // Products of 2^21 multiply-adds and more are cut into tiles whose shapes
    // depend on the product alone and shared among the threads; elementwise
    // work (activations, the update, the gather of a shuffled batch) into
    // ranges that depend on the sizes alone. Sizes that are multiples of no
    // kernel's tile, and batches of 1, 7 and 100 records, among others.
    struct Shape {
        std::vector<std::size_t> sizes;
        std::size_t num_records, batch_size;
        bool shuffle;
    };
    const Shape shapes[] = {
        {{300, 256, 64, 10}, 256, 128, true},
        {{301, 203, 3}, 210, 100, true},
        {{77, 517, 9}, 140, 7, false},
        {{129, 1000, 1}, 128, 64, true},
        {{30, 17, 1}, 50, 1, true},
        {{1000, 33, 65, 2}, 130, 64, false},
    };
    for (const Shape& shape : shapes) {
        const auto runs = train_at_each_thread_count<T>(shape.sizes, shape.num_records, shape.batch_size,
                                                        shape.shuffle);
        for (std::size_t i = 1; i < runs.size(); ++i) CHECK(runs[i] == runs[0]);
    }
}

TEST(results_do_not_depend_on_the_thread_count) {
    check_results_do_not_depend_on_the_thread_count<float>();
    check_results_do_not_depend_on_the_thread_count<double>();
}

TEST(training_allocates_nothing_per_step) {
    const auto X = random_between<double>(64 * 5, 9, -1, 1);
    const auto Y = random_between<double>(64, 10, 0, 1);
    auto allocations_of_fit = [&](std::size_t epochs, bool shuffle, bool one_layer) {
        // one layer: the fused one-record steps; else the general path
        Network<double> net = one_layer ? Network<double>({5, 1}, {Activation::sigmoid}, Loss::bce, 2)
                                        : Network<double>({5, 8, 8, 1}, {Activation::tanh, Activation::relu,
                                                                         Activation::sigmoid}, Loss::bce, 2);
        FitOptions options;
        options.epochs = epochs;
        options.batch_size = 1;
        options.shuffle = shuffle;
        const long before = g_allocations.load();
        net.fit({X.data(), 64, 5}, {Y.data(), 64, 1}, options);
        return g_allocations.load() - before;
    };
    for (bool one_layer : {false, true}) {
        for (bool shuffle : {false, true}) {
            const long one = allocations_of_fit(1, shuffle, one_layer), many = allocations_of_fit(30, shuffle, one_layer);
            CHECK(one == many);  // 64 steps or 1920: the same few set-up allocations
            CHECK(many <= 16);   // set-up only: the workspace's buffers, the shuffle order, the history
        }
    }
}

TEST(divergence_leaves_last_finite_parameters) {
    std::vector<double> X = {1, 2, 3, 4}, Y = {1e200, -1e200, 1e200, -1e200};
    Network<double> net({1, 1}, {Activation::identity}, Loss::mse, 0);
    FitOptions options;
    options.learning_rate = 1e100;
    options.batch_size = 1;
    options.shuffle = false;
    CHECK_THROWS(divergence_error, net.fit({X.data(), 4, 1}, {Y.data(), 4, 1}, options));
    for (std::size_t i = 0; i < net.num_params(); ++i) CHECK(std::isfinite(net.params()[i]));
    const std::vector<double> before(net.params(), net.params() + net.num_params());
    CHECK_THROWS(divergence_error, net.sgd_step({X.data(), 4, 1}, {Y.data(), 4, 1}, 1e300));
    CHECK(std::vector<double>(net.params(), net.params() + net.num_params()) == before);
}

TEST(bad_arguments_throw_and_change_nothing) {
    using A = Activation;
    CHECK_THROWS(std::invalid_argument, Network<double>({3}, {}, Loss::mse, 0));
    CHECK_THROWS(std::invalid_argument, Network<double>({3, 0, 1}, {A::relu, A::identity}, Loss::mse, 0));
    CHECK_THROWS(std::invalid_argument, Network<double>({3, 1}, {A::relu, A::identity}, Loss::mse, 0));
    CHECK_THROWS(std::invalid_argument, Network<double>({3, 1}, {A::identity}, Loss::bce, 0));
    CHECK_THROWS(std::bad_alloc, Network<double>({1u << 30, 1u << 30, 1}, {A::relu, A::identity}, Loss::mse, 0));
    try {  // a size count that overflows names the argument too
        Network<double>({1, std::size_t{1} << 62}, {A::identity}, Loss::mse, 0);
        CHECK(false);
    } catch (const std::bad_alloc& e) {
        CHECK(std::string(e.what()).find("layer_sizes") != std::string::npos);
    }
    CHECK_THROWS(std::invalid_argument, parse_activation("gelu"));  // softmax is a name since Activation::softmax
    CHECK_THROWS(std::invalid_argument, parse_loss("hinge"));

    Network<double> net({2, 3, 1}, {A::sigmoid, A::sigmoid}, Loss::bce, 0);
    const std::vector<double> before(net.params(), net.params() + net.num_params());
    std::vector<double> X = {0.5, 1.0, -1.0, 2.0}, Y = {1.0, 0.0}, bad_y = {1.0, 2.0};
    std::vector<double> nan_x = {0.5, std::nan(""), -1.0, 2.0};
    std::vector<double> out(2);
    FitOptions options;
    CHECK_THROWS(std::invalid_argument, net.fit({X.data(), 2, 2}, {bad_y.data(), 2, 1}, options));  // bce target 2
    CHECK_THROWS(std::invalid_argument, net.fit({nan_x.data(), 2, 2}, {Y.data(), 2, 1}, options));
    CHECK_THROWS(std::invalid_argument, net.fit({X.data(), 1, 4}, {Y.data(), 1, 1}, options));    // 4 features
    CHECK_THROWS(std::invalid_argument, net.fit({X.data(), 2, 2}, {Y.data(), 1, 1}, options));    // 1 target
    CHECK_THROWS(std::invalid_argument, net.fit({X.data(), 0, 2}, {Y.data(), 0, 1}, options));    // empty
    options.learning_rate = -1;
    CHECK_THROWS(std::invalid_argument, net.fit({X.data(), 2, 2}, {Y.data(), 2, 1}, options));
    options.learning_rate = 0.1;
    options.batch_size = 0;
    CHECK_THROWS(std::invalid_argument, net.fit({X.data(), 2, 2}, {Y.data(), 2, 1}, options));
    CHECK_THROWS(std::invalid_argument, net.predict({out.data(), 1, 1}, {X.data(), 2, 2}));      // out shape
    CHECK_THROWS(std::invalid_argument, net.sgd_step({X.data(), 2, 2}, {Y.data(), 2, 1}, NAN));
    CHECK(std::vector<double>(net.params(), net.params() + net.num_params()) == before);
}

TEST(early_stopping_and_callback) {
    const auto X = random_between<double>(20 * 2, 12, -1, 1);
    const auto Y = random_between<double>(20, 13, 0, 1);
    Network<double> net({2, 2, 1}, {Activation::sigmoid, Activation::sigmoid}, Loss::bce, 4);
    FitOptions options;
    options.epochs = 100;
    options.learning_rate = 1e-9;  // a plateau: the cost barely moves
    options.tol = 1e-4;
    options.n_iter_no_change = 3;
    // The first epoch sets the best cost; then 3 epochs without improvement.
    CHECK(net.fit({X.data(), 20, 2}, {Y.data(), 20, 1}, options).size() == 4);
    options.tol.reset();
    std::size_t calls = 0;
    const auto history = net.fit({X.data(), 20, 2}, {Y.data(), 20, 1}, options, [&](const EpochReport& r) {
        CHECK(r.epoch == calls++);
        return r.epoch < 4;  // stop after the fifth epoch
    });
    CHECK(history.size() == 5 && calls == 5);
}

TEST(huge_epochs_stopped_by_the_callback_or_tol) {
    // epochs is only a bound: fit may not size anything by it up front.
    const auto X = random_between<double>(6 * 2, 18, -1, 1);
    const auto Y = random_between<double>(6, 19, 0, 1);
    Network<double> net({2, 2, 1}, {Activation::tanh, Activation::sigmoid}, Loss::bce, 7);
    FitOptions options;
    options.epochs = std::size_t(-1);
    CHECK(net.fit({X.data(), 6, 2}, {Y.data(), 6, 1}, options, [](const EpochReport& r) { return r.epoch < 2; })
              .size() == 3);
    options.epochs = std::size_t{1} << 40;
    options.learning_rate = 1e-12;  // a plateau: tol stops it after the first epoch and 2 more
    options.tol = 1e-3;
    options.n_iter_no_change = 2;
    CHECK(net.fit({X.data(), 6, 2}, {Y.data(), 6, 1}, options).size() == 3);
}

TEST(interrupt_leaves_the_last_completed_step) {
    // 1024 x 1024 weights: one record is ~2^20 multiply-adds, so fit polls after every step.
    const std::size_t n = 1024;
    const auto X = random_between<double>(8 * n, 14, -1, 1);
    const auto Y = random_between<double>(8, 15, -1, 1);
    Network<double> net({n, n, 1}, {Activation::tanh, Activation::identity}, Loss::mse, 5);
    Network<double> replay(net);
    FitOptions options;
    options.batch_size = 1;
    options.shuffle = false;
    options.learning_rate = 0.01;
    struct Interrupted {};
    int polls = 0;
    bool interrupted = false;
    try {
        net.fit({X.data(), 8, n}, {Y.data(), 8, 1}, options, {}, [&] {
            if (++polls == 3) throw Interrupted{};
        });
    } catch (const Interrupted&) {
        interrupted = true;
    }
    CHECK(interrupted);
    for (std::size_t r = 0; r < 3; ++r) replay.sgd_step({X.data() + r * n, 1, n}, {Y.data() + r, 1, 1}, 0.01);
    CHECK(std::equal(net.params(), net.params() + net.num_params(), replay.params()));
    // The network stays usable: the training lock was released.
    CHECK(net.fit({X.data(), 8, n}, {Y.data(), 8, 1}, options).size() == options.epochs);
}

TEST(predict_gets_in_while_fit_runs_without_an_interrupt_check) {
    // One long epoch, no callback and no interrupt check: fit still opens a
    // window for readers between steps, so a predict from another thread
    // waits for a step, not for the epoch. Measured as a fraction of the
    // fit's own time, so a slow machine or a sanitizer build changes nothing.
    using clock = std::chrono::steady_clock;
    const std::size_t n = 256, records = 8192;
    const auto X = random_between<double>(records * n, 16, -1, 1);
    const auto Y = random_between<double>(records, 17, 0, 1);
    Network<double> net({n, n, 1}, {Activation::sigmoid, Activation::sigmoid}, Loss::bce, 6);
    FitOptions options;
    options.epochs = 1;
    options.batch_size = 1;
    options.learning_rate = 0.01;
    std::atomic<bool> started{false};
    clock::duration fit_time{};
    std::thread trainer([&] {
        const auto start = clock::now();
        started = true;
        net.fit({X.data(), records, n}, {Y.data(), records, 1}, options);
        fit_time = clock::now() - start;
    });
    while (!started) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    double out[4];
    const auto start = clock::now();
    net.predict({out, 4, 1}, {X.data(), 4, n});
    const auto predict_time = clock::now() - start;
    trainer.join();
    CHECK(predict_time * 4 < fit_time);
    CHECK(std::all_of(out, out + 4, [](double a) { return std::isfinite(a); }));
}

TEST(copies_and_copy_params_take_the_parameters_and_nothing_else) {
    // copy_params (save's snapshot), the copy constructor and operator= all
    // read the parameters; a copy starts with zeroed gradients and trains
    // on its own buffers.
    const std::size_t n = 5, records = 16;
    const auto X = random_between<double>(records * n, 21, -1, 1);
    const auto Y = random_between<double>(records * 2, 22, 0, 1);
    Network<double> net({n, 4, 2}, {Activation::tanh, Activation::sigmoid}, Loss::bce, 3);
    net.compute_gradients({X.data(), records, n}, {Y.data(), records, 2});
    std::vector<double> snapshot(net.num_params(), -1.0);
    net.copy_params(snapshot.data());
    CHECK(std::equal(snapshot.begin(), snapshot.end(), net.params()));

    Network<double> copy(net);
    CHECK(std::equal(snapshot.begin(), snapshot.end(), copy.params()));
    CHECK(std::all_of(copy.grads(), copy.grads() + copy.num_params(), [](double g) { return g == 0.0; }));
    FitOptions options;
    options.epochs = 2;
    copy.fit({X.data(), records, n}, {Y.data(), records, 2}, options);
    CHECK(std::equal(snapshot.begin(), snapshot.end(), net.params()));  // the original is untouched
    CHECK(!std::equal(snapshot.begin(), snapshot.end(), copy.params()));

    Network<double> other({3, 1}, {Activation::sigmoid}, Loss::bce, 4);
    other = copy;
    CHECK(other.layer_sizes() == copy.layer_sizes() && other.loss() == Loss::bce);
    CHECK(std::equal(copy.params(), copy.params() + copy.num_params(), other.params()));
}

TEST(a_small_predict_reuses_its_workspace_until_the_network_changes_shape) {
    // predict keeps a small workspace between calls: the same values as a
    // fresh network's, call after call, as the number of records changes
    // (and the workspace with it), and after operator= gives the network
    // other layers (the kept workspace, made for the old ones, is dropped).
    const auto X = random_between<double>(7 * 9, 23, -1, 1);
    Network<double> net({5, 6, 2}, {Activation::relu, Activation::sigmoid}, Loss::bce, 5);
    const Network<double> wider({9, 12, 4, 3}, {Activation::tanh, Activation::relu, Activation::sigmoid}, Loss::bce, 6);
    for (const std::size_t records : {1u, 1u, 3u, 7u, 1u}) {
        std::vector<double> kept(records * 2), fresh(records * 2);
        net.predict({kept.data(), records, 2}, {X.data(), records, 5});
        Network<double>(net).predict({fresh.data(), records, 2}, {X.data(), records, 5});
        CHECK(kept == fresh);
    }
    net = wider;
    for (const std::size_t records : {1u, 7u}) {
        std::vector<double> kept(records * 3), fresh(records * 3);
        net.predict({kept.data(), records, 3}, {X.data(), records, 9});
        wider.predict({fresh.data(), records, 3}, {X.data(), records, 9});
        CHECK(kept == fresh);
    }
}

TEST_MAIN()
