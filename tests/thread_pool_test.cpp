// The thread pool behind run_in_thread(): no thread before the first job, a
// size set before it starts, a shutdown that waits for running jobs and
// hands queued ones back cancelled, and a restart on the next job.

#include <asyncore/thread_pool.hpp>

#include <asyncore/async_file.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>

#include <doctest/doctest.h>

#include <dirent.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "support/fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::ChannelMap;
using asyncore::Task;

namespace {

int thread_count() {
    DIR* d = ::opendir("/proc/self/task");
    int n = 0;
    while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    return n;
}

// Spins (bounded) until `flag` is set; false on the watchdog.
bool wait_for(const std::atomic<bool>& flag) {
    auto deadline = std::chrono::steady_clock::now() + test::watchdog;
    while (!flag) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::yield();
    }
    return true;
}

}  // namespace

TEST_SUITE("thread_pool") {
    TEST_CASE("the pool starts with its first job, at the size set before, and stops cleanly") {
        asyncore::shutdown_thread_pool();
        // A sanitizer runtime (TSan) starts a helper thread of its own with
        // the process's first pthread_create; make that happen before the
        // baseline, so it is counted in `before` and never in the pool.
        std::thread([] {}).join();
        const int before = thread_count();
        CHECK_THROWS_AS(asyncore::set_thread_pool_size(0), std::invalid_argument);
        asyncore::set_thread_pool_size(3);
        CHECK(asyncore::thread_pool_size() == 3);
        CHECK(thread_count() == before);  // nothing started yet
        ChannelMap map;
        int got = 0;
        auto body = [&]() -> Task<void> {
            got = co_await asyncore::run_in_thread([] { return 7; });
        };
        auto t = asyncore::spawn(body(), map);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(got == 7);
        CHECK(thread_count() == before + 3);
        CHECK_THROWS_AS(asyncore::set_thread_pool_size(2), std::logic_error);
        asyncore::shutdown_thread_pool();
        CHECK(thread_count() == before);
        asyncore::set_thread_pool_size(2);  // allowed again
        auto again = asyncore::spawn(body(), map);
        REQUIRE(test::run_until(map, [&] { return again.done(); }));
        CHECK(thread_count() == before + 2);
        asyncore::shutdown_thread_pool();
    }

    TEST_CASE("shutdown waits for the running job and hands the queued one back with ECANCELED") {
        asyncore::shutdown_thread_pool();
        asyncore::set_thread_pool_size(1);
        ChannelMap map;
        std::atomic<bool> running{false}, release{false};
        int first = 0;
        int second_error = 0;
        auto blocker = [&]() -> Task<void> {
            first = co_await asyncore::run_in_thread([&running, &release] {
                running = true;
                while (!release)
                    std::this_thread::yield();
                return 1;
            });
        };
        auto queued = [&]() -> Task<void> {
            try {
                co_await asyncore::run_in_thread([] { return 2; });
            } catch (const std::system_error& e) {
                second_error = e.code().value();
            }
        };
        auto a = asyncore::spawn(blocker(), map);
        auto b = asyncore::spawn(queued(), map);
        test::run_passes(map, 2);  // both submitted; the one thread runs the first
        REQUIRE(wait_for(running));
        std::atomic<bool> stopped{false};
        std::thread stopper([&] {
            asyncore::shutdown_thread_pool();  // returns once the first job ends
            stopped = true;
        });
        // The size may be set again once the pool has left and stopped taking
        // jobs: only then may the first job end (else the thread could start
        // the queued one).
        auto deadline = std::chrono::steady_clock::now() + test::watchdog;
        for (;;) {
            try {
                asyncore::set_thread_pool_size(1);
                break;
            } catch (const std::logic_error&) {
                REQUIRE(std::chrono::steady_clock::now() < deadline);
                std::this_thread::yield();
            }
        }
        CHECK_FALSE(stopped);
        release = true;
        stopper.join();
        CHECK(stopped);
        REQUIRE(test::run_until(map, [&] { return a.done() && b.done(); }));
        CHECK(first == 1);
        CHECK(second_error == ECANCELED);
    }
}
