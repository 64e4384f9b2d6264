#include <asyncore/async_file.hpp>

#include <doctest/doctest.h>

#include <unistd.h>

#include <fcntl.h>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "support/fixtures.hpp"
#include "support/task_fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::AsyncFile;
using asyncore::AsyncPipe;
using asyncore::ChannelMap;
using asyncore::Task;

namespace {

std::pair<AsyncFile, AsyncFile> async_pipe() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    return {AsyncFile(fds[0]), AsyncFile(fds[1])};
}

enum class Op { read, readline, write };
enum class Drop { destroy, replace, release };

// A pipe with a task about to block on one end: the read end of an empty
// pipe, or the write end of a full one. The other end stays open.
struct BlockedEnd {
    explicit BlockedEnd(Op op) : op(op) {
        auto [r, w] = async_pipe();
        bool writes = op == Op::write;
        waited = std::make_unique<AsyncFile>(std::move(writes ? w : r));
        other = std::move(writes ? r : w);
        if (writes) {
            std::string chunk(65536, 'x');
            while (::write(waited->fd(), chunk.data(), chunk.size()) > 0) {
            }
        }
    }
    Op op;
    std::unique_ptr<AsyncFile> waited;
    AsyncFile other;
};

// Runs `op` on `f` and records the error it ends with.
Task<void> wait_on(AsyncFile& f, Op op, std::error_code& code) {
    try {
        if (op == Op::read) co_await f.read(10);
        if (op == Op::readline) co_await f.readline();
        if (op == Op::write) co_await f.write("more");
    } catch (const std::system_error& e) {
        code = e.code();
    }
}

// Destroys, replaces or releases `owned` (a released descriptor is closed
// once it has been checked to be still open).
void drop(std::unique_ptr<AsyncFile>& owned, Drop how) {
    if (how == Drop::destroy) owned.reset();
    if (how == Drop::replace) *owned = async_pipe().first;
    if (how == Drop::release) {
        int fd = owned->release();
        CHECK(::fcntl(fd, F_GETFD) >= 0);
        ::close(fd);
    }
}

// Runs `drop_it` in a task of its own, as another part of the program would,
// and runs the map until that task and `waiter` are both done.
template <class Waiter, class Fn>
void drop_from_task(ChannelMap& map, const Waiter& waiter, Fn drop_it) {
    auto dropper = [&]() -> Task<void> {
        drop_it();
        co_return;
    };
    auto d = asyncore::spawn(dropper(), map);
    REQUIRE(test::run_until(
        map, [&] { return waiter.done() && d.done(); }, 2s));
}

template <class F>
void run_task(ChannelMap& map, F body) {
    auto t = asyncore::spawn(body(), map);
    REQUIRE(test::run_until(map, [&] { return t.done(); }));
    if (auto e = t.state()->take_error()) std::rethrow_exception(e);
}

}  // namespace

// Stores 3 * i in got[i], computed on the pool from work of its own.
Task<void> triple_in_thread(std::vector<int>& got, int i) {
    got[static_cast<std::size_t>(i)] = co_await asyncore::run_in_thread([i] {
        std::string s(static_cast<std::size_t>(i), 'x');
        return static_cast<int>(s.size()) * 3;
    });
}

