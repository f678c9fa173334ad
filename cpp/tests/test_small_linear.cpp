// The small-layer kernels (kernels/small_linear.cpp) against their naive
// twins (kernels/reference.cpp), over the shapes that exercise their blocks:
// outputs and inputs below, at and between whole vectors, runs of input
// vectors, record and row counts that leave remainders; and the properties
// their orders of summation promise (docs/math.md, "Small layers").
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "chainrule/threads.hpp"
#include "check.hpp"
#include "random_values.hpp"
#include "kernels/kernels.hpp"
#include "kernels/reference.hpp"
#include "kernels/small_linear.hpp"
#include "runtime/random.hpp"

using namespace chainrule;

#if CHAINRULE_SMALL_LINEAR

namespace {

using test_data::random_values;

using check::same_bits;

// Records: 1, one under and one over a register block (12 / J, 8), 32, 301.
const std::size_t kRecords[] = {1, 2, 5, 7, 13, 32, 301};
// (inputs, outputs): the benchmark's W2 and W3 layers, outputs from 1 to 4
// vectors (whole and overlapping, float and double), inputs below a vector,
// at one, overlapping, in several runs of vectors (100 float: 13 vectors; W6's output layer, 100 to 1).
const std::size_t kLayers[][2] = {{30, 16}, {10, 32}, {16, 1}, {32, 1}, {3, 7}, {9, 13}, {8, 8}, {5, 2},
                                  {12, 20}, {100, 20}, {64, 10}, {7, 31}, {40, 3}, {256, 8}, {100, 1}};

template <typename T>
void check_against_reference(double tol) {
    for (const auto& layer : kLayers) {
        const std::size_t C = layer[0], OC = layer[1];
        for (std::size_t B : kRecords) {
            const auto x = random_values<T>(B * C, 1 + B), w = random_values<T>(OC * C, 2 + C),
                       b = random_values<T>(OC, 3), d = random_values<T>(B * OC, 4 + OC);
            if (detail::small_linear_forward_fits<T>(C, OC)) {
                std::vector<T> fast(B * OC), slow(B * OC);
                detail::small_linear_forward(fast.data(), x.data(), w.data(), b.data(), B, C, OC);
                reference::linear_forward(slow.data(), x.data(), w.data(), b.data(), B, C, OC);
                for (std::size_t i = 0; i < fast.size(); ++i) CHECK_CLOSE(fast[i], slow[i], tol * std::sqrt(double(C)));
            }
            if (!detail::small_linear_backward_fits<T>(C, OC, B)) continue;
            for (bool accumulate : {false, true}) {
                for (bool one_sum : {false, true}) {
                    std::vector<T> dx_fast(B * C, T(7)), dx_slow(B * C), dw_fast(OC * C, T(0.5)),
                        dw_slow(OC * C, T(0.5)), db_fast(OC, T(-1)), db_slow(OC, T(-1));
                    detail::small_linear_backward(dx_fast.data(), dw_fast.data(), db_fast.data(), d.data(), x.data(),
                                                  w.data(), B, C, OC, accumulate, one_sum);
                    reference::linear_backward(dx_slow.data(), dw_slow.data(), db_slow.data(), d.data(), x.data(),
                                               w.data(), B, C, OC, accumulate);
                    for (std::size_t i = 0; i < dx_fast.size(); ++i) {
                        CHECK_CLOSE(dx_fast[i], dx_slow[i], tol * std::sqrt(double(OC)));
                    }
                    for (std::size_t i = 0; i < dw_fast.size(); ++i) {
                        CHECK_CLOSE(dw_fast[i], dw_slow[i], tol * std::sqrt(double(B)));
                    }
                    for (std::size_t i = 0; i < db_fast.size(); ++i) {
                        CHECK_CLOSE(db_fast[i], db_slow[i], tol * std::sqrt(double(B)));
                    }
                }
            }
        }
    }
}

}  // namespace

