// The fast path of one-layer networks trained one record at a time
// (logistic and linear regression) with SGD (plain, momentum, Nesterov) or
// Adam: the forward pass, the output delta and the update of a step
// in one loop, many steps per call. It computes the
// values of the general path (the batch kernels with B = 1) bit for bit,
// through the same activation homes and the same dot product.
#if defined(__GNUC__)
// The rules (here and in optimizer_rules.hpp, hence before the includes)
// take 32-byte vectors by value for the row in registers (below), which
// changes the ABI without AVX (the baseline copy of target_clones); they pass
// only between always-inlined functions, so no call ever uses that ABI. (For
// the whole file: GCC warns where the templates are instantiated, at its end.)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels/activations.hpp"
#include "kernels/helpers.hpp"
#include "kernels/kernels.hpp"
#include "kernels/losses.hpp"
#include "kernels/optimizer_rules.hpp"
#include "runtime/macros.hpp"
#include "runtime/prefetch.hpp"

namespace chainrule {

namespace {
// How a fused step updates a parameter from its gradient g: plain SGD, the
// general path's sgd_update (p - lr g), or a rule of optimizer_rules.hpp
// with its kSlots state slots s0, s1 (SGD's momentum: its velocity; Adam:
// its two moments). Each takes the values optimizer_update takes with B =
// 1. Not a weight decay added to g: g + wd p, with g a product here but a
// loaded value there, may be contracted into a different fused
// multiply-add, and then the bits would differ (AdamW's decoupled decay
// scales p alone). kScheduled: the rule's scalars change from step to step
// (Adam's bias corrections: StepTable).
// The values are V: T, or a vector of T (the row in registers, below).
struct PlainSgd {
    static constexpr std::size_t kSlots = 0;
    static constexpr bool kScheduled = false;
    template <typename V, typename T>
    CHAINRULE_ALWAYS_INLINE static V step(V p, V g, V&, V&, const StepScalars<T>& c) {
        return p - c.lr * g;
    }
};

template <typename Rule>
struct SgdRule {
    static constexpr std::size_t kSlots = 1;
    static constexpr bool kScheduled = false;
    template <typename V, typename T>
    CHAINRULE_ALWAYS_INLINE static V step(V p, V g, V& velocity, V&, const StepScalars<T>& c) {
        V unused1 = V{}, unused2 = V{};
        return Rule::step(p, g, velocity, unused1, unused2, c);
    }
};

template <typename Rule>
struct AdamRule {
    static constexpr std::size_t kSlots = 2;
    static constexpr bool kScheduled = true;
    template <typename V, typename T>
    CHAINRULE_ALWAYS_INLINE static V step(V p, V g, V& m, V& v, const StepScalars<T>& c) {
        V unused = V{};  // amsgrad's maximum: not taken (three slots)
        return Rule::step(p, g, m, v, unused, c);
    }
};

// Adam's scalars for each step of a block (step_scalars' step_size and
// inv_bc2_sqrt), computed before the block's steps: their pows are calls,
// which the row in registers (below) would have to leave the registers for.
template <typename T>
struct StepTable {
    static constexpr std::size_t kSteps = 256;
    T step_size[kSteps], inv_bc2_sqrt[kSteps];

