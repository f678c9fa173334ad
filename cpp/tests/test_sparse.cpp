// CSR records: the sparse first-layer kernels against their naive twins (the
// same sums in the same order: the same bits, at any thread count) and
// against the dense reference on the densified matrix (within rounding); the
// Network's CSR calls against its dense ones; malformed CSR refused with the
// parameters unchanged.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "chainrule/chainrule.hpp"
#include "check.hpp"
#include "random_values.hpp"
#include "kernels/kernels.hpp"
#include "kernels/reference.hpp"
#include "runtime/random.hpp"

using namespace chainrule;

namespace {

// A random CSR matrix with some empty rows, unsorted entries and repeated
// columns, and its dense twin (repeats summed, as scipy's toarray does).
template <typename T, typename Index>
struct Csr {
    std::vector<Index> indptr{0};
    std::vector<Index> indices;
    std::vector<T> values;
    std::vector<T> dense;
    std::size_t rows, cols;

    Csr(std::size_t rows_, std::size_t cols_, double density, std::uint64_t seed)
        : dense(rows_ * cols_, T(0)), rows(rows_), cols(cols_) {
        detail::Random random(seed);
        for (std::size_t r = 0; r < rows; ++r) {
            if (r % 5 != 3) {  // every fifth row is empty
                for (std::size_t c = cols; c-- > 0;) {  // descending: unsorted
                    if (random.uniform() >= density) continue;
                    const T v = static_cast<T>(2.0 * random.uniform() - 1.0);
                    indices.push_back(static_cast<Index>(c));
                    values.push_back(v);
                    dense[r * cols + c] += v;
                }
                if (!indices.empty() && r % 4 == 1) {  // a repeated column
                    const Index c = indices.back();
                    indices.push_back(c);
                    values.push_back(T(0.25));
                    dense[r * cols + static_cast<std::size_t>(c)] += T(0.25);
                }
            }
            indptr.push_back(static_cast<Index>(indices.size()));
        }
    }