TEST(small_linear_kernels_match_their_reference_twins) {
    check_against_reference<double>(1e-14);
    check_against_reference<float>(2e-6);
}

TEST(small_linear_fits_the_layers_it_is_written_for) {
    CHECK(detail::small_linear_forward_fits<float>(30, 16) && detail::small_linear_forward_fits<float>(10, 32));
    CHECK(detail::single_output_fits<float>(16) && detail::single_output_fits<double>(32));
    CHECK(!detail::single_output_fits<float>(30) && !detail::single_output_fits<float>(0));
    CHECK(detail::small_linear_backward_fits<float>(30, 16, 32));
    CHECK(detail::small_linear_backward_fits<float>(16, 1, 32));
    CHECK(!detail::small_linear_forward_fits<float>(30, 1));    // one output: linear_forward's dot product
    CHECK(!detail::small_linear_forward_fits<float>(30, 33));   // more than 4 vectors of outputs
    CHECK(!detail::small_linear_forward_fits<double>(30, 17));
    CHECK(!detail::small_linear_backward_fits<float>(7, 16, 32));  // inputs fill no vector
    CHECK(!detail::small_linear_backward_fits<double>(3, 16, 32));
    CHECK(!detail::small_linear_backward_fits<float>(784, 256, 64));  // a W4 layer: the GEMM's
    CHECK(detail::small_linear_backward_fits<float>(30, 16, 64));
    CHECK(!detail::small_linear_backward_fits<float>(30, 16, 65));
    CHECK(!detail::small_linear_backward_fits<float>(256, 8, 32));
    CHECK(detail::small_linear_backward_fits<double>(32, 1, 100000));  // one row of dW: the inputs read once
    CHECK(detail::small_linear_backward_fits<double>(512, 3, 100000));
}

namespace {

// Each record of the forward pass is computed on its own: a batch gives the
// bits of its records one at a time, whatever block of registers a record
// falls in.
template <typename T>
void check_records_alone() {
    for (const auto& layer : kLayers) {
        const std::size_t C = layer[0], OC = layer[1], B = 29;
        if (!detail::small_linear_forward_fits<T>(C, OC)) continue;
        const auto x = random_values<T>(B * C, 5), w = random_values<T>(OC * C, 6), b = random_values<T>(OC, 7);
        std::vector<T> batch(B * OC), alone(B * OC);
        detail::small_linear_forward(batch.data(), x.data(), w.data(), b.data(), B, C, OC);
        for (std::size_t r = 0; r < B; ++r) {
            detail::small_linear_forward(alone.data() + r * OC, x.data() + r * C, w.data(), b.data(), 1, C, OC);
        }
        CHECK(same_bits(batch, alone));
    }
}

// Without one_sum, dW and db take the records' terms one by one in record
// order: a batch in two chunks, the second accumulated, gives the bits of
// the batch in one call. With one_sum, dW is the same sum from 0: the same
// values (the two differ only in the sign of a zero sum).
template <typename T>
void check_record_order() {
    for (const auto& layer : kLayers) {
        const std::size_t C = layer[0], OC = layer[1], B = 37, first = 16;
        if (!detail::small_linear_backward_fits<T>(C, OC, B)) continue;
        const auto x = random_values<T>(B * C, 8), w = random_values<T>(OC * C, 9), d = random_values<T>(B * OC, 10);
        std::vector<T> dw_whole(OC * C), db_whole(OC), dw_parts(OC * C), db_parts(OC), dw_one(OC * C), db_one(OC);
        detail::small_linear_backward<T>(nullptr, dw_whole.data(), db_whole.data(), d.data(), x.data(), w.data(), B,
                                         C, OC, false, false);
        detail::small_linear_backward<T>(nullptr, dw_parts.data(), db_parts.data(), d.data(), x.data(), w.data(),
                                         first, C, OC, false, false);
        detail::small_linear_backward<T>(nullptr, dw_parts.data(), db_parts.data(), d.data() + first * OC,
                                         x.data() + first * C, w.data(), B - first, C, OC, true, false);
        CHECK(same_bits(dw_whole, dw_parts) && same_bits(db_whole, db_parts));
        detail::small_linear_backward<T>(nullptr, dw_one.data(), db_one.data(), d.data(), x.data(), w.data(), B, C,
                                         OC, false, true);
        CHECK(dw_one == dw_whole && same_bits(db_one, db_whole));
    }
}

}  // namespace