    CHAINRULE_ALWAYS_INLINE void at(StepScalars<T>& c, std::size_t i) const {
        c.step_size = step_size[i];
        c.inv_bc2_sqrt = inv_bc2_sqrt[i];
    }
};

// The step's update of the parameters (OC, C) and (OC) and of their state
// slots (each laid out as the parameters), from the deltas d(j) and the
// record x. First every updated value is checked, then written: a step that
// would leave a non-finite parameter (or state value) leaves them all as
// they were.
template <typename Update, typename T, typename Delta>
CHAINRULE_ALWAYS_INLINE bool update_record(T* weight, T* bias, T* const* slots, const T* x, std::size_t in_features,
                                           std::size_t out_features, const Delta& delta,
                                           const StepScalars<T>& c) {
    constexpr std::size_t kSlots = Update::kSlots;
    const std::size_t biases = out_features * in_features;  // where each slot's bias values start
    auto slot = [&](std::size_t k, std::size_t i) CHAINRULE_ALWAYS_INLINE_LAMBDA {
        return kSlots > k ? slots[k][i] : T(0);
    };
    detail::FloatBits<T> non_finite = 0;
    for (std::size_t j = 0; j < out_features; ++j) {
        const T d = delta(j);
        const T* w = weight + j * in_features;
        for (std::size_t k = 0; k < in_features; ++k) {
            T s0 = slot(0, j * in_features + k), s1 = slot(1, j * in_features + k);
            non_finite |= detail::non_finite_bits(Update::step(w[k], d * x[k], s0, s1, c)) |
                          detail::non_finite_bits(s0) | detail::non_finite_bits(s1);
        }
        T s0 = slot(0, biases + j), s1 = slot(1, biases + j);
        non_finite |= detail::non_finite_bits(Update::step(bias[j], d, s0, s1, c)) | detail::non_finite_bits(s0) |
                      detail::non_finite_bits(s1);
    }
    if (non_finite != 0) return false;
    // Each slot's values, or a scratch value for a slot the rule has not.
    T scratch[2] = {T(0), T(0)};
    T* const s0 = kSlots > 0 ? slots[0] : scratch;
    T* const s1 = kSlots > 1 ? slots[1] : scratch + 1;
    const std::size_t stride0 = kSlots > 0 ? 1 : 0, stride1 = kSlots > 1 ? 1 : 0;
    for (std::size_t j = 0; j < out_features; ++j) {
        const T d = delta(j);
        T* w = weight + j * in_features;
        const std::size_t row = j * in_features;
#pragma omp simd
        for (std::size_t k = 0; k < in_features; ++k) {
            w[k] = Update::step(w[k], d * x[k], s0[(row + k) * stride0], s1[(row + k) * stride1], c);
        }
        bias[j] = Update::step(bias[j], d, s0[(biases + j) * stride0], s1[(biases + j) * stride1], c);
    }
    return true;
}

// With BCE and one output, the kernels compute the loss of each step as
// bce_losses does (bce_term; vector and scalar code give the same bits), for
// each block of kSteps steps once it is done: beside the chain of dependent
// operations that the steps are, where the core has room. The block sizes
// were measured on W1 (Zen 4, docs/performance.md): in float, a step's loss
// computed with the step crowded out the loads of the next shuffled records,
// and blocks of 8 did best; in double, where the loss's 4-lane vectors are
// long, one step at a time did best for plain SGD (a block of 8 cost twice
// the time), and blocks of 8 with a state slot (which takes registers).
template <typename T, std::size_t kBlock>
struct BceBlocks {
    static constexpr std::size_t kSteps = kBlock;
    bool on;  // BCE, one output
    T targets[kSteps];

