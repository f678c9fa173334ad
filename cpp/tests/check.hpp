// A minimal test harness: CHECK records a failure and goes on; each test
// program returns non-zero when any check failed, which is all ctest reads.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace check {

inline int& failures() {
    static int count = 0;
    return count;
}

inline std::vector<std::pair<const char*, std::function<void()>>>& registry() {
    static std::vector<std::pair<const char*, std::function<void()>>> tests;
    return tests;
}

struct Register {
    Register(const char* name, std::function<void()> body) { registry().emplace_back(name, std::move(body)); }
};

inline void fail(const char* file, int line, const std::string& what) {
    std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what.c_str());
    ++failures();
}

// |a - b| <= tol * max(1, |a|, |b|)
inline bool close(double a, double b, double tol) {
    return std::abs(a - b) <= tol * std::fmax(1.0, std::fmax(std::abs(a), std::abs(b)));
}

// The same bits: two values, or two vectors of values element by element
// (a NaN equals itself, 0 and -0 differ).
template <typename T>
bool same_bits(T a, T b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}
template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

inline int run_all() {
    for (auto& [name, body] : registry()) {
        const int before = failures();
        try {
            body();
        } catch (const std::exception& e) {
            fail(name, 0, std::string("unexpected exception: ") + e.what());
        }
        std::printf("%s %s\n", failures() == before ? "ok  " : "FAIL", name);
    }
    std::printf("%d failed checks\n", failures());
    return failures() == 0 ? 0 : 1;
}

}  // namespace check

#define TEST(name)                                                 \
    static void name();                                            \
    static const check::Register register_##name(#name, name);     \
    static void name()

#define CHECK(cond) \
    do { if (!(cond)) check::fail(__FILE__, __LINE__, #cond); } while (0)

#define CHECK_CLOSE(a, b, tol)                                                                       \
    do {                                                                                             \
        const double a_ = (a), b_ = (b);                                                             \
        if (!check::close(a_, b_, (tol)))                                                            \
            check::fail(__FILE__, __LINE__, #a " ~= " #b " (" + std::to_string(a_) + " vs " +        \
                        std::to_string(b_) + ")");                                                   \
    } while (0)

// The statement must throw an exception of type E.
#define CHECK_THROWS(E, statement)                                                                   \
    do {                                                                                             \
        bool thrown_ = false;                                                                        \
        try { statement; } catch (const E&) { thrown_ = true; } catch (...) {}                       \
        if (!thrown_) check::fail(__FILE__, __LINE__, "expected " #E " from " #statement);           \
    } while (0)

#define TEST_MAIN() \
    int main() { return check::run_all(); }
