// Each kernel against a naive reference written here from docs/math.md.
#include <algorithm>
#include <array>
#include <cfloat>
#include <cstring>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/activations.hpp"
#include "kernels/kernels.hpp"
#include "kernels/losses.hpp"
#include "kernels/optimizer_rules.hpp"
#include "kernels/panel_linear.hpp"
#include "chainrule/threads.hpp"
#include "check.hpp"
#include "random_values.hpp"
#include "runtime/fast_math.hpp"
#include "runtime/gemm.hpp"
#include "kernels/reference.hpp"
#include "runtime/random.hpp"

using namespace chainrule;

namespace {

using test_data::random_values;

double reference_activation(double z, Activation a) {
    switch (a) {
        case Activation::sigmoid: return 1.0 / (1.0 + std::exp(-z));
        case Activation::identity: return z;
        case Activation::tanh: return std::tanh(z);
        case Activation::relu: return z > 0 ? z : 0.0;
        case Activation::leaky_relu: return z > 0 ? z : 0.01 * z;
        case Activation::softmax: break;  // row-wise: test_softmax.cpp
    }
    return 0.0;
}

const Activation kAll[] = {Activation::sigmoid, Activation::identity, Activation::tanh, Activation::relu,
                           Activation::leaky_relu};

}  // namespace

TEST(squared_norm_sums_in_sixteen_lanes_then_pairwise) {
    // docs/math.md, "The L2 penalty": value i into lane i mod 16, the lanes
    // then added pairwise. Values of many magnitudes, so that another order
    // shows in the bits; and the sum within rounding of the exact one.
    auto in_lanes = [](const auto& values) {
        double lanes[16] = {};
        for (std::size_t i = 0; i < values.size(); ++i) lanes[i % 16] += double(values[i]) * double(values[i]);
        for (std::size_t width = 8; width > 0; width /= 2) {
            for (std::size_t j = 0; j < width; ++j) lanes[j] += lanes[j + width];
        }
        return lanes[0];
    };
    for (std::size_t n : {0, 1, 15, 16, 17, 100, 7400}) {
        std::vector<double> v = random_values(n, 40 + n);
        for (std::size_t i = 0; i < n; ++i) v[i] *= std::ldexp(1.0, static_cast<int>(i % 23) - 11);
        CHECK(squared_norm(v.data(), n) == in_lanes(v));
        long double exact = 0;
        for (double x : v) exact += static_cast<long double>(x) * x;
        CHECK(std::fabs(static_cast<double>(exact) - squared_norm(v.data(), n)) <= 1e-14 * static_cast<double>(exact));
        const std::vector<float> f(v.begin(), v.end());
        CHECK(squared_norm(f.data(), n) == in_lanes(f));
    }
}

TEST(sigmoid_is_stable_and_exact_at_the_limits) {
    CHECK(sigmoid(0.0) == 0.5);
    CHECK(sigmoid(800.0) == 1.0);
    CHECK(sigmoid(-800.0) == 0.0);
    CHECK(sigmoid(1e308) == 1.0);
    CHECK(sigmoid(-1e308) == 0.0);
    CHECK(sigmoid(100.0f) == 1.0f);
    CHECK(sigmoid(-200.0f) == 0.0f);
    CHECK(!std::isnan(sigmoid(-std::numeric_limits<double>::max())));
    for (double z : {-30.0, -5.0, -0.1, 0.1, 5.0, 30.0}) CHECK_CLOSE(sigmoid(z), 1.0 / (1.0 + std::exp(-z)), 1e-15);
}

// The branch-free exp and log1p behind sigmoid and the BCE loss, against libm
// over their whole ranges, subnormal results and limits included.
TEST(fast_exp_and_log1p_match_libm) {
    detail::Random random(11);
    for (int i = 0; i < 200000; ++i) {
        const double x = -760.0 * random.uniform() * (i % 2 ? 1.0 : 0.01);
        const double exact = std::exp(x);
        const double fast = detail::exp_nonpositive(x);
        if (exact >= std::numeric_limits<double>::min()) {
            CHECK(std::abs(fast - exact) <= 4e-16 * exact);  // relative: check::close is absolute below 1
        } else {
            CHECK(std::abs(fast - exact) <= 2 * std::numeric_limits<double>::denorm_min());
        }
        const float xf = static_cast<float>(x / 7.0);
        const float exactf = std::exp(xf);
        const float fastf = detail::exp_nonpositive(xf);
        if (exactf >= std::numeric_limits<float>::min()) {
            CHECK(std::abs(fastf - exactf) <= 2.5e-7f * exactf);
        } else {
            CHECK(std::abs(fastf - exactf) <= 2 * std::numeric_limits<float>::denorm_min());
        }
        const double e = std::exp(x / 100.0);  // e in (0, 1]
        CHECK(std::abs(detail::log1p_unit(e) - std::log1p(e)) <= 4e-16 * std::log1p(e));
    }
    CHECK(detail::exp_nonpositive(0.0) == 1.0 && detail::exp_nonpositive(0.0f) == 1.0f);
    CHECK(detail::exp_nonpositive(-800.0) == 0.0 && detail::exp_nonpositive(-200.0f) == 0.0f);
    CHECK(detail::exp_nonpositive(-INFINITY) == 0.0);
    CHECK(std::isnan(detail::exp_nonpositive(std::nan(""))));
    CHECK(detail::log1p_unit(0.0) == 0.0);
    CHECK_CLOSE(detail::log1p_unit(1.0), std::log(2.0), 2e-16);
}

// exp_nonpositive's kNormal form and the sigmoid's f_in_range, which drop
// the handling of subnormal results, give the full forms' bits over their
// whole ranges, down to the edge: every 61st float in [-86, 0] and random
// doubles in [-700, 0]. largest_magnitude_bits_of, which picks them for a pass,
// puts a value past the edge, the infinities and NaN above the limit, and
// only the last two at or above inf.
TEST(exp_and_sigmoid_in_range_give_the_bits_of_the_full_forms) {
    const float edge = detail::kExpNormalFrom<float>;
    std::uint32_t edge_bits;
    std::memcpy(&edge_bits, &edge, sizeof edge);
    using check::same_bits;
    int differ = 0;
    for (std::uint64_t bits = 0x80000000u; bits <= edge_bits; bits += 61) {
        float x;
        const auto b32 = static_cast<std::uint32_t>(bits);
        std::memcpy(&x, &b32, sizeof x);
        differ += !same_bits(detail::exp_nonpositive<float, true>(x), detail::exp_nonpositive(x));
        differ += !same_bits(detail::Sigmoid::f_in_range(x), detail::Sigmoid::f(x));
        differ += !same_bits(detail::Sigmoid::f_in_range(-x), detail::Sigmoid::f(-x));
    }
    CHECK(differ == 0);
    CHECK(same_bits(detail::exp_nonpositive<float, true>(edge), detail::exp_nonpositive(edge)));
    detail::Random random(12);
    for (int i = 0; i < 400000; ++i) {
        const double x = detail::kExpNormalFrom<double> * random.uniform() * (i % 3 ? 1.0 : 1e-6);
        differ += !same_bits(detail::exp_nonpositive<double, true>(x), detail::exp_nonpositive(x));
        differ += !same_bits(detail::Sigmoid::f_in_range(x), detail::Sigmoid::f(x));
        differ += !same_bits(detail::Sigmoid::f_in_range(-x), detail::Sigmoid::f(-x));
    }
    CHECK(differ == 0);
    const double edge64 = detail::kExpNormalFrom<double>;
    CHECK(same_bits(detail::exp_nonpositive<double, true>(edge64), detail::exp_nonpositive(edge64)));

    // The pass that picks them: within the limit, past it, inf and NaN.
    const float limit = detail::Sigmoid::in_range<float>();
    const float past = std::nextafter(limit, 100.0f);
    const auto within = detail::magnitude_bits(limit), non_finite = detail::magnitude_bits(INFINITY);
    std::vector<float> v = {0.5f, -limit, limit, -0.0f, 3.0f};
    CHECK(detail::largest_magnitude_bits_of(v.data(), v.size()) == within);
    CHECK(detail::largest_magnitude_bits_of(v.data(), 0) == 0);
    for (float bad : {past, -past, FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, std::nanf(""), -std::nanf("")}) {
        v[3] = bad;
        const auto largest = detail::largest_magnitude_bits_of(v.data(), v.size());
        CHECK(largest > within);
        CHECK((largest >= non_finite) == !std::isfinite(bad));
    }
}

