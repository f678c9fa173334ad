// The rules of each loss, beside its kernels (losses.cpp; the kernels are
// declared in kernels.hpp): which output activation it pairs with, and which
// targets it accepts. One message source for the constructor, the model file
// reader and every call that takes targets.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "chainrule/names.hpp"

namespace chainrule::detail {

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