    // Step i's target.
    CHAINRULE_ALWAYS_INLINE void target(std::size_t i, T y) {
        if (on) targets[i % kSteps] = y;
    }
    // After step i was taken: its block's losses, when it ends the block.
    CHAINRULE_ALWAYS_INLINE void taken(double* losses, const T* z, std::size_t i) {
        if (on && i % kSteps == kSteps - 1) compute(losses, z, i + 1 - kSteps, i + 1);
    }
    // At the end: those of the last block, through a stopped step.
    CHAINRULE_ALWAYS_INLINE void finish(double* losses, const T* z, std::size_t count, const RecordSteps& done) {
        if (!on) return;
        const bool all = done.stopped == RecordStep::ok;
        const std::size_t end = all ? count : done.done + 1;
        const std::size_t begin = all ? count - count % kSteps : done.done - done.done % kSteps;
        if (begin < end) compute(losses, z, begin, end);
    }
    CHAINRULE_ALWAYS_INLINE void compute(double* losses, const T* z, std::size_t begin, std::size_t end) {
#pragma omp simd
        for (std::size_t k = 0; k < end - begin; ++k) losses[begin + k] = detail::bce_term(z[begin + k], targets[k]);
    }
};

// One step of dense_record_steps (see there), inlined into its loop.
template <typename Home, typename Update, typename T>
CHAINRULE_ALWAYS_INLINE RecordStep record_step(T* weight, T* bias, T* const* slots, T* z, T* a, double* loss,
                                               const T* x, const T* y, std::size_t in_features,
                                               std::size_t out_features, Loss loss_kind, const StepScalars<T>& c) {
    for (std::size_t j = 0; j < out_features; ++j) {
        z[j] = detail::dot(weight + j * in_features, x, in_features) + bias[j];  // z = W x + b
        a[j] = Home::f(z[j]);                                                     // a = f(z)
    }
    if (loss_kind == Loss::bce) {  // finite logits and targets in [0, 1]: a finite loss (BceBlocks')
        for (std::size_t j = 0; j < out_features; ++j) {
            if (detail::non_finite_bits(z[j]) != 0) return RecordStep::loss_not_finite;
        }
    } else {
        double sum = 0.0;  // L = sum_k (a_k - y_k)^2
        for (std::size_t j = 0; j < out_features; ++j) {
            const double diff = static_cast<double>(a[j]) - static_cast<double>(y[j]);
            sum += diff * diff;
        }
        *loss = sum;
        if (!std::isfinite(sum)) return RecordStep::loss_not_finite;
    }
    // The output deltas, as bce_backward, or mse_backward and
    // activation_backward, compute them with scale 1; recomputed in both
    // passes of the update (a one-layer network has few outputs).
    auto delta = [&](std::size_t j) {
        return loss_kind == Loss::bce ? a[j] - y[j] : Home::times_derivative(T(2) * (a[j] - y[j]), a[j]);
    };
    if (!update_record<Update>(weight, bias, slots, x, in_features, out_features, delta, c)) {
        return RecordStep::update_not_finite;
    }
    return RecordStep::ok;
}
}  // namespace

namespace {
// The steps for one activation home and one update rule, compiled for each instruction set.
template <typename Home, typename Update, typename T>
CHAINRULE_TARGET_CLONES RecordSteps record_steps_with(T* weight, T* bias, T* const* slots, T* z, T* a,
                                                      double* losses, const T* X, const T* Y,
                                                      const std::size_t* rows, std::size_t count,
                                                      std::size_t in_features, std::size_t out_features,
                                                      Loss loss_kind, StepScalars<T> c, const StepTable<T>* table) {
    constexpr std::size_t kAhead = 16;  // records prefetched ahead of a shuffled step: it is shorter than a miss
    BceBlocks<T, 8> bce{loss_kind == Loss::bce && out_features == 1, {}};
    RecordSteps done{count, RecordStep::ok};
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t r = rows ? rows[i] : i;
        if (rows && i + kAhead < count) {
            detail::prefetch_bytes(X + rows[i + kAhead] * in_features, in_features * sizeof(T));
            detail::prefetch_bytes(Y + rows[i + kAhead] * out_features, out_features * sizeof(T));
        }
        bce.target(i, Y[r * out_features]);
        if constexpr (Update::kScheduled) table->at(c, i);
        const RecordStep step = record_step<Home, Update>(weight, bias, slots, z + i * out_features, a,
                                                          losses + i, X + r * in_features, Y + r * out_features,
                                                          in_features, out_features, loss_kind, c);
        if (step != RecordStep::ok) {
            done = {i, step};
            break;
        }
        c.first = false;  // torch's momentum buffer starts as the first gradient
        bce.taken(losses, z, i);
    }
    bce.finish(losses, z, count, done);
    return done;
}
}  // namespace