namespace {

// single_output_forward takes V records side by side and the last ones
// (fewer than V) through detail::dot itself, in the same copy of the code:
// a record alone is a dot product, and in a batch it gives the same bits.
template <typename T>
void check_single_output_is_dot() {
    for (std::size_t C : {8, 16, 32, 40, 64}) {
        const std::size_t B = 37;
        const auto x = random_values<T>(B * C, 15), w = random_values<T>(C, 16), b = random_values<T>(1, 17);
        std::vector<T> batch(B), alone(B), slow(B);
        detail::single_output_forward(batch.data(), x.data(), w.data(), b.data(), B, C);
        for (std::size_t r = 0; r < B; ++r) {
            detail::single_output_forward(alone.data() + r, x.data() + r * C, w.data(), b.data(), 1, C);
        }
        CHECK(same_bits(batch, alone));
        reference::linear_forward(slow.data(), x.data(), w.data(), b.data(), B, C, 1);
        const double tol = (sizeof(T) == 4 ? 2e-6 : 1e-14) * std::sqrt(double(C));
        for (std::size_t r = 0; r < B; ++r) CHECK_CLOSE(batch[r], slow[r], tol);
    }
}

}  // namespace

namespace {

// small_network_predict (predict's fast path) against the plain path it
// stands for: small_linear_forward, activation_forward, single_output_forward
// and activation_forward again, each over the whole batch. Same bits, for
// batches that end inside a block and inside a group of V records, and every
// pair of the two activations; inputs large enough to saturate the sigmoid.
// A non-finite input makes it say false, and so does an output that
// overflows; finite ones make it say true.
template <typename T>
void check_small_network_predict_is_the_plain_path() {
    const std::size_t kHidden = sizeof(T) == 4 ? 32 : 16;  // the most small_linear_forward takes
    for (std::size_t H = 8; H <= kHidden; H += 8) {
        for (std::size_t C : {1, 5, 10, 30, 64}) {
            for (Activation hidden : {Activation::sigmoid, Activation::identity}) {
                for (Activation output : {Activation::sigmoid, Activation::identity}) {
                    CHECK(detail::small_network_predict_fits<T>(C, H, 1, hidden, output));
                    for (std::size_t B : {1, 5, 9, 24, 25, 47, 256, 301}) {
                        auto x = random_values<T>(B * C, 20 + B);
                        for (T& v : x) v *= T(8);
                        const auto w1 = random_values<T>(H * C, 21), b1 = random_values<T>(H, 22),
                                   w2 = random_values<T>(H, 23), b2 = random_values<T>(1, 24);
                        std::vector<T> z(B * H), a(B * H), plain(B), fused(B, T(7));
                        detail::small_linear_forward(z.data(), x.data(), w1.data(), b1.data(), B, C, H);
                        activation_forward(a.data(), z.data(), B * H, hidden);
                        detail::single_output_forward(z.data(), a.data(), w2.data(), b2.data(), B, H);
                        activation_forward(plain.data(), z.data(), B, output);
                        CHECK(detail::small_network_predict(fused.data(), x.data(), w1.data(), b1.data(), w2.data(),
                                                            b2.data(), B, C, H, hidden, output));
                        CHECK(same_bits(fused, plain));
                        x[(B - 1) * C + C / 2] = B % 2 ? INFINITY : NAN;  // the last record's
                        CHECK(!detail::small_network_predict(fused.data(), x.data(), w1.data(), b1.data(),
                                                             w2.data(), b2.data(), B, C, H, hidden, output));
                    }
                }
            }
        }
    }
    // An output that overflows: identity layers and inputs near the largest value.
    const std::size_t B = 30, C = 10, H = 8;
    std::vector<T> x(B * C, std::numeric_limits<T>::max() / 4), w1(H * C, T(1)), b1(H), w2(H, T(1)), b2(1), out(B);
    CHECK(!detail::small_network_predict(out.data(), x.data(), w1.data(), b1.data(), w2.data(), b2.data(), B, C, H,
                                         Activation::identity, Activation::identity));
    CHECK(std::isinf(out[0]));
    // A hidden z that overflows where the output does not: the sigmoid takes
    // inf to 1, and the output is finite, but the pass says false all the same.
    CHECK(!detail::small_network_predict(out.data(), x.data(), w1.data(), b1.data(), w2.data(), b2.data(), B, C, H,
                                         Activation::sigmoid, Activation::identity));
    CHECK(out[0] == T(H));
    // Other networks stay with the plain path.
    CHECK(!detail::small_network_predict_fits<T>(30, 16, 2, Activation::sigmoid, Activation::sigmoid));
    CHECK(!detail::small_network_predict_fits<T>(30, 16, 1, Activation::tanh, Activation::sigmoid));
    CHECK(!detail::small_network_predict_fits<T>(30, 16, 1, Activation::sigmoid, Activation::relu));
    CHECK(!detail::small_network_predict_fits<T>(30, 12, 1, Activation::sigmoid, Activation::sigmoid));  // H % 8
    CHECK(!detail::small_network_predict_fits<T>(30, 8 * kHidden, 1, Activation::sigmoid, Activation::sigmoid));
}

}  // namespace

