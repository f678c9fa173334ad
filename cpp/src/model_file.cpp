// save() and load() of the model file format documented in model_file.hpp.
#include "chainrule/model_file.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "chainrule/errors.hpp"
#include "kernels/losses.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#define CHAINRULE_POSIX 1
#endif

namespace chainrule {

namespace {

constexpr char kMagic[8] = {'C', 'H', 'A', 'I', 'N', 'R', 'U', 'L'};

// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), table-driven.
class Crc32 {
public:
    void update(const void* data, std::size_t n) {
        static const auto table = make_table();
        const auto* bytes = static_cast<const unsigned char*>(data);
        for (std::size_t i = 0; i < n; ++i) crc_ = table[(crc_ ^ bytes[i]) & 0xFFu] ^ (crc_ >> 8);
    }
    std::uint32_t value() const { return crc_ ^ 0xFFFFFFFFu; }

private:
    struct Table {
        std::uint32_t entry[256];
        std::uint32_t operator[](std::size_t i) const { return entry[i]; }
    };
    static Table make_table() {
        Table t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t.entry[i] = c;
        }
        return t;
    }
    std::uint32_t crc_ = 0xFFFFFFFFu;
};

bool host_is_little_endian() {
    const std::uint16_t probe = 1;
    unsigned char first = 0;
    std::memcpy(&first, &probe, 1);
    return first == 1;
}

// Reverses the bytes of each `width`-byte element, to or from little-endian.
void swap_elements(unsigned char* data, std::size_t count, std::size_t width) {
    for (std::size_t i = 0; i < count; ++i) {
        unsigned char* e = data + i * width;
        for (std::size_t a = 0, b = width - 1; a < b; ++a, --b) std::swap(e[a], e[b]);
    }
}

struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

[[noreturn]] void throw_file_error(const std::string& what, const std::string& path, int code) {
    throw file_error(what + " '" + path + "': " + std::strerror(code), code, path, what);
}

// A std::string may hold a NUL byte, a file name never does: the C library
// would silently read or write the file named by the bytes before it.
void check_path(const std::string& path) {
    const std::size_t nul = path.find('\0');
    if (nul != std::string::npos) {
        throw std::invalid_argument("path holds a NUL byte (at byte " + std::to_string(nul) +
                                    "), which no file name can hold");
    }
}

// Writes little-endian values and keeps the running CRC.
class Writer {
public:
    Writer(std::FILE* file, const std::string& path) : file_(file), path_(path) {}
    void bytes(const void* data, std::size_t n) {
        if (n != 0 && std::fwrite(data, 1, n, file_) != n) throw_file_error("cannot write", path_, errno);
        crc_.update(data, n);
    }
    void u32(std::uint32_t v) {
        unsigned char b[4];
        for (int i = 0; i < 4; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
        bytes(b, 4);
    }
    void u64(std::uint64_t v) {
        unsigned char b[8];
        for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
        bytes(b, 8);
    }
    template <typename T>
    void scalars(const T* data, std::size_t count) {
        if (host_is_little_endian()) return bytes(data, count * sizeof(T));
        constexpr std::size_t kBlock = 4096;  // swap through a small buffer
        unsigned char buffer[kBlock * sizeof(T)];
        for (std::size_t start = 0; start < count; start += kBlock) {
            const std::size_t n = std::min(kBlock, count - start);
            std::memcpy(buffer, data + start, n * sizeof(T));
            swap_elements(buffer, n, sizeof(T));
            bytes(buffer, n * sizeof(T));
        }
    }
    std::uint32_t crc() const { return crc_.value(); }

private:
    std::FILE* file_;
    const std::string& path_;
    Crc32 crc_;
};

// Reads little-endian values, never past the end the file's length allows.
class Reader {
public:
    Reader(std::FILE* file, const std::string& path, std::uint64_t length)
        : file_(file), path_(path), remaining_(length) {}
    void bytes(void* data, std::size_t n, const char* field) {
        if (n > remaining_) truncated(field);
        if (n != 0 && std::fread(data, 1, n, file_) != n) {
            if (std::ferror(file_)) throw_file_error("cannot read", path_, errno);
            truncated(field);
        }
        remaining_ -= n;
        crc_.update(data, n);
    }
    std::uint32_t u32(const char* field) {
        unsigned char b[4];
        bytes(b, 4, field);
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(b[i]) << (8 * i);
        return v;
    }
    std::uint64_t u64(const char* field) {
        unsigned char b[8];
        bytes(b, 8, field);
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(b[i]) << (8 * i);
        return v;
    }
    std::uint64_t remaining() const { return remaining_; }
    std::uint32_t crc() const { return crc_.value(); }
    [[noreturn]] void invalid(const std::string& why) const {
        throw format_error("'" + path_ + "' is not a valid chainrule model file: " + why);
    }
    [[noreturn]] void truncated(const std::string& field) const {
        throw format_error("'" + path_ + "' is truncated: it ends inside the " + field);
    }

private:
    std::FILE* file_;
    const std::string& path_;
    std::uint64_t remaining_;
    Crc32 crc_;
};

#ifdef CHAINRULE_POSIX
// What a file that is not a regular file is, for a message.
const char* file_kind(mode_t mode) {
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

[[noreturn]] void refuse_to_read(const std::string& path, mode_t mode) {
    throw format_error("'" + path + "' is not a chainrule model file: it is " + file_kind(mode) +
                       ", and a model file is a regular file");
}

// A model file is a regular file: anything else is refused before it is
// opened (opening a FIFO blocks until a writer comes, which may be never; a
// device may never end). O_NONBLOCK and the fstat cover a FIFO put in the
// file's place between the stat and the open.
File open_for_reading(const std::string& path, std::uint64_t& length) {
    check_path(path);
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) throw_file_error("cannot open", path, errno);
    if (S_ISDIR(info.st_mode)) throw_file_error("cannot open", path, EISDIR);
    if (!S_ISREG(info.st_mode)) refuse_to_read(path, info.st_mode);
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw_file_error("cannot open", path, errno);
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        const int code = errno;
        ::close(fd);
        if (S_ISDIR(info.st_mode)) throw_file_error("cannot open", path, EISDIR);
        if (!S_ISREG(info.st_mode)) refuse_to_read(path, info.st_mode);
        throw_file_error("cannot read the size of", path, code);
    }
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags != -1) (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);  // a regular file never blocks anyway
    File file(::fdopen(fd, "rb"));
    if (!file) {
        const int code = errno;
        ::close(fd);
        throw_file_error("cannot open", path, code);
    }
    length = static_cast<std::uint64_t>(info.st_size);
    return file;
}
#else
File open_for_reading(const std::string& path, std::uint64_t& length) {
    check_path(path);
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) throw_file_error("cannot open", path, ENOENT);
    if (std::filesystem::is_directory(status)) throw_file_error("cannot open", path, EISDIR);
    if (!std::filesystem::is_regular_file(status)) {
        throw format_error("'" + path + "' is not a chainrule model file: it is not a regular file");
    }
    File file(std::fopen(path.c_str(), "rb"));
    if (!file) throw_file_error("cannot open", path, errno);
    length = std::filesystem::file_size(path, ec);
    if (ec) throw_file_error("cannot read the size of", path, ec.value());
    return file;
}
#endif

