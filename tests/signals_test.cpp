// on_signal()/SignalWatch and wait_signal(): functions run from the loop on
// the map's thread, several per signal, across maps and threads; the
// process disposition is taken only while watched and then given back.

#include <asyncore/signals.hpp>

#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>

#include <doctest/doctest.h>

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/core_fixtures.hpp"
#include "support/fixtures.hpp"
#include "support/task_fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::ChannelMap;
using asyncore::SignalWatch;
using asyncore::Task;

namespace {

std::atomic<int> own_handler_calls{0};
extern "C" void own_handler(int) {
    ++own_handler_calls;
}

// True if `handler` is the disposition of `signo` now.
bool disposition_is(int signo, void (*handler)(int)) {
    struct sigaction sa {};
    ::sigaction(signo, nullptr, &sa);
    return sa.sa_handler == handler;
}

}  // namespace

TEST_SUITE("signals") {
    TEST_CASE("a watched signal runs its function from the loop, never inside the delivery") {
        ChannelMap map;
        std::vector<int> got;
        auto watch = map.on_signal(SIGUSR1, [&](int signo) { got.push_back(signo); });
        CHECK(watch);
        ::raise(SIGUSR1);
        CHECK(got.empty());
        REQUIRE(test::run_until(map, [&] { return !got.empty(); }));
        CHECK(got == std::vector<int>{SIGUSR1});
        CHECK_FALSE(map.has_work());  // a watch alone does not keep loop() running
    }

    TEST_CASE("several functions on one signal each run once per delivery") {
        ChannelMap map;
        int a = 0, b = 0;
        auto first = map.on_signal(SIGUSR1, [&](int) { ++a; });
        auto second = map.on_signal(SIGUSR1, [&](int) { ++b; });
        ::raise(SIGUSR1);
        REQUIRE(test::run_until(map, [&] { return a == 1 && b == 1; }));
        ::raise(SIGUSR1);
        REQUIRE(test::run_until(map, [&] { return a == 2 && b == 2; }));
        test::run_passes(map, 3);
        CHECK(a == 2);
        CHECK(b == 2);
    }

    TEST_CASE("deliveries that arrive before the functions run coalesce into one call") {
        ChannelMap map;
        int calls = 0;
        auto watch = map.on_signal(SIGUSR2, [&](int) { ++calls; });
        ::raise(SIGUSR2);
        ::raise(SIGUSR2);
        ::raise(SIGUSR2);
        REQUIRE(test::run_until(map, [&] { return calls > 0; }));
        test::run_passes(map, 3);
        CHECK(calls == 1);
    }

    TEST_CASE("one delivery reaches every map that watches it, each on its own thread") {
        constexpr int loops = 3;
        std::atomic<int> ready{0};
        std::atomic<int> reached{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < loops; ++i) {
            threads.emplace_back([&] {
                ChannelMap map;
                auto self = std::this_thread::get_id();
                bool mine = false;
                auto watch =
                    map.on_signal(SIGUSR2, [&](int) { mine = std::this_thread::get_id() == self; });
                ++ready;
                if (test::run_until(map, [&] { return mine; })) ++reached;
            });
        }
        auto deadline = std::chrono::steady_clock::now() + test::watchdog;
        while (ready < loops && std::chrono::steady_clock::now() < deadline)
            std::this_thread::yield();
        ::kill(::getpid(), SIGUSR2);  // any thread may take it
        for (auto& t : threads)
            t.join();
        CHECK(reached == loops);
    }

    TEST_CASE("the disposition is taken while watched and given back after the last watch") {
        struct sigaction own {};
        own.sa_handler = own_handler;
        REQUIRE(::sigaction(SIGUSR1, &own, nullptr) == 0);
        {
            ChannelMap map;
            int calls = 0;
            SignalWatch a = map.on_signal(SIGUSR1, [&](int) { ++calls; });
            SignalWatch b = map.on_signal(SIGUSR1, [&](int) { ++calls; });
            CHECK_FALSE(disposition_is(SIGUSR1, own_handler));
            a.cancel();
            CHECK_FALSE(disposition_is(SIGUSR1, own_handler));  // b still watches
            ::raise(SIGUSR1);
            REQUIRE(test::run_until(map, [&] { return calls == 1; }));
            b = SignalWatch();  // moving an empty watch in ends b's
            CHECK_FALSE(b);
            CHECK(disposition_is(SIGUSR1, own_handler));
        }
        own_handler_calls = 0;
        ::raise(SIGUSR1);
        CHECK(own_handler_calls == 1);
        signal(SIGUSR1, SIG_DFL);
    }

    TEST_CASE("a function may cancel itself and add watches; a cancelled watch never runs") {
        ChannelMap map;
        int first = 0, added = 0, cancelled = 0;
        SignalWatch self_cancelling, other, later;
        self_cancelling = map.on_signal(SIGUSR1, [&](int) {
            ++first;
            self_cancelling.cancel();
            other.cancel();  // pending in this same dispatch: must not run
            later = map.on_signal(SIGUSR1, [&](int) { ++added; });
        });
        other = map.on_signal(SIGUSR1, [&](int) { ++cancelled; });
        ::raise(SIGUSR1);
        REQUIRE(test::run_until(map, [&] { return first == 1; }));
        test::run_passes(map, 2);
        CHECK(cancelled == 0);
        CHECK(added == 0);  // added during the dispatch: from the next delivery on
        ::raise(SIGUSR1);
        REQUIRE(test::run_until(map, [&] { return added == 1; }));
        CHECK(first == 1);
        later.cancel();
        CHECK(disposition_is(SIGUSR1, SIG_DFL));
    }

    TEST_CASE("a map destroyed before its watch ends the watch and gives the signal back") {
        SignalWatch survivor;
        {
            ChannelMap map;
            survivor = map.on_signal(SIGUSR2, [](int) { FAIL("never runs"); });
            CHECK_FALSE(disposition_is(SIGUSR2, SIG_DFL));
        }
        CHECK(disposition_is(SIGUSR2, SIG_DFL));
        survivor.cancel();  // does nothing, safely
        CHECK_FALSE(survivor);
    }

    TEST_CASE("signals that cannot be watched are refused") {
        ChannelMap map;
        for (int signo : {0, -1, 65, SIGKILL, SIGSTOP}) {
            CAPTURE(signo);
            CHECK_THROWS_AS((void)map.on_signal(signo, [](int) {}), std::invalid_argument);
        }
    }

    TEST_CASE("a function's exception is logged by default and leaves loop() under propagate") {
        for (auto policy :
             {asyncore::ErrorPolicy::log_and_close, asyncore::ErrorPolicy::propagate}) {
            ChannelMap map;
            map.set_error_policy(policy);
            auto watch = map.on_signal(SIGUSR1, [](int) { throw std::runtime_error("in signal"); });
            ::raise(SIGUSR1);
            test::StderrCapture err;
            if (policy == asyncore::ErrorPolicy::propagate) {
                CHECK_THROWS_WITH_AS(test::run_passes(map, 2), "in signal", std::runtime_error);
            } else {
                test::run_passes(map, 2);
                CHECK(err.text().find("signal handler (std::runtime_error: in signal)") !=
                      std::string::npos);
            }
        }
    }

    TEST_CASE("wait_signal resumes a task with the first signal, and times out without one") {
        ChannelMap map;
        int got = 0;
        bool timed_out = false;
        auto body = [&]() -> Task<void> {
            got = co_await asyncore::wait_signal({SIGUSR1, SIGUSR2}, 5s);
            try {
                co_await asyncore::wait_signal({SIGUSR1}, 30ms);
            } catch (const asyncore::TimeoutError&) {
                timed_out = true;
            }
        };
        auto t = asyncore::spawn(body(), map);
        test::run_passes(map, 2);  // the task waits
        ::raise(SIGUSR2);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(t.state()->error() == nullptr);
        CHECK(got == SIGUSR2);
        CHECK(timed_out);
        CHECK(disposition_is(SIGUSR1, SIG_DFL));  // no longer watched
        CHECK(disposition_is(SIGUSR2, SIG_DFL));
    }

    TEST_CASE("a task terminated in wait_signal stops watching") {
        ChannelMap map;
        auto body = []() -> Task<void> { co_await asyncore::wait_signal({SIGUSR1}); };
        auto t = asyncore::spawn(body(), map);
        test::run_passes(map, 2);
        CHECK_FALSE(disposition_is(SIGUSR1, SIG_DFL));
        t.terminate();
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(test::is_cancelled(t.state()->error()));
        CHECK(disposition_is(SIGUSR1, SIG_DFL));
    }

    TEST_CASE("the free on_signal() watches on the thread's default map") {
        int calls = 0;
        auto watch = asyncore::on_signal(SIGUSR1, [&](int) { ++calls; });
        ::raise(SIGUSR1);
        REQUIRE(test::run_until(asyncore::socket_map(), [&] { return calls == 1; }));
    }
}
