#include "chainrule/names.hpp"

#include <stdexcept>

namespace chainrule {

const char* activation_name(Activation activation) {
    switch (activation) {
        case Activation::sigmoid: return "sigmoid";
        case Activation::identity: return "identity";
        case Activation::tanh: return "tanh";
        case Activation::relu: return "relu";
        case Activation::softmax: return "softmax";
    }
    return "unknown";
}

const char* loss_name(Loss loss) {
    switch (loss) {
        case Loss::bce: return "bce";
        case Loss::mse: return "mse";
        case Loss::cce: return "cce";
    }
    return "unknown";
}

Activation parse_activation(const std::string& name, const char* argument) {
    for (Activation a : {Activation::sigmoid, Activation::identity, Activation::tanh, Activation::relu,
                         Activation::softmax}) {
        if (name == activation_name(a)) return a;
    }
    throw std::invalid_argument(std::string(argument) + ": unknown activation '" + name +
                                "'; expected one of 'sigmoid', 'identity', 'tanh', 'relu', 'softmax'");
}

Loss parse_loss(const std::string& name, const char* argument) {
    for (Loss l : {Loss::bce, Loss::mse, Loss::cce}) {
        if (name == loss_name(l)) return l;
    }
    throw std::invalid_argument(std::string(argument) + ": unknown loss '" + name +
                                "'; expected one of 'bce', 'mse', 'cce'");
}

std::string softmax_pairing_problem(const std::vector<Activation>& activations, Loss loss, std::size_t num_outputs) {
    for (std::size_t l = 0; l + 1 < activations.size(); ++l) {
        if (activations[l] == Activation::softmax) {
            return "activation: 'softmax' is allowed only as the output activation (with loss='cce'), "
                   "not in hidden layer " + std::to_string(l + 1);
        }
    }
    const bool softmax_output = !activations.empty() && activations.back() == Activation::softmax;
    if (softmax_output && loss != Loss::cce) {
        return std::string("output: 'softmax' needs loss='cce' (categorical cross-entropy), got loss='") +
               loss_name(loss) + "'";
    }
    if (loss == Loss::cce && !softmax_output) {
        return std::string("loss: 'cce' needs a softmax output, but the output activation is '") +
               (activations.empty() ? "none" : activation_name(activations.back())) + "'; use output='softmax'";
    }
    if (softmax_output && num_outputs < 2) {
        return "output: 'softmax' over a single output unit is always 1; use at least 2 outputs, or "
               "output='sigmoid' with loss='bce'";
    }
    return "";
}

bool is_valid_activation(std::uint32_t code) { return code <= static_cast<std::uint32_t>(Activation::softmax); }
bool is_valid_loss(std::uint32_t code) { return code <= static_cast<std::uint32_t>(Loss::cce); }

}  // namespace chainrule
