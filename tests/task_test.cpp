#include <asyncore/task.hpp>

#include <asyncore/async_file.hpp>
#include <asyncore/async_socket.hpp>
#include <asyncore/sync.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/fixtures.hpp"
#include "support/task_fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::Cancelled;
using asyncore::ChannelMap;
using asyncore::Task;
using asyncore::TaskRef;
using asyncore::TimeoutError;

namespace {

Task<int> value_after(int v, asyncore::Duration d) {
    co_await asyncore::sleep(d);
    co_return v;
}

Task<int> thrower() {
    co_await asyncore::sleep(0s);
    throw std::runtime_error("boom");
}

Task<int> inline_chain(int n) {
    if (n == 0) co_return 0;
    co_return 1 + co_await inline_chain(n - 1);
}

Task<int> spawned_chain(int n, ChannelMap& map) {
    if (n == 0) {
        co_await asyncore::sleep(0s);
        co_return 0;
    }
    Task<int> next = asyncore::spawn(spawned_chain(n - 1, map), map);
    co_return 1 + co_await next;
}

Task<void> hold_probe_forever() {
    test::LifetimeProbe probe;
    co_await asyncore::suspend();
}

// -- A finished task releases what it holds --------------------------------

Task<void> send_then_end(asyncore::AsyncSocket conn) {
    co_await conn.sendall("bye");
}

Task<void> hold_socket_forever(asyncore::AsyncSocket conn) {
    (void)conn;
    co_await asyncore::suspend();
}

Task<int> probe_then_value(test::LifetimeProbe, int v) {
    co_await asyncore::sleep(0s);
    co_return v;
}

Task<void> write_then_end(asyncore::AsyncFile out) {
    co_await out.write("x");
}

Task<void> hold_guard(asyncore::Guard<asyncore::Lock> held) {
    (void)held;
    co_await asyncore::sleep(0s);
}

// What the peer of `fd` can read right now, without waiting: the bytes, and
// whether the other end is closed (EOF after them).
struct PeerView {
    std::string data;
    bool eof = false;
};
PeerView peer_view(int fd) {
    PeerView v;
    char buf[256];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            v.data.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        v.eof = n == 0;
        return v;  // EOF, or EAGAIN: the other end is still open
    }
}

// Runs one pass at a time until `t` is done; false after `limit` passes.
bool run_until_done(ChannelMap& map, const TaskRef& t, int limit = 1000) {
    for (int i = 0; i < limit && !t.done(); ++i)
        map.run_pass(1s);
    return t.done();
}

// A parameter whose copy creates (and drops) a coroutine of its own: the
// frame being set up then cannot adopt the state allocated with it, and
// the promise falls back to a state of its own.
struct MakesACoroutine {
    MakesACoroutine() = default;
    MakesACoroutine(const MakesACoroutine&) { (void)value_after(1, 0s); }
};

Task<int> with_fallback_state(MakesACoroutine, test::LifetimeProbe, int v) {
    co_await asyncore::sleep(0s);
    co_return v;
}

}  // namespace