// save replaces a regular file (or creates one), never anything else: a
// rename over /dev/null would replace the device with a regular file, and a
// FIFO's reader would never see the model. A symbolic link is followed for
// this check; the rename then replaces the link itself.
void check_save_target(const std::string& path) {
#ifdef CHAINRULE_POSIX
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) return;  // nothing there (or a dangling link): created
    if (S_ISDIR(info.st_mode)) throw_file_error("cannot save", path, EISDIR);
    if (!S_ISREG(info.st_mode)) {
        throw std::invalid_argument("path '" + path + "' is " + file_kind(info.st_mode) +
                                    "; save replaces a regular file only: choose the path of a model file");
    }
#else
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) return;
    if (std::filesystem::is_directory(status)) throw_file_error("cannot save", path, EISDIR);
    if (!std::filesystem::is_regular_file(status)) {
        throw std::invalid_argument("path '" + path + "' is not a regular file; save replaces a regular file "
                                    "only: choose the path of a model file");
    }
#endif
}

ModelHeader read_header(Reader& in) {
    char magic[8];
    in.bytes(magic, 8, "magic number");
    if (std::memcmp(magic, kMagic, 8) != 0) in.invalid("it does not start with \"CHAINRUL\"");
    ModelHeader h;
    h.version = in.u32("format version");
    if (h.version != kModelFormatVersion) {
        in.invalid("it is format version " + std::to_string(h.version) + "; this chainrule reads version " +
                   std::to_string(kModelFormatVersion));
    }
    h.scalar_bytes = in.u32("dtype");
    if (h.scalar_bytes != 4 && h.scalar_bytes != 8) {
        in.invalid("bytes per parameter is " + std::to_string(h.scalar_bytes) + ", expected 4 or 8");
    }
    const std::uint32_t loss = in.u32("loss");
    if (!is_valid_loss(loss)) in.invalid("unknown loss code " + std::to_string(loss));
    h.loss = static_cast<Loss>(loss);
    const std::uint32_t num_layers = in.u32("number of layers");
    // Each layer takes at least 12 header bytes: cap L by what the file holds.
    if (num_layers == 0 || num_layers > in.remaining() / 12) {
        in.invalid("it claims " + std::to_string(num_layers) + " layers, which its length cannot hold");
    }
    for (std::uint32_t i = 0; i <= num_layers; ++i) {
        const std::uint64_t size = in.u64("layer sizes");
        if (size == 0 || size > std::numeric_limits<std::uint32_t>::max()) {
            in.invalid("layer size " + std::to_string(size) + " is out of range");
        }
        h.layer_sizes.push_back(static_cast<std::size_t>(size));
    }
    for (std::uint32_t i = 0; i < num_layers; ++i) {
        const std::uint32_t code = in.u32("activations");
        if (!is_valid_activation(code)) in.invalid("unknown activation code " + std::to_string(code));
        h.activations.push_back(static_cast<Activation>(code));
    }
    const std::string pairing_problem = detail::loss_pairing_problem(h.activations, h.loss, h.layer_sizes.back());
    if (!pairing_problem.empty()) in.invalid("its layers and loss cannot go together (" + pairing_problem + ")");
    h.num_params = in.u64("parameter count");
    std::uint64_t expected = 0;
    for (std::uint32_t l = 0; l < num_layers; ++l) {
        const std::uint64_t n_in = h.layer_sizes[l], n_out = h.layer_sizes[l + 1];
        expected += n_out * (n_in + 1);  // sizes < 2^32 keep each term < 2^64
        if (expected > in.remaining()) in.invalid("its layer sizes need more parameters than its length holds");
    }
    if (h.num_params != expected) {
        in.invalid("it says " + std::to_string(h.num_params) + " parameters, its layer sizes make " +
                   std::to_string(expected));
    }
    const std::uint64_t body = h.num_params * h.scalar_bytes + 4;
    if (in.remaining() != body) {
        if (in.remaining() < body) {
            in.truncated("parameters (expected " + std::to_string(body) + " more bytes after the header, found " +
                         std::to_string(in.remaining()) + ")");
        }
        in.invalid("it has " + std::to_string(in.remaining() - body) + " unexpected bytes at its end");
    }
    return h;
}

