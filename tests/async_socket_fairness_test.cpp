// AsyncSocket fairness: a task whose socket never runs dry (a flooding
// peer, a backlog of connections) yields to the loop's other tasks every
// 16 operations, instead of finishing them all before anyone else runs.

#include <asyncore/async_socket.hpp>

#include <doctest/doctest.h>

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "support/fixtures.hpp"
#include "support/task_fixtures.hpp"

using asyncore::AsyncSocket;
using asyncore::ChannelMap;
using asyncore::Task;

TEST_SUITE("async_socket") {
    TEST_CASE("a task whose peer keeps its socket readable yields every 16 reads") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        const std::string flood(64 * 1024, 'f');  // 64 reads of 1 KiB, all there at once
        test::write_all(b.fd(), flood);
        AsyncSocket conn(std::move(a));
        int reads = 0;
        std::string got;
        auto reader = [&]() -> Task<void> {
            while (got.size() < flood.size()) {
                got += co_await conn.recv(1024);
                ++reads;
            }
        };
        auto t = asyncore::spawn(reader(), map);
        REQUIRE(test::run_until(map, [&] { return reads > 0; }));
        // One pass: the streak of reads that finished at once, then a wait.
        CHECK(reads >= 16);
        CHECK(reads <= 17);
        // Another task ready now runs before the reader has read it all.
        auto [c, d] = test::connected_pair(AF_UNIX);
        test::write_all(d.fd(), "x");
        AsyncSocket other(std::move(c));
        int reads_when_other_ran = -1;
        auto quick = [&]() -> Task<void> {
            co_await other.recv(1);
            reads_when_other_ran = reads;
        };
        auto q = asyncore::spawn(quick(), map);
        REQUIRE(test::run_until(map, [&] { return t.done() && q.done(); }));
        CHECK(reads_when_other_ran < 64);
        CHECK(got == flood);  // and nothing lost on the way
    }

    TEST_CASE("an accept loop with a backlog of connections yields every 16 accepts") {
        ChannelMap map;
        auto l = test::listen_on(AF_INET, 64);
        AsyncSocket listener(std::move(l.sock));
        std::vector<asyncore::Socket> clients;
        for (int i = 0; i < 40; ++i) {
            clients.push_back(asyncore::Socket::create(AF_INET, SOCK_STREAM));
            // Non-blocking: on loopback the kernel completes the handshake
            // within the call, and the connection waits in the backlog.
            int r = ::connect(clients.back().fd(), l.addr.native(), l.addr.native_size());
            REQUIRE((r == 0 || errno == EINPROGRESS));
        }
        std::vector<AsyncSocket> accepted;
        auto acceptor = [&]() -> Task<void> {
            while (accepted.size() < clients.size())
                accepted.push_back((co_await listener.accept()).sock);
        };
        auto t = asyncore::spawn(acceptor(), map);
        REQUIRE(test::run_until(map, [&] { return !accepted.empty(); }));
        CHECK(accepted.size() >= 16);
        CHECK(accepted.size() <= 17);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(accepted.size() == 40);
    }
}
