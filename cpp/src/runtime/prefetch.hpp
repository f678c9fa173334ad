// Cache hints for the records a shuffled fit reads next: they sit anywhere in
// X, and one small step takes less time than a cache miss.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "runtime/macros.hpp"

namespace chainrule::detail {

// Hints the cache to fetch the lines of [p, p + bytes), at most four: the
// hardware prefetcher follows a longer row once it is being read. A row that
// does not start on a line boundary spans one line more than its length says.
CHAINRULE_ALWAYS_INLINE void prefetch_bytes(const void* p, std::size_t bytes) {
#if defined(__GNUC__)
    constexpr std::uintptr_t kLine = 64, kMaxLines = 4;
    const auto begin = reinterpret_cast<std::uintptr_t>(p) & ~(kLine - 1);
    const auto end = reinterpret_cast<std::uintptr_t>(p) + bytes;
    const std::uintptr_t lines = std::min<std::uintptr_t>(kMaxLines, (end - begin + kLine - 1) / kLine);
    for (std::uintptr_t i = 0; i < lines; ++i) __builtin_prefetch(reinterpret_cast<const char*>(begin + i * kLine));
#else
    (void)p, (void)bytes;
#endif
}

}  // namespace chainrule::detail
