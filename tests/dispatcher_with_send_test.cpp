// DispatcherWithSend: test_asyncore's DispatcherWithSendTests over IPv4,
// IPv6 and Unix sockets, plus buffering and interest.

#include <asyncore/dispatcher_with_send.hpp>

#include <asyncore/loop.hpp>

#include <sys/socket.h>

#include <poll.h>

#include <doctest/doctest.h>

#include <string>

#include "support/core_fixtures.hpp"
#include "support/fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::ChannelMap;
using asyncore::DispatcherWithSend;
using asyncore::Socket;

namespace {

// dispatcherwithsend_noread.
struct NoRead : DispatcherWithSend {
    using DispatcherWithSend::DispatcherWithSend;
    int writes = 0;
    int closes = 0;
    bool readable() override { return false; }
    void handle_connect() override {}
    void handle_write() override {
        ++writes;
        DispatcherWithSend::handle_write();
    }
    void handle_close() override {
        ++closes;
        close();
    }
};

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    return s;
}

}  // namespace

TEST_SUITE("dispatcher_with_send") {
    TEST_CASE_TEMPLATE("send() delivers every byte, in order, to the peer", F, test::IPv4,
                       test::IPv6, test::Unix) {
        ChannelMap map;
        test::Listener l = test::listen_on(F::value);
        NoRead d(map);
        d.create_socket(F::value, SOCK_STREAM);
        d.connect(l.addr);
        REQUIRE(test::run_until(map, [&] { return d.connected(); }));
        pollfd p{l.sock.fd(), POLLIN, 0};
        REQUIRE(::poll(&p, 1, 5000) == 1);
        Socket conn(::accept(l.sock.fd(), nullptr, nullptr));

        const std::string data = "Suppose there isn't a 16-ton weight?";
        d.send(data);
        d.send(data);
        d.send("\n");
        REQUIRE(test::run_until(map, [&] { return d.pending() == 0; }));
        std::string got = test::read_exactly(conn.fd(), 2 * data.size() + 1);
        CHECK(got == data + data + "\n");
    }

    TEST_CASE("what the socket does not take is kept in out_buffer and drained by handle_write") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        NoRead d(std::move(a), map);
        const std::string data = pattern(8 << 20);
        d.send(data);
        CHECK(d.pending() > 0);
        CHECK(d.pending() < data.size());
        CHECK(d.out_buffer() == std::string_view(data).substr(data.size() - d.pending()));
        CHECK(d.writable());

        std::string got;
        REQUIRE(test::run_until(map, [&] {
            char buf[65536];
            for (ssize_t n; (n = ::recv(b.fd(), buf, sizeof buf, 0)) > 0;)
                got.append(buf, static_cast<std::size_t>(n));
            return got.size() == data.size();
        }));
        CHECK(got == data);
        CHECK(d.pending() == 0);
        CHECK(d.out_buffer().empty());
        CHECK_FALSE(d.writable());
        CHECK(d.writes > 0);
    }

    TEST_CASE("a connected channel with nothing to send gets no write events") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        NoRead d(std::move(a), map);
        d.send("x");
        CHECK(d.pending() == 0);
        asyncore::loop(1ms, map, 50);
        CHECK(d.writes == 0);
    }

    TEST_CASE("data sent before the connection is up is queued and sent once connected") {
        ChannelMap map;
        test::Listener l = test::listen_on(AF_INET);
        NoRead d(map);
        d.create_socket(AF_INET, SOCK_STREAM);
        d.connect(l.addr);
        d.send("early bird");
        if (!d.connected()) CHECK(d.pending() == 10);
        CHECK(d.writable());
        REQUIRE(test::run_until(map, [&] { return d.connected() && d.pending() == 0; }));
        pollfd p{l.sock.fd(), POLLIN, 0};
        REQUIRE(::poll(&p, 1, 5000) == 1);
        Socket conn(::accept(l.sock.fd(), nullptr, nullptr));
        CHECK(test::read_exactly(conn.fd(), 10) == "early bird");
    }

    TEST_CASE("sending to a peer that has gone closes the channel without an error") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        NoRead d(std::move(a), map);
        b.reset();
        CHECK_NOTHROW(d.send("nobody listens"));
        CHECK(d.closes == 1);
        CHECK(d.fileno() == -1);
    }

    TEST_CASE("an empty send queues nothing") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        NoRead d(std::move(a), map);
        d.send("");
        CHECK(d.pending() == 0);
        CHECK_FALSE(d.writable());
    }

    TEST_CASE("close_when_done closes only after every queued byte reached a slow reader") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        NoRead d(std::move(a), map);
        const std::string big = pattern(4 << 20);
        d.send(big);
        REQUIRE(d.pending() > 0);  // more than the socket buffer holds
        d.close_when_done();
        CHECK(d.fileno() >= 0);
        CHECK(d.closes == 0);
        // The reader takes 64 KiB per pass: the close waits for the last of it.
        std::string got;
        int fd = b.fd();
        REQUIRE(test::run_until(
            map,
            [&] {
                char buf[65536];
                ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n > 0) got.append(buf, static_cast<std::size_t>(n));
                return n == 0;
            },
            30s));
        CHECK(got.size() == big.size());
        CHECK(got == big);
        CHECK(d.closes == 1);
        CHECK(d.fileno() == -1);
    }

    TEST_CASE("close_when_done with nothing queued runs handle_close at once") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        NoRead d(std::move(a), map);
        d.close_when_done();
        CHECK(d.closes == 1);
        CHECK(d.fileno() == -1);
    }
}  // TEST_SUITE
