// The name tables of activations and losses: the one place that spells them.
#include "chainrule/names.hpp"

#include <stdexcept>

namespace chainrule {

namespace {

template <typename Code>
struct Named {
    Code code;
    const char* name;
};

// In enum order; a new activation or loss appends its row.
constexpr Named<Activation> kActivations[] = {
    {Activation::sigmoid, "sigmoid"}, {Activation::identity, "identity"},     {Activation::tanh, "tanh"},
    {Activation::relu, "relu"},       {Activation::softmax, "softmax"},       {Activation::leaky_relu, "leaky_relu"},
};
constexpr Named<Loss> kLosses[] = {{Loss::bce, "bce"}, {Loss::mse, "mse"}, {Loss::cce, "cce"}};

template <typename Code, std::size_t N>
const char* name_of(const Named<Code> (&table)[N], Code code) {
    for (const Named<Code>& row : table) {
        if (row.code == code) return row.name;
    }
    return "unknown";
}

template <typename Code, std::size_t N>
Code parse(const Named<Code> (&table)[N], const std::string& name, const char* argument, const char* what) {
    std::string expected;
    for (const Named<Code>& row : table) {
        if (name == row.name) return row.code;
        expected += std::string(expected.empty() ? "'" : ", '") + row.name + "'";
    }
    throw std::invalid_argument(std::string(argument) + ": unknown " + what + " '" + name + "'; expected one of " +
                                expected);
}

template <typename Code, std::size_t N>
bool is_valid(const Named<Code> (&table)[N], std::uint32_t code) {
    for (const Named<Code>& row : table) {
        if (static_cast<std::uint32_t>(row.code) == code) return true;
    }
    return false;
}

}  // namespace

const char* activation_name(Activation activation) { return name_of(kActivations, activation); }
const char* loss_name(Loss loss) { return name_of(kLosses, loss); }

const char* dtype_name(std::size_t scalar_bytes) { return scalar_bytes == 4 ? "float32" : "float64"; }

Activation parse_activation(const std::string& name, const char* argument) {
    return parse(kActivations, name, argument, "activation");
}
Loss parse_loss(const std::string& name, const char* argument) { return parse(kLosses, name, argument, "loss"); }

std::vector<Activation> all_activations() {
    std::vector<Activation> all;
    for (const Named<Activation>& row : kActivations) all.push_back(row.code);
    return all;
}

std::vector<Loss> all_losses() {
    std::vector<Loss> all;
    for (const Named<Loss>& row : kLosses) all.push_back(row.code);
    return all;
}

bool is_valid_activation(std::uint32_t code) { return is_valid(kActivations, code); }
bool is_valid_loss(std::uint32_t code) { return is_valid(kLosses, code); }

}  // namespace chainrule
