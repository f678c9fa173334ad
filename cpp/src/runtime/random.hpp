// A small seeded generator whose output is the same on every platform and
// compiler (std::uniform_real_distribution and std::shuffle are not), so that
// one seed gives bitwise the same network and the same training run anywhere.
// xoshiro256** (Blackman and Vigna), seeded through splitmix64.
#pragma once

#include <cstddef>
#include <cstdint>

namespace chainrule::detail {

class Random {
public:
    explicit Random(std::uint64_t seed) {
        for (std::uint64_t& word : state_) word = splitmix64(seed);
    }

    std::uint64_t next() {
        const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const std::uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

    // The generator's whole state, to continue its stream elsewhere.
    void get_state(std::uint64_t (&words)[4]) const {
        for (int i = 0; i < 4; ++i) words[i] = state_[i];
    }
    void set_state(const std::uint64_t (&words)[4]) {
        for (int i = 0; i < 4; ++i) state_[i] = words[i];
    }

    // Uniform in [0, 1), 53 random bits.
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

    // Uniform in [0, bound), without modulo bias (rejects the short last
    // interval: r below 2^64 mod bound). That threshold is below bound, so a
    // draw r >= bound (all but about bound / 2^64 of them) is kept without
    // computing it: one division a draw instead of two.
    std::uint64_t below(std::uint64_t bound) {
        for (;;) {
            const std::uint64_t r = next();
            if (r >= bound || r >= (0 - bound) % bound) return r % bound;
        }
    }

    // Fisher-Yates shuffle of indices[0, n).
    template <typename Index>
    void shuffle(Index* indices, std::size_t n) {
        for (std::size_t i = n; i > 1; --i) {
            const std::size_t j = static_cast<std::size_t>(below(i));
            const Index tmp = indices[i - 1];
            indices[i - 1] = indices[j];
            indices[j] = tmp;
        }
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    static std::uint64_t splitmix64(std::uint64_t& x) {
        std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    std::uint64_t state_[4];
};

}  // namespace chainrule::detail