    CsrMatrixView<T, Index> view() const {
        return {indptr.data(), indices.data(), values.data(), rows, cols, values.size()};
    }
};

using test_data::random_values;

template <typename T>
double tolerance() {
    return sizeof(T) == 4 ? 2e-5 : 1e-12;
}

// in and density: a narrow matrix with many entries per column, or a wide
// one with few.
template <typename T, typename Index>
void kernels_match_their_twins_and_the_dense_reference(std::size_t in, double density) {
    const std::size_t rows = 37, out = 11;  // out: two blocks of 4 and 3 units left over
    const Csr<T, Index> x(rows, in, density, 7);
    const std::vector<T> weight = random_values<T>(out * in, 1), bias = random_values<T>(out, 2);
    const std::vector<T> dout = random_values<T>(rows * out, 3);
    std::vector<std::size_t> list(rows);
    for (std::size_t r = 0; r < rows; ++r) list[r] = (r * 7) % rows;  // a permutation
    std::vector<T> listed_dense(rows * in);
    for (std::size_t r = 0; r < rows; ++r) {
        std::copy_n(x.dense.begin() + static_cast<std::ptrdiff_t>(list[r] * in), in,
                    listed_dense.begin() + static_cast<std::ptrdiff_t>(r * in));
    }
    const int before = get_num_threads();
    for (const std::size_t* order : {static_cast<const std::size_t*>(nullptr), static_cast<const std::size_t*>(list.data())}) {
        const SparseRows<T, Index> batch{x.indptr.data(), x.indices.data(), x.values.data(), order, 0};
        const T* dense = order ? listed_dense.data() : x.dense.data();
        std::vector<T> z_ref(rows * out), dw_ref(out * in, T(0.5)), db_ref(out, T(0.5));
        reference::sparse_linear_forward(z_ref.data(), batch, weight.data(), bias.data(), rows, in, out);
        for (bool accumulate : {false, true}) {
            std::vector<T> dw_start(out * in, T(0.5)), db_start(out, T(0.5));
            std::vector<T> dw_twin = dw_start, db_twin = db_start;
            reference::sparse_linear_backward(dw_twin.data(), db_twin.data(), dout.data(), batch, rows, in, out,
                                              accumulate);
            std::vector<T> dw_dense = dw_start, db_dense = db_start;
            reference::linear_backward<T>(nullptr, dw_dense.data(), db_dense.data(), dout.data(), dense,
                                          weight.data(), rows, in, out, accumulate);
            for (std::size_t i = 0; i < dw_twin.size(); ++i) CHECK_CLOSE(dw_twin[i], dw_dense[i], tolerance<T>());
            for (std::size_t i = 0; i < out; ++i) CHECK_CLOSE(db_twin[i], db_dense[i], tolerance<T>());
            for (int threads : {1, 2, 3, 8}) {
                set_num_threads(threads);
                std::vector<T> dw = dw_start, db = db_start;
                sparse_linear_backward(dw.data(), db.data(), dout.data(), batch, rows, in, out, accumulate);
                CHECK(dw == dw_twin);  // bit for bit
                CHECK(db == db_twin);
            }
        }
        std::vector<T> z_dense(rows * out);
        reference::linear_forward(z_dense.data(), dense, weight.data(), bias.data(), rows, in, out);
        for (std::size_t i = 0; i < z_ref.size(); ++i) CHECK_CLOSE(z_ref[i], z_dense[i], tolerance<T>());
        for (int threads : {1, 2, 3, 8}) {
            set_num_threads(threads);
            std::vector<T> z(rows * out);
            sparse_linear_forward(z.data(), batch, weight.data(), bias.data(), rows, in, out);
            CHECK(z == z_ref);  // bit for bit
        }
    }
    set_num_threads(before);
}

// A sparse network and its dense twin with the same parameters.
template <typename T>
Network<T> network(std::size_t in, Loss loss, std::vector<Activation> activations, std::size_t outputs) {
    std::vector<std::size_t> sizes{in};
    for (std::size_t l = 0; l + 1 < activations.size(); ++l) sizes.push_back(6);
    sizes.push_back(outputs);
    return Network<T>(sizes, std::move(activations), loss, 5);
}

template <typename T>
void check_params_close(const Network<T>& a, const Network<T>& b, double tol) {
    CHECK(a.num_params() == b.num_params());
    for (std::size_t i = 0; i < a.num_params(); ++i) CHECK_CLOSE(a.params()[i], b.params()[i], tol);
}

template <typename T, typename Index>
void network_calls_match_the_dense_ones() {
    const std::size_t rows = 90, in = 120, k = 3;
    const Csr<T, Index> x(rows, in, 0.08, 11);
    const ConstMatrixView<T> dense{x.dense.data(), rows, in};
    std::vector<T> y(rows * k);
    detail::Random random(3);
    for (std::size_t r = 0; r < rows; ++r) y[r * k + (r % k)] = T(1);  // one-hot: valid for every loss here
    const ConstMatrixView<T> Y{y.data(), rows, k};
    struct Case {
        Loss loss;
        std::vector<Activation> activations;
    };
    const Case cases[] = {{Loss::cce, {Activation::relu, Activation::softmax}},
                          {Loss::bce, {Activation::tanh, Activation::sigmoid}},
                          {Loss::mse, {Activation::identity}},
                          {Loss::bce, {Activation::sigmoid}}};
    for (const Case& c : cases) {
        Network<T> sparse = network<T>(in, c.loss, c.activations, k);
        Network<T> plain = sparse;
        std::vector<T> out_sparse(rows * k), out_dense(rows * k);
        sparse.predict(MatrixView<T>{out_sparse.data(), rows, k}, x.view());
        plain.predict(MatrixView<T>{out_dense.data(), rows, k}, dense);
        for (std::size_t i = 0; i < out_sparse.size(); ++i) CHECK_CLOSE(out_sparse[i], out_dense[i], tolerance<T>());
        CHECK_CLOSE(sparse.cost(x.view(), Y), plain.cost(dense, Y), tolerance<T>());
        std::vector<T> g_sparse(sparse.num_params()), g_dense(plain.num_params());
        sparse.compute_gradients(x.view(), Y, g_sparse.data());
        plain.compute_gradients(dense, Y, g_dense.data());
        for (std::size_t i = 0; i < g_sparse.size(); ++i) CHECK_CLOSE(g_sparse[i], g_dense[i], tolerance<T>());
        for (std::size_t batch : {std::size_t{1}, std::size_t{7}, std::size_t{64}}) {
            for (bool shuffle : {false, true}) {
                FitOptions options;
                options.epochs = 2;
                options.batch_size = batch;
                options.shuffle = shuffle;
                options.seed = 9;
                options.learning_rate = 0.05;
                options.optimizer.kind = batch == 7 ? OptimizerKind::adam : OptimizerKind::sgd;
                if (batch == 7) options.learning_rate = 0.01;
                Network<T> s = sparse, d = plain;
                const std::vector<double> hs = s.fit(x.view(), Y, options);
                const std::vector<double> hd = d.fit(dense, Y, options);
                CHECK(hs.size() == hd.size());
                for (std::size_t e = 0; e < hs.size(); ++e) CHECK_CLOSE(hs[e], hd[e], 100 * tolerance<T>());
                check_params_close(s, d, 100 * tolerance<T>());
            }
        }
    }
}

template <typename T, typename Index>
void fit_has_the_same_bits_at_any_thread_count() {
    const std::size_t rows = 200, in = 2000, k = 2;
    const Csr<T, Index> x(rows, in, 0.02, 13);
    std::vector<T> y(rows * k);
    for (std::size_t r = 0; r < rows; ++r) y[r * k + (r % k)] = T(1);
    const ConstMatrixView<T> Y{y.data(), rows, k};
    const Network<T> start({in, 64, k}, {Activation::relu, Activation::softmax}, Loss::cce, 2);
    FitOptions options;
    options.epochs = 2;
    options.batch_size = 50;
    options.optimizer.kind = OptimizerKind::adam;
    options.learning_rate = 0.01;
    const int before = get_num_threads();
    std::vector<T> first;
    for (int threads : {1, 2, 4, 7}) {
        set_num_threads(threads);
        Network<T> net = start;
        net.fit(x.view(), Y, options);
        const std::vector<T> params(net.params(), net.params() + net.num_params());
        if (first.empty()) first = params;
        CHECK(params == first);
    }
    set_num_threads(before);
}

template <typename Index>
void refuses_malformed_csr() {
    using T = double;
    const Csr<T, Index> good(6, 10, 0.4, 1);
    std::vector<T> y(6, T(0.5));
    const ConstMatrixView<T> Y{y.data(), 6, 1};
    Network<T> net({10, 3, 1}, {Activation::tanh, Activation::sigmoid}, Loss::bce, 1);
    const std::vector<T> params(net.params(), net.params() + net.num_params());
    auto expect_refused = [&](const Csr<T, Index>& x, const std::string& words) {
        std::string message;
        try {
            net.fit(x.view(), Y, FitOptions{});
        } catch (const std::invalid_argument& e) {
            message = e.what();
        }
        if (message.find(words) == std::string::npos) {
            check::fail(__FILE__, __LINE__, "expected \"" + words + "\" in \"" + message + "\"");
        }
        CHECK_THROWS(std::invalid_argument, net.cost(x.view(), Y));
        std::vector<T> out(x.rows);
        CHECK_THROWS(std::invalid_argument, net.predict(MatrixView<T>{out.data(), x.rows, 1}, x.view()));
        CHECK(std::equal(params.begin(), params.end(), net.params()));
    };
    Csr<T, Index> bad = good;
    bad.indices[2] = 10;
    expect_refused(bad, "out of range");
    bad = good;
    bad.indices[0] = -1;
    expect_refused(bad, "out of range");
    bad = good;
    std::swap(bad.indptr[2], bad.indptr[3]);
    if (bad.indptr[2] != bad.indptr[3]) expect_refused(bad, "non-decreasing");
    bad = good;
    bad.indptr[0] = -1;
    expect_refused(bad, ">= 0");
    bad = good;
    bad.indptr.back() += 1;
    expect_refused(bad, "exceeds");
    bad = good;
    bad.values[1] = std::numeric_limits<T>::quiet_NaN();
    expect_refused(bad, "non-finite");
    bad = good;
    bad.cols = 9;
    expect_refused(bad, "features per record");
    const Csr<T, Index> empty(0, 10, 0.5, 1);
    std::vector<T> none;
    CHECK_THROWS(std::invalid_argument, net.cost(empty.view(), ConstMatrixView<T>{none.data(), 0, 1}));
    CHECK(std::equal(params.begin(), params.end(), net.params()));
}

}  // namespace

