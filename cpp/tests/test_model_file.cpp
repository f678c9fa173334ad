// save/load: round trip, and a clear error for every kind of bad file.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "chainrule/chainrule.hpp"
#include "check.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#endif

using namespace chainrule;

namespace {

std::string temp_path(const char* name) { return std::string("chainrule_test_") + name + ".crnn"; }

std::vector<char> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_all(const std::string& path, const std::vector<char>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST(round_trip_is_bitwise) {
    Network<float> f({3, 5, 2}, {Activation::relu, Activation::sigmoid}, Loss::bce, 21);
    Network<double> d({4, 3, 3, 1}, {Activation::tanh, Activation::identity, Activation::relu}, Loss::mse, 22);
    save(f, temp_path("f"));
    save(d, temp_path("d"));
    const Network<float> f2 = load<float>(temp_path("f"));
    const Network<double> d2 = load<double>(temp_path("d"));
    CHECK(f2.layer_sizes() == f.layer_sizes() && f2.activations() == f.activations() && f2.loss() == f.loss());
    CHECK(d2.layer_sizes() == d.layer_sizes() && d2.activations() == d.activations() && d2.loss() == d.loss());
    CHECK(std::vector<float>(f.params(), f.params() + f.num_params()) ==
          std::vector<float>(f2.params(), f2.params() + f2.num_params()));
    CHECK(std::vector<double>(d.params(), d.params() + d.num_params()) ==
          std::vector<double>(d2.params(), d2.params() + d2.num_params()));
    CHECK(read_model_header(temp_path("f")).scalar_bytes == 4);
    CHECK_THROWS(format_error, load<double>(temp_path("f")));  // the other dtype
    std::remove(temp_path("f").c_str());
    std::remove(temp_path("d").c_str());
}

TEST(every_bad_file_is_a_clear_error) {
    Network<double> net({2, 3, 1}, {Activation::sigmoid, Activation::sigmoid}, Loss::bce, 1);
    const std::string path = temp_path("bad");
    save(net, path);
    const std::vector<char> good = read_all(path);

    CHECK_THROWS(file_error, load<double>(temp_path("missing")));
    for (std::size_t cut = 0; cut < good.size(); ++cut) {  // truncated anywhere
        write_all(path, std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut)));
        CHECK_THROWS(format_error, load<double>(path));
    }
    for (std::size_t i = 0; i < good.size(); ++i) {  // any flipped bit is caught
        std::vector<char> bad = good;
        bad[i] = static_cast<char>(bad[i] ^ 0x10);
        write_all(path, bad);
        CHECK_THROWS(format_error, load<double>(path));
    }
    std::vector<char> longer = good;
    longer.push_back('x');
    write_all(path, longer);
    CHECK_THROWS(format_error, load<double>(path));
    write_all(path, std::vector<char>(100, 'z'));
    CHECK_THROWS(format_error, load<double>(path));
    std::vector<char> version = good;
    version[8] = 2;  // format version 2: named in the message
    write_all(path, version);
    try {
        load<double>(path);
        CHECK(false);
    } catch (const format_error& e) {
        CHECK(std::string(e.what()).find("version 2") != std::string::npos);
    }
    std::remove(path.c_str());
}

TEST(load_model_reads_either_dtype_from_one_file_while_it_is_replaced) {
    // Another thread replaces the file (atomically, by save) with a float32
    // and a float64 network in turn. read_model_header then load<T> opened it
    // twice and could pair one file's header with the other's dtype;
    // load_model reads both through one open file.
    const Network<float> f({30, 20, 1}, {Activation::tanh, Activation::sigmoid}, Loss::bce, 5);
    const Network<double> d({30, 20, 1}, {Activation::tanh, Activation::sigmoid}, Loss::bce, 6);
    const std::string path = temp_path("replaced");
    save(f, path);
    std::atomic<bool> stop{false};
    std::thread saver([&] {
        while (!stop.load()) {
            save(f, path);
            save(d, path);
        }
    });
    int floats = 0, doubles = 0, wrong = 0;
    for (int i = 0; i < 400 || floats == 0 || doubles == 0; ++i) {
        const LoadedModel model = load_model(path);
        if (model.float32 && !model.float64 && model.header.scalar_bytes == 4 &&
            std::equal(f.params(), f.params() + f.num_params(), model.float32->params())) {
            ++floats;
        } else if (model.float64 && !model.float32 && model.header.scalar_bytes == 8 &&
                   std::equal(d.params(), d.params() + d.num_params(), model.float64->params())) {
            ++doubles;
        } else {
            ++wrong;
        }
        if (i > 100000) break;
    }
    stop.store(true);
    saver.join();
    CHECK(wrong == 0);
    CHECK(floats > 0 && doubles > 0);
    std::remove(path.c_str());
}

TEST(save_failure_leaves_target_and_no_temporary) {
    Network<double> net({2, 1}, {Activation::sigmoid}, Loss::bce, 1);
    CHECK_THROWS(file_error, save(net, "no_such_directory_chainrule/model.crnn"));
}

TEST(a_path_with_a_nul_byte_is_refused) {
    // std::string("model.crnn\0x") would reach fopen as "model.crnn": refused instead.
    Network<double> net({2, 1}, {Activation::sigmoid}, Loss::bce, 1);
    const std::string prefix = temp_path("nul");
    const std::string with_nul = prefix + std::string(1, '\0') + "x";
    CHECK_THROWS(std::invalid_argument, save(net, with_nul));
    CHECK(!std::ifstream(prefix).good());  // nothing written at the name before the NUL
    save(net, prefix);
    CHECK_THROWS(std::invalid_argument, load<double>(with_nul));  // never the file named by the prefix
    CHECK_THROWS(std::invalid_argument, read_model_header(with_nul));
    std::remove(prefix.c_str());
}

#if defined(__unix__) || defined(__APPLE__)
TEST(only_regular_files_are_read_or_replaced) {
    // A FIFO: opening it to read would block until a writer comes (here never),
    // so load refuses it before opening; save leaves it a FIFO.
    Network<double> net({2, 1}, {Activation::sigmoid}, Loss::bce, 1);
    const std::string fifo = temp_path("fifo");
    std::remove(fifo.c_str());
    CHECK(mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS(format_error, load<double>(fifo));
    CHECK_THROWS(format_error, read_model_header(fifo));
    CHECK_THROWS(std::invalid_argument, save(net, fifo));
    struct stat info {};
    CHECK(stat(fifo.c_str(), &info) == 0 && S_ISFIFO(info.st_mode));
    std::remove(fifo.c_str());
    // A character device that never ends: refused, not read. (Never saved to:
    // the tests may run as root, and a broken check would replace the device.)
    CHECK_THROWS(format_error, load<double>("/dev/zero"));
    // A directory: EISDIR for both, and nothing written into or beside it.
    CHECK_THROWS(file_error, load<double>("."));
    CHECK_THROWS(file_error, save(net, "."));
}
#endif

TEST_MAIN()
