// AsyncSocket over TLS: accept/connect handshakes, plaintext through
// records, certificate checks, timeouts, EOF with and without close_notify,
// blocking mode, cancellation, and an AsyncSocket client against a
// Dispatcher server. Part of the tls suite.
#include <asyncore/async_socket.hpp>

#include <doctest/doctest.h>

#include <asyncore/dispatcher.hpp>
#include <asyncore/dispatcher_with_send.hpp>
#include <asyncore/tls.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../lib/detail/map_core.hpp"
#include "support/fixtures.hpp"
#include "support/task_fixtures.hpp"
#include "support/tls_fixtures.hpp"

using namespace std::chrono_literals;
using namespace asyncore;

namespace {

using test::client_ctx;
using test::contains;
using test::server_ctx;

std::string payload(std::size_t n) {
    return test::random_bytes(n, 4711);
}

/// What an operation threw: its code, and TlsError's reason (or what()).
struct Caught {
    bool any = false;
    bool tls = false;
    bool timeout = false;
    std::error_code code;
    std::string reason;
};

void record(Caught& c, std::exception_ptr e) {
    c.any = true;
    try {
        std::rethrow_exception(e);
    } catch (const TlsError& t) {
        c.tls = true;
        c.code = t.code();
        c.reason = t.reason();
    } catch (const TimeoutError& t) {
        c.timeout = true;
        c.code = t.code();
    } catch (const std::system_error& s) {
        c.code = s.code();
        c.reason = s.what();
    } catch (const std::exception& x) {
        c.reason = x.what();
    }
}

/// Runs `t` inline, recording what it throws instead of propagating it.
Task<void> catching(Task<void> t, Caught& c) {
    try {
        co_await t;
    } catch (...) {
        record(c, std::current_exception());
    }
}

/// The same for a socket operation (awaited within the caller's expression).
template <class Op>
Task<void> catching(Op&& op, Caught& c) {
    try {
        co_await op;
    } catch (...) {
        record(c, std::current_exception());
    }
}

// Runs `body` as a task on `map` until it ends; rethrows what it threw.
template <class F>
void run_task(ChannelMap& map, F body, std::chrono::seconds limit = 10s) {
    auto t = spawn(body(), map);
    REQUIRE(test::run_until(
        map, [&] { return t.done(); }, limit));
    if (auto e = t.state()->take_error()) std::rethrow_exception(e);
}

AsyncSocket tls_listener(int family, TlsContext ctx) {
    AsyncSocket l(family, SOCK_STREAM, std::move(ctx));
    l.bind(test::loopback(family));
    l.listen();
    return l;
}

struct EchoLog {
    bool established_at_accept = false;
    std::size_t bytes = 0;
};

// Accepts one connection and echoes it until EOF.
Task<void> echo_one(AsyncSocket& listener, EchoLog& log) {
    auto [conn, addr] = co_await listener.accept();
    log.established_at_accept = conn.tls_established();
    for (;;) {
        std::string data = co_await conn.recv(65536);
        if (data.empty()) break;
        log.bytes += data.size();
        co_await conn.sendall(data);
    }
}

Task<void> sendall_task(AsyncSocket& s, const std::string& data) {
    co_await s.sendall(data);
}

// Handshakes `b` as the server and `a` as a client (for "localhost").
void handshake_pair(ChannelMap& map, AsyncSocket& a, AsyncSocket& b) {
    run_task(map, [&]() -> Task<void> {
        auto server =
            spawn([](AsyncSocket& s) -> Task<void> { co_await s.start_tls(server_ctx()); }(b), map);
        co_await a.start_tls(client_ctx(), "localhost");
        co_await server;
    });
}

std::pair<AsyncSocket, AsyncSocket> tls_pair(ChannelMap& map) {
    auto [x, y] = test::connected_pair(AF_UNIX);
    AsyncSocket a(std::move(x)), b(std::move(y));
    handshake_pair(map, a, b);
    return {std::move(a), std::move(b)};
}

int added_events(ChannelMap& map) {
    return static_cast<int>(detail::core_of(map).reactor.started_watches());
}

/// A Dispatcher-layer TLS echo server, for the mixed-layer test.
class DispatcherEcho : public DispatcherWithSend {
  public:
    DispatcherEcho(Socket s, ChannelMap& map, const TlsContext& ctx)
        : DispatcherWithSend(std::move(s), map) {
        start_tls(ctx, true);
    }
    void handle_read() override {
        char buf[16384];
        std::size_t n = recv_into(buf);
        if (n > 0) send(std::string_view(buf, n));
    }
    void handle_close() override { close(); }
};

class DispatcherEchoServer : public Dispatcher {
  public:
    DispatcherEchoServer(ChannelMap& map, TlsContext ctx) : Dispatcher(map), ctx_(std::move(ctx)) {
        create_socket(AF_INET, SOCK_STREAM);
        bind(test::loopback(AF_INET));
        listen(8);
    }
    void handle_accepted(Socket sock, const Address&) override {
        make<DispatcherEcho>(std::move(sock), map(), ctx_);
    }