TEST(sparse_kernels_match_their_twins_bit_for_bit_and_the_dense_reference) {
    for (const auto& [in, density] : {std::pair<std::size_t, double>{300, 0.05}, {20000, 0.0005}}) {
        kernels_match_their_twins_and_the_dense_reference<float, std::int32_t>(in, density);
        kernels_match_their_twins_and_the_dense_reference<float, std::int64_t>(in, density);
        kernels_match_their_twins_and_the_dense_reference<double, std::int32_t>(in, density);
        kernels_match_their_twins_and_the_dense_reference<double, std::int64_t>(in, density);
    }
}

TEST(csr_predict_cost_gradients_and_fit_match_the_dense_calls) {
    network_calls_match_the_dense_ones<float, std::int32_t>();
    network_calls_match_the_dense_ones<double, std::int32_t>();
    network_calls_match_the_dense_ones<double, std::int64_t>();
}

TEST(csr_fit_has_the_same_bits_at_any_thread_count) {
    fit_has_the_same_bits_at_any_thread_count<float, std::int32_t>();
    fit_has_the_same_bits_at_any_thread_count<double, std::int64_t>();
}

TEST(malformed_csr_is_refused_with_the_model_unchanged) {
    refuses_malformed_csr<std::int32_t>();
    refuses_malformed_csr<std::int64_t>();
}

TEST(an_all_zero_csr_matrix_is_the_bias_alone) {
    std::vector<std::int32_t> indptr(5, 0);
    const CsrMatrixView<double, std::int32_t> zeros{indptr.data(), nullptr, nullptr, 4, 8, 0};
    Network<double> net({8, 2}, {Activation::identity}, Loss::mse, 1);
    net.layer(0).bias[0] = 0.5;
    net.layer(0).bias[1] = -2.0;
    std::vector<double> out(8);
    net.predict(MatrixView<double>{out.data(), 4, 2}, zeros);
    for (std::size_t r = 0; r < 4; ++r) CHECK(out[2 * r] == 0.5 && out[2 * r + 1] == -2.0);
    std::vector<double> y(8, 1.0), g(net.num_params());
    net.compute_gradients(zeros, ConstMatrixView<double>{y.data(), 4, 2}, g.data());
    for (std::size_t i = 0; i < 16; ++i) CHECK(g[i] == 0.0);  // dW = dZ^T X = 0
    CHECK(g[16] == 2.0 * (0.5 - 1.0) && g[17] == 2.0 * (-2.0 - 1.0));  // db = mean of 2 (z - y)
}

TEST_MAIN()