// Random::below against its definition (reject r < 2^64 mod bound, then r
// mod bound) on the same stream: the draws, and so every shuffle, are those of
// the definition. Bounds past 2^63 reject about half the draws.
TEST(random_below_keeps_and_rejects_the_draws_of_its_definition) {
    for (std::uint64_t seed : {1u, 2u, 3u}) {
        detail::Random fast(seed), plain(seed);
        int rejected = 0;
        for (int i = 0; i < 20000; ++i) {
            const std::uint64_t bound = i % 4 == 3 ? (std::uint64_t{1} << 63) + 1 + std::uint64_t(i) * 977
                                                   : std::uint64_t(i % 1000) + 1;
            std::uint64_t expected;
            for (;;) {
                const std::uint64_t r = plain.next();
                if (r >= (0 - bound) % bound) {
                    expected = r % bound;
                    break;
                }
                ++rejected;
            }
            CHECK(fast.below(bound) == expected);
        }
        CHECK(rejected > 100);
    }
}

TEST(reference_linear_forward_is_the_equation) {
    const std::size_t B = 5, C = 7, OC = 3;
    const auto x = random_values(B * C, 1), w = random_values(OC * C, 2), b = random_values(OC, 3);
    std::vector<double> z(B * OC);
    reference::linear_forward(z.data(), x.data(), w.data(), b.data(), B, C, OC);
    CHECK_CLOSE(z[1 * OC + 2], b[2] + x[7] * w[14] + x[8] * w[15] + x[9] * w[16] + x[10] * w[17] + x[11] * w[18] +
                                   x[12] * w[19] + x[13] * w[20], 1e-15);  // z_{1,2} = b_2 + sum_k x_{1,k} w_{2,k}
}

// Shapes on both sides of the GEMM threshold: batch-1 logistic regression,
// the small layers of W2/W3, a W4 layer, and a skinny one.
const std::size_t kShapes[][3] = {{1, 30, 1}, {32, 30, 16}, {32, 16, 1}, {5, 7, 3}, {64, 784, 256}, {100, 3, 200}};

template <typename T>
void check_linear_kernels_against_reference(double tol) {
    for (const auto& shape : kShapes) {
        const std::size_t B = shape[0], C = shape[1], OC = shape[2];
        const auto xd = random_values(B * C, 20 + B), wd = random_values(OC * C, 21 + C), bd = random_values(OC, 22);
        const auto dd = random_values(B * OC, 23 + OC);
        const std::vector<T> x(xd.begin(), xd.end()), w(wd.begin(), wd.end()), b(bd.begin(), bd.end()),
            d(dd.begin(), dd.end());
        std::vector<T> fast(B * OC), slow(B * OC);
        linear_forward(fast.data(), x.data(), w.data(), b.data(), B, C, OC);
        reference::linear_forward(slow.data(), x.data(), w.data(), b.data(), B, C, OC);
        for (std::size_t i = 0; i < fast.size(); ++i) CHECK_CLOSE(fast[i], slow[i], tol * std::sqrt(double(C)));
        for (bool accumulate : {false, true}) {
            std::vector<T> dx_fast(B * C, T(7)), dx_slow(B * C), dw_fast(OC * C, T(0.5)), dw_slow(OC * C, T(0.5)),
                db_fast(OC, T(-1)), db_slow(OC, T(-1));
            linear_backward(dx_fast.data(), dw_fast.data(), db_fast.data(), d.data(), x.data(), w.data(), B, C, OC,
                            accumulate);
            reference::linear_backward(dx_slow.data(), dw_slow.data(), db_slow.data(), d.data(), x.data(), w.data(), B,
                                       C, OC, accumulate);
            for (std::size_t i = 0; i < dx_fast.size(); ++i) CHECK_CLOSE(dx_fast[i], dx_slow[i], tol * std::sqrt(double(OC)));
            for (std::size_t i = 0; i < dw_fast.size(); ++i) CHECK_CLOSE(dw_fast[i], dw_slow[i], tol * std::sqrt(double(B)));
            for (std::size_t i = 0; i < db_fast.size(); ++i) CHECK_CLOSE(db_fast[i], db_slow[i], tol * std::sqrt(double(B)));
        }
    }
}

TEST(linear_kernels_match_their_reference_twins) {
    check_linear_kernels_against_reference<double>(1e-14);
    check_linear_kernels_against_reference<float>(2e-6);
}

// The forward product of a batch's shapes (kernels/panel_linear.hpp) sums
// each element as one chain of FMAs in k order from 0, then adds the bias:
// float64 with AVX2 and (where the CPU has it) AVX-512, float32 with
// AVX-512: column counts around its panels (12; 24 and 32) and vectors (4; 8
// and 16), row counts around its tiles (4, 6 and 8), inner sizes around the
// blocks it transposes (8, 16) up to its limits.
template <typename T>
std::vector<T> values_as(const std::vector<double>& values) {
    return std::vector<T>(values.begin(), values.end());
}

// out (rows, N) against the chain, and against it with the relu.
template <typename T>
void check_panel_product(const std::vector<T>& z, const std::vector<T>& a, const std::vector<T>& x,
                         const std::vector<T>& w, const std::vector<T>& b, std::size_t B, std::size_t C,
                         std::size_t N) {
    for (std::size_t r = 0; r < B; ++r) {
        for (std::size_t j = 0; j < N; ++j) {
            T acc = T(0);
            for (std::size_t k = 0; k < C; ++k) acc = std::fma(x[r * C + k], w[j * C + k], acc);
            CHECK(z[r * N + j] == acc + b[j]);
            if (!a.empty()) CHECK(a[r * N + j] == (acc + b[j] > T(0) ? acc + b[j] : T(0)));
        }
    }
}

template <typename T>
void check_panel_forward(detail::PanelVectors vectors, std::size_t max_columns) {
    const std::size_t row_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 13, 15, 17, 200};
    const std::size_t inner_sizes[] = {1, 3, 17, 64, 100, detail::kPanelLinearMaxInner};
    for (std::size_t N = 1; N <= max_columns; ++N) {
        for (const std::size_t B : row_counts) {
            for (const std::size_t C : inner_sizes) {
                if (!detail::panel_linear_fits<T>(B, C, N)) continue;  // a CPU without the vectors
                const auto x = values_as<T>(random_values(B * C, 60 + B)), w = values_as<T>(random_values(N * C, 61 + C)),
                           b = values_as<T>(random_values(N, 62 + N));
                std::vector<T> z(B * N + 3, T(9)), a(B * N + 3, T(9));  // past the end: left alone
                detail::panel_linear_forward(z.data(), x.data(), w.data(), b.data(), B, C, N, /*relu=*/false, vectors);
                detail::panel_linear_forward(a.data(), x.data(), w.data(), b.data(), B, C, N, /*relu=*/true, vectors);
                check_panel_product(z, a, x, w, b, B, C, N);
                CHECK(z[B * N] == T(9) && z[B * N + 2] == T(9) && a[B * N] == T(9) && a[B * N + 2] == T(9));
            }
        }
    }
}