// One output and 8 to 32 inputs (logistic and linear regression on a few
// dozen features): the same steps as record_steps_with, with the row of
// weights, its state slots and the bias held in vector registers for all the
// steps of a call. A step's dot product then waits on the previous step's
// update alone, not on its stores, and the activation and delta never pass
// through memory: each step is a chain of dependent operations (dot,
// sigmoid, delta, update, the next dot), so its length is the step's time.
// The row is held as chunks of the dot's 8 lanes, the last one being the
// row's last 8 elements (detail::dot reads its tail so); when 8 does not
// divide the row, that chunk overlaps the one before, and both copies of an
// element get the same update from the same values. GCC and Clang only
// (their vector extensions); elsewhere every size takes record_steps_with.
// Where the core is cloned (runtime/macros.hpp), these kernels are compiled
// for x86-64-v4 and x86-64-v3 alone, and a CPU without AVX2 takes
// record_steps_with too: a baseline copy, its 32-byte vectors split in two,
// would have been a third of this file's compile time, on CPUs that are
// rare (record_steps_with gives the same values).
#if defined(__GNUC__)
#define CHAINRULE_ROW_IN_REGISTERS 1
namespace {

// The vectors: 32 bytes, kWidth elements; a chunk of 8 lanes is kParts of them.
template <typename T>
struct RowVectors {
    typedef T Vec __attribute__((vector_size(32)));
    typedef std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t> Int;
    typedef Int Mask __attribute__((vector_size(32)));
    typedef std::int64_t Quads __attribute__((vector_size(32)));
    static constexpr std::size_t kWidth = 32 / sizeof(T);
    static constexpr std::size_t kParts = 8 / kWidth;
};

// f(integral_constant<0>), ..., f(integral_constant<N - 1>): indices known
// when compiling, so that arrays of vectors become registers.
template <typename F, std::size_t... I>
CHAINRULE_ALWAYS_INLINE void unroll_with(F&& f, std::index_sequence<I...>) {
    (f(std::integral_constant<std::size_t, I>{}), ...);
}
template <std::size_t N, typename F>
CHAINRULE_ALWAYS_INLINE void unroll(F&& f) {
    unroll_with(f, std::make_index_sequence<N>{});
}

template <typename V, typename T>
CHAINRULE_ALWAYS_INLINE V load_vector(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
}

template <typename V, typename T>
CHAINRULE_ALWAYS_INLINE void store_vector(T* p, V v) {
    std::memcpy(p, &v, sizeof(V));
}

// All ones in the lanes of v that are inf or NaN (non_finite_bits per lane).
template <typename T>
CHAINRULE_ALWAYS_INLINE typename RowVectors<T>::Mask non_finite_lanes(typename RowVectors<T>::Vec v) {
    using Mask = typename RowVectors<T>::Mask;
    using Int = typename RowVectors<T>::Int;
    constexpr Int kExponent = static_cast<Int>(detail::kExponentBits<T>);
    return ((Mask)v & kExponent) == kExponent;
}

template <std::size_t kChunks, bool kTail, typename Home, typename Update, typename T>
CHAINRULE_ALWAYS_INLINE RecordSteps row_steps_with(T* weight, T* bias, T* const* slots, T* z, T* a, double* losses,
                                                   const T* X, const T* Y, const std::size_t* rows,
                                                   std::size_t count, std::size_t in_features, Loss loss_kind,
                                                   StepScalars<T> c, const StepTable<T>* table) {
    using R = RowVectors<T>;
    using V = typename R::Vec;
    using Mask = typename R::Mask;
    using Quads = typename R::Quads;
    constexpr std::size_t kWidth = R::kWidth, kParts = R::kParts;
    constexpr std::size_t kAhead = 16;  // as record_steps_with
    const std::size_t n = in_features;  // 8 (kChunks - 1) < n <= 8 kChunks
    const std::size_t rest = n % 8;     // kTail: rest != 0
    // Where part p of chunk q starts in a row, and which lanes of the last
    // chunk the dot adds: those detail::dot did not sum already (l + rest >= 8).
    auto at = [&](std::size_t q, std::size_t p) CHAINRULE_ALWAYS_INLINE_LAMBDA {
        return (q + 1 == kChunks ? n - 8 : 8 * q) + p * kWidth;
    };
    Mask tail[kParts];
    for (std::size_t p = 0; p < kParts; ++p) {
        for (std::size_t e = 0; e < kWidth; ++e) tail[p][e] = p * kWidth + e + rest >= 8 ? -1 : 0;
    }
    constexpr std::size_t kSlots = Update::kSlots;
    // The row, and each slot's (the weights' n values, then the bias's).
    V w[kChunks][kParts], s0[kChunks][kParts], s1[kChunks][kParts];
    unroll<kChunks>([&](auto q) CHAINRULE_ALWAYS_INLINE_LAMBDA {
        unroll<kParts>([&](auto p) CHAINRULE_ALWAYS_INLINE_LAMBDA {
            w[q][p] = load_vector<V>(weight + at(q, p));
            s0[q][p] = kSlots > 0 ? load_vector<V>(slots[0] + at(q, p)) : V{};
            s1[q][p] = kSlots > 1 ? load_vector<V>(slots[1] + at(q, p)) : V{};
        });
    });
    T b = *bias, sb0 = kSlots > 0 ? slots[0][n] : T(0), sb1 = kSlots > 1 ? slots[1][n] : T(0);
    T activation = a[0];
    RecordSteps done{count, RecordStep::ok};
    BceBlocks<T, sizeof(T) == 8 && kSlots == 0 ? 1 : 8> bce{loss_kind == Loss::bce, {}};
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t r = rows ? rows[i] : i;
        if (rows && i + kAhead < count) {
            detail::prefetch_bytes(X + rows[i + kAhead] * n, n * sizeof(T));
            detail::prefetch_bytes(Y + rows[i + kAhead], sizeof(T));
        }
        const T* x = X + r * n;
        const T y = Y[r];
        bce.target(i, y);
        if constexpr (Update::kScheduled) table->at(c, i);
        V xs[kChunks][kParts];
        unroll<kChunks>([&](auto q) CHAINRULE_ALWAYS_INLINE_LAMBDA {
            unroll<kParts>([&](auto p) CHAINRULE_ALWAYS_INLINE_LAMBDA { xs[q][p] = load_vector<V>(x + at(q, p)); });
        });
        // z = W x + b: detail::dot's lanes, then its tree ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
        V lanes[kParts] = {};
        unroll<kChunks>([&](auto q) CHAINRULE_ALWAYS_INLINE_LAMBDA {
            unroll<kParts>([&](auto p) CHAINRULE_ALWAYS_INLINE_LAMBDA {
                // (kTail is a template argument: as a run-time test, the compiler
                // shared the product of both branches, and lost the first's
                // multiply-add.)
                if constexpr (q + 1 < kChunks || !kTail) {
                    lanes[p] += xs[q][p] * w[q][p];
                } else {
                    const V product = xs[q][p] * w[q][p];  // rounded alone: the dot's tail adds it, masked
                    lanes[p] += (V)((Mask)product & tail[p]);
                }
            });
        });
        T sum;
        if constexpr (kParts == 1) {  // float: the vector's halves, [l0 + l4, l1 + l5, l2 + l6, l3 + l7]
            typedef T Half __attribute__((vector_size(16)));
            const Half low = {lanes[0][0], lanes[0][1], lanes[0][2], lanes[0][3]};
            const Half high = {lanes[0][4], lanes[0][5], lanes[0][6], lanes[0][7]};
            const Half pairs = low + high;
            sum = (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]);
        } else {  // double: the two vectors
            const V pairs = lanes[0] + lanes[1];
            sum = (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]);
        }
        const T logit = sum + b;
        z[i] = logit;
        activation = Home::f(logit);
        if (loss_kind == Loss::bce) {
            if (detail::non_finite_bits(logit) != 0) {
                done = {i, RecordStep::loss_not_finite};
                break;
            }
        } else {
            double loss = 0.0;
            const double diff = static_cast<double>(activation) - static_cast<double>(y);
            loss += diff * diff;
            losses[i] = loss;
            if (!std::isfinite(loss)) {
                done = {i, RecordStep::loss_not_finite};
                break;
            }
        }
        const T d = loss_kind == Loss::bce ? activation - y
                                           : Home::times_derivative(T(2) * (activation - y), activation);
        // The update, kept only when every new value is finite. The record is
        // read again rather than kept in registers since the dot: the old and
        // new rows are live together until the check, and with the record
        // too, a row of doubles left the exponential's terms no registers.
        V new_w[kChunks][kParts], new_s0[kChunks][kParts], new_s1[kChunks][kParts];
        Mask bad = {};
        unroll<kChunks>([&](auto q) CHAINRULE_ALWAYS_INLINE_LAMBDA {
            unroll<kParts>([&](auto p) CHAINRULE_ALWAYS_INLINE_LAMBDA {
                new_s0[q][p] = s0[q][p];
                new_s1[q][p] = s1[q][p];
                new_w[q][p] = Update::step(w[q][p], d * load_vector<V>(x + at(q, p)), new_s0[q][p], new_s1[q][p], c);
                bad |= non_finite_lanes<T>(new_w[q][p]);
                if constexpr (kSlots > 0) bad |= non_finite_lanes<T>(new_s0[q][p]);
                if constexpr (kSlots > 1) bad |= non_finite_lanes<T>(new_s1[q][p]);
            });
        });
        T new_sb0 = sb0, new_sb1 = sb1;
        const T new_b = Update::step(b, d, new_sb0, new_sb1, c);
        const Quads any = (Quads)bad;
        const auto bad_bias =
            detail::non_finite_bits(new_b) | detail::non_finite_bits(new_sb0) | detail::non_finite_bits(new_sb1);
        if (((any[0] | any[1]) | (any[2] | any[3])) != 0 || bad_bias != 0) {
            done = {i, RecordStep::update_not_finite};
            break;
        }
        unroll<kChunks>([&](auto q) CHAINRULE_ALWAYS_INLINE_LAMBDA {
            unroll<kParts>([&](auto p) CHAINRULE_ALWAYS_INLINE_LAMBDA {
                w[q][p] = new_w[q][p];
                s0[q][p] = new_s0[q][p];
                s1[q][p] = new_s1[q][p];
            });
        });
        b = new_b;
        sb0 = new_sb0;
        sb1 = new_sb1;
        c.first = false;  // torch's momentum buffer starts as the first gradient
        bce.taken(losses, z, i);
    }
    bce.finish(losses, z, count, done);
    // Back to memory: the chunks in order (an overlapped element holds one value in both).
    unroll<kChunks>([&](auto q) CHAINRULE_ALWAYS_INLINE_LAMBDA {
        unroll<kParts>([&](auto p) CHAINRULE_ALWAYS_INLINE_LAMBDA {
            store_vector(weight + at(q, p), w[q][p]);
            if constexpr (kSlots > 0) store_vector(slots[0] + at(q, p), s0[q][p]);
            if constexpr (kSlots > 1) store_vector(slots[1] + at(q, p), s1[q][p]);
        });
    });
    *bias = b;
    if constexpr (kSlots > 0) slots[0][n] = sb0;
    if constexpr (kSlots > 1) slots[1][n] = sb1;
    a[0] = activation;
    return done;
}

