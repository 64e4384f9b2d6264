// AsyncSocket::set_idle_timeout(): the whole connection is dropped after
// `timeout` without progress, whether or not a task waits on it.

#include <asyncore/async_socket.hpp>

#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../lib/detail/map_core.hpp"
#include "support/fixtures.hpp"
#include "support/task_fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::AsyncSocket;
using asyncore::ChannelMap;
using asyncore::Task;
using asyncore::TimeoutError;
using Clock = std::chrono::steady_clock;

namespace {

double seconds(Clock::duration d) {
    return std::chrono::duration<double>(d).count();
}

// True once the peer of `fd` sees EOF (without waiting).
bool peer_closed(int fd) {
    char buf[4096];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) continue;
        return n == 0;
    }
}

bool run_task_until_done(ChannelMap& map, const asyncore::TaskRef& t) {
    return test::run_until(map, [&] { return t.done(); });
}

}  // namespace

TEST_SUITE("async_socket") {
    TEST_CASE("a silent peer: the waiting recv throws TimeoutError and the socket is closed") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        AsyncSocket conn(std::move(a));
        bool timed_out = false;
        bool later_timed_out = false;
        Clock::time_point t0{}, t1{};
        auto body = [&]() -> Task<void> {
            conn.set_idle_timeout(100ms);
            t0 = Clock::now();
            try {
                co_await conn.recv(100);
            } catch (const TimeoutError&) {
                timed_out = true;
                t1 = Clock::now();
            }
            try {
                co_await conn.sendall("too late");
            } catch (const TimeoutError&) {
                later_timed_out = true;
            }
        };
        auto t = asyncore::spawn(body(), map);
        REQUIRE(run_task_until_done(map, t));
        CHECK(timed_out);
        CHECK(later_timed_out);
        CHECK(seconds(t1 - t0) >= 0.1);
        CHECK(conn.fd() == -1);
        CHECK(peer_closed(b.fd()));
        CHECK(conn.idle_timeout());
    }

    TEST_CASE("a peer sending under the timeout is kept, and dropped a timeout after it stops") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        AsyncSocket conn(std::move(a));
        std::string got;
        Clock::time_point last_sent{}, dropped{};
        int peer_fd = b.fd();
        int sent = 0;
        test::GapMeter gaps;
        std::function<void()> send_one = [&] {
            gaps.tick();
            if (dropped != Clock::time_point{}) return;
            test::write_all(peer_fd, "x");
            last_sent = Clock::now();
            if (++sent < 8) map.call_later(40ms, send_one);
        };
        map.call_later(40ms, send_one);
        auto body = [&]() -> Task<void> {
            conn.set_idle_timeout(120ms);
            try {
                for (;;) {
                    // Each read alone has no timeout: a slow peer never trips one.
                    std::string chunk = co_await conn.recv(10);
                    if (chunk.empty()) break;
                    got += chunk;
                }
            } catch (const TimeoutError&) {
                dropped = Clock::now();
            }
        };
        auto t = asyncore::spawn(body(), map);
        REQUIRE(run_task_until_done(map, t));
        CHECK(got == std::string(sent, 'x'));
        CHECK(seconds(dropped - last_sent) >= 0.12);
        // Unless a stall of the whole process left a timeout between two
        // bytes, the peer was kept for all eight.
        if (gaps.longest() < 120ms) CHECK(sent == 8);
        CHECK(peer_closed(b.fd()));
    }

    TEST_CASE("the socket is closed even while its task waits on something else") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        bool next_op_timed_out = false;
        auto body = [&](AsyncSocket conn) -> Task<void> {
            conn.set_idle_timeout(50ms);
            co_await asyncore::suspend();  // busy elsewhere; resumed by the test
            try {
                co_await conn.recv(1);
            } catch (const TimeoutError&) {
                next_op_timed_out = true;
            }
        };
        auto t = asyncore::spawn(body(AsyncSocket(std::move(a))), map);
        REQUIRE(test::run_until(map, [&] { return peer_closed(b.fd()); }));
        CHECK_FALSE(t.done());
        CHECK(t.resume());
        REQUIRE(run_task_until_done(map, t));
        CHECK(next_op_timed_out);
    }

    TEST_CASE("a long sendall to a slow reader is progress, not idleness") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        AsyncSocket conn(std::move(a));
        const std::string big(2 << 20, 'b');
        std::size_t read_back = 0;
        int peer_fd = b.fd();
        // The reader takes 64 KiB every 20 ms: well under the idle timeout
        // between reads, far longer than it in all.
        test::GapMeter gaps;
        std::function<void()> read_some = [&] {
            gaps.tick();
            char buf[65536];
            ssize_t n = ::recv(peer_fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) read_back += static_cast<std::size_t>(n);
            if (n == 0) return;  // dropped after a stall (see below)
            if (read_back < big.size()) map.call_later(20ms, read_some);
        };
        map.call_later(20ms, read_some);
        bool sent = false;
        auto body = [&]() -> Task<void> {
            conn.set_idle_timeout(150ms);
            co_await conn.sendall(big);
            sent = true;
        };
        auto t = asyncore::spawn(body(), map);
        REQUIRE(test::run_until(
            map, [&] { return t.done() && (read_back == big.size() || conn.fd() < 0); }, 60s));
        // Unless a stall of the whole process left a timeout between two
        // reads, the whole sendall went through.
        if (gaps.longest() < 150ms) {
            CHECK(sent);
            CHECK(t.state()->error() == nullptr);
        }
    }

    TEST_CASE("turning the idle timeout off, moving, closing or destroying the socket") {
        ChannelMap map;
        auto& core = asyncore::detail::core_of(map);
        auto [a, b] = test::connected_pair(AF_UNIX);
        auto [c, d] = test::connected_pair(AF_UNIX);
        auto [e, f] = test::connected_pair(AF_UNIX);
        std::optional<AsyncSocket> off(AsyncSocket(std::move(a)));
        std::optional<AsyncSocket> moved(AsyncSocket(std::move(c)));
        std::optional<AsyncSocket> destroyed(AsyncSocket(std::move(e)));
        auto body = [&]() -> Task<void> {
            off->set_idle_timeout(30ms);
            moved->set_idle_timeout(30ms);
            destroyed->set_idle_timeout(30ms);
            co_return;
        };
        REQUIRE(run_task_until_done(map, asyncore::spawn(body(), map)));
        CHECK(core.idle->size() == 3);
        off->set_idle_timeout(std::nullopt);
        CHECK_FALSE(off->idle_timeout());
        AsyncSocket taken = std::move(*moved);
        destroyed.reset();
        CHECK(peer_closed(f.fd()));
        CHECK(core.idle->size() == 1);  // the moved one
        REQUIRE(test::run_until(map, [&] { return peer_closed(d.fd()); }));
        CHECK(taken.fd() == -1);
        bool quiet = false;
        map.call_later(100ms, [&] { quiet = true; });
        REQUIRE(test::run_until(map, [&] { return quiet; }));
        CHECK(off->fd() >= 0);
        CHECK_FALSE(peer_closed(b.fd()));
        off->close();
        CHECK(core.idle->size() == 0);
    }

    TEST_CASE("a listener's idle timeout counts accepted connections as progress") {
        ChannelMap map;
        auto listener_sock = test::listen_on(AF_INET);
        AsyncSocket listener(std::move(listener_sock.sock));
        int accepted = 0;
        bool timed_out = false;
        auto body = [&]() -> Task<void> {
            listener.set_idle_timeout(150ms);
            try {
                for (;;) {
                    auto [conn, addr] = co_await listener.accept();
                    ++accepted;
                }
            } catch (const TimeoutError&) {
                timed_out = true;
            }
        };
        auto t = asyncore::spawn(body(), map);
        std::vector<asyncore::Socket> clients;
        test::GapMeter gaps;
        std::function<void()> connect_one = [&] {
            gaps.tick();
            if (timed_out) return;
            asyncore::Socket s = asyncore::Socket::create(AF_INET, SOCK_STREAM);
            ::connect(s.fd(), listener_sock.addr.native(), listener_sock.addr.native_size());
            clients.push_back(std::move(s));
            if (clients.size() < 5) map.call_later(60ms, connect_one);
        };
        map.call_later(60ms, connect_one);
        REQUIRE(run_task_until_done(map, t));
        CHECK(timed_out);
        // Unless a stall of the whole process left a timeout between two
        // connects, the listener was kept for all five.
        if (gaps.longest() < 150ms) CHECK(accepted == 5);
    }
}
