// The named choices of a network: activations and losses, with their
// spellings in the Python API and in model files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace chainrule {

// The numeric values are stored in model files: never renumber them, only append.
// softmax is row-wise (not elementwise) and is allowed only as the output
// activation with the cce loss, and cce only with it (docs/math.md, softmax).
enum class Activation : std::uint32_t { sigmoid = 0, identity = 1, tanh = 2, relu = 3, softmax = 4, leaky_relu = 5 };
enum class Loss : std::uint32_t { bce = 0, mse = 1, cce = 2 };

// "sigmoid", "identity", "tanh", "relu", "softmax", "leaky_relu".
const char* activation_name(Activation activation);
// "bce", "mse", "cce" (categorical cross-entropy).
const char* loss_name(Loss loss);

// Every activation and every loss, in enum order.
std::vector<Activation> all_activations();
std::vector<Loss> all_losses();

// Parse a name; throws std::invalid_argument naming `argument` and the valid names.
Activation parse_activation(const std::string& name, const char* argument = "activation");
Loss parse_loss(const std::string& name, const char* argument = "loss");

// True for a value that appears in the enum (used when reading model files).
bool is_valid_activation(std::uint32_t code);
bool is_valid_loss(std::uint32_t code);

// The name NumPy gives the parameters' type: "float32" for float, "float64" for double.
const char* dtype_name(std::size_t scalar_bytes);
template <typename T>
const char* dtype_name() {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "chainrule networks hold float or double");
    return dtype_name(sizeof(T));
}

}  // namespace chainrule
