#include <asyncore/async_socket.hpp>

#include <doctest/doctest.h>

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/fixtures.hpp"
#include "support/task_fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::AsyncSocket;
using asyncore::ChannelMap;
using asyncore::Task;

namespace {

std::pair<AsyncSocket, AsyncSocket> async_pair(int family = AF_UNIX) {
    auto [a, b] = test::connected_pair(family);
    return {AsyncSocket(std::move(a)), AsyncSocket(std::move(b))};
}

// Runs `body` as a task on `map` until it ends; rethrows what it threw.
template <class F>
void run_task(ChannelMap& map, F body, std::chrono::seconds limit = 10s) {
    auto t = asyncore::spawn(body(), map);
    REQUIRE(test::run_until(
        map, [&] { return t.done(); }, limit));
    if (auto e = t.state()->take_error()) std::rethrow_exception(e);
}

Task<void> echo_messages(AsyncSocket& s) {
    while (auto msg = co_await s.recv_msg())
        co_await s.send_msg(*msg);
}

// `n` bytes unlike their neighbours, so that a stale or misplaced byte shows.
std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>('a' + i % 23);
    return s;
}

// More than a socket buffer holds: a send of it waits for room midway.
constexpr std::size_t big_size = 4 << 20;

// The overload a call picks: the one viewing the caller's bytes, or the one
// owning a std::string rvalue.
template <class A>
using SendallOf = decltype(std::declval<AsyncSocket&>().sendall(std::declval<A>()));
template <class A>
using SendMsgOf = decltype(std::declval<AsyncSocket&>().send_msg(std::declval<A>()));
using Viewing = asyncore::SocketAwaitable<void>;
using Owning = asyncore::SocketAwaitable<void, false, true>;

static_assert(std::is_same_v<SendallOf<const char (&)[4]>, Viewing>);
static_assert(std::is_same_v<SendallOf<std::string_view>, Viewing>);
static_assert(std::is_same_v<SendallOf<std::string&>, Viewing>);
static_assert(std::is_same_v<SendallOf<const std::string&>, Viewing>);
static_assert(std::is_same_v<SendallOf<const std::string>, Viewing>);
static_assert(std::is_same_v<SendallOf<std::string>, Owning>);
static_assert(std::is_same_v<SendMsgOf<const char (&)[4]>, Viewing>);
static_assert(std::is_same_v<SendMsgOf<std::string_view>, Viewing>);
static_assert(std::is_same_v<SendMsgOf<std::string&>, Viewing>);
static_assert(std::is_same_v<SendMsgOf<const std::string&>, Viewing>);
static_assert(std::is_same_v<SendMsgOf<const std::string>, Viewing>);
static_assert(std::is_same_v<SendMsgOf<std::string>, Owning>);

}  // namespace

