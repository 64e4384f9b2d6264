// Memory per suspended Task: the resident set grown by N tasks that each wait
// in a mailbox receive, the wait a pycos-style server spends most of its
// tasks' lives in. run.py's memory section reports it next to the bytes per
// idle connection.
//
//   task_memory [--tasks N]     (default 10000)
//
// Prints one line, `tasks N rss_before B rss_after B per_task B`, and exits
// 0 only if every task started, suspended in receive() and then ended with
// Cancelled when terminated: a figure from tasks that never suspended (or
// never ran) would be silently wrong, so that is a failure, status 1.
//
// The baseline is taken after one task has gone through the same life, so
// that what the first task initialises lazily (the map's libevent base, the
// scheduler, the allocator's first arena pages) is not charged to the many.
// The handles to the N tasks (8 bytes each) are counted: a program that
// messages its tasks holds them too.

#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string_view>
#include <vector>

using asyncore::Task;

namespace {

struct Counts {
    long started = 0;    ///< reached the receive
    long cancelled = 0;  ///< left it with Cancelled, as terminate() asks
    long wrong = 0;      ///< left it any other way
};

[[noreturn]] void usage(const char* prog) {
    std::fprintf(stderr, "usage: %s [--tasks N]\n", prog);
    std::exit(2);
}

long parse_tasks(int argc, char** argv) {
    long tasks = 10000;
    for (int i = 1; i < argc; i += 2) {
        if (std::string_view(argv[i]) != "--tasks" || i + 1 >= argc) usage(argv[0]);
        char* end = nullptr;
        tasks = std::strtol(argv[i + 1], &end, 10);
        if (end == argv[i + 1] || *end != '\0' || tasks < 1 || tasks > 10'000'000) usage(argv[0]);
    }
    return tasks;
}

long rss_bytes() {
    std::ifstream statm("/proc/self/statm");
    long size = 0, resident = 0;
    if (!(statm >> size >> resident)) {
        std::fprintf(stderr, "task_memory: cannot read /proc/self/statm\n");
        std::exit(1);
    }
    return resident * ::sysconf(_SC_PAGESIZE);
}

Task<void> waiter(Counts& counts) {
    ++counts.started;
    try {
        (void)co_await asyncore::receive<int>();
        ++counts.wrong;  // nobody sends: a message here means a broken wait
    } catch (const asyncore::Cancelled&) {
        ++counts.cancelled;
        throw;
    } catch (const std::exception&) {
        ++counts.wrong;
    }
}

// Runs polling passes until `done` holds; false if it still does not after
// a few seconds (a task that never ran, or never ended).
template <class Pred>
bool run_until(asyncore::ChannelMap& map, Pred done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        map.run_pass(std::chrono::seconds(0));
    }
    return true;
}

// Spawns n waiters into `tasks`, lets them all reach their receive, and
// checks that each is suspended there (started, not finished).
bool spawn_suspended(asyncore::ChannelMap& map, std::vector<Task<void>>& tasks, long n,
                     Counts& counts) {
    long before = counts.started;
    for (long i = 0; i < n; ++i)
        tasks.push_back(asyncore::spawn(waiter(counts), map));
    if (!run_until(map, [&] { return counts.started == before + n; })) return false;
    for (const Task<void>& t : tasks)
        if (t.done()) return false;
    return true;
}

// Terminates every task and checks that each ended through Cancelled.
bool terminate_all(asyncore::ChannelMap& map, std::vector<Task<void>>& tasks, Counts& counts) {
    long before = counts.cancelled;
    for (Task<void>& t : tasks)
        if (!t.terminate()) return false;
    auto target = before + static_cast<long>(tasks.size());
    if (!run_until(map, [&] { return counts.cancelled + counts.wrong >= target; })) return false;
    for (const Task<void>& t : tasks)
        if (!t.done()) return false;
    tasks.clear();
    return counts.cancelled == target && counts.wrong == 0;
}

bool fail(const char* what) {
    std::fprintf(stderr, "task_memory: %s\n", what);
    return false;
}

bool measure(long n) {
    asyncore::ChannelMap map;
    Counts counts;
    std::vector<Task<void>> tasks;
    if (!spawn_suspended(map, tasks, 1, counts) || !terminate_all(map, tasks, counts))
        return fail("the warm-up task did not suspend and terminate");
    tasks.reserve(static_cast<std::size_t>(n));
    long rss_before = rss_bytes();
    if (!spawn_suspended(map, tasks, n, counts))
        return fail("not every task started and suspended in receive()");
    long rss_after = rss_bytes();
    if (!terminate_all(map, tasks, counts))
        return fail("not every task ended with Cancelled when terminated");
    if (map.has_work()) return fail("the map still has work after every task ended");
    std::printf("tasks %ld rss_before %ld rss_after %ld per_task %.1f\n", n, rss_before, rss_after,
                static_cast<double>(rss_after - rss_before) / static_cast<double>(n));
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    long n = parse_tasks(argc, argv);
    try {
        return measure(n) ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "task_memory: %s\n", e.what());
        return 1;
    }
}