  private:
    TlsContext ctx_;
};

/// A TCP client that connects to `addr` and sends nothing: an accept() over
/// TLS then waits in its handshake for a ClientHello that never comes.
Socket silent_client(const Address& addr) {
    Socket c = Socket::create(addr.family(), SOCK_STREAM);
    c.set_nonblocking(false);  // connected, and queued at the listener, on return
    REQUIRE(::connect(c.fd(), addr.native(), addr.native_size()) == 0);
    return c;
}

/// Whether a connection is waiting in `listener`'s accept queue.
bool connection_queued(const AsyncSocket& listener) {
    pollfd p{listener.fd(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}

/// Connects a silent client to `listener`, whose accept() already waits in
/// a task on `map`, and runs `map` until that accept() took the connection
/// and waits in its handshake on it.
Socket handshaking_accept(ChannelMap& map, const AsyncSocket& listener) {
    test::run_passes(map, 2);
    Socket client = silent_client(listener.local_address());
    REQUIRE(test::run_until(map, [&] { return !connection_queued(listener); }));
    test::run_passes(map, 2);
    return client;
}

bool timed_out(std::exception_ptr e) {
    try {
        if (e) std::rethrow_exception(e);
    } catch (const TimeoutError&) {
        return true;
    } catch (...) {
    }
    return false;
}

/// Whether the server end of `client` was closed: EOF, within the watchdog.
bool peer_closed(const Socket& client) {
    pollfd p{client.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(test::watchdog / 1ms)) != 1) return false;
    char c = 0;
    return ::recv(client.fd(), &c, 1, MSG_DONTWAIT) == 0;
}

}  // namespace

TEST_SUITE("tls") {
    TEST_CASE("AsyncSocket: a 1 MiB echo over TLS arrives intact over IPv4 and Unix sockets") {
        for (int family : {AF_INET, AF_UNIX}) {
            CAPTURE(family);
            ChannelMap map;
            AsyncSocket listener = tls_listener(family, server_ctx());
            EchoLog log;
            auto server = spawn(echo_one(listener, log), map);
            const std::string data = payload(1 << 20);
            std::string back, version;
            run_task(map, [&]() -> Task<void> {
                AsyncSocket c(family, SOCK_STREAM, client_ctx(), "localhost");
                co_await c.connect(listener.local_address());
                version = c.tls_version();
                auto writer = spawn(sendall_task(c, data), map);
                back = co_await c.recvall(data.size());
                co_await writer;
                co_await c.shutdown_tls();
            });
            REQUIRE(test::run_until(map, [&] { return server.done(); }));
            CHECK(server.state()->take_error() == nullptr);  // close_notify: a clean EOF
            CHECK(log.established_at_accept);
            CHECK(log.bytes == data.size());
            CHECK(back == data);
            CHECK(version == "TLSv1.3");
        }
    }

    TEST_CASE("AsyncSocket: connect(host, port) verifies the host name it was given") {
        ChannelMap map;
        AsyncSocket listener = tls_listener(AF_INET, server_ctx());
        EchoLog log;
        auto server = spawn(echo_one(listener, log), map);
        std::string back;
        run_task(map, [&]() -> Task<void> {
            AsyncSocket c(AF_INET, SOCK_STREAM, client_ctx());
            co_await c.connect("localhost", listener.local_address().port());
            co_await c.sendall("by name");
            back = co_await c.recvall(7);
        });
        CHECK(back == "by name");
    }

    TEST_CASE("AsyncSocket: send_msg and recv_msg frame plaintext inside TLS records") {
        ChannelMap map;
        auto [a, b] = tls_pair(map);
        std::vector<std::string> sent = {"one", "", payload(100000), "last"};
        std::vector<std::string> got;
        bool eof = false;
        auto echo = spawn(
            [](AsyncSocket& s) -> Task<void> {
                while (auto msg = co_await s.recv_msg())
                    co_await s.send_msg(*msg);
            }(b),
            map);
        run_task(map, [&]() -> Task<void> {
            for (auto& m : sent)
                co_await a.send_msg(m);
            for (std::size_t i = 0; i < sent.size(); ++i)
                got.push_back(*co_await a.recv_msg());
            co_await a.shutdown_tls();
        });
        REQUIRE(test::run_until(map, [&] { return echo.done(); }));
        CHECK(echo.state()->take_error() == nullptr);
        CHECK(got == sent);
        b.close();
        run_task(map, [&]() -> Task<void> { eof = !(co_await a.recv_msg()).has_value(); });
        CHECK(eof);
    }

    TEST_CASE("AsyncSocket: a read after a short one takes the records OpenSSL already holds") {
        // The first recv() comes back short, which on a plain socket means
        // the kernel is drained; here read-ahead has pulled the second
        // record into OpenSSL, so the second recv() must not wait for a
        // readiness that will never come.
        ChannelMap map;
        auto [a, b] = tls_pair(map);
        b.settimeout(2s);
        std::string first, second;
        run_task(map, [&]() -> Task<void> {
            co_await a.sendall("first");
            co_await a.sendall("second");
            first = co_await b.recv(4096);
            second = co_await b.recv(4096);
        });
        CHECK(first == "first");
        CHECK(second == "second");
    }

    TEST_CASE(
        "AsyncSocket: bad server certificates are rejected by default with OpenSSL's reason") {
        struct Case {
            std::string cert, key, host, reason;
        };
        const auto& f = test::tls_files();
        std::vector<Case> cases = {
            {f.wrong_host_cert, f.wrong_host_key, "localhost", "hostname mismatch"},
            {f.wrong_host_cert, f.wrong_host_key, "", "IP address mismatch"},  // 127.0.0.1
            {f.self_signed_cert, f.self_signed_key, "localhost", "self-signed certificate"},
            {f.expired_cert, f.expired_key, "localhost", "certificate has expired"},
        };
        for (const Case& c : cases) {
            CAPTURE(c.reason);
            ChannelMap map;
            AsyncSocket listener = tls_listener(AF_INET, TlsContext::server(c.cert, c.key));
            EchoLog log;
            Caught srv, cli;
            auto server = spawn(catching(echo_one(listener, log), srv), map);
            bool connected = false;
            run_task(map, [&]() -> Task<void> {
                AsyncSocket s(AF_INET, SOCK_STREAM, client_ctx(), c.host);
                try {
                    co_await s.connect(listener.local_address());
                    connected = true;
                } catch (...) {
                    record(cli, std::current_exception());
                }
            });
            REQUIRE(test::run_until(map, [&] { return server.done(); }));
            CHECK_FALSE(connected);
            CHECK(cli.tls);
            CHECK(cli.code == errc::tls_verification_failed);
            CHECK(cli.reason == "certificate verify failed: " + c.reason);
            CHECK(srv.tls);  // the client's alert fails the accept
            CHECK(log.bytes == 0);
        }
    }

    TEST_CASE(
        "AsyncSocket: client certificates are required and checked when the server names a CA") {
        const auto& f = test::tls_files();
        auto server_with_ca = TlsContext::server(f.server_cert, f.server_key, f.ca_cert);
        struct Case {
            const char* name;
            std::string cert, key;
        };
        for (const Case& c : {Case{"issued", f.client_cert, f.client_key}, Case{"none", "", ""},
                              Case{"other issuer", f.self_signed_cert, f.self_signed_key}}) {
            CAPTURE(c.name);
            ChannelMap map;
            AsyncSocket listener = tls_listener(AF_INET, server_with_ca);
            EchoLog log;
            Caught srv, cli;
            auto server = spawn(catching(echo_one(listener, log), srv), map);
            std::string back;
            run_task(map, [&]() -> Task<void> {
                auto ctx = client_ctx();
                if (!c.cert.empty()) ctx.use_certificate(c.cert, c.key);
                AsyncSocket s(AF_INET, SOCK_STREAM, ctx, "localhost");
                try {
                    co_await s.connect(listener.local_address());
                    co_await s.sendall("ping");
                    back = co_await s.recv(10);  // TLS 1.3: the server's verdict arrives here
                } catch (...) {
                    record(cli, std::current_exception());
                }
            });
            REQUIRE(test::run_until(map, [&] { return server.done(); }));
            if (std::string(c.name) == "issued") {
                CHECK_FALSE(srv.any);
                CHECK_FALSE(cli.any);
                CHECK(back == "ping");
                continue;
            }
            CHECK(back.empty());
            CHECK(log.bytes == 0);
            CHECK(srv.code == errc::tls_verification_failed);
            if (c.cert.empty()) {
                CHECK(srv.reason == "peer did not return a certificate");
                CHECK(contains(cli.reason, "alert certificate required"));
            } else {
                CHECK(contains(srv.reason, "certificate verify failed: "));
            }
            CHECK(cli.tls);
        }
    }

    TEST_CASE("AsyncSocket: a peer closing mid-handshake is an error, not a hang") {
        SUBCASE("the client goes away after half a record: accept fails") {
            ChannelMap map;
            AsyncSocket listener = tls_listener(AF_INET, server_ctx());
            EchoLog log;
            Caught srv;
            auto server = spawn(catching(echo_one(listener, log), srv), map);
            run_task(map, [&]() -> Task<void> {
                AsyncSocket plain(AF_INET, SOCK_STREAM);
                co_await plain.connect(listener.local_address());
                const std::string half_record("\x16\x03\x01\x02\x00\x01", 6);
                co_await plain.sendall(half_record);
            });
            REQUIRE(test::run_until(map, [&] { return server.done(); }));
            CHECK(srv.tls);
            CHECK(srv.code == errc::tls_error);
            CHECK(contains(srv.reason, "during the TLS handshake"));
        }
        SUBCASE("the server reads the ClientHello and closes: connect fails") {
            ChannelMap map;
            AsyncSocket listener(AF_INET, SOCK_STREAM);
            listener.bind(test::loopback(AF_INET));
            listener.listen();
            auto server = spawn(
                [](AsyncSocket& l) -> Task<void> {
                    auto [conn, addr] = co_await l.accept();
                    co_await conn.recv(4096);
                }(listener),
                map);
            Caught cli;
            run_task(map, [&]() -> Task<void> {
                AsyncSocket c(AF_INET, SOCK_STREAM, client_ctx(), "localhost");
                co_await catching(c.connect(listener.local_address()), cli);
            });
            CHECK(cli.tls);
            CHECK(contains(cli.reason, "during the TLS handshake"));
        }
    }

    TEST_CASE("AsyncSocket: a handshake that stalls times out on either side") {
        SUBCASE("accept: a client that sends nothing") {
            ChannelMap map;
            AsyncSocket listener = tls_listener(AF_INET, server_ctx());
            CHECK(listener.handshake_timeout() == std::chrono::seconds(60));
            listener.set_handshake_timeout(100ms);
            EchoLog log;
            Caught srv;
            AsyncSocket silent(AF_INET, SOCK_STREAM);
            auto start = std::chrono::steady_clock::now();
            auto server = spawn(catching(echo_one(listener, log), srv), map);
            run_task(map,
                     [&]() -> Task<void> { co_await silent.connect(listener.local_address()); });
            REQUIRE(test::run_until(map, [&] { return server.done(); }));
            CHECK(srv.timeout);
            CHECK(std::chrono::steady_clock::now() - start < 5s);
            CHECK_FALSE(map.has_work());
        }
        SUBCASE("connect: a server that never answers") {
            ChannelMap map;
            auto mute = test::listen_on(AF_INET);  // the kernel completes TCP; nobody speaks TLS
            Caught cli;
            auto start = std::chrono::steady_clock::now();
            run_task(map, [&]() -> Task<void> {
                AsyncSocket c(AF_INET, SOCK_STREAM, client_ctx(), "localhost");
                c.set_handshake_timeout(100ms);
                co_await catching(c.connect(mute.addr), cli);
            });
            CHECK(cli.timeout);
            CHECK(std::chrono::steady_clock::now() - start < 5s);
        }
    }

    TEST_CASE("AsyncSocket: close_notify is a clean EOF; a bare transport EOF throws truncated") {
        SUBCASE("close() sends close_notify: recv returns empty") {
            ChannelMap map;
            auto [a, b] = tls_pair(map);
            b.close();
            std::string got = "x";
            run_task(map, [&]() -> Task<void> { got = co_await a.recv(10); });
            CHECK(got.empty());
        }
        SUBCASE("the transport ends without close_notify: TlsError(truncated)") {
            ChannelMap map;
            auto [a, b] = tls_pair(map);
            b.shutdown(SHUT_WR);
            Caught c;
            run_task(map, [&]() -> Task<void> { co_await catching(a.recv(10), c); });
            CHECK(c.tls);
            CHECK(c.code == errc::truncated);
            CHECK(contains(c.reason, "close_notify"));
        }
        SUBCASE("recvall cut short by close_notify throws TruncatedError with the partial data") {
            ChannelMap map;
            auto [a, b] = tls_pair(map);
            std::string partial;
            run_task(map, [&]() -> Task<void> {
                co_await b.sendall("abc");
                b.close();
                try {
                    co_await a.recvall(10);
                } catch (const TruncatedError& e) {
                    partial = e.partial();
                }
            });
            CHECK(partial == "abc");
        }
    }

    TEST_CASE(
        "AsyncSocket: data operations before the handshake fail instead of sending plaintext") {
        ChannelMap map;
        auto [x, y] = test::connected_pair(AF_UNIX);
        AsyncSocket a(std::move(x));
        a.set_tls(client_ctx(), "localhost");
        CHECK_THROWS_AS(a.set_tls(client_ctx()), std::logic_error);
        Caught c;
        run_task(map, [&]() -> Task<void> { co_await catching(a.sendall("secret"), c); });
        CHECK(c.code == std::errc::not_connected);
        char buf[16];
        CHECK(::recv(y.fd(), buf, sizeof buf, MSG_DONTWAIT) < 0);  // nothing went out
    }

    TEST_CASE("AsyncSocket: start_tls discards plaintext received before it (STARTTLS injection)") {
        ChannelMap map;
        auto [x, y] = test::connected_pair(AF_UNIX);
        AsyncSocket a(std::move(x)), b(std::move(y));
        std::string first, second;
        run_task(map, [&]() -> Task<void> {
            // The command and an injected message arrive in one segment.
            const std::string pipelined(
                "\0\0\0\x08STARTTLS\0\0\0\x04"
                "EVIL",
                20);
            co_await a.sendall(pipelined);
            first = *co_await b.recv_msg();
            auto server = spawn(
                [](AsyncSocket& s, std::string& out) -> Task<void> {
                    co_await s.start_tls(server_ctx());
                    out = *co_await s.recv_msg();
                }(b, second),
                map);
            co_await a.start_tls(client_ctx(), "localhost");
            co_await a.send_msg("real");
            co_await server;
        });
        CHECK(first == "STARTTLS");
        CHECK(second == "real");
    }

    TEST_CASE("AsyncSocket: a blocking-mode TLS client talks to a task TLS server") {
        ChannelMap map;
        AsyncSocket listener = tls_listener(AF_INET, server_ctx());
        auto server = spawn(
            [](AsyncSocket& l) -> Task<void> {
                auto [conn, addr] = co_await l.accept();
                std::string ping = co_await conn.recvall(4);
                co_await conn.sendall(ping);
                while (auto m = co_await conn.recv_msg())
                    co_await conn.send_msg(*m);
            }(listener),
            map);
        Address addr = listener.local_address();
        std::atomic<bool> finished{false};
        std::string raw, framed, error, version;
        std::thread client([&] {
            try {
                AsyncSocket c(AF_INET, SOCK_STREAM, client_ctx(), "localhost");
                c.settimeout(5s);
                c.set_handshake_timeout(5s);
                c.connect(addr).wait();
                version = c.tls_version();
                c.sendall("ping").wait();
                raw = c.recvall(4).wait();
                c.send_msg("framed").wait();
                framed = c.recv_msg().wait().value_or("?");
                c.shutdown_tls().wait();
            } catch (const std::exception& e) {
                error = e.what();
            }
            finished = true;
        });
        bool done = test::run_until(map, [&] { return finished.load() && server.done(); });
        client.join();
        REQUIRE(done);
        CHECK(error.empty());
        CHECK(server.state()->take_error() == nullptr);
        CHECK(version == "TLSv1.3");
        CHECK(raw == "ping");
        CHECK(framed == "framed");
    }

    TEST_CASE(
        "AsyncSocket: terminating a task in a TLS read leaves no descriptor or event behind") {
        int fds_before = test::open_fds();
        {
            ChannelMap map;
            auto [a, b] = tls_pair(map);
            auto reader = spawn([](AsyncSocket& s) -> Task<void> { co_await s.recv(10); }(a), map);
            test::run_passes(map, 3);
            REQUIRE_FALSE(reader.done());
            int waiting = added_events(map);
            reader.terminate();
            REQUIRE(test::run_until(map, [&] { return reader.done(); }));
            CHECK(test::is_cancelled(reader.state()->error()));
            CHECK(added_events(map) == waiting - 1);
            CHECK_FALSE(map.has_work());
            // The session is intact: the socket still works after the cancelled read.
            std::string got;
            run_task(map, [&]() -> Task<void> {
                co_await b.sendall("after");
                got = co_await a.recvall(5);
            });
            CHECK(got == "after");
        }
        CHECK(test::open_fds() == fds_before);
    }

    TEST_CASE("AsyncSocket: a TLS client talks to a Dispatcher TLS server (mixed layers)") {
        ChannelMap map;
        DispatcherEchoServer server(map, server_ctx());
        const std::string data = payload(256 * 1024);
        std::string back;
        run_task(map, [&]() -> Task<void> {
            AsyncSocket c(AF_INET, SOCK_STREAM, client_ctx(), "localhost");
            co_await c.connect(server.local_address());
            auto writer = spawn(sendall_task(c, data), map);
            back = co_await c.recvall(data.size());
            co_await writer;
        });
        CHECK(back == data);
    }

    TEST_CASE(
        "AsyncSocket: a TLS listener destroyed, closed or replaced while its accept() handshakes "
        "wakes it with EBADF and closes the half-open connection") {
        enum class Drop { destroy, close, replace };
        for (Drop how : {Drop::destroy, Drop::close, Drop::replace}) {
            CAPTURE(static_cast<int>(how));
            int fds_before = test::open_fds();
            {
                ChannelMap map;
                auto owned = std::make_unique<AsyncSocket>(tls_listener(AF_INET, server_ctx()));
                // Shorter than the watchdog: a wake-up that never comes shows
                // as a timeout (on a freed listener, too) rather than a hang.
                owned->set_handshake_timeout(500ms);
                Caught srv;
                auto accept_one = [&](AsyncSocket& l) -> Task<void> {
                    co_await catching(l.accept(), srv);
                };
                auto drop = [&]() -> Task<void> {
                    if (how == Drop::destroy) owned.reset();
                    if (how == Drop::close) owned->close();
                    if (how == Drop::replace) *owned = AsyncSocket(AF_INET, SOCK_STREAM);
                    co_return;
                };
                auto server = spawn(accept_one(*owned), map);
                Socket client = handshaking_accept(map, *owned);
                REQUIRE_FALSE(server.done());
                auto dropper = spawn(drop(), map);
                REQUIRE(test::run_until(map, [&] { return server.done() && dropper.done(); }));
                CHECK_FALSE(srv.timeout);
                CHECK(srv.code == std::errc::bad_file_descriptor);
                CHECK(peer_closed(client));
                CHECK_FALSE(map.has_work());
            }
            CHECK(test::open_fds() == fds_before);
        }
    }

    TEST_CASE(
        "AsyncSocket: a TLS listener destroyed after its accept() handshake was terminated (before "
        "the task unwinds) or timed out is safe and closes the connection") {
        for (bool timeout : {false, true}) {
            CAPTURE(timeout);
            ChannelMap map;
            auto owned = std::make_unique<AsyncSocket>(tls_listener(AF_INET, server_ctx()));
            owned->set_handshake_timeout(timeout ? 50ms : 10s);
            std::exception_ptr error;
            auto accept_one = [&](AsyncSocket& l) -> Task<void> {
                try {
                    co_await l.accept();
                } catch (...) {
                    error = std::current_exception();
                }
            };
            Socket client;
            {
                auto server = spawn(accept_one(*owned), map);
                client = handshaking_accept(map, *owned);
                if (!timeout) {
                    REQUIRE_FALSE(server.done());
                    server.terminate();
                    owned.reset();
                }
                REQUIRE(test::run_until(map, [&] { return server.done(); }));
                CHECK(test::is_cancelled(error) == !timeout);
                CHECK(timed_out(error) == timeout);
            }
            // After a timeout, the listener outlives the task and its operation.
            owned.reset();
            CHECK(peer_closed(client));
        }
    }
}