TEST(the_panel_forward_product_is_one_fma_chain_per_element_plus_the_bias) {
    check_panel_forward<double>(detail::PanelVectors::widest, 51);
    check_panel_forward<double>(detail::PanelVectors::avx2, 51);
    check_panel_forward<float>(detail::PanelVectors::widest, 70);
    // Float32 only with AVX-512; float64 with AVX2 within its limits: a wider
    // inner size, more weights or more work goes to the library.
    const bool avx512 = detail::panel_linear_fits<float>(64, 784, 256);
    CHECK(detail::panel_linear_fits<double>(64, 784, 256) == avx512);
    CHECK(!detail::panel_linear_fits<float>(detail::kPanelLinearMaxRows512 + 1, 64, 64));
    CHECK(!detail::panel_linear_fits<float>(64, detail::kPanelLinearMaxInner512 + 1, 64));
    if (!avx512) {
        CHECK(!detail::panel_linear_fits<float>(200, 64, 100));
        CHECK(!detail::panel_linear_fits<double>(200, detail::kPanelLinearMaxInner + 1, 10));
        CHECK(!detail::panel_linear_fits<double>(10, 256, detail::kPanelLinearMaxWeights / 256 + 1));
        CHECK(!detail::panel_linear_fits<double>(1000, 256, 64));  // 16.4M multiply-adds
    }
}

// With AVX-512 the threads share out a large product's panels; each element
// is still its chain: the same values on 1, 2 and 3 threads, through
// linear_forward, as the product of a small one on the calling thread.
template <typename T>
void check_panel_forward_on_threads() {
    const int before = get_num_threads();
    const std::array<std::size_t, 3> shapes[] = {{200, 64, 100}, {64, 784, 256}, {13, 1000, 33}, {256, 1024, 70}};
    for (const auto& shape : shapes) {
        const std::size_t B = shape[0], C = shape[1], N = shape[2];
        if (!detail::panel_linear_fits<T>(B, C, N)) continue;
        const auto x = values_as<T>(random_values(B * C, 70)), w = values_as<T>(random_values(N * C, 71)),
                   b = values_as<T>(random_values(N, 72));
        std::vector<T> direct(B * N, T(0));
        detail::panel_linear_forward(direct.data(), x.data(), w.data(), b.data(), B, C, N, /*relu=*/false);
        check_panel_product(direct, std::vector<T>{}, x, w, b, B, C, N);
        for (int threads : {1, 2, 3}) {
            set_num_threads(threads);
            std::vector<T> z(B * N);
            linear_forward(z.data(), x.data(), w.data(), b.data(), B, C, N);
            CHECK(z == direct);
        }
    }
    set_num_threads(before);
}

TEST(linear_forward_takes_the_panel_product_on_any_thread_count_and_linear_relu_forward_its_relu) {
    check_panel_forward_on_threads<double>();
    check_panel_forward_on_threads<float>();
    // linear_relu_forward equals linear_forward then the relu, bit for bit, on
    // both sides of the small-shape product's limits, -0 and NaN included.
    for (const auto& shape : {std::array<std::size_t, 3>{200, 64, 100}, std::array<std::size_t, 3>{200, 300, 10},
                              std::array<std::size_t, 3>{5, 7, 3}, std::array<std::size_t, 3>{64, 784, 256}}) {
        const std::size_t rows = shape[0], in = shape[1], out = shape[2];
        const auto xs = random_values(rows * in, 73), ws = random_values(out * in, 74);
        auto bs = random_values(out, 75);
        std::vector<double> w0 = ws;
        for (std::size_t k = 0; k < in; ++k) w0[k] = 0.0;  // unit 0: z = b_0 = -0, relu +0
        bs[0] = -0.0;
        std::vector<double> wn = ws;
        wn[in + 1] = std::numeric_limits<double>::quiet_NaN();  // unit 1: z NaN, relu 0
        const std::vector<double>* all_weights[] = {&ws, &w0, &wn};
        for (const std::vector<double>* weights : all_weights) {
            std::vector<double> fused(rows * out), apart(rows * out);
            linear_relu_forward(fused.data(), xs.data(), weights->data(), bs.data(), rows, in, out);
            linear_forward(apart.data(), xs.data(), weights->data(), bs.data(), rows, in, out);
            activation_forward(apart.data(), apart.data(), apart.size(), Activation::relu);
            CHECK(std::memcmp(fused.data(), apart.data(), fused.size() * sizeof(double)) == 0);
        }
    }
}

TEST(linear_backward_without_dinp_leaves_it_alone) {
    const auto x = random_values(12, 7), d = random_values(8, 9), w = random_values(6, 8);
    std::vector<double> dw(6), db(2), dw_ref(6), db_ref(2);
    linear_backward<double>(nullptr, dw.data(), db.data(), d.data(), x.data(), w.data(), 4, 3, 2, false);
    reference::linear_backward<double>(nullptr, dw_ref.data(), db_ref.data(), d.data(), x.data(), w.data(), 4, 3, 2, false);
    for (std::size_t i = 0; i < dw.size(); ++i) CHECK_CLOSE(dw[i], dw_ref[i], 1e-15);
}

TEST(activations_and_derivatives_match_naive) {
    const auto z = random_values(64, 4, 6.0), dout = random_values(64, 5);
    for (Activation act : kAll) {
        std::vector<double> a(z.size()), dz(z.size());
        activation_forward(a.data(), z.data(), z.size(), act);
        activation_backward(dz.data(), dout.data(), a.data(), z.size(), act);
        for (std::size_t i = 0; i < z.size(); ++i) {
            CHECK_CLOSE(a[i], reference_activation(z[i], act), 1e-15);
            const double h = 1e-6;  // f'(z) by central difference
            const double slope = (reference_activation(z[i] + h, act) - reference_activation(z[i] - h, act)) / (2 * h);
            CHECK_CLOSE(dz[i], dout[i] * slope, 1e-8);
        }
    }
}

TEST(activation_in_place_equals_out_of_place) {
    const auto z = random_values(33, 6, 3.0);
    for (Activation act : kAll) {
        std::vector<double> out(z.size()), inplace = z;
        activation_forward(out.data(), z.data(), z.size(), act);
        activation_forward(inplace.data(), inplace.data(), z.size(), act);
        CHECK(out == inplace);
    }
}

// activation_forward takes 64 bytes of values per iteration, then shorter
// vectors and single values for the rest: every value must come out as it
// does computed alone (n = 1, the scalar code of the same copy), wherever it
// falls in a pass of any length. Values across the sigmoid's ranges: both
// signs, where e^{-|z|} underflows, and +-0.
template <typename T>
void check_each_value_as_alone() {
    std::vector<T> z;
    for (double v : random_values(80, 47, 8.0)) z.push_back(static_cast<T>(v));
    const T special[] = {T(0), -T(0), T(-120), T(95), T(-800), T(800), std::numeric_limits<T>::min(),
                         -std::numeric_limits<T>::max()};
    for (std::size_t i = 0; i < std::size(special); ++i) z[7 * i + 3] = special[i];
    for (Activation act : kAll) {
        std::vector<T> alone(z.size());
        for (std::size_t i = 0; i < z.size(); ++i) activation_forward(&alone[i], &z[i], 1, act);
        for (std::size_t n = 2; n <= z.size(); ++n) {
            const std::size_t first = z.size() - n;  // passes ending at the last value: every offset and tail
            std::vector<T> a(n);
            activation_forward(a.data(), z.data() + first, n, act);
            CHECK(std::memcmp(a.data(), alone.data() + first, n * sizeof(T)) == 0);
        }
    }
}

