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

}  // namespace chainrule::detail