TEST_SUITE("async_file") {
    TEST_CASE("read returns what is available, or everything up to EOF with full") {
        ChannelMap map;
        auto [r, w] = async_pipe();
        std::string some, all;
        auto reader = [&]() -> Task<void> {
            some = co_await r.read(100);
            all = co_await r.read(100, true);
        };
        auto writer = [&]() -> Task<void> {
            co_await w.write("abc");
            co_await asyncore::sleep(5ms);
            co_await w.write("def");
            co_await asyncore::sleep(5ms);
            co_await w.write("ghi");
            w.close();
        };
        auto rt = asyncore::spawn(reader(), map);
        run_task(map, writer);
        REQUIRE(test::run_until(map, [&] { return rt.done(); }));
        CHECK(some == "abc");
        CHECK(all == "defghi");
    }

    TEST_CASE("readline splits lines across reads and enforces its limit") {
        ChannelMap map;
        auto [r, w] = async_pipe();
        std::vector<std::string> lines;
        std::error_code code;
        test::write_all(w.fd(), "one\ntw");
        auto reader = [&]() -> Task<void> {
            lines.push_back(co_await r.readline());
            lines.push_back(co_await r.readline());
            lines.push_back(co_await r.readline());
            try {
                co_await r.readline(8);
            } catch (const std::system_error& e) {
                code = e.code();
            }
        };
        auto t = asyncore::spawn(reader(), map);
        test::run_passes(map, 2);
        test::write_all(w.fd(), "o\nthree\n" + std::string(20, 'x') + "\n");
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(lines == std::vector<std::string>{"one\n", "two\n", "three\n"});
        CHECK(code == asyncore::errc::limit_exceeded);
    }

    TEST_CASE("a read times out, and a cancelled one leaves nothing registered") {
        ChannelMap map;
        auto [r, w] = async_pipe();
        r.settimeout(10ms);
        bool timed_out = false;
        run_task(map, [&]() -> Task<void> {
            try {
                co_await r.read(10);
            } catch (const asyncore::TimeoutError&) {
                timed_out = true;
            }
        });
        CHECK(timed_out);
        r.settimeout(std::nullopt);
        auto blocked = [&]() -> Task<void> { co_await r.read(10); };
        auto t = asyncore::spawn(blocked(), map);
        test::run_passes(map, 2);
        t.terminate();
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(test::is_cancelled(t.state()->error()));
        CHECK_FALSE(map.has_work());
    }

    TEST_CASE("run_in_thread yields the result and rethrows the exception") {
        ChannelMap map;
        int value = 0;
        std::string error;
        auto loop_thread = std::this_thread::get_id();
        bool other_thread = false;
        run_task(map, [&]() -> Task<void> {
            std::string label = "computed";
            auto job = [&, label] {
                other_thread = std::this_thread::get_id() != loop_thread;
                return static_cast<int>(label.size());
            };
            value = co_await asyncore::run_in_thread(std::move(job));
            try {
                co_await asyncore::run_in_thread([] { throw std::runtime_error("in thread"); });
            } catch (const std::runtime_error& e) {
                error = e.what();
            }
        });
        CHECK(value == 8);
        CHECK(other_thread);
        CHECK(error == "in thread");
    }

    TEST_CASE("a hundred tasks in run_in_thread at once each get their own result") {
        ChannelMap map;
        constexpr int tasks = 100;
        std::vector<int> got(tasks, -1);
        std::vector<asyncore::TaskRef> running;
        for (int i = 0; i < tasks; ++i)
            running.push_back(asyncore::spawn(triple_in_thread(got, i), map));
        REQUIRE(test::run_until(map, [&] {
            for (auto& t : running)
                if (!t.done()) return false;
            return true;
        }));
        for (int i = 0; i < tasks; ++i)
            CHECK(got[static_cast<std::size_t>(i)] == i * 3);
    }

    TEST_CASE("run_in_thread times out while the loop keeps running") {
        ChannelMap map;
        auto release = std::make_shared<std::atomic<bool>>(false);
        bool timed_out = false;
        run_task(map, [&]() -> Task<void> {
            auto job = [release] {
                while (!*release)
                    std::this_thread::sleep_for(1ms);
            };
            try {
                co_await asyncore::run_in_thread(std::move(job), 20ms);
            } catch (const asyncore::TimeoutError&) {
                timed_out = true;
            }
        });
        *release = true;
        CHECK(timed_out);
    }

    TEST_CASE("communicate feeds sort and collects its sorted output") {
        ChannelMap map;
        AsyncPipe::Output out;
        run_task(map, [&]() -> Task<void> {
            AsyncPipe sort({"sort"});
            out = co_await sort.communicate("pear\napple\nfig\n", 10s);
        });
        CHECK(out.out == "apple\nfig\npear\n");
        CHECK(out.status == 0);
    }

    TEST_CASE("a pipeline sort | sha1sum hashes a large input") {
        ChannelMap map;
        std::string input;
        for (int i = 0; i < 200000; ++i)
            input += std::to_string((i * 7919) % 200000) + "\n";
        AsyncPipe::Output out;
        AsyncPipe::Output expected;
        run_task(map, [&]() -> Task<void> {
            AsyncPipe sort({"sort", "-n"});
            AsyncPipe sha({"sha1sum"}, sort.take_stdout());
            auto feeding = asyncore::spawn(
                [](AsyncFile& in, const std::string& data) -> Task<void> {
                    co_await in.write(data);
                    in.close();
                }(sort.stdin_file(), input),
                map);
            out = co_await sha.communicate();
            co_await feeding;
            CHECK(co_await sort.wait(5s) == 0);
            std::string sorted;
            for (int i = 0; i < 200000; ++i)
                sorted += std::to_string(i) + "\n";
            AsyncPipe check({"sha1sum"});
            expected = co_await check.communicate(sorted);
        });
        CHECK(out.status == 0);
        CHECK(out.out.size() > 40);
        CHECK(out.out == expected.out);
    }

    TEST_CASE("a program that cannot be started is an error, and exit codes come back") {
        ChannelMap map;
        CHECK_THROWS_AS(AsyncPipe({"/nonexistent/program"}), std::system_error);
        int status = -1;
        run_task(map, [&]() -> Task<void> {
            AsyncPipe p({"sh", "-c", "exit 3"});
            status = co_await p.wait(5s);
        });
        CHECK(status == 3);
    }

    TEST_CASE("terminating a task waiting in run_in_thread unwinds it at once") {
        ChannelMap map;
        auto release = std::make_shared<std::atomic<bool>>(false);
        test::LifetimeProbe::reset();
        auto body = [&]() -> Task<void> {
            test::LifetimeProbe probe;
            auto job = [release] {
                while (!*release)
                    std::this_thread::sleep_for(1ms);
                return 1;
            };
            co_await asyncore::run_in_thread(std::move(job));
        };
        auto t = asyncore::spawn(body(), map);
        test::run_passes(map, 2);
        t.terminate();
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(test::LifetimeProbe::alive == 0);
        CHECK(test::is_cancelled(t.state()->error()));
        *release = true;
    }

    TEST_CASE("terminating a task in AsyncPipe::wait leaves no registration or descriptor behind") {
        int before = test::open_fds();
        {
            ChannelMap map;
            AsyncPipe sleeper({"sleep", "5"});
            auto body = [&]() -> Task<void> { co_await sleeper.wait(); };
            auto t = asyncore::spawn(body(), map);
            test::run_passes(map, 2);
            t.terminate();
            REQUIRE(test::run_until(map, [&] { return t.done(); }));
            CHECK(test::is_cancelled(t.state()->error()));
            CHECK_FALSE(map.has_work());
        }
        CHECK(test::open_fds() == before);
    }

    TEST_CASE("a file destroyed, replaced or released under a waiting task wakes it with EBADF") {
        for (Op op : {Op::read, Op::readline, Op::write}) {
            for (Drop how : {Drop::destroy, Drop::replace, Drop::release}) {
                CAPTURE(static_cast<int>(op));
                CAPTURE(static_cast<int>(how));
                ChannelMap map;
                BlockedEnd end(op);
                std::error_code code;
                auto waiter = asyncore::spawn(wait_on(*end.waited, op, code), map);
                test::run_passes(map, 2);
                REQUIRE_FALSE(waiter.done());
                drop_from_task(map, waiter, [&] { drop(end.waited, how); });
                CHECK(code == std::errc::bad_file_descriptor);
                CHECK_FALSE(map.has_work());
            }
        }
    }

    TEST_CASE("a file destroyed after terminate() and before its waiting task unwinds is safe") {
        // terminate() queues the task's resumption: the file goes away
        // first, as when a supervisor stops a reader and drops its pipe.
        for (Op op : {Op::read, Op::readline, Op::write}) {
            for (Drop how : {Drop::destroy, Drop::replace}) {
                CAPTURE(static_cast<int>(op));
                CAPTURE(static_cast<int>(how));
                ChannelMap map;
                BlockedEnd end(op);
                std::error_code code;
                auto waiter = asyncore::spawn(wait_on(*end.waited, op, code), map);
                test::run_passes(map, 2);
                REQUIRE_FALSE(waiter.done());
                waiter.terminate();
                drop(end.waited, how);
                REQUIRE(test::run_until(
                    map, [&] { return waiter.done(); }, 2s));
                CHECK(code == asyncore::errc::cancelled);
            }
        }
    }

    TEST_CASE("destroying an AsyncPipe wakes a task reading its stdout with EBADF") {
        ChannelMap map;
        auto pipe = std::make_unique<AsyncPipe>(std::vector<std::string>{"sleep", "5"});
        std::error_code code;
        auto waiter = asyncore::spawn(wait_on(pipe->stdout_file(), Op::read, code), map);
        test::run_passes(map, 2);
        REQUIRE_FALSE(waiter.done());
        drop_from_task(map, waiter, [&] { pipe.reset(); });
        CHECK(code == std::errc::bad_file_descriptor);
    }

    TEST_CASE("destroying an AsyncPipe wakes a task waiting for its exit with EBADF") {
        ChannelMap map;
        auto pipe = std::make_unique<AsyncPipe>(std::vector<std::string>{"sleep", "5"});
        std::error_code code;
        auto wait_exit = [&](AsyncPipe& p) -> Task<void> {
            try {
                co_await p.wait();
            } catch (const std::system_error& e) {
                code = e.code();
            }
        };
        auto waiter = asyncore::spawn(wait_exit(*pipe), map);
        test::run_passes(map, 2);
        REQUIRE_FALSE(waiter.done());
        drop_from_task(map, waiter, [&] { pipe.reset(); });
        CHECK(code == std::errc::bad_file_descriptor);
    }
}
