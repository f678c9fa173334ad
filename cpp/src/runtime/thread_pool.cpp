#include "runtime/thread_pool.hpp"

#include <atomic>
#include <cassert>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define CHAINRULE_HAS_ATFORK 1
#endif

#if defined(CHAINRULE_TRACE_PARTS)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#endif

namespace chainrule::detail {

namespace {

#if defined(CHAINRULE_TRACE_PARTS)
// The trace of CMake's CHAINRULE_TRACE_PARTS: one record per run of parts
// and per part, `kind thread part begin end` (nanoseconds of the steady
// clock), written at exit to the file $CHAINRULE_TRACE. The kinds: a run the
// pool shares and its parts (`run`, `part`; a run's `part` field is its part
// count), a run its caller computes alone and its parts (`alone`,
// `alone-part`). The threads are numbered in the order of their first record.
// The first kMaxTraceRecords are kept.
enum TraceKind { kTraceRun, kTracePart, kTraceAlone, kTraceAlonePart };
const char* const kTraceKindNames[] = {"run", "part", "alone", "alone-part"};
struct TraceRecord {
    TraceKind kind;
    int thread, part;
    long long begin, end;
};
constexpr std::size_t kMaxTraceRecords = std::size_t{1} << 22;

long long trace_now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch()).count();
}

class Trace {
public:
    Trace() : records_(new TraceRecord[kMaxTraceRecords]) {}
    ~Trace() {
        const char* path = std::getenv("CHAINRULE_TRACE");
        std::FILE* file = path ? std::fopen(path, "w") : nullptr;
        if (file == nullptr) return;
        const std::size_t n = std::min(count_.load(), kMaxTraceRecords);
        for (std::size_t i = 0; i < n; ++i) {
            const TraceRecord& r = records_[i];
            std::fprintf(file, "%s %d %d %lld %lld\n", kTraceKindNames[r.kind], r.thread, r.part, r.begin, r.end);
        }
        std::fclose(file);
    }
    void add(TraceKind kind, int part, long long begin) {
        thread_local int thread = next_thread_.fetch_add(1);
        const std::size_t i = count_.fetch_add(1);
        if (i < kMaxTraceRecords) records_[i] = {kind, thread, part, begin, trace_now()};
    }

private:
    std::unique_ptr<TraceRecord[]> records_;
    std::atomic<std::size_t> count_{0};
    std::atomic<int> next_thread_{0};
};
Trace g_trace;
#define CHAINRULE_TRACE_BEGIN(name) const long long name = trace_now()
#define CHAINRULE_TRACE_END(kind, part, begin) g_trace.add(kind, part, begin)
#else
#define CHAINRULE_TRACE_BEGIN(name)
#define CHAINRULE_TRACE_END(kind, part, begin)
#endif

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

// A run's state in one word, so that a thread claims a part with one
// compare-exchange: the run's number (32 bits), its part count and the next
// unclaimed part (16 bits each).
constexpr std::uint64_t kFieldBits = 16;
constexpr std::uint64_t kFieldMask = (std::uint64_t{1} << kFieldBits) - 1;

constexpr std::uint64_t run_of(std::uint64_t state) { return state >> (2 * kFieldBits); }
constexpr std::uint64_t parts_of(std::uint64_t state) { return (state >> kFieldBits) & kFieldMask; }
constexpr std::uint64_t next_of(std::uint64_t state) { return state & kFieldMask; }

class Pool {
public:
    ~Pool() { stop_workers(); }

    // One caller at a time; the others run their parts themselves.
    bool try_begin() { return run_mutex_.try_lock(); }
    void end() { run_mutex_.unlock(); }

    // Keeps `workers` workers (with run_mutex_ held). When the system refuses
    // a thread (std::system_error: no memory for its stack, a process limit),
    // the pool keeps the workers it has and does not ask again for the same
    // count: every part is still computed, by fewer threads.
    void resize(int workers) {
        if (workers == target_) return;
        target_ = workers;
        stop_workers();
        stop_ = false;
        try {
            for (int i = 0; i < workers; ++i) {
                // The run they start from is read here, not by them: a run
                // published before a new worker first looks must not pass it by.
                workers_.emplace_back([this, seen = run_of(state_.load(std::memory_order_acquire))] { work(seen); });
            }
        } catch (const std::system_error&) {
        }
    }

