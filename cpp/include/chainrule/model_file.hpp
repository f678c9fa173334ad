// chainrule's model file: a small binary, readable from C++ and Python alike,
// never pickle. All integers and floats are little-endian.
//
//   offset  size        field
//   0       8           magic "CHAINRUL"
//   8       4  u32      format version (1)
//   12      4  u32      bytes per parameter: 4 (float32) or 8 (float64)
//   16      4  u32      loss: 0 bce, 1 mse, 2 cce
//   20      4  u32      L, the number of layers (>= 1)
//   24      8(L+1) u64  layer sizes n_0 ... n_L (each >= 1)
//   ...     4L  u32     activation of each layer: 0 sigmoid, 1 identity, 2 tanh, 3 relu, 4 softmax, 5 leaky_relu
//   ...     8   u64     P, the number of parameters = sum_l n_l (n_{l-1} + 1)
//   ...     P * bytes   parameters, layer by layer: W_l row-major (n_l, n_{l-1}), then b_l
//   ...     4   u32     CRC-32 (IEEE 802.3) of every byte before it
//
// save() writes a temporary file beside the target, flushes it to disk and
// renames it over the target, so a reader sees the old file or the new one,
// never a torn one. load() checks every field against the file's length before
// allocating, so a lying header cannot ask for more memory than the file holds.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chainrule/names.hpp"
#include "chainrule/network.hpp"

namespace chainrule {

inline constexpr std::uint32_t kModelFormatVersion = 1;

// What a model file holds besides its parameters.
struct ModelHeader {
    std::uint32_t version = kModelFormatVersion;
    std::uint32_t scalar_bytes = 0;  // 4 or 8
    Loss loss = Loss::mse;
    std::vector<std::size_t> layer_sizes;
    std::vector<Activation> activations;
    std::uint64_t num_params = 0;
};

// Paths are byte strings, passed to the operating system as they are (any
// bytes but NUL on POSIX, UTF-8 or not). A path holding a NUL byte names no
// file: save, read_model_header and load throw std::invalid_argument for it.

// Writes `network` to `path` atomically. Throws std::invalid_argument for a
// path holding a NUL byte, and for a target that exists and is neither a
// regular file nor a directory (a FIFO, a character or block device, a
// socket; a symbolic link is followed for this check): save replaces a
// regular file only, or creates one. Throws file_error when the file cannot
// be written, flushed or renamed into place, and for a directory at `path`
// (EISDIR).
template <typename T>
void save(const Network<T>& network, const std::string& path);

// Reads and validates the header of the model file at `path`. Throws
// std::invalid_argument for a path holding a NUL byte; file_error when the
// file cannot be opened or read (one missing, a directory: EISDIR);
// format_error when it is not a regular file (a FIFO, a device, a socket:
// refused before it is opened) or its header is not a valid one of this
// format version.
ModelHeader read_model_header(const std::string& path);

// Loads the model file at `path`. Throws what read_model_header throws, and
// format_error too when the file holds the other dtype, is truncated, or its
// checksum does not match.
template <typename T>
Network<T> load(const std::string& path);

// A network read by load_model: its header, and the network in the dtype the
// file holds (float32 set when header.scalar_bytes is 4, float64 when 8; the
// other null).
struct LoadedModel {
    ModelHeader header;
    std::unique_ptr<Network<float>> float32;
    std::unique_ptr<Network<double>> float64;
};

// Loads the model file at `path` in the dtype it holds, opening it once: the
// header and the parameters come from the same file even while another
// process replaces it. read_model_header followed by load<T> opens the path
// twice, and can read the header of one file and the body of another.
// Throws what load throws, except for the dtype.
LoadedModel load_model(const std::string& path);

extern template void save<float>(const Network<float>&, const std::string&);
extern template void save<double>(const Network<double>&, const std::string&);
extern template Network<float> load<float>(const std::string&);
extern template Network<double> load<double>(const std::string&);

}  // namespace chainrule