TEST_SUITE("async_socket") {
    TEST_CASE("accept, connect, sendall and recv work over IPv4, IPv6 and Unix sockets") {
        for (int family : {AF_INET, AF_INET6, AF_UNIX}) {
            CAPTURE(family);
            ChannelMap map;
            AsyncSocket listener(family, SOCK_STREAM);
            listener.bind(test::loopback(family));
            listener.listen();
            std::string got;
            run_task(map, [&]() -> Task<void> {
                AsyncSocket client(family, SOCK_STREAM);
                auto accept_one = [&]() -> Task<void> {
                    auto [conn, addr] = co_await listener.accept();
                    while (got.size() < 5)
                        got += co_await conn.recv(100);
                };
                auto accepting = asyncore::spawn(accept_one(), map);
                co_await client.connect(listener.local_address());
                co_await client.sendall("hello");
                co_await accepting;
            });
            CHECK(got == "hello");
        }
    }

    TEST_CASE("an operation whose data is ready completes without waiting") {
        ChannelMap map;
        auto [a, b] = async_pair();
        test::write_all(b.fd(), "ready");
        auto op = a.recv(10);
        CHECK(op.await_ready());
        CHECK(op.await_resume() == "ready");
    }

    TEST_CASE("recv returns an empty string at EOF") {
        ChannelMap map;
        auto [a, b] = async_pair();
        std::string got = "x";
        run_task(map, [&]() -> Task<void> {
            b.close();
            got = co_await a.recv(10);
        });
        CHECK(got.empty());
    }

    TEST_CASE("recvall waits for exactly n bytes arriving in pieces") {
        ChannelMap map;
        auto [a, b] = async_pair();
        std::string got;
        auto read6 = [&]() -> Task<void> { got = co_await a.recvall(6); };
        auto reader = asyncore::spawn(read6(), map);
        test::run_passes(map, 2);
        test::write_all(b.fd(), "abc");
        test::run_passes(map, 2);
        CHECK_FALSE(reader.done());
        test::write_all(b.fd(), "defgh");
        REQUIRE(test::run_until(map, [&] { return reader.done(); }));
        CHECK(got == "abcdef");
    }

    TEST_CASE("recvall that meets EOF throws TruncatedError with the partial data") {
        ChannelMap map;
        auto [a, b] = async_pair();
        test::write_all(b.fd(), "abc");
        b.close();
        std::string partial;
        run_task(map, [&]() -> Task<void> {
            try {
                co_await a.recvall(10);
            } catch (const asyncore::TruncatedError& e) {
                CHECK(e.code() == asyncore::errc::truncated);
                partial = e.partial();
            }
        });
        CHECK(partial == "abc");
    }

    TEST_CASE("send_msg frames with a 4-byte big-endian length") {
        ChannelMap map;
        auto [a, b] = async_pair();
        run_task(map, [&]() -> Task<void> { co_await a.send_msg("hey"); });
        CHECK(test::read_exactly(b.fd(), 7) == std::string("\0\0\0\3hey", 7));
    }

    TEST_CASE("messages round-trip in order, the empty one included, and EOF is nullopt") {
        ChannelMap map;
        auto [a, b] = async_pair();
        std::vector<std::string> sent = {"one", "", std::string(100000, 'x'), "last"};
        std::vector<std::string> got;
        bool eof = false;
        auto echo = asyncore::spawn(echo_messages(b), map);
        run_task(map, [&]() -> Task<void> {
            for (auto& m : sent)
                co_await a.send_msg(m);
            for (std::size_t i = 0; i < sent.size(); ++i)
                got.push_back(*co_await a.recv_msg());
            a.shutdown(SHUT_WR);
            co_await echo;
            b.close();
            eof = !(co_await a.recv_msg()).has_value();
        });
        CHECK(got == sent);
        CHECK(eof);
    }

    TEST_CASE("recv_msg refuses an oversized length without allocating, and every later one") {
        ChannelMap map;
        auto [a, b] = async_pair();
        a.set_max_message_size(1024);
        test::write_all(b.fd(), std::string("\xff\xff\xff\xff", 4) + std::string("\0\0\0\1x", 5));
        std::error_code first, second;
        run_task(map, [&]() -> Task<void> {
            try {
                co_await a.recv_msg();
            } catch (const std::system_error& e) {
                first = e.code();
            }
            try {
                co_await a.recv_msg();  // what follows looks like a message: not one
            } catch (const std::system_error& e) {
                second = e.code();
            }
        });
        CHECK(first == asyncore::errc::message_too_large);
        CHECK(second == asyncore::errc::message_too_large);
        // Open still, for the caller to close: a close with input unread
        // would reset what the peer has not read yet.
        CHECK(a.fd() >= 0);
    }

    TEST_CASE("recv_msg cut short by EOF throws TruncatedError") {
        ChannelMap map;
        auto [a, b] = async_pair();
        test::write_all(b.fd(), std::string("\0\0\0\x0a"
                                            "abc",
                                            7));
        b.close();
        std::string partial = "unset";
        run_task(map, [&]() -> Task<void> {
            try {
                co_await a.recv_msg();
            } catch (const asyncore::TruncatedError& e) {
                partial = e.partial();
            }
        });
        CHECK(partial == "abc");
    }

    TEST_CASE("a second concurrent read is refused with errc::busy") {
        ChannelMap map;
        auto [a, b] = async_pair();
        auto read_one = [&]() -> Task<void> { co_await a.recv(10); };
        auto first = asyncore::spawn(read_one(), map);
        test::run_passes(map, 1);
        std::error_code code;
        run_task(map, [&]() -> Task<void> {
            try {
                co_await a.recv(10);
            } catch (const std::system_error& e) {
                code = e.code();
            }
        });
        CHECK(code == asyncore::errc::busy);
        first.terminate();
        REQUIRE(test::run_until(map, [&] { return first.done(); }));
    }

    TEST_CASE("one task reads while another writes on the same socket") {
        ChannelMap map;
        auto [a, b] = async_pair();
        const std::string big(4 << 20, 'z');
        std::string got;
        auto write_big = [&]() -> Task<void> { co_await a.sendall(big); };
        auto read5 = [&]() -> Task<void> { got = co_await a.recvall(5); };
        auto peer_body = [&]() -> Task<void> {
            co_await b.sendall("12345");
            std::string sink = co_await b.recvall(big.size());
            CHECK(sink == big);
        };
        auto writer = asyncore::spawn(write_big(), map);
        auto reader = asyncore::spawn(read5(), map);
        auto peer = asyncore::spawn(peer_body(), map);
        REQUIRE(
            test::run_until(map, [&] { return writer.done() && reader.done() && peer.done(); }));
        CHECK(got == "12345");
    }

    TEST_CASE(
        "settimeout makes a waiting operation throw TimeoutError and leaves nothing registered") {
        ChannelMap map;
        auto [a, b] = async_pair();
        a.settimeout(20ms);
        bool timed_out = false;
        run_task(map, [&]() -> Task<void> {
            try {
                co_await a.recv(10);
            } catch (const asyncore::TimeoutError&) {
                timed_out = true;
            }
        });
        CHECK(timed_out);
        CHECK_FALSE(map.has_work());
        test::write_all(b.fd(), "later");
        std::string got;
        a.settimeout(std::nullopt);
        run_task(map, [&]() -> Task<void> { got = co_await a.recv(10); });
        CHECK(got == "later");
    }

    TEST_CASE("terminating a task blocked in recv unwinds it and leaks no descriptor") {
        int before = test::open_fds();
        {
            ChannelMap map;
            test::LifetimeProbe::reset();
            auto [a, b] = async_pair();
            auto t = asyncore::spawn(
                [](AsyncSocket s) -> Task<void> {
                    test::LifetimeProbe probe;
                    co_await s.recv(10);
                }(std::move(a)),
                map);
            test::run_passes(map, 2);
            CHECK(test::LifetimeProbe::alive == 1);
            t.terminate();
            REQUIRE(test::run_until(map, [&] { return t.done(); }));
            CHECK(test::LifetimeProbe::alive == 0);
            CHECK(test::is_cancelled(t.state()->error()));
            CHECK_FALSE(map.has_work());
        }
        CHECK(test::open_fds() == before);
    }

    TEST_CASE("closing a socket wakes a task waiting on it with EBADF") {
        ChannelMap map;
        auto [a, b] = async_pair();
        std::error_code code;
        auto wait_read = [&]() -> Task<void> {
            try {
                co_await a.recv(10);
            } catch (const std::system_error& e) {
                code = e.code();
            }
        };
        auto t = asyncore::spawn(wait_read(), map);
        test::run_passes(map, 2);
        a.close();
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(code == std::errc::bad_file_descriptor);
    }

    // Out of descriptors, accept() neither fails nor spins: the listener
    // stays open, one line is logged per pause, accepting pauses for 100 ms
    // at a time, and the connections waiting in the backlog are taken once
    // descriptors are free again (as Dispatcher's accept does).
    TEST_CASE("EMFILE: accept() waits, pausing 100 ms at a time, and resumes once fds are free") {
        ChannelMap map;
        AsyncSocket listener(AF_INET, SOCK_STREAM);
        listener.bind(test::loopback(AF_INET));
        listener.listen(64);
        const asyncore::Address to = listener.local_address();
        constexpr std::size_t clients = 8;
        std::vector<asyncore::Socket> conns;
        for (std::size_t i = 0; i < clients; ++i) {
            conns.push_back(asyncore::Socket::create(AF_INET, SOCK_STREAM));
            REQUIRE((::connect(conns.back().fd(), to.native(), to.native_size()) == 0 ||
                     errno == EINPROGRESS));
        }
        std::vector<AsyncSocket> taken;
        auto accept_all = [&]() -> Task<void> {
            for (;;) {
                auto [conn, addr] = co_await listener.accept();
                taken.push_back(std::move(conn));
            }
        };
        test::StderrCapture err;
        test::NofileLimit limit;
        REQUIRE(limit.set(static_cast<rlim_t>(test::highest_open_fd()) + 3));
        // Fill every free descriptor below the limit (at least the two above
        // the highest open one), then free exactly two.
        std::vector<asyncore::Socket> ballast;
        for (int fd; (fd = ::dup(0)) >= 0;)
            ballast.emplace_back(fd);
        REQUIRE(errno == EMFILE);
        REQUIRE(ballast.size() >= 2);
        ballast.pop_back();
        ballast.pop_back();

        auto t = asyncore::spawn(accept_all(), map);
        auto exhausted = [&] {
            return err.text().find("Too many open files") != std::string::npos;
        };
        REQUIRE(
            test::run_until(map, [&] { return (taken.size() == 2 && exhausted()) || t.done(); }));
        REQUIRE_FALSE(t.done());  // EMFILE did not end the accepting task
        // While descriptors stay exhausted accept() waits, paused, not spinning.
        bool waited = false;
        auto passes = map.stats().passes;
        map.call_later(350ms, [&] { waited = true; });
        REQUIRE(test::run_until(map, [&] { return waited || t.done(); }));
        CHECK_FALSE(t.done());
        CHECK(map.stats().passes - passes < 40);
        const std::string log = err.text();
        auto pauses = std::count(log.begin(), log.end(), '\n');
        CHECK(pauses >= 1);
        CHECK(pauses < 10);
        CHECK(taken.size() == 2);

        // Free descriptors: the ballast, the accepted connections, and the limit.
        ballast.clear();
        taken.clear();
        limit.restore();
        REQUIRE(test::run_until(map, [&] { return taken.size() == clients - 2 || t.done(); }));
        CHECK_FALSE(t.done());
        t.terminate();
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        err.restore();
        CHECK(log.find("accept: Too many open files") != std::string::npos);
    }

    TEST_CASE("EMFILE: an accept() with a timeout, in a task or blocking, times out") {
        ChannelMap map;
        AsyncSocket listener(AF_INET, SOCK_STREAM);
        listener.bind(test::loopback(AF_INET));
        listener.listen(8);
        const asyncore::Address to = listener.local_address();
        asyncore::Socket client = asyncore::Socket::create(AF_INET, SOCK_STREAM);
        REQUIRE(
            (::connect(client.fd(), to.native(), to.native_size()) == 0 || errno == EINPROGRESS));
        listener.settimeout(300ms);
        test::StderrCapture err;
        test::NofileLimit limit;
        REQUIRE(limit.set(static_cast<rlim_t>(test::highest_open_fd()) + 1));
        std::vector<asyncore::Socket> ballast;
        for (int fd; (fd = ::dup(0)) >= 0;)
            ballast.emplace_back(fd);
        REQUIRE(errno == EMFILE);

        bool timed_out = false;
        run_task(map, [&]() -> Task<void> {
            try {
                co_await listener.accept();
            } catch (const asyncore::TimeoutError&) {
                timed_out = true;
            }
        });
        CHECK(timed_out);
        CHECK_THROWS_AS(listener.accept().wait(), asyncore::TimeoutError);
        const std::string log = err.text();
        auto pauses = std::count(log.begin(), log.end(), '\n');
        CHECK(pauses >= 2);
        CHECK(pauses < 20);  // a few per 300 ms, not one per attempt of a spin

        // Nothing was lost: once descriptors are free the connection is taken.
        ballast.clear();
        limit.restore();
        listener.settimeout(10s);
        auto conn = listener.accept().wait();
        CHECK(conn.sock);
        err.restore();
    }

    TEST_CASE("blocking mode runs the same operations from a plain thread") {
        auto [a, b] = async_pair();
        std::string got;
        std::optional<std::string> msg;
        std::thread peer([&] {
            b.send_msg("from thread").wait();
            got = b.recvall(4).wait();
        });
        msg = a.recv_msg().wait();
        a.sendall("pong").wait();
        peer.join();
        CHECK(msg == "from thread");
        CHECK(got == "pong");
        a.settimeout(20ms);
        CHECK_THROWS_AS(a.recv(1).wait(), asyncore::TimeoutError);
    }

    TEST_CASE("blocking-mode clients in four threads talk to tasks on the loop at once") {
        ChannelMap map;
        auto listener_sock = test::listen_on(AF_INET, 64);
        AsyncSocket listener(std::move(listener_sock.sock));
        constexpr int clients = 4;
        constexpr int messages = 200;
        auto serve = [](AsyncSocket conn) -> Task<void> {
            while (auto msg = co_await conn.recv_msg())
                co_await conn.send_msg(*msg + "!");
        };
        int served = 0;
        std::vector<asyncore::TaskRef> conns;
        auto acceptor = [&]() -> Task<void> {
            for (int i = 0; i < clients; ++i) {
                auto [conn, addr] = co_await listener.accept();
                conns.push_back(asyncore::spawn(serve(std::move(conn)), map));
                ++served;
            }
        };
        auto accepting = asyncore::spawn(acceptor(), map);
        std::atomic<int> good{0};
        std::vector<std::thread> threads;
        for (int c = 0; c < clients; ++c) {
            threads.emplace_back([&, c] {
                AsyncSocket s(AF_INET, SOCK_STREAM);
                s.settimeout(10s);
                s.connect(listener_sock.addr).wait();
                int ok = 0;
                for (int i = 0; i < messages; ++i) {
                    std::string m = std::to_string(c) + ":" + std::to_string(i);
                    s.send_msg(m).wait();
                    if (s.recv_msg().wait() == m + "!") ++ok;
                }
                s.shutdown(SHUT_WR);
                if (!s.recv_msg().wait()) good += ok;  // the server closes after EOF
            });
        }
        REQUIRE(test::run_until(map, [&] {
            if (!accepting.done()) return false;
            for (auto& t : conns)
                if (!t.done()) return false;
            return true;
        }));
        for (auto& t : threads)
            t.join();
        CHECK(served == clients);
        CHECK(good == clients * messages);
    }

    TEST_CASE("sendall of a std::string rvalue owns it while it waits for room") {
        ChannelMap map;
        auto [a, b] = async_pair();
        auto write = [&]() -> Task<void> {
            co_await a.sendall(pattern(big_size) + "<end>");
            co_await a.sendall(std::string("short"));
        };
        auto writer = asyncore::spawn(write(), map);
        test::run_passes(map, 2);
        CHECK_FALSE(writer.done());
        const std::string expected = pattern(big_size) + "<end>short";
        std::string got;
        run_task(map, [&]() -> Task<void> { got = co_await b.recvall(expected.size()); });
        REQUIRE(test::run_until(map, [&] { return writer.done(); }));
        CHECK(writer.state()->error() == nullptr);
        CHECK(got.size() == expected.size());
        CHECK(got == expected);
    }

    TEST_CASE("send_msg of a std::string rvalue owns it while it waits for room") {
        ChannelMap map;
        auto [a, b] = async_pair();
        auto write = [&]() -> Task<void> {
            co_await a.send_msg(pattern(big_size) + "<msg>");
            co_await a.send_msg(std::string("tiny"));
        };
        auto writer = asyncore::spawn(write(), map);
        test::run_passes(map, 2);
        CHECK_FALSE(writer.done());
        std::optional<std::string> big, tiny;
        run_task(map, [&]() -> Task<void> {
            big = co_await b.recv_msg();
            tiny = co_await b.recv_msg();
        });
        REQUIRE(test::run_until(map, [&] { return writer.done(); }));
        CHECK(writer.state()->error() == nullptr);
        REQUIRE(big.has_value());
        CHECK(big->size() == big_size + 5);
        CHECK(*big == pattern(big_size) + "<msg>");
        CHECK(tiny == "tiny");
    }

    TEST_CASE("an owning send takes the string's buffer, and a viewing one the caller's bytes") {
        auto [a, b] = async_pair();
        std::string heap = pattern(1000);
        const char* bytes = heap.data();
        auto owning = a.sendall(std::move(heap));
        CHECK(owning.out.data() == bytes);
        CHECK(owning.out.size() == 1000);
        std::string kept = pattern(1000);
        auto viewing = a.send_msg(kept);
        CHECK(viewing.out.data() == kept.data());
        CHECK(kept.size() == 1000);
    }

    TEST_CASE("literals, views and lvalue strings still send, and lvalues are left intact") {
        ChannelMap map;
        auto [a, b] = async_pair();
        std::string lvalue = "lvalue|";
        const std::string constant = "const|";
        run_task(map, [&]() -> Task<void> {
            co_await a.sendall("literal|");
            co_await a.sendall(std::string_view("view|"));
            co_await a.sendall(lvalue);
            co_await a.sendall(constant);
            co_await a.send_msg("m");
            co_await a.send_msg(lvalue);
        });
        CHECK(lvalue == "lvalue|");
        const std::string expected =
            std::string("literal|view|lvalue|const|") + std::string("\0\0\0\1m\0\0\0\7lvalue|", 16);
        CHECK(test::read_exactly(b.fd(), expected.size()) == expected);
    }

    TEST_CASE("blocking sendall and send_msg take std::string rvalues") {
        auto [a, b] = async_pair();
        a.settimeout(10s);
        b.settimeout(10s);
        std::string got;
        std::optional<std::string> msg;
        std::exception_ptr peer_error;
        std::thread peer([&] {
            try {
                got = b.recvall(big_size + 5).wait();
                msg = b.recv_msg().wait();
            } catch (...) {
                peer_error = std::current_exception();
            }
        });
        a.sendall(pattern(big_size) + "<end>").wait();
        a.send_msg(pattern(big_size) + "<msg>").wait();
        peer.join();
        CHECK(peer_error == nullptr);
        CHECK(got == pattern(big_size) + "<end>");
        REQUIRE(msg.has_value());
        CHECK(*msg == pattern(big_size) + "<msg>");
    }

    TEST_CASE("UDP datagrams go out with sendto and come back with recvfrom") {
        ChannelMap map;
        AsyncSocket server(AF_INET, SOCK_DGRAM);
        server.bind(asyncore::Address::ipv4("127.0.0.1", 0));
        AsyncSocket client(AF_INET, SOCK_DGRAM);
        client.bind(asyncore::Address::ipv4("127.0.0.1", 0));
        asyncore::Datagram reply;
        run_task(map, [&]() -> Task<void> {
            auto serve = [&]() -> Task<void> {
                auto d = co_await server.recvfrom(100);
                co_await server.sendto("re: " + d.data, d.from);
            };
            auto serving = asyncore::spawn(serve(), map);
            co_await client.sendto("ping", server.local_address());
            reply = co_await client.recvfrom(100);
            co_await serving;
        });
        CHECK(reply.data == "re: ping");
        CHECK(reply.from == server.local_address());
    }

    TEST_CASE("connect to a closed port raises ECONNREFUSED") {
        ChannelMap map;
        auto l = test::listen_on(AF_INET);
        auto addr = l.addr;
        l.sock.reset();
        std::error_code code;
        run_task(map, [&]() -> Task<void> {
            AsyncSocket s(AF_INET, SOCK_STREAM);
            try {
                co_await s.connect(addr);
            } catch (const std::system_error& e) {
                code = e.code();
            }
        });
        CHECK(code == std::errc::connection_refused);
    }

    TEST_CASE("connect resolves a host name without blocking the loop") {
        ChannelMap map;
        auto l = test::listen_on(AF_INET);
        bool connected = false;
        run_task(map, [&]() -> Task<void> {
            AsyncSocket s(AF_INET, SOCK_STREAM);
            co_await s.connect("localhost", l.addr.port());
            connected = s.peer_address().port() == l.addr.port();
        });
        CHECK(connected);
    }

    TEST_CASE("10000 concurrent tasks each do socket I/O") {
        constexpr int pairs = 5000;
        if (test::raise_fd_limit(2 * pairs + 200) < 2 * pairs + 200) {
            MESSAGE("RLIMIT_NOFILE too low; skipped");
            return;
        }
        ChannelMap map;
        int before = test::open_fds();
        int finished = 0;
        {
            std::vector<asyncore::TaskRef> tasks;
            for (int i = 0; i < pairs; ++i) {
                auto [a, b] = async_pair();
                tasks.push_back(asyncore::spawn(
                    [](AsyncSocket s, int i, int& done) -> Task<void> {
                        std::string msg = "ping " + std::to_string(i);
                        co_await s.send_msg(msg);
                        auto back = co_await s.recv_msg();
                        CHECK(back == "pong " + std::to_string(i));
                        ++done;
                    }(std::move(a), i, finished),
                    map));
                tasks.push_back(asyncore::spawn(
                    [](AsyncSocket s, int& done) -> Task<void> {
                        auto m = co_await s.recv_msg();
                        co_await s.send_msg("pong " + m->substr(5));
                        ++done;
                    }(std::move(b), finished),
                    map));
            }
            REQUIRE(test::run_until(
                map, [&] { return finished == 2 * pairs; }, 60s));
        }
        CHECK(test::open_fds() == before);
    }

    TEST_CASE("send_msg interoperates with a Python peer framing with struct.pack('>L')") {
        ChannelMap map;
        AsyncSocket listener(AF_INET, SOCK_STREAM);
        listener.bind(asyncore::Address::ipv4("127.0.0.1", 0));
        listener.listen();
        std::string port = std::to_string(listener.local_address().port());
        const char* script = R"(
import socket, struct, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
def recvall(n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit(3)
        b += c
    return b
for m in [b'', b'a', bytes(range(256)) * 4000]:
    s.sendall(struct.pack('>L', len(m)) + m)
    n = struct.unpack('>L', recvall(4))[0]
    if recvall(n) != m: raise SystemExit(2)
s.close()
)";
        test::Child py({"python3", "-c", script, port});
        int echoed = 0;
        run_task(map, [&]() -> Task<void> {
            auto [conn, addr] = co_await listener.accept();
            conn.settimeout(10s);
            while (auto m = co_await conn.recv_msg()) {
                co_await conn.send_msg(*m);
                ++echoed;
            }
        });
        CHECK(py.wait() == 0);
        CHECK(echoed == 3);
    }

    TEST_CASE("messages arriving in one segment are read apart, and later reads get what follows") {
        ChannelMap map;
        auto [a, b] = async_pair();
        test::write_all(b.fd(), std::string("\0\0\0\2hi\0\0\0\0\0\0\0\3yesTAIL-and-more", 30));
        std::vector<std::string> got;
        run_task(map, [&]() -> Task<void> {
            for (int i = 0; i < 3; ++i)
                got.push_back(*co_await a.recv_msg());
            got.push_back(co_await a.recv(4));
            got.push_back(co_await a.recvall(9));
        });
        CHECK(got == std::vector<std::string>{"hi", "", "yes", "TAIL", "-and-more"});
    }

    TEST_CASE("a read after a short read waits for readiness first and still gets what came") {
        for (int family : {AF_INET, AF_UNIX}) {
            CAPTURE(family);
            ChannelMap map;
            auto [a, b] = async_pair(family);
            test::write_all(b.fd(), "one");
            {
                auto first = a.recv(100);
                REQUIRE(first.await_ready());
                CHECK(first.await_resume() == "one");
            }
            // Queued before the next read starts: the short read drained the
            // socket, so that read waits instead of calling recv(), and the
            // level-triggered readiness wait must end at once.
            test::write_all(b.fd(), "two");
            {
                auto skipped = a.recv(100);
                CHECK_FALSE(skipped.await_ready());
            }
            std::string got;
            run_task(
                map, [&]() -> Task<void> { got = co_await a.recv(100); }, 2s);
            CHECK(got == "two");
        }
    }

    TEST_CASE("datagram reads always try first: a short datagram says nothing of the next") {
        ChannelMap map;
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) == 0);
        AsyncSocket a{asyncore::Socket(fds[0])};
        AsyncSocket b{asyncore::Socket(fds[1])};
        REQUIRE(::send(b.fd(), "first", 5, 0) == 5);
        REQUIRE(::send(b.fd(), "second", 6, 0) == 6);
        auto one = a.recv(100);
        REQUIRE(one.await_ready());
        CHECK(one.await_resume() == "first");
        auto two = a.recv(100);
        REQUIRE(two.await_ready());
        CHECK(two.await_resume() == "second");
    }

    TEST_CASE("a recv larger than the scratch buffer returns what arrived, waiting or not") {
        ChannelMap map;
        auto [a, b] = async_pair();
        constexpr std::size_t big = std::size_t{1} << 20;
        test::write_all(b.fd(), "ready");
        {
            auto op = a.recv(big);
            REQUIRE(op.await_ready());
            CHECK(op.await_resume() == "ready");
        }
        std::string got;
        auto read_big = [&]() -> Task<void> { got = co_await a.recv(big); };
        auto reader = asyncore::spawn(read_big(), map);
        REQUIRE(test::run_until(
            map, [&] { return map.stats().passes >= 2; }, 2s));
        CHECK(got.empty());
        test::write_all(b.fd(), "later");
        REQUIRE(test::run_until(
            map, [&] { return reader.done(); }, 2s));
        CHECK(got == "later");
    }

    TEST_CASE("recv_into replaces the buffer's contents, reuses its capacity and gives 0 at EOF") {
        ChannelMap map;
        auto [a, b] = async_pair();
        std::string buf;
        buf.reserve(64);
        const char* storage = buf.data();
        std::vector<std::size_t> counts;
        std::vector<std::string> got;
        auto reader = [&]() -> Task<void> {
            for (;;) {
                std::size_t n = co_await a.recv_into(buf, 16);
                counts.push_back(n);
                if (n == 0) break;
                got.push_back(buf);
            }
        };
        auto t = asyncore::spawn(reader(), map);
        REQUIRE(test::run_until(
            map, [&] { return map.stats().passes >= 2; }, 2s));
        test::write_all(b.fd(), "first message");
        REQUIRE(test::run_until(
            map, [&] { return got.size() == 1; }, 2s));
        test::write_all(b.fd(), "two");
        REQUIRE(test::run_until(
            map, [&] { return got.size() == 2; }, 2s));
        b.close();
        REQUIRE(test::run_until(
            map, [&] { return t.done(); }, 2s));
        CHECK(got == std::vector<std::string>{"first message", "two"});
        CHECK(counts == std::vector<std::size_t>{13, 3, 0});
        CHECK(buf.empty());
        CHECK(buf.data() == storage);
    }

    TEST_CASE(
        "a task woken by readiness that closes its socket and waits on a new one on the same "
        "descriptor is woken by the new one") {
        // The task resumes inside the old socket's readiness callback, and
        // the new socket gets the lowest free descriptor: the one just closed.
        ChannelMap map;
        auto [a, b] = async_pair();
        const int old_fd = a.fd();
        asyncore::Socket next_peer;
        int next_fd = -1;
        std::string got;
        auto body = [&]() -> Task<void> {
            co_await a.recv(10);
            a.close();
            auto [p, q] = test::connected_pair(AF_UNIX);
            next_peer = std::move(q);
            AsyncSocket next(std::move(p));
            next_fd = next.fd();
            got = co_await next.recv(10);
        };
        auto t = asyncore::spawn(body(), map);
        REQUIRE(test::run_until(map, [&] { return map.stats().passes >= 2; }));
        test::write_all(b.fd(), "first");
        REQUIRE(test::run_until(map, [&] { return next_fd >= 0; }));
        REQUIRE(next_fd == old_fd);  // the premise: the descriptor was reused
        test::run_passes(map, 2);
        REQUIRE_FALSE(t.done());  // the new socket's recv waits for readiness
        test::write_all(next_peer.fd(), "second");
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(got == "second");
    }

    TEST_CASE("destroying or replacing a socket another task waits on wakes it with EBADF") {
        for (bool replace : {false, true}) {
            CAPTURE(replace);
            ChannelMap map;
            auto [a, b] = async_pair();
            auto owned = std::make_unique<AsyncSocket>(std::move(a));
            std::error_code code;
            auto wait_read = [&](AsyncSocket& s) -> Task<void> {
                try {
                    co_await s.recv(10);
                } catch (const std::system_error& e) {
                    code = e.code();
                }
            };
            auto drop = [&]() -> Task<void> {
                co_await asyncore::sleep(1ms);
                if (replace) {
                    *owned = AsyncSocket(AF_UNIX, SOCK_STREAM);
                } else {
                    owned.reset();
                }
            };
            auto waiter = asyncore::spawn(wait_read(*owned), map);
            auto dropper = asyncore::spawn(drop(), map);
            REQUIRE(test::run_until(map, [&] { return waiter.done() && dropper.done(); }));
            CHECK(code == std::errc::bad_file_descriptor);
        }
    }

    TEST_CASE("a socket destroyed after terminate() and before its waiting task unwinds is safe") {
        // terminate() queues the task's resumption: the socket goes away
        // first, as when a server stops its connection tasks and then drops
        // their sockets.
        ChannelMap map;
        auto [a, b] = async_pair();
        auto owned = std::make_unique<AsyncSocket>(std::move(a));
        auto wait_read = [](AsyncSocket& s) -> Task<void> { co_await s.recv(10); };
        auto waiter = asyncore::spawn(wait_read(*owned), map);
        test::run_passes(map, 2);
        REQUIRE_FALSE(waiter.done());
        waiter.terminate();
        owned.reset();
        REQUIRE(test::run_until(map, [&] { return waiter.done(); }));
        CHECK(test::is_cancelled(waiter.state()->error()));
    }

    TEST_CASE(
        "closing a socket wakes both its waiting read and write with EBADF, not with what a "
        "new socket on the same descriptor receives") {
        ChannelMap map;
        auto [a, b] = async_pair();
        const int old_fd = a.fd();
        const std::string big(big_size, 'z');
        std::error_code read_code;
        std::error_code write_code;
        auto reader = [&]() -> Task<void> {
            try {
                co_await a.recv(10);
            } catch (const std::system_error& e) {
                read_code = e.code();
            }
        };
        auto writer = [&]() -> Task<void> {
            try {
                co_await a.sendall(big);
            } catch (const std::system_error& e) {
                write_code = e.code();
            }
        };
        std::pair<asyncore::Socket, asyncore::Socket> next;
        auto closer = [&]() -> Task<void> {
            co_await asyncore::sleep(1ms);
            a.close();
            // Readable and writable at once, on the descriptor just freed.
            next = test::connected_pair(AF_UNIX);
            test::write_all(next.second.fd(), "stale?");
        };
        auto r = asyncore::spawn(reader(), map);
        auto w = asyncore::spawn(writer(), map);
        test::run_passes(map, 2);
        REQUIRE_FALSE(w.done());  // the premise: the write waits for room
        auto c = asyncore::spawn(closer(), map);
        REQUIRE(test::run_until(map, [&] { return r.done() && w.done() && c.done(); }));
        REQUIRE(next.first.fd() == old_fd);
        CHECK(read_code == std::errc::bad_file_descriptor);
        CHECK(write_code == std::errc::bad_file_descriptor);
    }
}