TEST(each_activation_value_is_the_value_computed_alone) {
    check_each_value_as_alone<float>();
    check_each_value_as_alone<double>();
}

TEST(large_activations_are_the_same_on_any_thread_count) {
    // 2^15 + 5 values: one range per thread. Every value is computed alone,
    // so each thread count gives the bits of the elementwise loop over the
    // first 64 values (computed alone, on one thread) and of one thread.
    const std::size_t n = (std::size_t{1} << 15) + 5;
    const auto z = random_values(n, 43, 6.0), dout = random_values(n, 44);
    const int before = get_num_threads();
    for (Activation act : kAll) {
        std::vector<std::vector<double>> runs;
        for (int threads : {1, 2, 3}) {
            set_num_threads(threads);
            std::vector<double> a(n), dz(n);
            activation_forward(a.data(), z.data(), n, act);
            activation_backward(dz.data(), dout.data(), a.data(), n, act);
            a.insert(a.end(), dz.begin(), dz.end());
            runs.push_back(a);
        }
        CHECK(runs[0] == runs[1]);
        CHECK(runs[0] == runs[2]);
        std::vector<double> head(64), last(8);
        activation_forward(head.data(), z.data(), 64, act);
        activation_forward(last.data(), z.data() + n - 8, 8, act);
        CHECK(std::equal(head.begin(), head.end(), runs[1].begin()));
        CHECK(std::equal(last.begin(), last.end(), runs[1].begin() + (n - 8)));
    }
    set_num_threads(before);
}

TEST(gemm_tiles_cover_the_product_in_aligned_blocks) {
    // The tiling is a function of the shape: whole blocks of 64 rows (or
    // columns), a power of two of tiles of at least 2^21 multiply-adds each,
    // covering the longer side of C exactly once, in order.
    using detail::gemm_tiling;
    CHECK(gemm_tiling(64, 256, 100).tiles == 1);  // 1.6M multiply-adds: one call
    if (detail::gemm_tiles_products()) {
        // W4's predict, a chunk of 256 records through its first layer: 4 tiles
        // of 64 records (each packs all of W again), not 8 of 32.
        CHECK(gemm_tiling(256, 256, 784).tiles == 4);
        // W4's training products keep their tiles: 4 for the first layer, 2 for the second.
        CHECK(gemm_tiling(64, 256, 784).tiles == 4 && gemm_tiling(256, 784, 64).tiles == 4);
        CHECK(gemm_tiling(64, 256, 256).tiles == 2 && gemm_tiling(256, 256, 64).tiles == 2);
    }
    const std::size_t shapes[][3] = {{64, 256, 784}, {256, 784, 64}, {128, 128, 256}, {1000, 203, 301},
                                     {1024, 4096, 4096}, {17, 4099, 1000}, {4099, 17, 1000}};
    for (const auto& s : shapes) {
        const detail::GemmTiling t = gemm_tiling(s[0], s[1], s[2]);
        if (!detail::gemm_tiles_products()) {
            CHECK(t.tiles == 1);
            continue;
        }
        CHECK(t.rows == (s[0] >= s[1]));
        CHECK(t.side == std::max(s[0], s[1]));
        CHECK(t.tiles >= 2 && t.tiles <= detail::kGemmMaxTiles && (t.tiles & (t.tiles - 1)) == 0);
        CHECK(t.begin(0) == 0 && t.begin(t.tiles) == t.side);
        const double other = double(std::min(s[0], s[1])) * double(s[2]);
        for (std::size_t i = 0; i < t.tiles; ++i) {
            CHECK(t.begin(i) % detail::kGemmTileAlign == 0);
            CHECK(t.begin(i + 1) > t.begin(i));
            CHECK(double(t.begin(i + 1) - t.begin(i)) * other >= detail::kGemmTileMinWork || i + 1 == t.tiles);
        }
    }
}

TEST(a_tiled_gemm_equals_its_tiles_computed_one_by_one_on_any_thread_count) {
    // 96 x 300 x 500 = 14.4M multiply-adds: 4 tiles of 64 to 108 columns.
    const std::size_t M = 96, N = 300, K = 500;
    const auto a = random_values(M * K, 45), b = random_values(K * N, 46);
    const detail::GemmTiling tiling = detail::gemm_tiling(M, N, K);
    std::vector<double> by_tiles(M * N, 0.0);
    for (std::size_t i = 0; i < tiling.tiles; ++i) {  // each tile alone: too small to tile again
        const std::size_t begin = tiling.begin(i), width = tiling.begin(i + 1) - begin;
        detail::gemm(false, false, M, width, K, 1.0, a.data(), K, b.data() + begin, N, 0.0, by_tiles.data() + begin, N);
    }
    const int before = get_num_threads();
    for (int threads : {1, 2, 3, 4}) {
        set_num_threads(threads);
        std::vector<double> c(M * N, 1.0);
        detail::gemm(false, false, M, N, K, 1.0, a.data(), K, b.data(), N, 0.0, c.data(), N);
        CHECK(c == by_tiles);
    }
    set_num_threads(before);
}

TEST(gemm_scales_the_product_by_alpha_and_adds_it_to_c) {
    // C = alpha A^T B + C, each transpose, against the sums in long double.
    const std::size_t M = 20, N = 36, K = 48;
    const auto a = random_values(M * K, 47), b = random_values(K * N, 48), c0 = random_values(M * N, 49);
    for (const bool tb : {false, true}) {
        std::vector<double> c = c0;
        detail::gemm(true, tb, M, N, K, -0.375, a.data(), M, b.data(), tb ? K : N, 1.0, c.data(), N);
        for (std::size_t i = 0; i < M; ++i) {
            for (std::size_t j = 0; j < N; ++j) {
                long double sum = 0;
                for (std::size_t k = 0; k < K; ++k) sum += (long double)a[k * M + i] * (tb ? b[j * K + k] : b[k * N + j]);
                const long double expected = c0[i * N + j] - 0.375L * sum;
                CHECK(std::fabs((long double)c[i * N + j] - expected) <= 1e-13L);
            }
        }
    }
}

TEST(linear_backward_matches_naive) {
    const std::size_t B = 4, C = 6, OC = 3;
    const auto x = random_values(B * C, 7), w = random_values(OC * C, 8), d = random_values(B * OC, 9);
    std::vector<double> dx(B * C, 123.0), dw(OC * C, 0.0), db(OC, 0.0);
    linear_backward(dx.data(), dw.data(), db.data(), d.data(), x.data(), w.data(), B, C, OC, false);
    for (std::size_t j = 0; j < OC; ++j) {
        double expected_db = 0;
        for (std::size_t r = 0; r < B; ++r) expected_db += d[r * OC + j];
        CHECK_CLOSE(db[j], expected_db, 1e-14);
        for (std::size_t k = 0; k < C; ++k) {
            double expected = 0;  // dW = dZ^T A
            for (std::size_t r = 0; r < B; ++r) expected += d[r * OC + j] * x[r * C + k];
            CHECK_CLOSE(dw[j * C + k], expected, 1e-14);
        }
    }
    for (std::size_t r = 0; r < B; ++r) {
        for (std::size_t k = 0; k < C; ++k) {
            double expected = 0;  // dA = dZ W (dx is overwritten, not accumulated)
            for (std::size_t j = 0; j < OC; ++j) expected += d[r * OC + j] * w[j * C + k];
            CHECK_CLOSE(dx[r * C + k], expected, 1e-14);
        }
    }
    // dweight and dbias accumulate: a second call doubles them.
    const std::vector<double> dw_once = dw;
    linear_backward<double>(nullptr, dw.data(), db.data(), d.data(), x.data(), w.data(), B, C, OC, true);
    for (std::size_t i = 0; i < dw.size(); ++i) CHECK_CLOSE(dw[i], 2 * dw_once[i], 1e-14);
}