TEST_SUITE("task") {
    TEST_CASE("a spawned task does not run until the loop runs") {
        ChannelMap map;
        bool ran = false;
        auto body = [&]() -> Task<void> {
            ran = true;
            co_return;
        };
        auto t = asyncore::spawn(body(), map);
        CHECK_FALSE(ran);
        CHECK(map.has_work());
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(ran);
    }

    TEST_CASE("co_await on a spawned task returns its value") {
        ChannelMap map;
        int got = 0;
        auto parent = [&]() -> Task<void> {
            auto child = asyncore::spawn(value_after(42, 10ms), map);
            got = co_await child;
        };
        auto t = asyncore::spawn(parent(), map);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(got == 42);
    }

    TEST_CASE("co_await rethrows the exception the task ended with") {
        ChannelMap map;
        std::string caught;
        auto parent = [&]() -> Task<void> {
            try {
                co_await asyncore::spawn(thrower(), map);
            } catch (const std::runtime_error& e) {
                caught = e.what();
            }
        };
        auto t = asyncore::spawn(parent(), map);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(caught == "boom");
    }

    TEST_CASE("awaiting an unspawned coroutine runs it inline in the awaiting task") {
        ChannelMap map;
        int got = 0;
        auto parent = [&]() -> Task<void> { got = co_await value_after(7, 1ms); };
        auto t = asyncore::spawn(parent(), map);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(got == 7);
    }

    TEST_CASE("a chain of 100000 inline awaits does not overflow the stack") {
        ChannelMap map;
        int got = 0;
        auto parent = [&]() -> Task<void> { got = co_await inline_chain(100000); };
        auto t = asyncore::spawn(parent(), map);
        REQUIRE(test::run_until(
            map, [&] { return t.done(); }, 60s));
        CHECK(got == 100000);
    }

    TEST_CASE("a chain of 100000 spawned tasks each awaiting the next completes") {
        ChannelMap map;
        auto t = asyncore::spawn(spawned_chain(100000, map), map);
        REQUIRE(test::run_until(
            map, [&] { return t.done(); }, 60s));
        CHECK(t.state()->error() == nullptr);
        CHECK(asyncore::detail::core_of(map).live_tasks == 0);
    }

    TEST_CASE("loop() returns once every non-daemon task has finished") {
        ChannelMap map;
        auto daemon = asyncore::spawn(hold_probe_forever(), map);
        daemon.set_daemon();
        auto worker = asyncore::spawn(value_after(1, 20ms), map);
        auto start = std::chrono::steady_clock::now();
        asyncore::loop(1s, map);
        CHECK(worker.done());
        CHECK_FALSE(daemon.done());
        CHECK(std::chrono::steady_clock::now() - start < 5s);
    }

    TEST_CASE("sleep lasts at least its duration") {
        ChannelMap map;
        auto start = std::chrono::steady_clock::now();
        auto t = asyncore::spawn(value_after(1, 50ms), map);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(std::chrono::steady_clock::now() - start >= 50ms);
    }

    TEST_CASE("messages arrive in the order sent") {
        ChannelMap map;
        std::vector<int> got;
        auto body = [&]() -> Task<void> {
            for (int i = 0; i < 5; ++i)
                got.push_back(co_await asyncore::receive<int>());
        };
        auto t = asyncore::spawn(body(), map);
        t.send(0);
        t.send(1);
        test::run_passes(map, 2);
        t.send(2);
        t.send(3);
        t.send(4);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(got == std::vector<int>{0, 1, 2, 3, 4});
        CHECK_FALSE(t.send(5));
    }

    TEST_CASE("receive throws TimeoutError when no message arrives in time") {
        ChannelMap map;
        bool timed_out = false;
        auto body = [&]() -> Task<void> {
            try {
                co_await asyncore::receive<std::string>(20ms);
            } catch (const TimeoutError& e) {
                timed_out = e.code() == asyncore::errc::timed_out;
            }
        };
        auto t = asyncore::spawn(body(), map);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(timed_out);
        CHECK_FALSE(map.has_work());
    }

    TEST_CASE("a mailbox refuses a message of another type") {
        ChannelMap map;
        auto body = []() -> Task<void> { co_await asyncore::receive<int>(); };
        auto t = asyncore::spawn(body(), map);
        test::run_passes(map, 1);
        CHECK_THROWS_AS(t.send(std::string("x")), std::logic_error);
        CHECK(t.send(1));
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
    }

    TEST_CASE("terminate throws Cancelled at the suspension point and RAII runs") {
        ChannelMap map;
        test::LifetimeProbe::reset();
        auto t = asyncore::spawn(hold_probe_forever(), map);
        test::run_passes(map, 1);
        CHECK(test::LifetimeProbe::alive == 1);
        CHECK(t.terminate());
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(test::LifetimeProbe::alive == 0);
        CHECK(test::LifetimeProbe::destroyed == 1);
        CHECK(test::is_cancelled(t.state()->error()));
        CHECK_FALSE(t.terminate());
    }

    TEST_CASE("a task terminated before it started never runs its body") {
        ChannelMap map;
        bool ran = false;
        auto body = [&]() -> Task<void> {
            ran = true;
            co_return;
        };
        auto t = asyncore::spawn(body(), map);
        t.terminate();
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK_FALSE(ran);
        CHECK(test::is_cancelled(t.state()->error()));
    }

    TEST_CASE("terminate during sleep leaves no timer behind") {
        ChannelMap map;
        auto t = asyncore::spawn(value_after(1, 1h), map);
        test::run_passes(map, 1);
        t.terminate();
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK_FALSE(map.has_work());
    }

    TEST_CASE("terminate during receive loses no message") {
        ChannelMap map;
        std::vector<int> got;
        auto body = [&]() -> Task<void> {
            try {
                got.push_back(co_await asyncore::receive<int>());
            } catch (const Cancelled&) {
                got.push_back(-1);
            }
            got.push_back(co_await asyncore::receive<int>(1s));
        };
        auto t = asyncore::spawn(body(), map);
        test::run_passes(map, 1);
        t.terminate();
        t.send(9);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(got == std::vector<int>{-1, 9});
    }

    TEST_CASE("a terminated task that awaits a coroutine inline is cancelled inside it") {
        ChannelMap map;
        test::LifetimeProbe::reset();
        auto outer = [&]() -> Task<void> {
            test::LifetimeProbe probe;
            co_await hold_probe_forever();
        };
        auto t = asyncore::spawn(outer(), map);
        test::run_passes(map, 1);
        CHECK(test::LifetimeProbe::alive == 2);
        t.terminate();
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(test::LifetimeProbe::alive == 0);
    }

    TEST_CASE("suspend waits for resume, and times out without one") {
        ChannelMap map;
        int stage = 0;
        auto body = [&]() -> Task<void> {
            co_await asyncore::suspend();
            stage = 1;
            try {
                co_await asyncore::suspend(20ms);
            } catch (const TimeoutError&) {
                stage = 2;
            }
        };
        auto t = asyncore::spawn(body(), map);
        test::run_passes(map, 2);
        CHECK(stage == 0);
        CHECK(t.resume());
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(stage == 2);
        CHECK_FALSE(t.resume());
    }

    TEST_CASE("a monitor is told how the task ended, exception included") {
        ChannelMap map;
        std::string seen;
        auto t = asyncore::spawn(thrower(), map);
        t.monitor([&](const TaskRef& who, std::exception_ptr e) {
            CHECK(who == t);
            try {
                std::rethrow_exception(e);
            } catch (const std::runtime_error& ex) {
                seen = ex.what();
            }
        });
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(seen == "boom");
    }

    TEST_CASE("finished() yields the exception without rethrowing it") {
        ChannelMap map;
        bool got_error = false;
        auto watcher = [&]() -> Task<void> {
            auto e = co_await asyncore::spawn(thrower(), map).finished(1s);
            got_error = e != nullptr;
        };
        auto t = asyncore::spawn(watcher(), map);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(got_error);
        CHECK(t.state()->error() == nullptr);
    }

    TEST_CASE("join with a timeout throws TimeoutError and the task keeps running") {
        ChannelMap map;
        bool timed_out = false;
        auto slow = asyncore::spawn(value_after(3, 100ms), map);
        auto waiter = [&]() -> Task<void> {
            try {
                co_await slow.join(10ms);
            } catch (const TimeoutError&) {
                timed_out = true;
            }
        };
        auto t = asyncore::spawn(waiter(), map);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(timed_out);
        CHECK_FALSE(slow.done());
        REQUIRE(test::run_until(map, [&] { return slow.done(); }));
    }

    TEST_CASE("an exception nobody awaits is reported on stderr") {
        test::StderrCapture capture;
        {
            ChannelMap map;
            asyncore::spawn(thrower(), map);
            asyncore::loop(1s, map);
        }
        CHECK(capture.text().find("boom") != std::string::npos);
    }

    TEST_CASE("an awaited exception is not reported") {
        test::StderrCapture capture;
        {
            ChannelMap map;
            auto parent = [&]() -> Task<void> {
                try {
                    co_await asyncore::spawn(thrower(), map);
                } catch (const std::runtime_error&) {
                }
            };
            asyncore::spawn(parent(), map);
            asyncore::loop(1s, map);
        }
        CHECK(capture.text().find("boom") == std::string::npos);
    }

    TEST_CASE("destroying the map cancels running tasks and runs their destructors") {
        test::LifetimeProbe::reset();
        TaskRef kept;
        {
            ChannelMap map;
            kept = asyncore::spawn(hold_probe_forever(), map);
            asyncore::spawn(hold_probe_forever(), map);
            test::run_passes(map, 1);
            CHECK(test::LifetimeProbe::alive == 2);
        }
        CHECK(test::LifetimeProbe::alive == 0);
        CHECK(kept.done());
    }

    TEST_CASE("ExitNow thrown by a task leaves loop()") {
        ChannelMap map;
        auto body = []() -> Task<void> {
            co_await asyncore::sleep(0s);
            throw asyncore::ExitNow();
        };
        asyncore::spawn(body(), map);
        asyncore::spawn(hold_probe_forever(), map);
        CHECK_THROWS_AS(asyncore::loop(1s, map), asyncore::ExitNow);
    }

    TEST_CASE("this_task refers to the running task") {
        ChannelMap map;
        TaskRef seen;
        auto body = [&]() -> Task<void> { seen = co_await asyncore::this_task(); };
        auto t = asyncore::spawn(body(), map);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(seen == t);
    }

    TEST_CASE("tasks yielding to each other do not starve the pass") {
        ChannelMap map;
        bool stop = false;
        auto spinner = [&]() -> Task<void> {
            while (!stop)
                co_await asyncore::sleep(0s);
        };
        auto t = asyncore::spawn(spinner(), map);
        bool timer_ran = false;
        map.call_later(10ms, [&] { timer_ran = true; });
        REQUIRE(test::run_until(map, [&] { return timer_ran; }));
        stop = true;
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
    }

    TEST_CASE(
        "terminating a task in join, finished or suspend unwinds it, the joined task runs on") {
        ChannelMap map;
        test::LifetimeProbe::reset();
        auto slow = asyncore::spawn(value_after(5, 30ms), map);
        auto joiner = [&]() -> Task<void> {
            test::LifetimeProbe probe;
            co_await slow;
        };
        auto watcher = [&]() -> Task<void> {
            test::LifetimeProbe probe;
            co_await slow.finished(5s);
        };
        auto sleeper = [&]() -> Task<void> {
            test::LifetimeProbe probe;
            co_await asyncore::suspend(5s);
        };
        std::vector<TaskRef> ts{asyncore::spawn(joiner(), map), asyncore::spawn(watcher(), map),
                                asyncore::spawn(sleeper(), map)};
        test::run_passes(map, 2);
        CHECK(test::LifetimeProbe::alive == 3);
        for (auto& t : ts)
            t.terminate();
        REQUIRE(test::run_until(map, [&] { return ts[0].done() && ts[1].done() && ts[2].done(); }));
        CHECK(test::LifetimeProbe::alive == 0);
        for (auto& t : ts)
            CHECK(test::is_cancelled(t.state()->error()));
        CHECK_FALSE(slow.done());
        REQUIRE(test::run_until(map, [&] { return slow.done(); }));
        CHECK_FALSE(map.has_work());
    }
    TEST_CASE("a finished task's parameters are destroyed in the pass it ends, handles or not") {
        ChannelMap map;
        test::LifetimeProbe::reset();
        Task<int> t = asyncore::spawn(probe_then_value(test::LifetimeProbe{}, 42), map);
        CHECK(test::LifetimeProbe::alive == 1);  // the frame's copy
        REQUIRE(run_until_done(map, t));
        CHECK(test::LifetimeProbe::alive == 0);
        CHECK(test::LifetimeProbe::destroyed == 2);
        // The result stays readable through the handle.
        int got = 0;
        auto joiner = [&]() -> Task<void> { got = co_await t; };
        REQUIRE(run_until_done(map, asyncore::spawn(joiner(), map)));
        CHECK(got == 42);
        CHECK(t.state()->error() == nullptr);
    }

    TEST_CASE("a task owning an AsyncSocket parameter closes it when it ends: the peer sees EOF") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        TaskRef t = asyncore::spawn(send_then_end(asyncore::AsyncSocket(std::move(a))), map);
        REQUIRE(run_until_done(map, t));
        // No further pass: the pass that ended the task closed its socket.
        PeerView v = peer_view(b.fd());
        CHECK(v.data == "bye");
        CHECK(v.eof);
        CHECK(t.state()->error() == nullptr);
    }

    TEST_CASE("a terminated task releases its AsyncSocket parameter while its handle is held") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        TaskRef t = asyncore::spawn(hold_socket_forever(asyncore::AsyncSocket(std::move(a))), map);
        test::run_passes(map, 2);
        CHECK_FALSE(peer_view(b.fd()).eof);
        CHECK(t.terminate());
        REQUIRE(run_until_done(map, t));
        CHECK(peer_view(b.fd()).eof);
        CHECK(test::is_cancelled(t.state()->error()));
        CHECK_FALSE(t.terminate());
        CHECK_FALSE(t.send(1));
        CHECK_FALSE(t.resume());
        t.set_daemon();  // nothing to do for a finished task
        bool told = false;
        t.monitor([&](const TaskRef&, std::exception_ptr e) { told = test::is_cancelled(e); });
        CHECK(told);
    }

    TEST_CASE("a task owning an AsyncFile parameter closes it when it ends") {
        ChannelMap map;
        int fds[2];
        REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
        TaskRef t = asyncore::spawn(write_then_end(asyncore::AsyncFile(fds[1])), map);
        REQUIRE(run_until_done(map, t));
        PeerView v = peer_view(fds[0]);
        CHECK(v.data == "x");
        CHECK(v.eof);
        ::close(fds[0]);
    }

    TEST_CASE("a lock guard handed to a task is released when the task ends") {
        ChannelMap map;
        asyncore::Lock lock;
        TaskRef holder;
        bool waiter_got_it = false;
        auto owner = [&]() -> Task<void> {
            auto held = co_await lock.scoped();
            holder = asyncore::spawn(hold_guard(std::move(held)), map);
        };
        auto waiter = [&]() -> Task<void> {
            auto held = co_await lock.scoped(5s);
            waiter_got_it = true;
        };
        REQUIRE(run_until_done(map, asyncore::spawn(owner(), map)));
        CHECK(lock.locked());
        TaskRef w = asyncore::spawn(waiter(), map);
        REQUIRE(run_until_done(map, holder));
        REQUIRE(run_until_done(map, w));
        CHECK(waiter_got_it);
        CHECK_FALSE(lock.locked());
    }

    TEST_CASE("a coroutine awaited inline is destroyed before its caller resumes") {
        ChannelMap map;
        test::LifetimeProbe::reset();
        int alive_after = -1;
        int first = 0;
        int second = 0;
        auto parent = [&]() -> Task<void> {
            Task<int> child = probe_then_value(test::LifetimeProbe{}, 7);
            first = co_await child;
            alive_after = test::LifetimeProbe::alive;
            second = co_await child;  // a finished task's value is read again
        };
        REQUIRE(run_until_done(map, asyncore::spawn(parent(), map)));
        CHECK(alive_after == 0);
        CHECK(first == 7);
        CHECK(second == 7);
    }

    TEST_CASE("a task whose state could not share its frame's allocation keeps the same rules") {
        ChannelMap map;
        test::LifetimeProbe::reset();
        MakesACoroutine maker;
        Task<int> t = asyncore::spawn(with_fallback_state(maker, test::LifetimeProbe{}, 5), map);
        REQUIRE(run_until_done(map, t));
        CHECK(test::LifetimeProbe::alive == 0);
        int got = 0;
        auto joiner = [&]() -> Task<void> { got = co_await t; };
        REQUIRE(run_until_done(map, asyncore::spawn(joiner(), map)));
        CHECK(got == 5);
    }

    TEST_CASE("a failed task's exception is reported when its last handle goes, not before") {
        ChannelMap map;
        test::StderrCapture err;
        std::optional<Task<int>> t = asyncore::spawn(thrower(), map);
        REQUIRE(run_until_done(map, *t));
        CHECK(err.text().empty());
        t.reset();
        CHECK(err.text().find("exception in a task nobody awaited (std::runtime_error: boom)") !=
              std::string::npos);
    }
}
