// The flat buffers training streams through: a network's parameters, their
// gradient, and an optimizer's state. Each is a std::vector whose allocator
// starts it at its own offset ("lane") within a 4 KiB page. The update loops
// read and write two to five of these buffers element by element; buffers
// that all start at the same offset within a page (as large allocations do)
// put every element of each at the same low address bits, and the loads and
// stores of one iteration then conflict in the caches and in the CPU's
// store-to-load checks. Lanes 768 bytes apart avoid that (docs/performance.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace chainrule {

template <typename T>
class StaggeredAllocator {
public:
    using value_type = T;
    static constexpr unsigned kLanes = 5;

    // Lanes used by the core: 0 parameters, 1 gradient, 2-4 an optimizer's slots.
    explicit StaggeredAllocator(unsigned lane = 0) noexcept : lane_(lane % kLanes) {}
    template <typename U>
    StaggeredAllocator(const StaggeredAllocator<U>& other) noexcept : lane_(other.lane()) {}

    T* allocate(std::size_t n) {
        if (n > (SIZE_MAX - kPage) / sizeof(T)) throw std::bad_array_new_length();
        char* page = static_cast<char*>(::operator new(n * sizeof(T) + kPage, std::align_val_t{kPage}));
        return reinterpret_cast<T*>(page + offset());
    }
    void deallocate(T* values, std::size_t) noexcept {
        // The page the buffer starts in: offsets are below kPage.
        const std::uintptr_t start = reinterpret_cast<std::uintptr_t>(values) & ~std::uintptr_t{kPage - 1};
        ::operator delete(reinterpret_cast<void*>(start), std::align_val_t{kPage});
    }
    unsigned lane() const noexcept { return lane_; }

    friend bool operator==(const StaggeredAllocator& a, const StaggeredAllocator& b) noexcept {
        return a.lane_ == b.lane_;
    }
    friend bool operator!=(const StaggeredAllocator& a, const StaggeredAllocator& b) noexcept { return !(a == b); }

private:
    static constexpr std::size_t kPage = 4096;
    std::size_t offset() const noexcept { return 64 + 768 * std::size_t{lane_}; }  // cache-line aligned, < kPage
    unsigned lane_;
};

// A flat buffer in a given lane.
template <typename T>
using Buffer = std::vector<T, StaggeredAllocator<T>>;

}  // namespace chainrule
