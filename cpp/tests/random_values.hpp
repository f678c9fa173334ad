// Seeded test data shared by the C++ tests: n values uniform in [-scale,
// scale), or in [lo, hi).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/random.hpp"

namespace test_data {

// Each (2u - 1) scale for u uniform in [0, 1), drawn in double, then
// rounded, so float and double runs see the same values.
template <typename T = double>
std::vector<T> random_values(std::size_t n, std::uint64_t seed, double scale = 1.0) {
    chainrule::detail::Random random(seed);
    std::vector<T> v(n);
    for (T& x : v) x = static_cast<T>((2.0 * random.uniform() - 1.0) * scale);
    return v;
}

// Each lo + (hi - lo) u, drawn in double, then rounded.
template <typename T = double>
std::vector<T> random_between(std::size_t n, std::uint64_t seed, double lo, double hi) {
    chainrule::detail::Random random(seed);
    std::vector<T> v(n);
    for (T& x : v) x = static_cast<T>(lo + (hi - lo) * random.uniform());
    return v;
}

}  // namespace test_data
