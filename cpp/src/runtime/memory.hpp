// Sizing buffers before allocating them, so that an impossible network is a
// clear allocation_error (MemoryError in Python) rather than an overflowed
// size or the operating system killing the process.
#pragma once

#include <cstddef>
#include <string>

namespace chainrule::detail {

// a * b, throwing allocation_error (naming `what`) on overflow.
std::size_t checked_mul(std::size_t a, std::size_t b, const char* what);
// a + b, likewise.
std::size_t checked_add(std::size_t a, std::size_t b, const char* what);
// Throws allocation_error when `bytes` exceeds the machine's physical memory.
void check_fits_in_memory(std::size_t bytes, const std::string& what);

// Sizes up to this always fit; checking them would cost a system call.
constexpr std::size_t kAlwaysFits = std::size_t{1} << 26;  // 64 MiB

// check_fits_in_memory with a message built only when it may be needed
// (formatting it costs more than a small predict).
template <typename MakeWhat>
void check_fits_in_memory_lazy(std::size_t bytes, const MakeWhat& make_what) {
    if (bytes > kAlwaysFits) check_fits_in_memory(bytes, make_what());
}

}  // namespace chainrule::detail