    int workers() const { return static_cast<int>(workers_.size()); }

    void run(int parts, void (*body)(void*, int), void* context) {  // with run_mutex_ held
        // The caller and the workers claim the parts one at a time; the caller
        // then waits for the parts to be done, not for every worker to answer:
        // a worker that wakes after the last part was claimed finds nothing to do.
        body_ = body;
        context_ = context;
        done_.store(0, std::memory_order_relaxed);
        const std::uint64_t run = run_of(state_.load(std::memory_order_relaxed)) + 1;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            state_.store((run << (2 * kFieldBits)) | (static_cast<std::uint64_t>(parts) << kFieldBits),
                         std::memory_order_release);
        }
        wake_.notify_all();
        take_parts(run);
        for (unsigned polls = 1; done_.load(std::memory_order_acquire) != parts; ++polls) poll_pause(polls);
    }

private:
    // Runs the parts of run `run` that are still unclaimed, one at a time.
    void take_parts(std::uint64_t run) {
        std::uint64_t state = state_.load(std::memory_order_acquire);
        while (run_of(state) == run && next_of(state) < parts_of(state)) {
            if (!state_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel,
                                              std::memory_order_acquire)) {
                continue;  // another thread claimed it (or a new run began): look again
            }
            // A claimed part keeps its run from ending: body_ and context_ are this run's.
            CHAINRULE_TRACE_BEGIN(begin);
            body_(context_, static_cast<int>(next_of(state)));
            CHAINRULE_TRACE_END(kTracePart, static_cast<int>(next_of(state)), begin);
            done_.fetch_add(1, std::memory_order_release);
            state = state_.load(std::memory_order_acquire);
        }
    }

    void work(std::uint64_t seen) {
        for (;;) {
            unsigned polls = 0;
            auto news = [&] {
                return run_of(state_.load(std::memory_order_acquire)) != seen || stop_.load(std::memory_order_acquire);
            };
            while (!news()) {
                if (++polls < kSpinPolls) {
                    poll_pause(polls);
                    continue;
                }
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, news);
            }
            if (stop_.load(std::memory_order_acquire)) return;
            seen = run_of(state_.load(std::memory_order_acquire));
            take_parts(seen);
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
    std::atomic<std::uint64_t> state_{0};
    std::atomic<int> done_{0};  // parts of the current run that are done
    std::atomic<bool> stop_{false};
    void (*body_)(void*, int) = nullptr;  // written before the run is published in state_, read after a claim
    void* context_ = nullptr;
    std::vector<std::thread> workers_;
    int target_ = 0;  // the worker count last asked for
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
        CHAINRULE_TRACE_BEGIN(run_begin);
        for (int part = 0; part < parts; ++part) {
            CHAINRULE_TRACE_BEGIN(begin);
            body(context, part);
            CHAINRULE_TRACE_END(kTraceAlonePart, part, begin);
        }
        CHAINRULE_TRACE_END(kTraceAlone, parts, run_begin);
    };
    if (parts <= 1 || t_leading_a_run) return run_here();
    assert(static_cast<std::uint64_t>(parts) <= kFieldMask);
    Pool& p = pool();
    if (!p.try_begin()) return run_here();  // another thread's run holds the pool
    p.resize(g_pool_threads.load() - 1);
    if (p.workers() == 0) {
        p.end();
        return run_here();
    }
    t_leading_a_run = true;
    CHAINRULE_TRACE_BEGIN(run_begin);
    p.run(parts, body, context);
    CHAINRULE_TRACE_END(kTraceRun, parts, run_begin);
    t_leading_a_run = false;
    p.end();
}

}  // namespace chainrule::detail
