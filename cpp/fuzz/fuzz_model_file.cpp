// Coverage-guided fuzzing of the model-file loader (cpp/src/model_file.cpp)
// with libFuzzer, under AddressSanitizer and UndefinedBehaviorSanitizer.
//
// Each input is written to a scratch file and read back with
// read_model_header, load<float> and load<double>. The properties:
//   - a refusal is a format_error (or a file_error): any other exception
//     (std::bad_alloc from a lying header, std::length_error, an
//     invalid_argument from the Network constructor that the header checks
//     let through, ...) aborts, and so is a finding;
//   - a file that loads is canonical: saving the loaded network writes the
//     very same bytes back, and its dtype is the one read_model_header reports;
//   - no crash, no sanitizer report, no allocation beyond -malloc_limit_mb,
//     no input slower than -timeout.
//
// Build (Clang; from the repository root, no CMake needed; version.hpp is not
// used; Clang cannot clone templates for AVX2, hence CHAINRULE_NO_TARGET_CLONES;
// the GEMM falls back to its loops):
//
//   mkdir -p build-fuzz
//   clang++ -std=c++17 -O1 -g -DCHAINRULE_NO_TARGET_CLONES -fsanitize=fuzzer,address,undefined \
//       -fno-sanitize-recover=undefined -Icpp/include cpp/fuzz/fuzz_model_file.cpp cpp/src/*.cpp \
//       -o build-fuzz/fuzz_model_file
//
// Seed corpus (a few valid models of both dtypes), then run, e.g. five minutes:
//
//   mkdir -p build-fuzz/corpus build-fuzz/seeds
//   python -c "import chainrule as cr; [cr.Network(s, activation=a, output=o, loss=l, dtype=d, seed=1)
//       .save(f'build-fuzz/seeds/{i}-{d}.crnn') for i, (s, a, o, l) in enumerate([([3, 1], [], 'sigmoid',
//       'bce'), ([2, 3, 1], ['tanh'], 'sigmoid', 'bce'), ([4, 3, 3, 2], ['relu', 'identity'], 'tanh', 'mse')])
//       for d in ('float32', 'float64')]"
//   build-fuzz/fuzz_model_file build-fuzz/corpus build-fuzz/seeds -max_len=4096 -timeout=5 \
//       -rss_limit_mb=1024 -malloc_limit_mb=64 -max_total_time=300 -print_final_stats=1
//
// Random mutations almost never keep the CRC right, so the checks behind it
// (and the accepted-file property) are rarely reached. A second campaign with
// CHAINRULE_FUZZ_FIX_CRC=1 in the environment overwrites each input's last
// four bytes with the CRC-32 of the rest before loading it:
//
//   CHAINRULE_FUZZ_FIX_CRC=1 build-fuzz/fuzz_model_file build-fuzz/corpus-crc build-fuzz/seeds \
//       -max_len=4096 -timeout=5 -rss_limit_mb=1024 -malloc_limit_mb=64 -max_total_time=300
//
// A crash leaves crash-<sha1> in the current directory; rerun it with
// `build-fuzz/fuzz_model_file crash-<sha1>` (with the same environment).
//
// Or through CMake, with these lines in the root CMakeLists.txt (OFF by default):
//
//   option(CHAINRULE_FUZZ "Build the libFuzzer harness of the model-file loader (Clang only)" OFF)
//   if(CHAINRULE_FUZZ)
//     target_compile_definitions(chainrule PRIVATE CHAINRULE_NO_TARGET_CLONES)
//     set(_chainrule_fuzz_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined)
//     target_compile_options(chainrule PUBLIC ${_chainrule_fuzz_flags} PRIVATE -fsanitize=fuzzer-no-link)
//     target_link_options(chainrule PUBLIC ${_chainrule_fuzz_flags})
//     add_executable(fuzz_model_file cpp/fuzz/fuzz_model_file.cpp)
//     target_link_libraries(fuzz_model_file PRIVATE chainrule)
//     target_compile_options(fuzz_model_file PRIVATE -fsanitize=fuzzer)
//     target_link_options(fuzz_model_file PRIVATE -fsanitize=fuzzer)
//   endif()
//
//   cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCHAINRULE_FUZZ=ON -DCHAINRULE_BUILD_TESTS=OFF
//   cmake --build build-fuzz --target fuzz_model_file
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "chainrule/errors.hpp"
#include "chainrule/model_file.hpp"