TEST(bce_forward_matches_naive_and_stays_finite) {
    const auto z = random_values(20, 10, 8.0);
    std::vector<double> y(z.size());
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = i % 3 == 0 ? 0.0 : (i % 3 == 1 ? 1.0 : 0.25);
    double expected = 0;
    for (std::size_t i = 0; i < z.size(); ++i) {
        const double a = 1.0 / (1.0 + std::exp(-z[i]));
        expected += -(y[i] * std::log(a) + (1 - y[i]) * std::log(1 - a));
    }
    CHECK_CLOSE(bce_forward(z.data(), y.data(), 4, 5), expected, 1e-12);
    // Saturated: log(a) would be log(0) = -inf; from logits the loss is exactly |z|.
    const double zs[] = {-1000.0, 1000.0}, ys[] = {1.0, 0.0};
    CHECK(bce_forward(zs, ys, 2, 1) == 2000.0);
    const float zf[] = {-200.0f}, yf[] = {1.0f};
    CHECK(bce_forward(zf, yf, 1, 1) == 200.0);
}

TEST(fused_bce_delta_equals_unfused_chain_rule) {
    // dZ = dC/dA * sigma'(z) = (a - y)/(a(1 - a)) * a(1 - a), which bce_backward fuses to a - y.
    const auto z = random_values(30, 11, 4.0);
    std::vector<double> a(z.size()), y(z.size()), fused(z.size()), unfused(z.size()), dA(z.size());
    activation_forward(a.data(), z.data(), z.size(), Activation::sigmoid);
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = (i % 4) / 3.0;
    for (std::size_t i = 0; i < y.size(); ++i) dA[i] = 0.5 * (-y[i] / a[i] + (1 - y[i]) / (1 - a[i]));
    activation_backward(unfused.data(), dA.data(), a.data(), z.size(), Activation::sigmoid);
    bce_backward(fused.data(), a.data(), y.data(), z.size(), 0.5);
    for (std::size_t i = 0; i < z.size(); ++i) CHECK_CLOSE(fused[i], unfused[i], 1e-12);
}

TEST(mse_forward_and_backward_match_naive) {
    const auto a = random_values(12, 12), y = random_values(12, 13);
    double expected = 0;
    for (std::size_t i = 0; i < a.size(); ++i) expected += (a[i] - y[i]) * (a[i] - y[i]);
    CHECK_CLOSE(mse_forward(a.data(), y.data(), 3, 4), expected, 1e-14);
    std::vector<double> d(a.size());
    mse_backward(d.data(), a.data(), y.data(), a.size(), 0.25);
    for (std::size_t i = 0; i < a.size(); ++i) CHECK_CLOSE(d[i], 0.25 * 2 * (a[i] - y[i]), 1e-15);  // factor 2 kept
}

TEST(sgd_update_applies_or_refuses_whole) {
    std::vector<double> w = {1.0, -2.0, 3.0}, g = {0.5, 0.5, -1.0};
    CHECK(sgd_update(w.data(), g.data(), 3, 0.1));
    CHECK(w[0] == 1.0 - 0.1 * 0.5 && w[1] == -2.0 - 0.1 * 0.5 && w[2] == 3.0 + 0.1);
    const std::vector<double> before = w;
    const std::vector<double> huge = {1.0, 1e308, 1.0};
    CHECK(!sgd_update(w.data(), huge.data(), 3, 1e10));  // 1e318 overflows
    CHECK(w == before);                                  // nothing written
    const std::vector<double> nan_grad = {0.0, 0.0, std::nan("")};
    CHECK(!sgd_update(w.data(), nan_grad.data(), 3, 0.1));
    CHECK(w == before);
}

TEST(a_large_sgd_update_is_the_same_on_any_thread_count_and_still_whole) {
    // 2^17 parameters: checked and applied in one range per thread. Each value
    // is computed alone, so every thread count gives the same bits; and a
    // non-finite update in the last range must leave the first ranges as
    // they were too.
    const std::size_t n = std::size_t{1} << 17;
    const std::vector<double> w0 = random_values(n, 41), g0 = random_values(n, 42);
    std::vector<float> start(n), grads(n);
    for (std::size_t i = 0; i < n; ++i) start[i] = static_cast<float>(w0[i]), grads[i] = static_cast<float>(g0[i]);
    const int before = get_num_threads();
    std::vector<float> expected(n);
    for (std::size_t i = 0; i < n; ++i) expected[i] = start[i] - 0.25f * grads[i];
    for (int threads : {1, 2, 3, 4}) {
        set_num_threads(threads);
        std::vector<float> w = start;
        CHECK(sgd_update(w.data(), grads.data(), n, 0.25f));
        CHECK(w == expected);
        std::vector<float> bad = grads;
        bad[n - 1] = std::numeric_limits<float>::infinity();
        CHECK(!sgd_update(w.data(), bad.data(), n, 0.25f));
        CHECK(w == expected);  // nothing written, in any range
        bad[n - 1] = grads[n - 1];
        bad[0] = std::nanf("");
        CHECK(!sgd_update(w.data(), bad.data(), n, 0.25f));
        CHECK(w == expected);
    }
    set_num_threads(before);
}

// Adam first checks a bound without its square roots and divisions; where
// the bound fails (eps so small that 1 / eps nearly overflows float) the exact check
// decides: an update whose values are all finite is still taken, with the
// same values as under the bound, and a non-finite one is still refused whole.
TEST(bias_corrections_are_one_minus_pow_bit_for_bit_and_skip_it_from_where_it_rounds_to_one) {
    const double betas[] = {0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.999999, 0.3};
    for (double beta : betas) {
        const double from = bias_correction_saturates(beta);
        CHECK(1.0 - std::pow(beta, from) == 1.0);
        if (from > 1.0) CHECK(1.0 - std::pow(beta, from - 1.0) < 1.0);  // the first such step
    }
    // The betas interleaved, three at a time, so that each thread's cache of
    // two misses, hits either entry and replaces the older: every value as pow's.
    std::size_t checked = 0;
    for (std::size_t i = 0; i + 2 < std::size(betas); ++i) {
        for (double beta : {betas[i], betas[i + 1], betas[i], betas[i + 2], betas[i + 1]}) {
            const double from = bias_correction_saturates(beta);
            for (double t : {1.0, 2.0, 3.0, from - 2.0, from - 1.0, from, from + 1.0, from + 1e3, 2e4, 1e6, 1e12}) {
                if (!(t >= 1.0)) continue;
                const double expected = 1.0 - std::pow(beta, t);
                const double got = bias_correction(beta, t);
                CHECK(std::memcmp(&got, &expected, sizeof(got)) == 0);
                ++checked;
            }
        }
    }
    CHECK(checked > 300);
}

