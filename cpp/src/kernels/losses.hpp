// The rules of each loss, beside its kernels (losses.cpp; the kernels are
// declared in kernels.hpp): which output activation it pairs with, and which
// targets it accepts. One message source for the constructor, the model file
// reader and every call that takes targets.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "chainrule/names.hpp"
#include "runtime/fast_math.hpp"
#include "runtime/macros.hpp"

namespace chainrule::detail {

// The BCE loss of one output from its logit z and target y, in double:
// max(z, 0) - z y + log(1 + e^{-|z|}); log1p never sees 0. One home for
// bce_forward, bce_losses and the fused one-record steps (which compute it
// beside their chain of dependent operations, where it costs little), always
// inlined: the same operations in scalar and vector code, so the same bits.
CHAINRULE_ALWAYS_INLINE double bce_term(double z, double y) {
    return (z > 0.0 ? z : 0.0) - z * y + log1p_unit(exp_nonpositive(-std::abs(z)));
}

// Why these activations (one per layer, the output's last, over num_outputs
// units) and this loss cannot go together, or "" when they can: bce needs a
// sigmoid output; softmax only as the output, over at least 2 units, and
// only with cce; cce only with a softmax output. The message names the
// argument to change.
std::string loss_pairing_problem(const std::vector<Activation>& activations, Loss loss, std::size_t num_outputs);

// Throws std::invalid_argument naming the first target (rows, cols) that the
// loss cannot take: bce targets lie in [0, 1]; each row of cce targets is a
// probability distribution (one-hot or soft labels), summing to 1 within
// sqrt(machine epsilon) of T. Targets must be finite already.
template <typename T>
void check_targets_for(Loss loss, const T* Y, std::size_t rows, std::size_t cols);

}  // namespace chainrule::detail
