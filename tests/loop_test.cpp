// loop(), ChannelMap, post(), close_all(), make<T>() ownership, the pass
// rules (timers, no spinning, closing in a handler, EMFILE on accept) and the
// performance contract (O(active) per pass).

#include <asyncore/loop.hpp>

#include <asyncore/dispatcher.hpp>
#include <asyncore/dispatcher_with_send.hpp>
#include <asyncore/error.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/core_fixtures.hpp"
#include "support/fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::ChannelMap;
using asyncore::Dispatcher;
using asyncore::Socket;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Reads whatever arrives and counts read events; never writes.
struct Reader : Dispatcher {
    Reader(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
    int reads = 0;
    std::string got;
    bool writable() override { return false; }
    void handle_read() override {
        ++reads;
        got += recv(4096);
    }
    void handle_close() override { close(); }
};

// A channel that is always writable: every pass has an event for it.
struct Busy : Dispatcher {
    Busy(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
    int writes = 0;
    bool readable() override { return false; }
    void handle_write() override { ++writes; }
};

// A channel that stays writable. As a guard against a pass that never
// returns, it leaves loop() with ExitNow after `cap` calls (the test then
// fails on the count instead of hanging); with `close_after` it closes
// itself after that many calls.
struct CappedBusy : Busy {
    using Busy::Busy;
    int cap = 1000;
    int close_after = 0;
    void handle_write() override {
        ++writes;
        if (writes == close_after) close();
        if (writes >= cap) throw asyncore::ExitNow();
    }
};

}  // namespace

TEST_SUITE("loop") {
    TEST_CASE("backend() names libevent's backend; EVENT_NOEPOLL rules epoll out") {
        ChannelMap map;
        std::string_view backend = map.backend();
        CHECK((backend == "epoll" || backend == "poll" || backend == "select" ||
               backend == "kqueue"));
        // ./dev test runs the release suite a second time with EVENT_NOEPOLL:
        // this is what makes that run a run on another backend.
        if (std::getenv("EVENT_NOEPOLL") != nullptr) {
            CHECK(backend != "epoll");
        } else {
#ifdef __linux__
            CHECK(backend == "epoll");
#endif
        }
    }

    TEST_CASE("loop() returns at once when the map has no channels and no timers") {
        ChannelMap map;
        CHECK_FALSE(map.has_work());
        auto t0 = std::chrono::steady_clock::now();
        asyncore::loop(30s, map);
        CHECK(seconds_since(t0) < 1.0);
        CHECK(map.stats().passes == 0);
    }

    TEST_CASE("loop() returns once the last channel closes") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Reader r(std::move(a), map);
        b.reset();  // EOF: the reader's handle_close closes it
        asyncore::loop(5s, map);
        CHECK(r.fileno() == -1);
        CHECK(map.empty());
    }

