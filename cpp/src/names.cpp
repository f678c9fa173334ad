#include "chainrule/names.hpp"

#include <stdexcept>

namespace chainrule {

const char* activation_name(Activation activation) {
    switch (activation) {
        case Activation::sigmoid: return "sigmoid";
        case Activation::identity: return "identity";
        case Activation::tanh: return "tanh";
        case Activation::relu: return "relu";
    }
    return "unknown";
}

const char* loss_name(Loss loss) {
    switch (loss) {
        case Loss::bce: return "bce";
        case Loss::mse: return "mse";
    }
    return "unknown";
}

Activation parse_activation(const std::string& name, const char* argument) {
    for (Activation a : {Activation::sigmoid, Activation::identity, Activation::tanh, Activation::relu}) {
        if (name == activation_name(a)) return a;
    }
    throw std::invalid_argument(std::string(argument) + ": unknown activation '" + name +
                                "'; expected one of 'sigmoid', 'identity', 'tanh', 'relu'");
}

Loss parse_loss(const std::string& name, const char* argument) {
    for (Loss l : {Loss::bce, Loss::mse}) {
        if (name == loss_name(l)) return l;
    }
    throw std::invalid_argument(std::string(argument) + ": unknown loss '" + name +
                                "'; expected one of 'bce', 'mse'");
}

bool is_valid_activation(std::uint32_t code) { return code <= static_cast<std::uint32_t>(Activation::relu); }
bool is_valid_loss(std::uint32_t code) { return code <= static_cast<std::uint32_t>(Loss::mse); }

}  // namespace chainrule