// 128 bits for a temporary file's name, drawn from the operating system's
// random source where there is one: another process cannot guess the name
// to put a link or a FIFO there first. Should no such source work, a mix of
// the clock, the process and a counter still makes a name no other save in
// this process uses; the exclusive creation in save refuses whatever else
// is already there.
std::string random_name_part() {
    static std::atomic<std::uint64_t> counter{0};
    std::uint64_t words[2] = {0, 0};
    try {
        std::random_device source;
        for (std::uint64_t& word : words) word = (std::uint64_t{source()} << 32) ^ source();
    } catch (const std::exception&) {
        words[0] = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        words[1] = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
    }
#ifdef CHAINRULE_POSIX
    words[1] ^= static_cast<std::uint64_t>(getpid()) << 40;
#endif
    words[1] ^= counter.fetch_add(1);
    char text[33];
    std::snprintf(text, sizeof text, "%016llx%016llx", static_cast<unsigned long long>(words[0]),
                  static_cast<unsigned long long>(words[1]));
    return text;
}

// Creates a new temporary file beside `path` (a rename is atomic only within
// one file system) under a short name of its own, so that any target name
// the file system allows can be saved to. The file is created exclusively:
// should anything exist at the name (a file, a FIFO, a symbolic link), the
// open fails instead of opening it or following the link, and another name
// is tried. The file gets the mode a new file gets (0666 less the umask).
File create_temporary(const std::string& path, const std::filesystem::path& parent, std::string& temporary) {
    constexpr int kAttempts = 16;
    int code = EEXIST;
    for (int attempt = 0; attempt < kAttempts && code == EEXIST; ++attempt) {
        temporary = (parent / (".chainrule-save-" + random_name_part() + ".tmp")).string();
#ifdef CHAINRULE_POSIX
        const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0) {
            code = errno;
            continue;
        }
        File file(::fdopen(fd, "wb"));
        if (!file) {
            code = errno;
            ::close(fd);
            std::error_code ignored;
            std::filesystem::remove(temporary, ignored);
            break;
        }
        return file;
#else
        File file(std::fopen(temporary.c_str(), "wbx"));  // "x": exclusive creation (C11)
        if (file) return file;
        code = errno;
#endif
    }
    throw_file_error("cannot create a temporary file beside", path, code);
}

}  // namespace