TEST(small_network_predict_gives_the_plain_paths_bits) {
    check_small_network_predict_is_the_plain_path<float>();
    check_small_network_predict_is_the_plain_path<double>();
}

TEST(single_output_forward_gives_the_dot_products_bits) {
    check_single_output_is_dot<float>();
    check_single_output_is_dot<double>();
}

TEST(small_linear_forward_computes_each_record_alone) {
    check_records_alone<float>();
    check_records_alone<double>();
}

TEST(small_linear_backward_sums_in_record_order) {
    check_record_order<float>();
    check_record_order<double>();
}

TEST(large_small_layer_products_are_the_same_on_any_thread_count) {
    // Large enough that the kernels share records (forward, dA) and rows of dW among the threads.
    const std::size_t B = 6000, C = 64, OC = 32, OC_backward = 3;
    CHECK(detail::small_linear_backward_fits<float>(C, OC_backward, B));
    const auto x = random_values<float>(B * C, 11), w = random_values<float>(OC * C, 12),
               b = random_values<float>(OC, 13), d = random_values<float>(B * OC_backward, 14);
    const int before = get_num_threads();
    std::vector<float> z1, dx1, dw1, db1;
    for (int threads : {1, 2, 3, 4}) {
        set_num_threads(threads);
        std::vector<float> z(B * OC), dx(B * C), dw(OC_backward * C), db(OC_backward);
        detail::small_linear_forward(z.data(), x.data(), w.data(), b.data(), B, C, OC);
        detail::small_linear_backward(dx.data(), dw.data(), db.data(), d.data(), x.data(), w.data(), B, C,
                                      OC_backward, false, true);
        if (threads == 1) {
            z1 = z, dx1 = dx, dw1 = dw, db1 = db;
        } else {
            CHECK(same_bits(z, z1) && same_bits(dx, dx1) && same_bits(dw, dw1) && same_bits(db, db1));
        }
    }
    set_num_threads(before);
}