    TEST_CASE("loop() with a count runs exactly that many passes") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Busy busy(std::move(a), map);
        auto before = map.stats().passes;
        asyncore::loop(10ms, map, 5);
        CHECK(map.stats().passes - before == 5);
        CHECK(busy.writes == 5);
    }

    // asyncore.loop(timeout, count=n) and asyncore.poll(0) run each ready
    // handler once per pass and return after n passes, whatever the timeout:
    // a program that polls the loop from its own main loop relies on it.
    TEST_CASE("every timeout and count runs a channel that stays ready once per pass") {
        for (asyncore::Duration timeout :
             {asyncore::Duration(0s), asyncore::Duration(10ms), asyncore::Duration(30s)}) {
            for (std::size_t count : {1, 2, 5}) {
                CAPTURE(timeout.count());
                CAPTURE(count);
                ChannelMap map;
                auto [a, b] = test::connected_pair(AF_UNIX);
                CappedBusy busy(std::move(a), map);
                auto before = map.stats().passes;
                auto t0 = std::chrono::steady_clock::now();
                CHECK_NOTHROW(asyncore::loop(timeout, map, count));
                CHECK(busy.writes == static_cast<int>(count));
                CHECK(map.stats().passes - before == count);
                CHECK(seconds_since(t0) < 5.0);  // a ready channel never waits out the timeout
            }
        }
    }

    TEST_CASE("every timeout without a count runs passes until the channel closes itself") {
        for (asyncore::Duration timeout :
             {asyncore::Duration(0s), asyncore::Duration(10ms), asyncore::Duration(30s)}) {
            CAPTURE(timeout.count());
            ChannelMap map;
            auto [a, b] = test::connected_pair(AF_UNIX);
            CappedBusy busy(std::move(a), map);
            busy.close_after = 4;
            auto before = map.stats().passes;
            CHECK_NOTHROW(asyncore::loop(timeout, map));
            CHECK(busy.writes == 4);
            CHECK(map.stats().passes - before == 4);
            CHECK(map.empty());
        }
    }

    TEST_CASE("a zero-timeout pass runs each ready channel once and returns") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        auto [c, d] = test::connected_pair(AF_INET);
        CappedBusy one(std::move(a), map);
        CappedBusy two(std::move(c), map);
        map.run_pass(0s);
        CHECK(one.writes == 1);
        CHECK(two.writes == 1);
        map.run_pass(0s);
        CHECK(one.writes == 2);
        CHECK(two.writes == 2);
    }

    TEST_CASE("a zero-timeout pass with nothing ready returns without running anything") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Reader r(std::move(a), map);
        auto t0 = std::chrono::steady_clock::now();
        map.run_pass(0s);
        asyncore::loop(0s, map, 3);
        CHECK(r.reads == 0);
        CHECK(seconds_since(t0) < 1.0);
    }

    TEST_CASE("a pass never waits past the next timer deadline") {
        ChannelMap map;
        bool fired = false;
        map.call_later(50ms, [&] { fired = true; });
        auto t0 = std::chrono::steady_clock::now();
        asyncore::loop(30s, map);
        CHECK(fired);
        CHECK(seconds_since(t0) >= 0.045);
        CHECK(seconds_since(t0) < 5.0);
    }

    TEST_CASE("a pass does not spin while only timers are pending") {
        ChannelMap map;
        bool fired = false;
        map.call_later(200ms, [&] { fired = true; });
        auto before = map.stats().passes;
        asyncore::loop(30s, map);
        CHECK(fired);
        CHECK(map.stats().passes - before < 10);
    }

    TEST_CASE("a channel with nothing to do is not polled in a busy loop") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        Reader r(std::move(a), map);
        map.call_later(200ms, [&] { r.close(); });
        auto before = map.stats().passes;
        asyncore::loop(30s, map);
        CHECK(map.stats().passes - before < 10);
    }

    TEST_CASE("the timeout bounds one pass's wait") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Reader r(std::move(a), map);
        auto t0 = std::chrono::steady_clock::now();
        asyncore::loop(50ms, map, 2);
        CHECK(seconds_since(t0) >= 0.09);
        CHECK(seconds_since(t0) < 5.0);
    }

    TEST_CASE("post() from another thread wakes a waiting loop and runs on the loop thread") {
        ChannelMap map;
        auto loop_thread = std::this_thread::get_id();
        std::thread::id ran_on;
        bool ran = false;  // written and read on the loop thread only
        std::thread other([&] {
            // Give the loop time to start waiting, so the post must wake it.
            std::this_thread::sleep_for(100ms);
            map.post([&] {
                ran_on = std::this_thread::get_id();
                ran = true;
            });
        });
        auto t0 = std::chrono::steady_clock::now();
        // The posted function runs inside a pass: the pass that runs it ends
        // the loop. (Waiting on a flag the posting thread sets after post()
        // raced with that pass and could start a 30 s wait nothing ends.)
        while (!ran && seconds_since(t0) < 10)
            map.run_pass(30s);
        other.join();
        CHECK(ran_on == loop_thread);
        CHECK(seconds_since(t0) < 10.0);
    }

    TEST_CASE("a posted function keeps loop() running until it has run") {
        ChannelMap map;
        int runs = 0;
        map.post([&] { ++runs; });
        CHECK(map.has_work());
        CHECK(runs == 0);
        asyncore::loop(1s, map);
        CHECK(runs == 1);
    }

    TEST_CASE("many posts from many threads all run exactly once") {
        ChannelMap map;
        constexpr int threads = 4;
        constexpr int per_thread = 1000;
        int runs = 0;
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
            pool.emplace_back([&] {
                for (int i = 0; i < per_thread; ++i)
                    map.post([&] { ++runs; });
            });
        }
        REQUIRE(test::run_until(map, [&] { return runs == threads * per_thread; }));
        for (auto& t : pool)
            t.join();
        asyncore::loop(1s, map);
        CHECK(runs == threads * per_thread);
    }

    TEST_CASE("posts from eight threads reach a busy loop once each, in each thread's order") {
        ChannelMap map;
        constexpr int threads = 8;
        constexpr int per_thread = 2000;
        // The loop is busy with a channel that is always writable while the
        // threads post: their posts race with every part of a pass.
        auto [a, b] = test::connected_pair(AF_UNIX);
        Busy busy(std::move(a), map);
        std::vector<int> next(threads, 0);  // touched by the loop thread only
        int out_of_order = 0;
        int runs = 0;
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
            pool.emplace_back([&, t] {
                for (int i = 0; i < per_thread; ++i) {
                    map.post([&, t, i] {
                        if (next[t]++ != i) ++out_of_order;
                        ++runs;
                    });
                }
            });
        }
        REQUIRE(test::run_until(map, [&] { return runs == threads * per_thread; }));
        for (auto& t : pool)
            t.join();
        busy.close();
        asyncore::loop(1s, map);
        CHECK(runs == threads * per_thread);
        CHECK(out_of_order == 0);
        CHECK(busy.writes > 0);
    }

    TEST_CASE("ExitNow from a posted function leaves loop()") {
        ChannelMap map;
        map.post([] { throw asyncore::ExitNow(); });
        CHECK_THROWS_AS(asyncore::loop(1s, map), asyncore::ExitNow);
    }

    TEST_CASE("a callback's exception is logged by default and leaves loop() under propagate") {
        for (auto policy :
             {asyncore::ErrorPolicy::log_and_close, asyncore::ErrorPolicy::propagate}) {
            ChannelMap map;
            map.set_error_policy(policy);
            int later = 0;
            map.call_later(0s, [] { throw std::runtime_error("timer"); });
            map.call_later(10ms, [&] { ++later; });
            test::CaptureFd err(2);
            if (policy == asyncore::ErrorPolicy::propagate) {
                CHECK_THROWS_WITH_AS(asyncore::loop(1s, map), "timer", std::runtime_error);
                CHECK(later == 0);
                asyncore::loop(1s, map);  // the map stays usable
                CHECK(later == 1);
                CHECK(err.text().empty());
            } else {
                CHECK_NOTHROW(asyncore::loop(1s, map));
                CHECK(later == 1);
                CHECK(err.text().find("call_later callback (std::runtime_error: timer)") !=
                      std::string::npos);
            }
            map.post([] { throw std::runtime_error("posted"); });
            if (policy == asyncore::ErrorPolicy::propagate) {
                CHECK_THROWS_WITH_AS(asyncore::loop(1s, map), "posted", std::runtime_error);
            } else {
                CHECK_NOTHROW(asyncore::loop(1s, map));
            }
            CHECK_FALSE(map.has_work());
        }
    }

    TEST_CASE("ExitNow from a handler leaves loop() and the map stays usable") {
        ChannelMap map;
        struct Quitter : Reader {
            using Reader::Reader;
            void handle_read() override { throw asyncore::ExitNow(); }
        };
        auto [a, b] = test::connected_pair(AF_UNIX);
        Quitter q(std::move(a), map);
        test::write_all(b.fd(), "x");
        CHECK_THROWS_AS(asyncore::loop(5s, map), asyncore::ExitNow);
        CHECK(q.fileno() >= 0);
        CHECK(map.find(q.fileno()) == &q);
        q.close();
        asyncore::loop(1s, map);
    }

    TEST_CASE("close_all() closes every channel of the given map and empties it") {
        ChannelMap map;
        std::vector<std::unique_ptr<Reader>> readers;
        std::vector<Socket> peers;
        for (int i = 0; i < 10; ++i) {
            auto [a, b] = test::connected_pair(AF_UNIX);
            readers.push_back(std::make_unique<Reader>(std::move(a), map));
            peers.push_back(std::move(b));
        }
        CHECK(map.size() == 10);
        asyncore::close_all(map);
        CHECK(map.empty());
        for (auto& r : readers)
            CHECK(r->fileno() == -1);
        for (auto& p : peers)
            CHECK(test::read_to_eof(p.fd()).empty());  // the peer sees EOF: really closed
    }

    TEST_CASE("close_all_when_done: listeners now, the rest once flushed, stragglers after grace") {
        ChannelMap map;
        struct Listening : Dispatcher {
            explicit Listening(ChannelMap& m) : Dispatcher(m) {
                create_socket(AF_INET, SOCK_STREAM);
                bind(test::loopback(AF_INET));
                listen(5);
            }
        };
        struct Sender : asyncore::DispatcherWithSend {
            using DispatcherWithSend::DispatcherWithSend;
            int closes = 0;
            bool readable() override { return false; }
            void handle_close() override {
                ++closes;
                close();
            }
        };
        Listening listener(map);
        auto [a, b] = test::connected_pair(AF_UNIX);  // b reads everything
        auto [c, d] = test::connected_pair(AF_UNIX);  // d never reads
        Sender reader_side(std::move(a), map);
        Sender stuck_side(std::move(c), map);
        const std::string big(3 << 20, 'q');
        reader_side.send(big);
        stuck_side.send(big);
        auto t0 = std::chrono::steady_clock::now();
        asyncore::close_all_when_done(map, 1s);
        CHECK(listener.fileno() == -1);
        CHECK(reader_side.fileno() >= 0);
        std::string got;
        int fd = b.fd();
        bool eof = false;
        while (!eof && map.has_work() && seconds_since(t0) < 10) {
            map.run_pass(20ms);
            char buf[65536];
            ssize_t n;
            while ((n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
                got.append(buf, static_cast<std::size_t>(n));
            eof = n == 0;
        }
        CHECK(eof);
        // The grace period closes whatever is still flushing, the reader too
        // if the machine is loaded enough to take that long for 3 MiB.
        if (seconds_since(t0) < 0.99) {
            CHECK(got == big);
            CHECK(reader_side.closes == 1);
        }
        asyncore::loop(5s, map);  // ends when the grace period closes the stuck one
        CHECK(stuck_side.fileno() == -1);
        // libevent times with CLOCK_MONOTONIC_COARSE (a few ms coarse), as
        // the other timer tests allow for.
        CHECK(seconds_since(t0) >= 0.99);
        CHECK(map.empty());
    }

    TEST_CASE("close_all_when_done returns from loop() as soon as everything is flushed") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Reader r(std::move(a), map);
        auto t0 = std::chrono::steady_clock::now();
        asyncore::close_all_when_done(map, 30s);
        asyncore::loop(30s, map);
        CHECK(r.fileno() == -1);
        CHECK(seconds_since(t0) < 5.0);  // the 30 s grace timer keeps nothing running
    }

    TEST_CASE("close_all() without a map closes the thread's default map") {
        auto [a, b] = test::connected_pair(AF_UNIX);
        Reader r(std::move(a), asyncore::socket_map());
        CHECK(asyncore::socket_map().size() == 1);
        asyncore::close_all();
        CHECK(asyncore::socket_map().empty());
        CHECK(r.fileno() == -1);
    }

    TEST_CASE(
        "close_all() rethrows close() errors unless told to ignore them, and empties the map") {
        struct Stubborn : Reader {
            using Reader::Reader;
            void close() override { throw std::runtime_error("close refused"); }
            void really_close() { Dispatcher::close(); }
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Stubborn s(std::move(a), map);
        CHECK_THROWS_AS(asyncore::close_all(map), std::runtime_error);
        CHECK_NOTHROW(asyncore::close_all(map, true));
        CHECK(map.empty());
        s.really_close();
    }

    TEST_CASE("make<T>() dispatchers are destroyed after close(), never inside their own handler") {
        test::LifetimeProbe::reset();
        ChannelMap map;
        struct Owned : Reader {
            Owned(Socket s, ChannelMap& m, int& seen) : Reader(std::move(s), m), alive_seen(seen) {}
            test::LifetimeProbe probe;
            int& alive_seen;
            void handle_read() override {
                close();
                // Still alive after close(): members may be used until we return.
                reads = 42;
                alive_seen = test::LifetimeProbe::alive + reads - 42;
            }
        };
        int alive_in_handler = -1;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Owned& o = asyncore::make<Owned>(std::move(a), map, alive_in_handler);
        CHECK(o.owned_by_map());
        CHECK(test::LifetimeProbe::alive == 1);
        test::write_all(b.fd(), "bye");
        asyncore::loop(5s, map);
        CHECK(alive_in_handler == 1);
        CHECK(test::LifetimeProbe::destroyed == 1);
        CHECK(test::LifetimeProbe::alive == 0);
    }

    TEST_CASE("a make<T>() dispatcher closed outside the loop is destroyed by the next pass") {
        test::LifetimeProbe::reset();
        ChannelMap map;
        struct Owned : Reader {
            using Reader::Reader;
            test::LifetimeProbe probe;
        };
        auto [a, b] = test::connected_pair(AF_UNIX);
        auto& o = asyncore::make<Owned>(std::move(a), map);
        o.close();
        CHECK(test::LifetimeProbe::alive == 1);  // still usable until the pass ends
        map.run_pass(0s);
        CHECK(test::LifetimeProbe::alive == 0);
        CHECK(test::LifetimeProbe::destroyed == 1);
    }

    TEST_CASE("the map destroys the make<T>() dispatchers it still owns") {
        test::LifetimeProbe::reset();
        {
            ChannelMap map;
            struct Owned : Reader {
                using Reader::Reader;
                test::LifetimeProbe probe;
            };
            struct NoSocket : Dispatcher {
                explicit NoSocket(ChannelMap& m) : Dispatcher(m) {}
                test::LifetimeProbe probe;
            };
            auto [a, b] = test::connected_pair(AF_UNIX);
            asyncore::make<Owned>(std::move(a), map);
            asyncore::make<NoSocket>(map);
            CHECK(test::LifetimeProbe::alive == 2);
        }
        CHECK(test::LifetimeProbe::alive == 0);
        CHECK(test::LifetimeProbe::destroyed == 2);
    }

    TEST_CASE("closing another channel from a handler stops its callbacks in the same pass") {
        ChannelMap map;
        struct Closer : Reader {
            using Reader::Reader;
            Closer* victim = nullptr;
            std::unique_ptr<Reader>* reuse = nullptr;  // where to put a channel on the freed fd
            Socket* reuse_peer = nullptr;
            int victim_fd = -1;
            void handle_read() override {
                Reader::handle_read();
                victim_fd = victim->fileno();
                victim->close();
                auto [p, q] = test::connected_pair(AF_UNIX);
                test::write_all(q.fd(), "ready");
                *reuse = std::make_unique<Reader>(std::move(p), map());
                *reuse_peer = std::move(q);
            }
        };
        auto [a1, b1] = test::connected_pair(AF_UNIX);
        auto [a2, b2] = test::connected_pair(AF_UNIX);
        Closer x(std::move(a1), map);
        Closer y(std::move(a2), map);
        std::unique_ptr<Reader> fresh;
        Socket fresh_peer;
        x.victim = &y;
        y.victim = &x;
        x.reuse = y.reuse = &fresh;
        x.reuse_peer = y.reuse_peer = &fresh_peer;
        test::write_all(b1.fd(), "one");
        test::write_all(b2.fd(), "two");
        map.run_pass(5s);
        // Both were ready in that pass; the first to run closed the other.
        CHECK(x.reads + y.reads == 1);
        REQUIRE(fresh);
        int closed_fd = x.reads == 1 ? x.victim_fd : y.victim_fd;
        CHECK(fresh->fileno() == closed_fd);  // the descriptor was reused at once
        CHECK(fresh->reads == 0);             // and the stale event did not reach it
        REQUIRE(test::run_until(map, [&] { return fresh->reads > 0; }));
        CHECK(fresh->got == "ready");
        CHECK(x.reads + y.reads == 1);
    }

    TEST_CASE("a channel that its predecessor's handler opens on the same descriptor is served") {
        // The handler closes its own channel, and the next socket it makes
        // gets the lowest free descriptor: the one just closed. The new
        // channel must still have its interest registered, although the
        // descriptor is the one being dispatched.
        ChannelMap map;
        struct Replacer : Reader {
            using Reader::Reader;
            int old_fd = -1;
            std::unique_ptr<Reader> next;
            Socket next_peer;
            void handle_read() override {
                Reader::handle_read();
                old_fd = fileno();
                close();
                auto [p, q] = test::connected_pair(AF_UNIX);
                test::write_all(q.fd(), "next");
                next = std::make_unique<Reader>(std::move(p), map());
                next_peer = std::move(q);
            }
        };
        auto [a, b] = test::connected_pair(AF_UNIX);
        Replacer r(std::move(a), map);
        test::write_all(b.fd(), "first");
        REQUIRE(test::run_until(map, [&] { return r.next != nullptr; }));
        REQUIRE(r.next->fileno() == r.old_fd);  // the premise: the descriptor was reused
        REQUIRE(test::run_until(map, [&] { return r.next->reads > 0; }));
        CHECK(r.next->got == "next");
    }

    TEST_CASE("EMFILE on accept keeps the listener open and accepting resumes once fds are free") {
        struct Listener : Dispatcher {
            explicit Listener(ChannelMap& m) : Dispatcher(m) {}
            std::vector<Socket> taken;
            std::vector<std::string> errors;
            void handle_accepted(Socket s, const asyncore::Address&) override {
                taken.push_back(std::move(s));
            }
            void log_info(std::string_view msg, std::string_view type) override {
                if (type == "error") errors.emplace_back(msg);
            }
        };
        ChannelMap map;
        Listener l(map);
        l.create_socket(AF_INET, SOCK_STREAM);
        l.bind(test::loopback(AF_INET));
        l.listen(64);
        constexpr std::size_t clients = 8;
        std::vector<Socket> conns;
        for (std::size_t i = 0; i < clients; ++i) {
            conns.push_back(Socket::create(AF_INET, SOCK_STREAM));
            auto to = l.local_address();
            REQUIRE((::connect(conns.back().fd(), to.native(), to.native_size()) == 0 ||
                     errno == EINPROGRESS));
        }
        test::NofileLimit limit;
        REQUIRE(limit.set(static_cast<rlim_t>(test::highest_open_fd()) + 3));
        // Fill every free descriptor below the limit (at least the two above
        // the highest open one), then free exactly two.
        std::vector<Socket> ballast;
        for (int fd; (fd = ::dup(0)) >= 0;)
            ballast.emplace_back(fd);
        REQUIRE(errno == EMFILE);
        REQUIRE(ballast.size() >= 2);
        ballast.pop_back();
        ballast.pop_back();

        REQUIRE(test::run_until(map, [&] { return l.taken.size() == 2 && !l.errors.empty(); }));
        CHECK(l.errors.front().find(asyncore::strerror_text(EMFILE)) != std::string::npos);
        // While descriptors stay exhausted the listener is paused, not spinning.
        bool waited = false;
        auto passes = map.stats().passes;
        map.call_later(350ms, [&] { waited = true; });
        REQUIRE(test::run_until(map, [&] { return waited; }));
        CHECK(map.stats().passes - passes < 40);
        CHECK(l.errors.size() < 10);
        CHECK(l.taken.size() == 2);
        CHECK(l.accepting());
        CHECK(map.find(l.fileno()) == &l);

        // Free descriptors: the ballast, the accepted connections, and the limit.
        ballast.clear();
        l.taken.clear();
        limit.restore();
        REQUIRE(test::run_until(map, [&] { return l.taken.size() == clients - 2; }));
        CHECK(l.accepting());
    }

    namespace {

    // Counts interest checks on the idle channels of the performance test.
    struct Idle : Dispatcher {
        Idle(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
        static inline long checks = 0;
        bool readable() override {
            ++checks;
            return true;
        }
        bool writable() override {
            ++checks;
            return false;
        }
        void handle_read() override { FAIL_CHECK("an idle channel got a read event"); }
    };

    // One end of a ping-pong: echoes each 4-byte message back until `left` is 0.
    struct Pinger : Dispatcher {
        Pinger(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
        int left = 0;
        int got = 0;
        bool writable() override { return false; }
        void handle_read() override {
            char buf[4];
            if (recv_into(buf) == 0) return;
            ++got;
            if (left > 0) {
                --left;
                send("ping");
            }
        }
    };

    }  // namespace

    TEST_CASE("idle channels cost nothing per pass and ping-pong does not touch registrations") {
        constexpr int idle_channels = 10000;
        test::NofileLimit limit;
        rlim_t need = static_cast<rlim_t>(test::highest_open_fd()) + idle_channels + 256;
        if (limit.hard() < need || !limit.set(std::max(need, limit.soft()))) {
            MESSAGE("skipped: RLIMIT_NOFILE hard limit " << limit.hard() << " is below the " << need
                                                         << " descriptors this test needs");
            return;
        }
        ChannelMap map;
        std::vector<std::unique_ptr<Idle>> idle;
        idle.reserve(idle_channels);
        for (int i = 0; i < idle_channels / 2; ++i) {
            auto [a, b] = test::connected_pair(AF_UNIX);
            idle.push_back(std::make_unique<Idle>(std::move(a), map));
            idle.push_back(std::make_unique<Idle>(std::move(b), map));
        }
        auto [p, q] = test::connected_pair(AF_UNIX);
        Pinger left(std::move(p), map);
        Pinger right(std::move(q), map);
        test::run_passes(map, 2);
        CHECK(Idle::checks >= idle_channels);  // each was asked once, to register it

        // Warm up, then measure a long ping-pong.
        left.left = right.left = 5;
        left.send("ping");
        REQUIRE(test::run_until(map, [&] { return left.got + right.got == 11; }));
        long checks = Idle::checks;
        auto changes = map.stats().interest_changes;
        auto passes = map.stats().passes;
        constexpr int rounds = 1000;
        left.left = right.left = rounds;
        left.send("ping");
        REQUIRE(test::run_until(map, [&] { return left.left == 0 && right.left == 0; }));
        CHECK(map.stats().passes - passes >= rounds);
        CHECK(Idle::checks == checks);
        CHECK(map.stats().interest_changes == changes);

        // poll_all: asyncore's behaviour, every channel asked every pass.
        map.set_poll_all(true);
        test::run_passes(map, 3);
        CHECK(Idle::checks - checks >= 3L * idle_channels);
        map.set_poll_all(false);
        checks = Idle::checks;
        test::run_passes(map, 3);
        CHECK(Idle::checks == checks);
    }

}  // TEST_SUITE