template <typename T>
void save(const Network<T>& network, const std::string& path) {
    // Errors name the target, never the temporary file.
    check_path(path);
    check_save_target(path);
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();

    // A snapshot taken under the reader lock, then written without it: a fit
    // in another thread waits for the copy, not for the disk (fsync can take
    // a long time).
    std::vector<T> params(network.num_params());
    network.copy_params(params.data());
    std::string temporary;
    File file = create_temporary(path, parent, temporary);
    try {
        Writer out(file.get(), path);
        out.bytes(kMagic, 8);
        out.u32(kModelFormatVersion);
        out.u32(static_cast<std::uint32_t>(sizeof(T)));
        out.u32(static_cast<std::uint32_t>(network.loss()));
        out.u32(static_cast<std::uint32_t>(network.num_layers()));
        for (std::size_t size : network.layer_sizes()) out.u64(size);
        for (Activation a : network.activations()) out.u32(static_cast<std::uint32_t>(a));
        out.u64(network.num_params());
        out.scalars(params.data(), params.size());
        out.u32(out.crc());
        if (std::fflush(file.get()) != 0) throw_file_error("cannot write", path, errno);
#ifdef CHAINRULE_POSIX
        if (fsync(fileno(file.get())) != 0) throw_file_error("cannot flush to disk", path, errno);
#endif
        std::FILE* raw = file.release();
        if (std::fclose(raw) != 0) throw_file_error("cannot write", path, errno);
        std::error_code ec;
        std::filesystem::rename(temporary, path, ec);  // atomic replacement
        if (ec) throw_file_error("cannot rename the temporary file onto", path, ec.value());
    } catch (...) {
        file.reset();
        std::error_code ignored;
        std::filesystem::remove(temporary, ignored);
        throw;
    }
#ifdef CHAINRULE_POSIX
    // Make the rename itself durable; failing here loses nothing already
    // written. O_DIRECTORY: the parent is opened only if it is a directory.
    const int dir = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        (void)fsync(dir);
        ::close(dir);
    }
#endif
}

ModelHeader read_model_header(const std::string& path) {
    std::uint64_t length = 0;
    File file = open_for_reading(path, length);
    Reader in(file.get(), path, length);
    return read_header(in);
}

namespace {

// Reads the parameters and the checksum that follow a header already read
// from `in` into `network`, built with that header's architecture.
template <typename T>
void read_parameters(Reader& in, Network<T>& network) {
    in.bytes(network.params(), network.num_params() * sizeof(T), "parameters");
    if (!host_is_little_endian()) {
        swap_elements(reinterpret_cast<unsigned char*>(network.params()), network.num_params(), sizeof(T));
    }
    const std::uint32_t computed = in.crc();
    const std::uint32_t stored = in.u32("checksum");
    if (stored != computed) in.invalid("its checksum does not match its contents (the file is corrupted)");
}

template <typename T>
std::unique_ptr<Network<T>> read_network(Reader& in, const ModelHeader& h) {
    auto network = std::make_unique<Network<T>>(h.layer_sizes, h.activations, h.loss, 0);
    read_parameters(in, *network);
    return network;
}

}  // namespace

template <typename T>
Network<T> load(const std::string& path) {
    std::uint64_t length = 0;
    File file = open_for_reading(path, length);
    Reader in(file.get(), path, length);
    const ModelHeader h = read_header(in);
    if (h.scalar_bytes != sizeof(T)) {
        throw format_error("'" + path + "' holds a float" + std::to_string(8 * h.scalar_bytes) +
                           " network; it cannot be loaded as float" + std::to_string(8 * sizeof(T)));
    }
    Network<T> network(h.layer_sizes, h.activations, h.loss, 0);
    read_parameters(in, network);
    return network;
}

LoadedModel load_model(const std::string& path) {
    // One open file for the header and the parameters: a file replaced by
    // another (of the other dtype, say) between two opens cannot pair one
    // file's header with the other's body.
    std::uint64_t length = 0;
    File file = open_for_reading(path, length);
    Reader in(file.get(), path, length);
    LoadedModel model;
    model.header = read_header(in);
    if (model.header.scalar_bytes == 4) {
        model.float32 = read_network<float>(in, model.header);
    } else {
        model.float64 = read_network<double>(in, model.header);
    }
    return model;
}

template void save<float>(const Network<float>&, const std::string&);
template void save<double>(const Network<double>&, const std::string&);
template Network<float> load<float>(const std::string&);
template Network<double> load<double>(const std::string&);

}  // namespace chainrule