TEST(adam_takes_a_finite_step_whichever_check_decides_and_refuses_a_non_finite_one) {
    const std::size_t n = 40000;  // several ranges on the threads
    std::vector<float> start(n), grads(n);
    const int before = get_num_threads();
    const auto p = random_values(n, 31), g = random_values(n, 32);
    for (std::size_t i = 0; i < n; ++i) start[i] = static_cast<float>(p[i]), grads[i] = static_cast<float>(g[i]);
    OptimizerOptions usual, tiny_eps;
    usual.kind = tiny_eps.kind = OptimizerKind::adam;
    tiny_eps.eps = 1e-38;  // 1 / eps is beyond a quarter of float's range: the bound fails
    for (int threads : {1, 3}) {
        set_num_threads(threads);
        for (const OptimizerOptions& o : {usual, tiny_eps}) {
            std::vector<float> bounded = start, exact = start;
            OptimizerState<float> s1, s2;
            CHECK(optimizer_update(bounded.data(), grads.data(), n, s1, o, 1e-3));
            // The same rule with the exact check only: per element, as the fused rule computes it.
            prepare_slots(s2, o, n);
            const double bc1 = 1 - 0.9, bc2 = 1 - 0.999;
            for (std::size_t i = 0; i < n; ++i) {
                const float gi = grads[i];
                const float m = 0.0f + static_cast<float>(1 - 0.9) * (gi - 0.0f);
                const float v = static_cast<float>(0.999) * 0.0f + static_cast<float>(1 - 0.999) * (gi * gi);
                const float denom = std::sqrt(v) / static_cast<float>(std::sqrt(bc2)) + static_cast<float>(o.eps);
                exact[i] = start[i] + (-static_cast<float>(1e-3 / bc1)) * (m / denom);
            }
            for (std::size_t i = 0; i < n; ++i) CHECK_CLOSE(bounded[i], exact[i], 1e-6);
            CHECK(s1.steps == 1);
        }
        // A gradient that overflows v: refused whole, state included.
        std::vector<float> w = start, bad = grads;
        bad[n / 2] = 3e38f;
        OptimizerState<float> s;
        CHECK(!optimizer_update(w.data(), bad.data(), n, s, usual, 1e-3));
        CHECK(w == start && s.steps == 0);
        for (float m : s.slots[0]) CHECK(m == 0.0f);
    }
    set_num_threads(before);
}

// The fused one-record steps against the kernels they fuse, called one by one
// as the network's general path calls them with B = 1: the same bits.
template <typename T>
void check_fused_steps_equal_unfused(Activation activation, Loss loss, std::size_t C, std::size_t OC, bool shuffled,
                                     const OptimizerOptions& optimizer, std::size_t records = 12) {
    const std::size_t n = OC * C + OC;
    const T lr = T(0.3);
    std::vector<T> X(records * C), Y(records * OC), fused(n), unfused(n), grads(n);
    const auto x = random_values(X.size(), 21, 2.0);
    const auto y = random_values(Y.size(), 22);
    const auto p = random_values(n, 23);
    for (std::size_t i = 0; i < X.size(); ++i) X[i] = static_cast<T>(x[i]);
    for (std::size_t i = 0; i < Y.size(); ++i) Y[i] = static_cast<T>(loss == Loss::bce ? (y[i] + 1) / 2 : y[i]);
    for (std::size_t i = 0; i < n; ++i) fused[i] = unfused[i] = static_cast<T>(p[i]);
    std::vector<std::size_t> rows(records);
    for (std::size_t i = 0; i < records; ++i) rows[i] = shuffled ? (i * 5 + 3) % records : i;  // 5 and records coprime

    std::vector<T> z(records * OC), a(OC);
    std::vector<double> losses(records);
    OptimizerState<T> fused_state, unfused_state;
    prepare_slots(fused_state, optimizer, n);
    T* slots[2] = {};
    for (int k = 0; k < optimizer_slots(optimizer); ++k) slots[k] = fused_state.slots[k].data();
    // Two calls, so that the second starts from a state with steps behind it.
    const std::size_t first = records / 3;
    const std::size_t* rows_at = shuffled ? rows.data() : nullptr;
    RecordSteps steps = dense_record_steps(fused.data(), fused.data() + OC * C, slots, z.data(), a.data(),
                                           losses.data(), X.data(), Y.data(), rows_at, first, C, OC, activation,
                                           loss, optimizer, static_cast<double>(lr), 0);
    CHECK(steps.done == first && steps.stopped == RecordStep::ok);
    steps = dense_record_steps(fused.data(), fused.data() + OC * C, slots, z.data() + first * OC, a.data(),
                               losses.data() + first, shuffled ? X.data() : X.data() + first * C,
                               shuffled ? Y.data() : Y.data() + first * OC, shuffled ? rows.data() + first : nullptr,
                               records - first, C, OC, activation, loss, optimizer, static_cast<double>(lr), first);
    CHECK(steps.done == records - first && steps.stopped == RecordStep::ok);

    std::vector<T> z1(OC), a1(OC), d(OC);
    for (std::size_t i = 0; i < records; ++i) {
        const T* xr = X.data() + rows[i] * C;
        const T* yr = Y.data() + rows[i] * OC;
        T* W = unfused.data();
        T* b = W + OC * C;
        linear_forward(z1.data(), xr, W, b, 1, C, OC);
        activation_forward(a1.data(), z1.data(), OC, activation);
        for (std::size_t j = 0; j < OC; ++j) CHECK(z[i * OC + j] == z1[j]);
        if (loss == Loss::bce) {
            bce_backward(d.data(), a1.data(), yr, OC, T(1));
        } else {
            CHECK_CLOSE(losses[i], mse_forward(a1.data(), yr, 1, OC), 1e-15);
            mse_backward(d.data(), a1.data(), yr, OC, T(1));
            activation_backward(d.data(), d.data(), a1.data(), OC, activation);
        }
        linear_backward<T>(nullptr, grads.data(), grads.data() + OC * C, d.data(), xr, W, 1, C, OC, false);
        CHECK(optimizer_update(unfused.data(), grads.data(), n, unfused_state, optimizer, static_cast<double>(lr)));
    }
    CHECK(fused == unfused);
    for (int k = 0; k < optimizer_slots(optimizer); ++k) CHECK(fused_state.slots[k] == unfused_state.slots[k]);
    if (loss == Loss::bce && OC == 1) {  // the fused steps' own losses: those of bce_losses over each call
        std::vector<T> targets(records);
        for (std::size_t i = 0; i < records; ++i) targets[i] = Y[rows[i]];
        std::vector<double> expected(records);
        bce_losses(expected.data(), z.data(), targets.data(), first);
        bce_losses(expected.data() + first, z.data() + first, targets.data() + first, records - first);
        CHECK(losses == expected);
    }
}

// Plain SGD and each rule the fused steps take (record_steps_take): SGD's
// momentum rules, Adam in both forms, AdamW with its decoupled decay.
std::vector<OptimizerOptions> fused_step_variants() {
    std::vector<OptimizerOptions> variants(9);
    variants[1].momentum = 0.9;
    variants[2].momentum = 0.9, variants[2].nesterov = true;
    variants[3].form = OptimizerForm::sklearn, variants[3].momentum = 0.9;
    variants[4].form = OptimizerForm::sklearn, variants[4].momentum = 0.9, variants[4].nesterov = true;
    variants[5].kind = OptimizerKind::adam;
    variants[6].kind = OptimizerKind::adam, variants[6].form = OptimizerForm::sklearn;
    variants[7].kind = OptimizerKind::adamw, variants[7].weight_decay = 0.05;
    variants[8].kind = OptimizerKind::adam, variants[8].beta1 = 0.5, variants[8].beta2 = 0.6;  // saturate early
    for (const OptimizerOptions& o : variants) CHECK(record_steps_take(o));
    return variants;
}