#if CHAINRULE_HAS_TARGET_CLONES
// row_steps_with compiled for each of the two levels (inlined: always_inline
// into a function with more instructions than the baseline); the CPU's
// level, read once: 4, 3, or 0 below x86-64-v3.
template <std::size_t kChunks, bool kTail, typename Home, typename Update, typename... Args>
__attribute__((target("arch=x86-64-v4"))) RecordSteps row_steps_v4(Args... args) {
    return row_steps_with<kChunks, kTail, Home, Update>(args...);
}
template <std::size_t kChunks, bool kTail, typename Home, typename Update, typename... Args>
__attribute__((target("arch=x86-64-v3"))) RecordSteps row_steps_v3(Args... args) {
    return row_steps_with<kChunks, kTail, Home, Update>(args...);
}
int cpu_level() {
    static const int level = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("x86-64-v4") ? 4 : __builtin_cpu_supports("x86-64-v3") ? 3 : 0;
    }();
    return level;
}
#endif

// The steps with the row in registers, when the network, home and CPU allow
// it (one output, 8 to 32 inputs, sigmoid or identity); else false.
template <typename Home, typename Update, typename T>
bool try_row_steps(RecordSteps& done, T* weight, T* bias, T* const* slots, T* z, T* a, double* losses, const T* X,
                   const T* Y, const std::size_t* rows, std::size_t count, std::size_t in_features,
                   std::size_t out_features, Loss loss_kind, const StepScalars<T>& c, const StepTable<T>* table) {
    constexpr bool kHome = std::is_same_v<Home, detail::Sigmoid> || std::is_same_v<Home, detail::Identity>;
    if constexpr (!kHome) {
        return false;
    } else {
        if (out_features != 1 || in_features < 8 || in_features > 32) return false;
#if CHAINRULE_HAS_TARGET_CLONES
        const int level = cpu_level();
        if (level < 3) return false;
#endif
        auto run = [&](auto chunks, auto tail) {
            constexpr std::size_t kChunks = decltype(chunks)::value;
            constexpr bool kTail = decltype(tail)::value;
#if CHAINRULE_HAS_TARGET_CLONES
            done = level == 4 ? row_steps_v4<kChunks, kTail, Home, Update>(weight, bias, slots, z, a, losses, X, Y,
                                                                          rows, count, in_features, loss_kind, c,
                                                                          table)
                              : row_steps_v3<kChunks, kTail, Home, Update>(weight, bias, slots, z, a, losses, X, Y,
                                                                          rows, count, in_features, loss_kind, c,
                                                                          table);
#else
            done = row_steps_with<kChunks, kTail, Home, Update>(weight, bias, slots, z, a, losses, X, Y, rows, count,
                                                                in_features, loss_kind, c, table);
#endif
            return true;
        };
        using Yes = std::true_type;
        using No = std::false_type;
        switch (in_features) {
            case 8: return run(std::integral_constant<std::size_t, 1>{}, No{});
            case 16: return run(std::integral_constant<std::size_t, 2>{}, No{});
            case 24: return run(std::integral_constant<std::size_t, 3>{}, No{});
            case 32: return run(std::integral_constant<std::size_t, 4>{}, No{});
            default: break;
        }
        switch ((in_features + 7) / 8) {
            case 2: return run(std::integral_constant<std::size_t, 2>{}, Yes{});
            case 3: return run(std::integral_constant<std::size_t, 3>{}, Yes{});
            default: return run(std::integral_constant<std::size_t, 4>{}, Yes{});
        }
    }
}
}  // namespace
#endif

