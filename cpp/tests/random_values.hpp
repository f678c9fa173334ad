// Seeded test data shared by the C++ tests: n values uniform in [-1, 1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/random.hpp"

namespace test_data {

// Drawn in double, then rounded, so float and double runs see the same values.
template <typename T = double>
std::vector<T> random_values(std::size_t n, std::uint64_t seed) {
    chainrule::detail::Random random(seed);
    std::vector<T> v(n);
    for (T& x : v) x = static_cast<T>(2.0 * random.uniform() - 1.0);
    return v;
}

}  // namespace test_data