TEST(fused_record_steps_take_no_weight_decay_added_to_the_gradient_nor_amsgrad) {
    OptimizerOptions o;
    o.weight_decay = 1e-3;
    CHECK(!record_steps_take(o));
    o.kind = OptimizerKind::adam;
    CHECK(!record_steps_take(o));
    o.kind = OptimizerKind::adamw;
    CHECK(record_steps_take(o));
    o.amsgrad = true;
    CHECK(!record_steps_take(o));
}

TEST(fused_record_steps_equal_the_unfused_kernels_bit_for_bit) {
    const std::pair<Activation, Loss> pairs[] = {{Activation::sigmoid, Loss::bce}, {Activation::sigmoid, Loss::mse},
                                                 {Activation::identity, Loss::mse}, {Activation::tanh, Loss::mse},
                                                 {Activation::relu, Loss::mse}};
    for (const auto& [activation, loss] : pairs) {
        // Below, at and past one vector of 8, with and without a tail; with one
        // output, 8 to 32 inputs hold the row in registers (1 to 4 chunks of 8).
        for (std::size_t C : {1, 5, 8, 9, 12, 16, 17, 24, 30, 32, 33}) {
            for (std::size_t OC : {1, 3}) {
                for (bool shuffled : {false, true}) {
                    for (const OptimizerOptions& optimizer : fused_step_variants()) {
                        check_fused_steps_equal_unfused<float>(activation, loss, C, OC, shuffled, optimizer);
                        check_fused_steps_equal_unfused<double>(activation, loss, C, OC, shuffled, optimizer);
                    }
                }
            }
        }
    }
}

TEST(fused_adam_steps_equal_the_unfused_kernels_across_blocks_of_steps) {
    // Adam's steps run in blocks of 256 after their table of scalars: calls
    // of 200 and 400 steps (the second from step 200) cross the blocks' edges.
    // The second pair of betas saturates its bias corrections within the run.
    std::vector<OptimizerOptions> adams(3);
    adams[0].kind = OptimizerKind::adam;
    adams[1].kind = OptimizerKind::adam, adams[1].form = OptimizerForm::sklearn;
    adams[2].kind = OptimizerKind::adam, adams[2].beta1 = 0.5, adams[2].beta2 = 0.8;
    for (const OptimizerOptions& adam : adams) {
        for (std::size_t C : {5, 12}) {  // the general fused loop and the row in registers
            for (bool shuffled : {false, true}) {
                check_fused_steps_equal_unfused<float>(Activation::sigmoid, Loss::bce, C, 1, shuffled, adam, 601);
                check_fused_steps_equal_unfused<double>(Activation::identity, Loss::mse, C, 1, shuffled, adam, 601);
            }
        }
    }
}

// A record of huge inputs at step `huge_at` of 12, the fused steps in one
// call against the kernels called one by one: both stop at the same step for
// the same reason, with the same parameters and velocity (those of the steps
// before it), the stopped step's logit written. Returns why they stopped.
template <typename T>
RecordStep check_fused_steps_stop_as_unfused(Activation activation, Loss loss, std::size_t C,
                                             const OptimizerOptions& optimizer, T huge, std::size_t huge_at) {
    const std::size_t records = 12, n = C + 1;
    const T lr = T(0.3);
    std::vector<T> X(records * C), Y(records), fused(n), unfused(n), grads(n);
    const auto x = random_values(X.size(), 31, 2.0);
    const auto y = random_values(Y.size(), 32);
    const auto p = random_values(n, 33);
    for (std::size_t i = 0; i < X.size(); ++i) X[i] = i / C == huge_at ? huge : static_cast<T>(x[i]);
    for (std::size_t i = 0; i < Y.size(); ++i) Y[i] = static_cast<T>(loss == Loss::bce ? (y[i] + 1) / 2 : y[i]);
    for (std::size_t i = 0; i < n; ++i) fused[i] = unfused[i] = static_cast<T>(p[i]);
    std::vector<T> z(records), a(1);
    std::vector<double> losses(records);
    OptimizerState<T> fused_state, unfused_state;
    prepare_slots(fused_state, optimizer, n);
    T* slots[2] = {};
    for (int k = 0; k < optimizer_slots(optimizer); ++k) slots[k] = fused_state.slots[k].data();
    const RecordSteps steps = dense_record_steps(fused.data(), fused.data() + C, slots, z.data(), a.data(),
                                                 losses.data(), X.data(), Y.data(), nullptr, records, C, 1,
                                                 activation, loss, optimizer, static_cast<double>(lr), 0);
    RecordStep expected = RecordStep::ok;
    std::size_t i = 0;
    for (; i < records && expected == RecordStep::ok; ++i) {
        T z1, a1, d;
        linear_forward(&z1, X.data() + i * C, unfused.data(), unfused.data() + C, 1, C, 1);
        activation_forward(&a1, &z1, 1, activation);
        CHECK(std::isfinite(z[i]) == std::isfinite(z1));
        if (std::isfinite(z1)) CHECK(z[i] == z1);
        if (loss == Loss::bce) {
            if (!std::isfinite(z1)) expected = RecordStep::loss_not_finite;
            bce_backward(&d, &a1, Y.data() + i, 1, T(1));
        } else {
            if (!std::isfinite(mse_forward(&a1, Y.data() + i, 1, 1))) expected = RecordStep::loss_not_finite;
            mse_backward(&d, &a1, Y.data() + i, 1, T(1));
            activation_backward(&d, &d, &a1, 1, activation);
        }
        if (expected != RecordStep::ok) break;
        linear_backward<T>(nullptr, grads.data(), grads.data() + C, &d, X.data() + i * C, unfused.data(), 1, C, 1,
                           false);
        if (!optimizer_update(unfused.data(), grads.data(), n, unfused_state, optimizer, static_cast<double>(lr))) {
            expected = RecordStep::update_not_finite;
            break;
        }
    }
    CHECK(steps.stopped == expected);
    CHECK(steps.done == i);
    if (loss == Loss::bce) {  // through the stopped step, as bce_losses over the call
        const std::size_t end = std::min(records, i + 1);
        std::vector<double> expected(end);
        bce_losses(expected.data(), z.data(), Y.data(), end);
        for (std::size_t k = 0; k < end; ++k) {
            CHECK(std::isfinite(expected[k]) ? losses[k] == expected[k] : !std::isfinite(losses[k]));
        }
    }
    CHECK(fused == unfused);
    prepare_slots(unfused_state, optimizer, n);  // before any step (stopped at the first): zeros
    for (int k = 0; k < optimizer_slots(optimizer); ++k) CHECK(fused_state.slots[k] == unfused_state.slots[k]);
    return steps.stopped;
}

