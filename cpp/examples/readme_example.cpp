#include <chainrule/chainrule.hpp>
#include <cstdio>

int main() {
    using namespace chainrule;
    const double X[] = {0, 0, 0, 1, 1, 0, 1, 1}, y[] = {0, 1, 1, 0};  // XOR, one record per row
    Network<double> net({2, 4, 1}, {Activation::sigmoid, Activation::sigmoid}, Loss::bce, /*seed=*/1);
    FitOptions options;  // shuffles each epoch, from options.seed = 0
    options.epochs = 5000;
    options.learning_rate = 2.0;
    options.batch_size = 4;
    const std::vector<double> history = net.fit({X, 4, 2}, {y, 4, 1}, options);
    double out[4];
    net.predict({out, 4, 1}, {X, 4, 2});
    std::printf("cost %.4f -> %.4f\n[%.3f %.3f %.3f %.3f]\n", history.front(), history.back(), out[0], out[1], out[2], out[3]);
    save(net, "xor.crnn");  // Python reads it with chainrule.Network.load
}
