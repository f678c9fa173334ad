// Embedding chainrule in a C++ program, with no Python:
//
//   xor_and_csv                      train the seeds' 2-4-1 sigmoid network on XOR
//   xor_and_csv train DATA.csv MODEL train on a CSV file (last column: 0/1 label),
//                                    save the model, reload it, check it predicts the same
//   xor_and_csv predict MODEL IN.csv OUT.csv
//                                    predict every row of IN.csv with a saved model (from
//                                    Python or C++), writing exact decimal values
#include <chainrule/chainrule.hpp>

#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using chainrule::Activation;
using chainrule::Loss;

namespace {

struct Table {
    std::vector<double> values;  // row-major
    std::size_t rows = 0;
    std::size_t cols = 0;
};

// Reads a numeric CSV file; a first line that does not parse is taken as a header.
Table read_csv(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    Table table;
    std::string line;
    for (std::size_t line_number = 1; std::getline(in, line); ++line_number) {
        if (line.empty()) continue;
        std::vector<double> row;
        std::stringstream fields(line);
        std::string field;
        try {
            while (std::getline(fields, field, ',')) row.push_back(std::stod(field));
        } catch (const std::exception&) {
            if (line_number == 1) continue;  // header
            throw std::runtime_error(path + ":" + std::to_string(line_number) + ": not a number: " + field);
        }
        if (table.cols == 0) table.cols = row.size();
        if (row.size() != table.cols) {
            throw std::runtime_error(path + ":" + std::to_string(line_number) + ": expected " +
                                     std::to_string(table.cols) + " fields");
        }
        table.values.insert(table.values.end(), row.begin(), row.end());
        ++table.rows;
    }
    if (table.rows == 0) throw std::runtime_error(path + " holds no data");
    return table;
}

template <typename T>
int predict_file(const chainrule::Network<T>& net, const std::string& input, const std::string& output) {
    const Table table = read_csv(input);
    const std::vector<T> X(table.values.begin(), table.values.end());
    std::vector<T> out(table.rows * net.num_outputs());
    net.predict({out.data(), table.rows, net.num_outputs()}, {X.data(), table.rows, table.cols});
    std::ofstream file(output);
    file.precision(std::numeric_limits<T>::max_digits10);  // decimal text that reads back to the same bits
    for (std::size_t r = 0; r < table.rows; ++r) {
        for (std::size_t k = 0; k < net.num_outputs(); ++k) file << (k ? "," : "") << out[r * net.num_outputs() + k];
        file << "\n";
    }
    return file ? 0 : 1;
}

int train_xor() {
    const double X[] = {0, 0, 0, 1, 1, 0, 1, 1}, Y[] = {0, 1, 1, 0};
    chainrule::Network<double> net({2, 4, 1}, {Activation::sigmoid, Activation::sigmoid}, Loss::bce, 1);
    chainrule::FitOptions options;
    options.epochs = 5000;
    options.learning_rate = 2.0;
    options.batch_size = 4;
    const std::vector<double> history = net.fit({X, 4, 2}, {Y, 4, 1}, options);
    double out[4];
    net.predict({out, 4, 1}, {X, 4, 2});
    int wrong = 0;
    for (int r = 0; r < 4; ++r) {
        std::printf("xor(%g, %g) = %.4f\n", X[2 * r], X[2 * r + 1], out[r]);
        wrong += (out[r] > 0.5) != (Y[r] > 0.5);
    }
    std::printf("cost %.4f -> %.4f after %zu epochs\n", history.front(), history.back(), history.size());
    return wrong == 0 ? 0 : 1;
}

int train_csv(const std::string& data_path, const std::string& model_path) {
    const Table table = read_csv(data_path);
    const std::size_t features = table.cols - 1;
    std::vector<double> X, Y;
    for (std::size_t r = 0; r < table.rows; ++r) {
        const double* row = &table.values[r * table.cols];
        X.insert(X.end(), row, row + features);
        Y.push_back(row[features]);
    }
    chainrule::Network<double> net({features, 8, 1}, {Activation::tanh, Activation::sigmoid}, Loss::bce, 7);
    chainrule::FitOptions options;
    options.epochs = 200;
    options.learning_rate = 0.5;
    options.batch_size = 16;
    options.seed = 7;
    const std::vector<double> history = net.fit({X.data(), table.rows, features}, {Y.data(), table.rows, 1}, options);
    std::vector<double> out(table.rows);
    net.predict({out.data(), table.rows, 1}, {X.data(), table.rows, features});
    std::size_t correct = 0;
    for (std::size_t r = 0; r < table.rows; ++r) correct += (out[r] > 0.5) == (Y[r] > 0.5);
    std::printf("%s: %zu records, cost %.4f -> %.4f, training accuracy %.3f\n", data_path.c_str(), table.rows,
                history.front(), history.back(), static_cast<double>(correct) / table.rows);

    chainrule::save(net, model_path);
    const chainrule::Network<double> reloaded = chainrule::load<double>(model_path);
    std::vector<double> again(table.rows);
    reloaded.predict({again.data(), table.rows, 1}, {X.data(), table.rows, features});
    if (again != out) {
        std::fprintf(stderr, "the reloaded model predicts differently\n");
        return 1;
    }
    std::printf("saved to %s and reloaded: identical predictions\n", model_path.c_str());
    return correct * 10 >= table.rows * 9 ? 0 : 1;  // expect >= 90% on this easy data
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const std::vector<std::string> args(argv + 1, argv + argc);
        if (args.empty()) return train_xor();
        if (args[0] == "train" && args.size() == 3) return train_csv(args[1], args[2]);
        if (args[0] == "predict" && args.size() == 4) {
            // load_model reads the file once, in whichever dtype it holds.
            const chainrule::LoadedModel model = chainrule::load_model(args[1]);
            return model.float32 ? predict_file(*model.float32, args[2], args[3])
                                 : predict_file(*model.float64, args[2], args[3]);
        }
        std::fprintf(stderr, "usage: xor_and_csv [train DATA.csv MODEL | predict MODEL IN.csv OUT.csv]\n");
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