TEST(fused_record_steps_stop_where_the_unfused_kernels_stop) {
    const std::pair<Activation, Loss> pairs[] = {{Activation::sigmoid, Loss::bce}, {Activation::sigmoid, Loss::mse},
                                                 {Activation::identity, Loss::mse}};
    int stops[3] = {};  // how often each reason came up: the cases must reach both kinds of stop
    auto count = [&](RecordStep why) { ++stops[static_cast<int>(why)]; };
    for (const auto& [activation, loss] : pairs) {
        for (std::size_t C : {5, 8, 9, 16, 30, 32}) {
            for (const OptimizerOptions& optimizer : fused_step_variants()) {
                for (std::size_t at : {0, 5}) {
                    // max / 4: the forward pass overflows; sqrt(max): the
                    // loss may stay finite while the update overflows.
                    count(check_fused_steps_stop_as_unfused<float>(activation, loss, C, optimizer,
                                                                   std::numeric_limits<float>::max() / 4, at));
                    count(check_fused_steps_stop_as_unfused<float>(
                        activation, loss, C, optimizer, std::sqrt(std::numeric_limits<float>::max()), at));
                    count(check_fused_steps_stop_as_unfused<double>(activation, loss, C, optimizer,
                                                                    std::numeric_limits<double>::max() / 4, at));
                    count(check_fused_steps_stop_as_unfused<double>(
                        activation, loss, C, optimizer, std::sqrt(std::numeric_limits<double>::max()), at));
                }
            }
        }
    }
    CHECK(stops[static_cast<int>(RecordStep::loss_not_finite)] > 0);
    CHECK(stops[static_cast<int>(RecordStep::update_not_finite)] > 0);
}

TEST(fused_record_steps_stop_before_a_step_that_would_not_be_finite) {
    // Linear regression on one input: the third record's loss overflows double.
    const std::vector<double> X = {1.0, 2.0, 1e200, 1.0}, Y = {0.5, -0.5, 0.0, 0.0};
    auto run = [&](std::size_t count, double lr, std::vector<double>& params, std::vector<double>& losses) {
        std::vector<double> z(count), a(1);
        return dense_record_steps<double>(params.data(), params.data() + 1, nullptr, z.data(), a.data(), losses.data(),
                                  X.data(), Y.data(), nullptr, count, 1, 1, Activation::identity, Loss::mse,
                                  OptimizerOptions{}, lr, 0);
    };
    std::vector<double> params = {0.25, 0.125}, after_two = params, losses(4);
    run(2, 0.1, after_two, losses);
    RecordSteps steps = run(4, 0.1, params, losses);
    CHECK(steps.done == 2 && steps.stopped == RecordStep::loss_not_finite);
    CHECK(std::isinf(losses[2]));
    CHECK(params == after_two);  // the steps before it, and nothing of it
    // A finite loss but an update that overflows: the step is refused whole.
    const std::vector<double> X2 = {1e10}, Y2 = {0.0};
    const std::vector<double> untouched = {0.25, 0.125};
    params = untouched;
    std::vector<double> z2(1), a2(1);
    steps = dense_record_steps<double>(params.data(), params.data() + 1, nullptr, z2.data(), a2.data(), losses.data(),
                               X2.data(), Y2.data(), nullptr, 1, 1, 1, Activation::identity, Loss::mse,
                               OptimizerOptions{}, 1e300, 0);
    CHECK(steps.done == 0 && steps.stopped == RecordStep::update_not_finite);
    CHECK(std::isfinite(losses[0]));
    CHECK(params == untouched);
    // BCE: a logit that overflows float stops the step before its update.
    const std::vector<float> Xf = {1.0f, 3e38f}, Yf = {1.0f, 0.0f};
    std::vector<float> w = {10.0f, 0.0f}, z(2), a(1);
    std::vector<double> unused(2);
    steps = dense_record_steps<float>(w.data(), w.data() + 1, nullptr, z.data(), a.data(), unused.data(), Xf.data(),
                               Yf.data(), nullptr, 2, 1, 1, Activation::sigmoid, Loss::bce, OptimizerOptions{}, 0.5,
                               0);
    CHECK(steps.done == 1 && steps.stopped == RecordStep::loss_not_finite && std::isinf(z[1]));
}

TEST(largest_magnitude_is_the_largest_absolute_value_inf_or_nan) {
    // Every position (the running maxima's blocks and the tail), both dtypes.
    auto check_every_position = [](auto zero) {
        using T = decltype(zero);
        using limits = std::numeric_limits<T>;
        CHECK(largest_magnitude<T>(nullptr, 0) == 0.0);
        for (std::size_t n : {1u, 7u, 63u, 64u, 65u, 200u}) {
            for (std::size_t at = 0; at < n; ++at) {
                std::vector<T> w(n, T(0.5));
                for (std::size_t i = 0; i < n; i += 3) w[i] = T(-0.25);
                w[at] = T(-3);
                CHECK(largest_magnitude(w.data(), n) == 3.0);
                w[at] = limits::lowest();
                CHECK(largest_magnitude(w.data(), n) == double(limits::max()));
                w[at] = -limits::infinity();
                CHECK(std::isinf(largest_magnitude(w.data(), n)));
                w[at] = -limits::quiet_NaN();
                CHECK(std::isnan(largest_magnitude(w.data(), n)));
            }
        }
    };
    check_every_position(0.0f);
    check_every_position(0.0);
}

TEST(largest_magnitude_shared_by_threads_is_the_same_for_any_parts) {
    // Long enough for the threads to share it (one part per 2^16 values): the
    // largest, an infinity or a NaN in each part and at its edges, on 1 to 3
    // threads.
    const int before = get_num_threads();
    auto check = [](auto zero) {
        using T = decltype(zero);
        using limits = std::numeric_limits<T>;
        const std::size_t n = (std::size_t{1} << 18) + 37;
        std::vector<T> w(n, T(0.5));
        for (std::size_t i = 0; i < n; i += 5) w[i] = T(-0.75);
        const std::size_t positions[] = {0, 1, 65535, 65536, 131071, 131072, 200000, n - 17, n - 1};
        for (std::size_t at : positions) {
            const T old = w[at];
            w[at] = T(-7);
            CHECK(largest_magnitude(w.data(), n) == 7.0);
            w[at] = -limits::infinity();
            CHECK(std::isinf(largest_magnitude(w.data(), n)));
            w[at] = limits::quiet_NaN();
            CHECK(std::isnan(largest_magnitude(w.data(), n)));
            w[at] = old;
        }
        CHECK(largest_magnitude(w.data(), n) == 0.75);
    };
    for (int threads : {1, 2, 3}) {
        set_num_threads(threads);
        check(0.0f);
        check(0.0);
    }
    set_num_threads(before);
}

TEST(all_finite_finds_nan_and_inf) {
    std::vector<float> v(100, 1.0f);
    CHECK(all_finite(v.data(), v.size()));
    v[57] = std::numeric_limits<float>::infinity();
    CHECK(!all_finite(v.data(), v.size()));
    v[57] = std::nanf("");
    CHECK(!all_finite(v.data(), v.size()));
    v[57] = std::numeric_limits<float>::max();
    CHECK(all_finite(v.data(), v.size()));
    // Every position (vector body and tail), both dtypes, every kind of non-finite
    // value, next to the finite extremes (max, lowest, subnormal, -0).
    auto check_every_position = [](auto zero) {
        using T = decltype(zero);
        using limits = std::numeric_limits<T>;
        const T finite[] = {limits::max(), limits::lowest(), limits::denorm_min(), -T(0)};
        const T non_finite[] = {limits::infinity(), -limits::infinity(), limits::quiet_NaN(), -limits::quiet_NaN()};
        for (std::size_t n : {1u, 7u, 8u, 9u, 33u}) {
            std::vector<T> w(n, T(0.5));
            for (std::size_t i = 0; i < n; ++i) {
                for (T value : finite) {
                    w[i] = value;
                    CHECK(all_finite(w.data(), n));
                }
                for (T value : non_finite) {
                    w[i] = value;
                    CHECK(!all_finite(w.data(), n));
                    CHECK(all_finite(w.data(), i));  // the values before it
                }
                w[i] = T(0.5);
            }
        }
    };
    check_every_position(0.0f);
    check_every_position(0.0);
}

TEST_MAIN()