namespace {

// Scratch files of this process: on tmpfs where there is one (a write there
// costs no disk flush).
std::string scratch(const char* name) {
    const char* dir = std::getenv("CHAINRULE_FUZZ_DIR");
    if (dir == nullptr) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return std::string(dir) + "/chainrule-fuzz-" + std::to_string(getpid()) + "-" + name;
}

std::vector<unsigned char> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

[[noreturn]] void finding(const char* what, const std::string& detail) {
    std::fprintf(stderr, "FINDING: %s: %s\n", what, detail.c_str());
    std::abort();
}

// Loads `path` as T; on success checks that a save writes the input back.
template <typename T>
void load_and_resave(const std::string& path, const uint8_t* data, size_t size, bool header_says_this_dtype) {
    try {
        chainrule::Network<T> net = chainrule::load<T>(path);
        if (!header_says_this_dtype) finding("loaded with the dtype the header does not give", path);
        const std::string again = scratch("resaved.crnn");
        chainrule::save(net, again);
        const std::vector<unsigned char> bytes = read_all(again);
        if (bytes.size() != size || !std::equal(bytes.begin(), bytes.end(), data)) {
            finding("an accepted file is not what its network saves back", std::to_string(size) + " bytes in, " +
                                                                               std::to_string(bytes.size()) + " out");
        }
    } catch (const chainrule::format_error&) {
    } catch (const chainrule::file_error& e) {
        if (e.path() != path) finding("file_error about another file", e.what());
    } catch (const std::bad_alloc& e) {
        finding("std::bad_alloc while loading", e.what());
    } catch (const std::exception& e) {
        finding("an exception other than format_error/file_error", e.what());
    }
}

}  // namespace

// CRC-32 (IEEE 802.3, reflected 0xEDB88320), bit by bit: independent of the loader's table.
static std::uint32_t crc32(const uint8_t* data, size_t size) {
    std::uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < size; ++i) {
        crc ^= data[i];
        for (int k = 0; k < 8; ++k) crc = (crc & 1u) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return crc ^ 0xFFFFFFFFu;
}

static void remove_scratch_files() {
    std::remove(scratch("input.crnn").c_str());
    std::remove(scratch("resaved.crnn").c_str());
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
    static const std::string path = scratch("input.crnn");
    static const int cleanup = std::atexit(remove_scratch_files);
    (void)cleanup;
    static const bool fix_crc = std::getenv("CHAINRULE_FUZZ_FIX_CRC") != nullptr;
    std::vector<uint8_t> fixed(raw, raw + size);
    if (fix_crc && size >= 4) {
        const std::uint32_t crc = crc32(fixed.data(), size - 4);
        for (int i = 0; i < 4; ++i) fixed[size - 4 + i] = static_cast<uint8_t>(crc >> (8 * i));
    }
    const uint8_t* data = fixed.data();
    {
        std::FILE* f = std::fopen(path.c_str(), "wb");
        if (f == nullptr) std::abort();
        if (size != 0 && std::fwrite(data, 1, size, f) != size) std::abort();
        std::fclose(f);
    }
    std::uint32_t scalar_bytes = 0;
    try {
        scalar_bytes = chainrule::read_model_header(path).scalar_bytes;
        if (scalar_bytes != 4 && scalar_bytes != 8) finding("a header with bytes per parameter", std::to_string(scalar_bytes));
    } catch (const chainrule::format_error&) {
    } catch (const std::exception& e) {
        finding("read_model_header threw something else", e.what());
    }
    load_and_resave<float>(path, data, size, scalar_bytes == 4);
    load_and_resave<double>(path, data, size, scalar_bytes == 8);
    return 0;
}
