#include "thread_pool.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define CHAINRULE_HAS_ATFORK 1
#endif

namespace chainrule::detail {

namespace {

// A worker that finished a part waits this many polls for the next before it
// sleeps: the products of one training step follow each other within tens
// of microseconds, and a wake-up from sleep costs about that much.
constexpr unsigned kSpinPolls = 1u << 16;
// Every this many polls a waiting thread offers its core to the scheduler:
// with more threads than free cores (set_num_threads above the core count, or
// a busy machine) the thread it waits for may be the one that needs it.
constexpr unsigned kPollsPerYield = 256;

inline void poll_pause(unsigned polls) {
    if (polls % kPollsPerYield == 0) {
        std::this_thread::yield();
        return;
    }
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

class Pool {
public:
    ~Pool() { stop_workers(); }

    // One caller at a time; the others run their parts themselves.
    bool try_begin() { return run_mutex_.try_lock(); }
    void end() { run_mutex_.unlock(); }

    void resize(int workers) {  // with run_mutex_ held
        if (static_cast<int>(workers_.size()) == workers) return;
        stop_workers();
        stop_ = false;
        // The generation they start from is read here, not by them: a run
        // published before a new worker first looks must not pass it by.
        const std::uint64_t now = generation_.load(std::memory_order_acquire);
        for (int i = 1; i <= workers; ++i) workers_.emplace_back([this, i, now] { work(i, now); });
    }

    int workers() const { return static_cast<int>(workers_.size()); }

    void run(int parts, void (*body)(void*, int), void* context) {  // with run_mutex_ held
        // Every worker answers every run, parts or not: none can lag behind
        // into the next run, and the fields below change only while all of
        // them wait.
        body_ = body;
        context_ = context;
        parts_ = parts;
        remaining_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        body(context, 0);
        for (unsigned polls = 1; remaining_.load(std::memory_order_acquire) != 0; ++polls) poll_pause(polls);
    }

private:
    void work(int index, std::uint64_t seen) {
        for (;;) {
            unsigned polls = 0;
            while (generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_acquire)) {
                if (++polls < kSpinPolls) {
                    poll_pause(polls);
                    continue;
                }
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] {
                    return generation_.load(std::memory_order_acquire) != seen || stop_.load(std::memory_order_acquire);
                });
            }
            if (stop_.load(std::memory_order_acquire)) return;
            seen = generation_.load(std::memory_order_acquire);
            if (index < parts_) body_(context_, index);
            remaining_.fetch_sub(1, std::memory_order_acq_rel);
        }
    }

    void stop_workers() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        for (std::thread& worker : workers_) worker.join();
        workers_.clear();
    }

    std::mutex run_mutex_;
    std::mutex mutex_;  // with wake_: a sleeping worker's wake-up
    std::condition_variable wake_;
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<bool> stop_{false};
    std::atomic<int> remaining_{0};
    void (*body_)(void*, int) = nullptr;  // written before generation_ is bumped, read after
    void* context_ = nullptr;
    int parts_ = 0;
    std::vector<std::thread> workers_;
};

// Never destroyed: worker threads still asleep at exit would otherwise be
// joined from a static destructor, after the runtime they use may be gone.
std::atomic<Pool*> g_pool{nullptr};
std::atomic<int> g_pool_threads{1};
std::once_flag g_pool_once;

#if defined(CHAINRULE_HAS_ATFORK)
// A forked child has none of the parent's worker threads: it starts a pool of
// its own on first use, leaving the parent's copy (its mutexes may be held by
// threads that do not exist in the child) untouched.
void forget_pool_in_child() { g_pool.store(nullptr); }
#endif

Pool& pool() {
    std::call_once(g_pool_once, [] {
#if defined(CHAINRULE_HAS_ATFORK)
        pthread_atfork(nullptr, nullptr, forget_pool_in_child);
#endif
    });
    Pool* p = g_pool.load(std::memory_order_acquire);
    if (p == nullptr) {
        Pool* fresh = new Pool();
        if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) {
            p = fresh;
        } else {
            delete fresh;  // another thread made one first: p is it
        }
    }
    return *p;
}

}  // namespace

void set_pool_threads(int threads) { g_pool_threads.store(threads < 1 ? 1 : threads); }

namespace {
// Set while this thread runs the parts of a run it started: a run_parts from
// inside a part (a product within a chunk of records that the threads share)
// then runs its parts itself, rather than try the pool's lock it holds.
thread_local bool t_leading_a_run = false;
}  // namespace

void run_parts(int parts, void (*body)(void* context, int part), void* context) {
    auto run_here = [&] {
        for (int part = 0; part < parts; ++part) body(context, part);
    };
    if (parts <= 1 || t_leading_a_run) return run_here();
    Pool& p = pool();
    if (!p.try_begin()) return run_here();  // another thread's run holds the pool
    p.resize(g_pool_threads.load() - 1);
    if (parts > p.workers() + 1) {  // fewer threads than parts (the setting changed): the caller takes them all
        p.end();
        return run_here();
    }
    t_leading_a_run = true;
    p.run(parts, body, context);
    t_leading_a_run = false;
    p.end();
}

}  // namespace chainrule::detail