// The fused calls against the two calls they replace, bit for bit, on every
// layer and batch above (those the small kernels take and those they leave
// to the plain paths): linear_sigmoid_forward against linear_forward then
// activation_forward; linear_activation_backward, below it a layer of each
// activation, against linear_backward then activation_backward, with and
// without accumulate (dW and db holding earlier sums). Its inputs are that
// layer's outputs: a sigmoid's in (0, 1), some rounded to 0 or 1; a relu's
// zeros (a quarter of them -0) and positives; a tanh's and a leaky relu's
// (which stay with the two calls) both signs.
template <typename T>
std::vector<T> outputs_of(Activation f, const std::vector<T>& x) {
    std::vector<T> a(x.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (f == Activation::sigmoid) a[i] = T(1) / (T(1) + std::exp(T(-40) * x[i]));
        if (f == Activation::relu) a[i] = x[i] > T(0) ? x[i] : i % 4 == 0 ? T(-0.0) : T(0);
        if (f == Activation::tanh) a[i] = std::tanh(x[i]);
        if (f == Activation::leaky_relu) a[i] = x[i] > T(0) ? x[i] : T(0.01) * x[i];
    }
    return a;
}

template <typename T>
void check_layers_fused() {
    for (const auto& layer : kLayers) {
        const std::size_t C = layer[0], OC = layer[1];
        for (std::size_t B : kRecords) {
            const auto x = random_values<T>(B * C, 18), w = random_values<T>(OC * C, 19),
                       b = random_values<T>(OC, 20), d = random_values<T>(B * OC, 21),
                       earlier = random_values<T>(OC * C + OC, 22);
            std::vector<T> plain(B * OC), fused(B * OC);
            linear_forward(plain.data(), x.data(), w.data(), b.data(), B, C, OC);
            activation_forward(plain.data(), plain.data(), B * OC, Activation::sigmoid);
            linear_sigmoid_forward(fused.data(), x.data(), w.data(), b.data(), B, C, OC);
            CHECK(same_bits(plain, fused));

            for (Activation below : {Activation::sigmoid, Activation::relu, Activation::tanh, Activation::leaky_relu}) {
                const std::vector<T> a = outputs_of(below, x);
                for (bool accumulate : {false, true}) {
                    std::vector<T> dx_plain(B * C), dx_fused(B * C);
                    std::vector<T> dw_plain(earlier.begin(), earlier.begin() + OC * C), dw_fused = dw_plain;
                    std::vector<T> db_plain(earlier.begin() + OC * C, earlier.end()), db_fused = db_plain;
                    linear_backward(dx_plain.data(), dw_plain.data(), db_plain.data(), d.data(), a.data(), w.data(),
                                    B, C, OC, accumulate);
                    activation_backward(dx_plain.data(), dx_plain.data(), a.data(), B * C, below);
                    linear_activation_backward(below, dx_fused.data(), dw_fused.data(), db_fused.data(), d.data(),
                                               a.data(), w.data(), B, C, OC, accumulate);
                    CHECK(same_bits(dx_plain, dx_fused) && same_bits(dw_plain, dw_fused) &&
                          same_bits(db_plain, db_fused));
                }
            }
        }
    }
}

TEST(fused_layers_give_the_bits_of_the_two_calls) {
    check_layers_fused<float>();
    check_layers_fused<double>();
}

// The one-output backward through the layer below does take the benchmark's
// W2 and W3 output layers (sigmoid below) and W6's (relu below, float64),
// where the test above compares it with the two calls.
TEST(the_one_output_backward_through_the_layer_below_takes_w2_w3_and_w6) {
    CHECK(detail::single_output_backward_through_fits<float>(Activation::sigmoid, 16, 32));
    CHECK(detail::single_output_backward_through_fits<float>(Activation::sigmoid, 32, 32));
    CHECK(detail::single_output_backward_through_fits<double>(Activation::sigmoid, 16, 32));
    CHECK(detail::single_output_backward_through_fits<double>(Activation::relu, 100, 200));
    CHECK(detail::single_output_backward_through_fits<float>(Activation::relu, 100, 200));
    CHECK(!detail::single_output_backward_through_fits<float>(Activation::sigmoid, 4, 32));  // less than a vector
    CHECK(!detail::single_output_backward_through_fits<float>(Activation::tanh, 16, 32));    // the two calls
}

#endif  // CHAINRULE_SMALL_LINEAR

TEST_MAIN()