bool record_steps_take(const OptimizerOptions& o) {
    // Weight decay only as AdamW's, which scales the parameter alone (PlainSgd above).
    if (o.kind == OptimizerKind::sgd) return o.weight_decay == 0.0;
    return (o.kind == OptimizerKind::adamw || o.weight_decay == 0.0) && !o.amsgrad;
}

template <typename T>
RecordSteps dense_record_steps(T* weight, T* bias, T* const* slots, T* z, T* a, double* losses, const T* X,
                               const T* Y, const std::size_t* rows, std::size_t count, std::size_t in_features,
                               std::size_t out_features, Activation activation, Loss loss_kind,
                               const OptimizerOptions& optimizer, double lr, std::uint64_t steps) {
    // weight (OC, C), bias (OC), slots: optimizer_slots of (OC * C + OC), X (., C), Y (., OC), rows (count)
    // or null; z (count, OC), a (OC), losses (count)
    // docs/math.md with B = 1, for each step: z = W x + b, a = f(z), dZ = a - y
    // (BCE + sigmoid) or 2 (a - y) f'(z) (MSE); g = dZ x^T and dZ, then the
    // optimizer's rule (plain SGD: W <- W - lr dZ x^T, b <- b - lr dZ)
    assert(activation != Activation::softmax && loss_kind != Loss::cce);
    assert(record_steps_take(optimizer));
    const StepScalars<T> c = step_scalars<T>(optimizer, lr, steps);
    const std::size_t num_slots = optimizer_slots(optimizer);
    const bool torch = optimizer.form == OptimizerForm::torch;
    return detail::with_activation(activation, [&](auto home) {
        using Home = decltype(home);
        auto run = [&](auto update, const StepTable<T>* table, std::size_t first, std::size_t n) {
            const std::size_t* at = rows ? rows + first : nullptr;
            const T* X_at = rows ? X : X + first * in_features;
            const T* Y_at = rows ? Y : Y + first * out_features;
            T* z_at = z + first * out_features;
#if CHAINRULE_ROW_IN_REGISTERS
            RecordSteps done{0, RecordStep::ok};
            if (try_row_steps<Home, decltype(update)>(done, weight, bias, slots, z_at, a, losses + first, X_at, Y_at,
                                                      at, n, in_features, out_features, loss_kind, c, table)) {
                return done;
            }
#endif
            return record_steps_with<Home, decltype(update)>(weight, bias, slots, z_at, a, losses + first, X_at,
                                                             Y_at, at, n, in_features, out_features, loss_kind, c,
                                                             table);
        };
        if (num_slots == 0) return run(PlainSgd{}, nullptr, 0, count);
        if (optimizer.kind == OptimizerKind::sgd) {
            return torch ? run(SgdRule<SgdTorch>{}, nullptr, 0, count) : run(SgdRule<SgdSklearn>{}, nullptr, 0, count);
        }
        // Adam: the steps in blocks, each after its table.
        StepTable<T> table;
        for (std::size_t first = 0; first < count; first += StepTable<T>::kSteps) {
            const std::size_t n = std::min(count - first, StepTable<T>::kSteps);
            for (std::size_t i = 0; i < n; ++i) {
                const AdamStepScalars<T> step =
                    adam_step_scalars<T>(optimizer, lr, static_cast<double>(steps + first + i + 1));
                const std::size_t end = step.settled ? n : i + 1;  // settled: the same from here on
                std::fill(table.step_size + i, table.step_size + end, step.step_size);
                std::fill(table.inv_bc2_sqrt + i, table.inv_bc2_sqrt + end, step.inv_bc2_sqrt);
                i = end - 1;
            }
            const RecordSteps block = torch ? run(AdamRule<AdamTorch<false>>{}, &table, first, n)
                                            : run(AdamRule<AdamSklearn>{}, &table, first, n);
            if (block.stopped != RecordStep::ok) return RecordSteps{first + block.done, block.stopped};
        }
        return RecordSteps{count, RecordStep::ok};
    });
}

template RecordSteps dense_record_steps<float>(float*, float*, float* const*, float*, float*, double*, const float*,
                                               const float*, const std::size_t*, std::size_t, std::size_t,
                                               std::size_t, Activation, Loss, const OptimizerOptions&, double,
                                               std::uint64_t);
template RecordSteps dense_record_steps<double>(double*, double*, double* const*, double*, double*, double*,
                                                const double*,
                                                const double*, const std::size_t*, std::size_t, std::size_t,
                                                std::size_t, Activation, Loss, const OptimizerOptions&, double,
                                                std::uint64_t);

}  // namespace chainrule
