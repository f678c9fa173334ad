#include "runtime/memory.hpp"

#include <iomanip>
#include <limits>
#include <sstream>

#include "chainrule/errors.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace chainrule::detail {

namespace {
[[noreturn]] void too_large(const char* what) {
    throw allocation_error(std::string(what) + " is too large to count in memory (size overflow)");
}
}  // namespace

std::size_t checked_mul(std::size_t a, std::size_t b, const char* what) {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) too_large(what);
    return a * b;
}

std::size_t checked_add(std::size_t a, std::size_t b, const char* what) {
    if (b > std::numeric_limits<std::size_t>::max() - a) too_large(what);
    return a + b;
}

void check_fits_in_memory(std::size_t bytes, const std::string& what) {
    // Asking the system costs a system call (sysinfo), a microsecond that a
    // single-record predict cannot afford; 64 MiB fits in any machine's memory.
    if (bytes <= kAlwaysFits) return;
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES);
    const long page_size = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page_size <= 0) return;  // unknown: let the allocator decide
    const double physical = static_cast<double>(pages) * static_cast<double>(page_size);
    if (static_cast<double>(bytes) > physical) {
        const double gib = 1024.0 * 1024.0 * 1024.0;
        std::ostringstream message;
        message << std::fixed << std::setprecision(1) << what << " needs " << static_cast<double>(bytes) / gib
                << " GiB, more than this machine's " << physical / gib << " GiB of memory";
        throw allocation_error(message.str());
    }
#else
    (void)bytes;
    (void)what;
#endif
}

}  // namespace chainrule::detail
