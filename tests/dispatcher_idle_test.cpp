// Dispatcher::set_idle_timeout(): a peer that connects and then says
// nothing is dropped; activity restarts the countdown; handle_idle_timeout()
// follows the handlers' rules; thousands of countdowns expire each once.

#include <asyncore/dispatcher.hpp>

#include <asyncore/async_chat.hpp>
#include <asyncore/loop.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../lib/detail/map_core.hpp"
#include "support/core_fixtures.hpp"
#include "support/fixtures.hpp"
#include "support/task_fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::ChannelMap;
using asyncore::Dispatcher;
using asyncore::Socket;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// Reads what arrives; records when the idle timeout closed it.
struct Quiet : Dispatcher {
    Quiet(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
    std::string got;
    int idle_calls = 0;
    Clock::time_point closed_at{};
    bool writable() override { return false; }
    void handle_read() override { got += recv(4096); }
    void handle_idle_timeout() override {
        ++idle_calls;
        closed_at = Clock::now();
        Dispatcher::handle_idle_timeout();
    }
    void handle_close() override { close(); }
};

// True once the peer of `fd` sees EOF (without waiting).
bool peer_closed(int fd) {
    char buf[64];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) continue;
        return n == 0;
    }
}

}  // namespace

TEST_SUITE("dispatcher") {
    TEST_CASE("an idle channel is closed by its idle timeout and the peer sees EOF") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        Quiet q(std::move(a), map);
        CHECK_FALSE(q.idle_timeout());
        q.set_idle_timeout(100ms);
        REQUIRE(q.idle_timeout());
        CHECK(q.idle_timeout()->count() == doctest::Approx(0.1));
        auto t0 = Clock::now();
        asyncore::loop(5s, map);  // returns once the channel is gone
        CHECK(q.idle_calls == 1);
        CHECK(q.fileno() == -1);
        CHECK(since(t0) >= 0.1);
        CHECK(since(t0) < 5.0);
        CHECK(peer_closed(b.fd()));
    }

    TEST_CASE("each event restarts the countdown, and the timeout counts from the last one") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Quiet q(std::move(a), map);
        q.set_idle_timeout(150ms);
        // The peer sends a byte every 50 ms, ten times: 500 ms of activity,
        // longer than three timeouts.
        int peer_fd = b.fd();
        int sent = 0;
        Clock::time_point last_sent{};
        test::GapMeter gaps;
        std::function<void()> send_one = [&] {
            gaps.tick();
            if (q.fileno() < 0) return;
            test::write_all(peer_fd, "x");
            last_sent = Clock::now();
            if (++sent < 10) map.call_later(50ms, send_one);
        };
        map.call_later(50ms, send_one);
        asyncore::loop(5s, map);
        CHECK(q.got == std::string(sent, 'x'));
        CHECK(q.idle_calls == 1);
        CHECK(std::chrono::duration<double>(q.closed_at - last_sent).count() >= 0.15);
        // Unless a stall of the whole process left a timeout between two
        // bytes, the channel outlived three timeouts.
        if (gaps.longest() < 150ms) CHECK(sent == 10);
    }

    TEST_CASE("a handle_idle_timeout that keeps the channel open is called again a timeout later") {
        struct Pinger : Quiet {
            using Quiet::Quiet;
            std::vector<Clock::time_point> calls;
            void handle_idle_timeout() override {
                calls.push_back(Clock::now());
                if (calls.size() == 3) close();
            }
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Pinger p(std::move(a), map);
        p.set_idle_timeout(60ms);
        auto t0 = Clock::now();
        asyncore::loop(5s, map);
        REQUIRE(p.calls.size() == 3);
        CHECK(std::chrono::duration<double>(p.calls[0] - t0).count() >= 0.06);
        CHECK(std::chrono::duration<double>(p.calls[1] - p.calls[0]).count() >= 0.06);
        CHECK(std::chrono::duration<double>(p.calls[2] - p.calls[1]).count() >= 0.06);
    }

    TEST_CASE("an exception from handle_idle_timeout goes to handle_error") {
        struct Faulty : Quiet {
            using Quiet::Quiet;
            std::string error;
            void handle_idle_timeout() override { throw std::runtime_error("idle"); }
            void handle_error(std::exception_ptr e) override {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                    error = ex.what();
                }
                close();
            }
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Faulty f(std::move(a), map);
        f.set_idle_timeout(20ms);
        asyncore::loop(5s, map);
        CHECK(f.error == "idle");
        CHECK(f.fileno() == -1);
    }

    TEST_CASE("the default handle_idle_timeout warns with the repr and runs handle_close") {
        struct Counting : Dispatcher {
            Counting(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
            int closes = 0;
            bool writable() override { return false; }
            void handle_close() override {
                ++closes;
                close();
            }
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Counting c(std::move(a), map);
        c.set_ignore_log_types({});
        std::string repr = c.repr();
        c.set_idle_timeout(20ms);
        test::CaptureFd out(1);
        asyncore::loop(5s, map);
        CHECK(c.closes == 1);
        CHECK(out.text() == "warning: idle timeout, closing channel " + repr + "\n");
    }

    TEST_CASE("turning the idle timeout off, or closing the channel, cancels the countdown") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        auto [c, d] = test::connected_pair(AF_UNIX);
        Quiet off(std::move(a), map);
        Quiet closed(std::move(c), map);
        off.set_idle_timeout(30ms);
        closed.set_idle_timeout(30ms);
        off.set_idle_timeout(std::nullopt);
        CHECK_FALSE(off.idle_timeout());
        closed.close();
        bool done = false;
        map.call_later(200ms, [&] { done = true; });
        REQUIRE(test::run_until(map, [&] { return done; }));
        CHECK(off.idle_calls == 0);
        CHECK(closed.idle_calls == 0);
        CHECK(off.fileno() >= 0);
        CHECK(asyncore::detail::core_of(map).idle->size() == 0);
    }

    TEST_CASE("a channel's idle timeout carries over to the next socket it is given") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        auto [c, d] = test::connected_pair(AF_UNIX);
        Quiet q(std::move(a), map);
        q.set_idle_timeout(50ms);
        q.set_socket(std::move(c));  // closes the first socket
        CHECK(peer_closed(b.fd()));
        asyncore::loop(5s, map);
        CHECK(q.idle_calls == 1);
        CHECK(peer_closed(d.fd()));
    }

    TEST_CASE("reset_idle_timer counts as activity") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Quiet q(std::move(a), map);
        q.set_idle_timeout(100ms);
        int resets = 0;
        Clock::time_point last_reset{};
        test::GapMeter gaps;
        std::function<void()> reset = [&] {
            gaps.tick();
            if (q.fileno() < 0) return;
            q.reset_idle_timer();
            last_reset = Clock::now();
            if (++resets < 6) map.call_later(40ms, reset);
        };
        map.call_later(40ms, reset);
        asyncore::loop(5s, map);
        CHECK(q.idle_calls == 1);
        CHECK(std::chrono::duration<double>(q.closed_at - last_reset).count() >= 0.1);
        // 240 ms: the channel outlived two timeouts, unless a stall of the
        // whole process left a gap of a timeout between two resets.
        if (gaps.longest() < 100ms) CHECK(resets == 6);
    }

    TEST_CASE("an AsyncChat peer that sends half a line and then nothing is dropped") {
        struct Lines : asyncore::AsyncChat {
            Lines(Socket s, ChannelMap& m) : AsyncChat(std::move(s), m) { set_terminator("\n"); }
            std::vector<std::string> lines;
            void found_record(std::string_view line) override { lines.emplace_back(line); }
            void handle_close() override { close(); }
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        Lines chat(std::move(a), map);
        chat.set_idle_timeout(100ms);
        test::write_all(b.fd(), "whole\nhal");
        asyncore::loop(5s, map);
        CHECK(chat.lines == std::vector<std::string>{"whole"});
        CHECK(chat.fileno() == -1);
        CHECK(peer_closed(b.fd()));
    }

    TEST_CASE("a thousand countdowns of mixed lengths each expire once, in order of deadline") {
        ChannelMap map;
        test::raise_fd_limit(5000);
        struct Timed : Quiet {
            using Quiet::Quiet;
            // The library reads the clock inside set_idle_timeout(): its
            // deadline lies between these two (the thread may be preempted
            // between any two clock reads on a loaded machine).
            Clock::time_point due_earliest{}, due_latest{};
            int order = -1;
            int* next = nullptr;
            void handle_idle_timeout() override {
                order = (*next)++;
                Quiet::handle_idle_timeout();
            }
        };
        int next = 0;
        std::vector<std::unique_ptr<Timed>> channels;
        std::vector<Socket> peers;
        constexpr int n = 1000;
        for (int i = 0; i < n; ++i) {
            auto [a, b] = test::connected_pair(AF_UNIX);
            auto t = std::make_unique<Timed>(std::move(a), map);
            t->next = &next;
            // Lengths 20..119 ms in a scrambled order: the heap sorts them.
            auto timeout = std::chrono::milliseconds(20 + (i * 37) % 100);
            t->due_earliest = Clock::now() + timeout;
            t->set_idle_timeout(timeout);
            t->due_latest = Clock::now() + timeout;
            channels.push_back(std::move(t));
            peers.push_back(std::move(b));
        }
        asyncore::loop(10s, map);
        CHECK(map.empty());
        CHECK(next == n);
        int wrong_order = 0;
        for (auto& a : channels) {
            CHECK(a->idle_calls == 1);
            for (auto& b : channels) {
                // A deadline surely before another expires first: the heap
                // is sorted.
                if (a->due_latest < b->due_earliest && a->order > b->order) ++wrong_order;
            }
        }
        CHECK(wrong_order == 0);
    }
}
