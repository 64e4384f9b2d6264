#include <asyncore/tls.hpp>

#include <doctest/doctest.h>

#include <asyncore/dispatcher.hpp>
#include <asyncore/dispatcher_with_send.hpp>

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/fixtures.hpp"
#include "support/tls_fixtures.hpp"

using namespace asyncore;

namespace {

/// What one TLS endpoint (or all of a server's connections) went through.
struct Log {
    int established = 0;
    int reads = 0;
    int closes = 0;
    std::string received;
    std::vector<std::string> reasons;  ///< TlsError::reason(), or "other: what()"
    std::vector<std::error_code> codes;
    bool failed() const { return !reasons.empty(); }
};

void record(Log& log, std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const TlsError& t) {
        log.reasons.push_back(t.reason());
        log.codes.push_back(t.code());
    } catch (const std::exception& x) {
        log.reasons.push_back(std::string("other: ") + x.what());
        log.codes.emplace_back();
    }
}

/// A DispatcherWithSend that logs every callback, optionally echoes, and
/// lets a test hook in: the building block of every test here.
class Peer : public DispatcherWithSend {
  public:
    Peer(Socket s, ChannelMap& map, Log& log) : DispatcherWithSend(std::move(s), map), log_(log) {}
    Peer(ChannelMap& map, Log& log) : DispatcherWithSend(map), log_(log) {}

    bool echo = false;
    std::size_t read_size = 16384;
    std::function<void(Peer&)> on_established;
    std::function<void(Peer&, std::string_view)> on_data;
    std::function<bool()> gate;  ///< readable() when set

    void handle_connect() override {}
    void handle_tls_established() override {
        ++log_.established;
        if (on_established) on_established(*this);
    }
    void handle_read() override {
        std::string buf(read_size, '\0');
        std::size_t n = recv_into(buf);
        if (n == 0) return;
        ++log_.reads;
        std::string_view data(buf.data(), n);
        log_.received.append(data);
        if (echo) send(data);
        if (on_data) on_data(*this, data);
    }
    bool readable() override { return !gate || gate(); }
    void handle_close() override {
        ++log_.closes;
        close();
    }
    void handle_error(std::exception_ptr e) override {
        record(log_, e);
        close();
    }

  private:
    Log& log_;
};

/// A listener whose connections are echoing Peers running TLS.
class EchoServer : public Dispatcher {
  public:
    EchoServer(ChannelMap& map, int family, TlsContext ctx, Log& log, bool tls_server = true)
        : Dispatcher(map), ctx_(std::move(ctx)), log_(log), tls_server_(tls_server) {
        create_socket(family, SOCK_STREAM);
        bind(test::loopback(family));
        listen(8);
        address = local_address();
    }
    void handle_accepted(Socket sock, const Address&) override {
        Peer& p = make<Peer>(std::move(sock), map(), log_);
        p.echo = true;
        p.start_tls(ctx_, tls_server_, tls_server_ ? "" : "localhost");
    }
    Address address;

  private:
    TlsContext ctx_;
    Log& log_;
    bool tls_server_;
};

using test::client_ctx;
using test::contains;
using test::server_ctx;

std::string payload(std::size_t n) {
    return test::random_bytes(n, 12345);
}

/// A connected pair with TLS started on both ends; the server end uses
/// `server`, the client end `client` with `host`.
struct TlsPair {
    TlsPair(ChannelMap& map, const TlsContext& server, const TlsContext& client,
            const std::string& host = "localhost", int family = AF_INET) {
        auto [a, b] = test::connected_pair(family);
        srv = std::make_unique<Peer>(std::move(b), map, srv_log);
        cli = std::make_unique<Peer>(std::move(a), map, cli_log);
        srv->start_tls(server, true);
        cli->start_tls(client, false, host);
    }
    Log srv_log, cli_log;
    std::unique_ptr<Peer> srv, cli;
};

}  // namespace

TEST_SUITE("tls") {
    TEST_CASE("a 1 MiB echo through a TLS echo server arrives intact over IPv4 and Unix sockets") {
        for (int family : {AF_INET, AF_UNIX}) {
            for (bool connector_is_client : {true, false}) {
                CAPTURE(family);
                CAPTURE(connector_is_client);
                ChannelMap map;
                Log srv_log, cli_log;
                TlsContext accept_ctx = connector_is_client ? server_ctx() : client_ctx();
                EchoServer server(map, family, accept_ctx, srv_log, connector_is_client);
                const std::string data = payload(1 << 20);
                Peer client(map, cli_log);
                client.create_socket(family, SOCK_STREAM);
                client.connect(server.address);
                client.on_established = [&](Peer& p) { p.send(data); };
                client.start_tls(connector_is_client ? client_ctx() : server_ctx(),
                                 !connector_is_client, "localhost");
                CHECK(cli_log.established == 0);  // never inline: the loop drives it
                REQUIRE(test::run_until(map, [&] {
                    return cli_log.received.size() >= data.size() || cli_log.failed() ||
                           srv_log.failed();
                }));
                CHECK(cli_log.reasons.empty());
                CHECK(srv_log.reasons.empty());
                CHECK(cli_log.received == data);
                CHECK(srv_log.received == data);
                CHECK(cli_log.established == 1);
                CHECK(srv_log.established == 1);
                CHECK(client.tls_established());
                CHECK(client.tls_version() == "TLSv1.3");
            }
        }
    }

    TEST_CASE("send() before the handshake completes is held back and sent encrypted after it") {
        ChannelMap map;
        TlsPair p(map, server_ctx(), client_ctx());
        p.srv->echo = true;
        p.cli->send("early words");  // handshaking: nothing is written in clear
        CHECK(p.cli->pending() == 11);
        REQUIRE(test::run_until(map, [&] { return p.cli_log.received.size() >= 11; }));
        CHECK(p.cli_log.received == "early words");
        CHECK(p.srv_log.received == "early words");
    }

    TEST_CASE("a client checks the IP address it connected to when given no host name") {
        ChannelMap map;
        Log srv_log, cli_log;
        EchoServer server(map, AF_INET, server_ctx(), srv_log);
        Peer client(map, cli_log);
        client.create_socket(AF_INET, SOCK_STREAM);
        client.connect(server.address);
        client.start_tls(client_ctx(), false);
        REQUIRE(test::run_until(map, [&] { return cli_log.established == 1 || cli_log.failed(); }));
        CHECK(cli_log.reasons.empty());
    }

    TEST_CASE("bad server certificates are rejected by default, before any handle_read") {
        struct Case {
            std::string cert, key, host, reason;
        };
        const auto& f = test::tls_files();
        std::vector<Case> cases = {
            {f.wrong_host_cert, f.wrong_host_key, "localhost", "hostname mismatch"},
            {f.wrong_host_cert, f.wrong_host_key, "127.0.0.1", "IP address mismatch"},
            {f.self_signed_cert, f.self_signed_key, "localhost", "self-signed certificate"},
            {f.expired_cert, f.expired_key, "localhost", "certificate has expired"},
        };
        for (const Case& c : cases) {
            CAPTURE(c.reason);
            ChannelMap map;
            TlsPair p(map, TlsContext::server(c.cert, c.key), client_ctx(), c.host);
            p.srv->echo = true;
            p.cli->on_established = [](Peer& peer) { peer.send("must not be sent"); };
            REQUIRE(test::run_until(map, [&] {
                return p.cli_log.failed() && (p.srv_log.failed() || p.srv_log.closes > 0);
            }));
            REQUIRE(p.cli_log.reasons.size() == 1);
            CHECK(p.cli_log.codes[0] == errc::tls_verification_failed);
            CHECK(p.cli_log.reasons[0] == "certificate verify failed: " + c.reason);
            CHECK(p.cli_log.established == 0);
            CHECK(p.cli_log.reads == 0);
            CHECK(p.srv_log.reads == 0);
            CHECK(p.srv_log.established == 0);
        }
    }

    TEST_CASE("an insecure client must say so, and then accepts a self-signed certificate") {
        ChannelMap map;
        auto insecure = TlsContext::client_insecure_no_verify();
        CHECK(insecure.verify() == TlsContext::Verify::none_insecure);
        CHECK(client_ctx().verify() == TlsContext::Verify::peer);
        TlsPair p(map,
                  TlsContext::server(test::tls_files().self_signed_cert,
                                     test::tls_files().self_signed_key),
                  insecure, "anything.invalid");
        REQUIRE(test::run_until(map, [&] { return p.cli_log.established == 1; }));
        CHECK(p.cli_log.reasons.empty());
    }

    TEST_CASE("a verifying client without a host name over a Unix socket is refused at once") {
        ChannelMap map;
        Log log;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Peer peer(std::move(a), map, log);
        CHECK_THROWS_AS(peer.start_tls(client_ctx(), false), std::invalid_argument);
        CHECK_FALSE(peer.tls_active());
        CHECK_THROWS_AS(peer.start_tls(server_ctx(), false, "localhost"), std::invalid_argument);
    }

    TEST_CASE("client certificates are required and checked when the server names a CA") {
        const auto& f = test::tls_files();
        auto server = TlsContext::server(f.server_cert, f.server_key, f.ca_cert);
        CHECK(server.verify() == TlsContext::Verify::peer);

        SUBCASE("a client with an issued certificate gets through") {
            ChannelMap map;
            auto client = client_ctx().use_certificate(f.client_cert, f.client_key);
            TlsPair p(map, server, client);
            p.srv->echo = true;
            p.cli->on_established = [](Peer& peer) { peer.send("ping"); };
            REQUIRE(test::run_until(map, [&] { return p.cli_log.received == "ping"; }));
            CHECK(p.srv_log.reasons.empty());
        }
        SUBCASE("a client without a certificate is rejected") {
            ChannelMap map;
            TlsPair p(map, server, client_ctx());
            REQUIRE(test::run_until(map, [&] { return p.srv_log.failed() && p.cli_log.failed(); }));
            CHECK(p.srv_log.codes[0] == errc::tls_verification_failed);
            CHECK(p.srv_log.reasons[0] == "peer did not return a certificate");
            CHECK(contains(p.cli_log.reasons[0], "alert certificate required"));
            CHECK(p.srv_log.established == 0);
            CHECK(p.srv_log.reads == 0);
            CHECK(p.cli_log.reads == 0);
        }
        SUBCASE("a client with a certificate from another issuer is rejected") {
            ChannelMap map;
            auto client = client_ctx().use_certificate(f.self_signed_cert, f.self_signed_key);
            TlsPair p(map, server, client);
            REQUIRE(test::run_until(map, [&] { return p.srv_log.failed() && p.cli_log.failed(); }));
            CHECK(p.srv_log.codes[0] == errc::tls_verification_failed);
            CHECK(contains(p.srv_log.reasons[0], "certificate verify failed: "));
            CHECK(p.srv_log.established == 0);
            CHECK(p.srv_log.reads == 0);
        }
    }

    TEST_CASE("a peer closing mid-handshake is an error, not a hang or a clean close") {
        SUBCASE("the server sees a client leave after half a record") {
            ChannelMap map;
            Log log;
            auto [a, b] = test::connected_pair(AF_INET);
            Peer server(std::move(b), map, log);
            server.start_tls(server_ctx(), true);
            test::write_all(a.fd(), std::string("\x16\x03\x01\x00\x80\x01", 6));
            a.reset();
            REQUIRE(test::run_until(map, [&] { return log.failed() || log.closes > 0; }));
            CHECK(log.closes == 0);
            REQUIRE(log.codes.size() == 1);
            CHECK(log.codes[0] == errc::tls_error);
            CHECK(contains(log.reasons[0], "during the TLS handshake"));
        }
        SUBCASE("the client sees the server hang up before answering") {
            ChannelMap map;
            Log log;
            test::Listener listener = test::listen_on(AF_INET);
            Peer client(map, log);
            client.create_socket(AF_INET, SOCK_STREAM);
            client.connect(listener.addr);
            client.start_tls(client_ctx(), false, "localhost");
            REQUIRE(test::run_until(map, [&] {
                // Accept and hang up at once, never answering the ClientHello.
                Socket(::accept4(listener.sock.fd(), nullptr, nullptr, SOCK_CLOEXEC)).reset();
                return log.failed() || log.closes > 0;
            }));
            CHECK(log.closes == 0);
            REQUIRE(log.codes.size() == 1);
            CHECK(log.codes[0] == errc::tls_error);
        }
    }

    TEST_CASE("a plaintext peer never yields plaintext to a TLS client") {
        ChannelMap map;
        Log log;
        auto [a, b] = test::connected_pair(AF_INET);
        Peer client(std::move(a), map, log);
        client.start_tls(client_ctx(), false, "localhost");
        test::write_all(b.fd(), "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        REQUIRE(test::run_until(map, [&] { return log.failed() || log.closes > 0; }));
        REQUIRE(log.codes.size() == 1);
        CHECK(log.codes[0] == errc::tls_error);
        CHECK(log.reads == 0);
        CHECK(log.received.empty());
    }

    TEST_CASE("EOF without close_notify is reported apart from a clean close") {
        SUBCASE("close() sends close_notify: the peer sees handle_close()") {
            ChannelMap map;
            TlsPair p(map, server_ctx(), client_ctx());
            REQUIRE(test::run_until(map, [&] { return p.srv_log.established == 1; }));
            p.srv->close();
            REQUIRE(
                test::run_until(map, [&] { return p.cli_log.closes > 0 || p.cli_log.failed(); }));
            CHECK(p.cli_log.closes == 1);
            CHECK(p.cli_log.reasons.empty());
        }
        SUBCASE("a bare FIN after the handshake is a truncation error") {
            ChannelMap map;
            TlsPair p(map, server_ctx(), client_ctx());
            REQUIRE(test::run_until(map, [&] { return p.srv_log.established == 1; }));
            ::shutdown(p.srv->fileno(), SHUT_WR);
            REQUIRE(
                test::run_until(map, [&] { return p.cli_log.closes > 0 || p.cli_log.failed(); }));
            CHECK(p.cli_log.closes == 0);
            REQUIRE(p.cli_log.codes.size() == 1);
            CHECK(p.cli_log.codes[0] == errc::truncated);
            CHECK(contains(p.cli_log.reasons[0], "close_notify"));
        }
    }

    TEST_CASE("STARTTLS: a plaintext exchange, then TLS on both sides on the same connection") {
        ChannelMap map;
        Log srv_log, cli_log;
        auto [a, b] = test::connected_pair(AF_INET);
        Peer server(std::move(b), map, srv_log);
        Peer client(std::move(a), map, cli_log);
        TlsContext sctx = server_ctx();
        TlsContext cctx = client_ctx();
        std::string server_plain;
        server.on_data = [&](Peer& s, std::string_view data) {
            if (s.tls_active()) {
                s.send(data);  // echo, encrypted
                return;
            }
            server_plain.append(data);
            if (server_plain == "STARTTLS\r\n") {
                s.send("220 go ahead\r\n");
                s.start_tls(sctx, true);
            }
        };
        client.on_data = [&](Peer& c, std::string_view data) {
            if (!c.tls_active() && data == "220 go ahead\r\n")
                c.start_tls(cctx, false, "localhost");
        };
        client.on_established = [](Peer& c) { c.send("secret\n"); };
        client.send("STARTTLS\r\n");
        REQUIRE(test::run_until(map, [&] {
            return cli_log.received.ends_with("secret\n") || cli_log.failed() || srv_log.failed();
        }));
        CHECK(server_plain == "STARTTLS\r\n");
        CHECK(srv_log.received == "STARTTLS\r\nsecret\n");
        CHECK(cli_log.received == "220 go ahead\r\nsecret\n");
        CHECK(srv_log.established == 1);
        CHECK(cli_log.established == 1);
    }

    TEST_CASE("records buffered inside OpenSSL are all delivered without new socket readiness") {
        ChannelMap map;
        TlsPair p(map, server_ctx(), client_ctx());
        const std::string data = payload(2000);
        bool burst_sent = false;
        p.cli->read_size = 16;
        p.cli->gate = [&] { return burst_sent; };
        p.srv->on_established = [&](Peer& s) {
            for (std::size_t off = 0; off < data.size(); off += 100)
                s.send(std::string_view(data).substr(off, 100));  // one record each
            burst_sent = true;
            p.cli->rearm();
        };
        int reads_with_empty_socket = 0;
        p.cli->on_data = [&](Peer& c, std::string_view) {
            int queued = -1;
            ::ioctl(c.fileno(), FIONREAD, &queued);
            if (queued == 0 && p.cli_log.received.size() < data.size()) ++reads_with_empty_socket;
        };
        REQUIRE(test::run_until(
            map, [&] { return p.cli_log.received.size() >= data.size() || p.cli_log.failed(); }));
        CHECK(p.cli_log.received == data);
        CHECK(p.cli_log.reads == 2000 / 16);  // each recv(16) filled, across records
        // All but the last reads found the kernel queue empty: only the loop's
        // own re-run of the channel can have delivered them.
        CHECK(reads_with_empty_socket >= 100);
    }

    TEST_CASE(
        "a TLS channel that closes in handle_read leaves its descriptor to a plain channel "
        "that is served") {
        // Records are still buffered inside OpenSSL when the client closes:
        // the loop must not run the TLS read path again for the channel that
        // takes the descriptor.
        ChannelMap map;
        TlsPair p(map, server_ctx(), client_ctx(), "localhost", AF_UNIX);
        p.cli->read_size = 16;
        p.srv->on_established = [&](Peer& s) { s.send(payload(2000)); };
        int old_fd = -1;
        Log next_log;
        std::unique_ptr<Peer> next;
        Socket next_peer;
        p.cli->on_data = [&](Peer& c, std::string_view) {
            if (next) return;
            old_fd = c.fileno();
            c.close();
            auto [a, b] = test::connected_pair(AF_UNIX);
            test::write_all(b.fd(), "plain");
            next = std::make_unique<Peer>(std::move(a), map, next_log);
            next_peer = std::move(b);
        };
        REQUIRE(test::run_until(map, [&] { return next_log.received.size() >= 5; }));
        REQUIRE(next->fileno() == old_fd);  // the premise: the descriptor was reused
        CHECK(next_log.received == "plain");
        CHECK_FALSE(next_log.failed());
        CHECK(p.cli_log.reads == 1);
    }

    TEST_CASE("plaintext held inside OpenSSL is delivered when readable() turns true again") {
        ChannelMap map;
        TlsPair p(map, server_ctx(), client_ctx());
        const std::string data = payload(1000);
        bool paused = false;
        p.cli->read_size = 10;
        p.cli->gate = [&] { return !paused; };
        p.srv->on_established = [&](Peer& s) { s.send(data); };
        p.cli->on_data = [&](Peer& c, std::string_view) {
            paused = true;  // stop reading after every 10 bytes...
            map.post([&paused, &c] {
                paused = false;  // ...and resume from outside the handler
                c.rearm();
            });
        };
        REQUIRE(test::run_until(
            map, [&] { return p.cli_log.received.size() >= data.size() || p.cli_log.failed(); }));
        CHECK(p.cli_log.received == data);
    }

    TEST_CASE("ALPN picks the server's preferred common protocol, and fails with none") {
        ChannelMap map;
        auto server = server_ctx().set_alpn_protocols({"h2", "http/1.1"});
        SUBCASE("common protocol") {
            TlsPair p(map, server, client_ctx().set_alpn_protocols({"http/1.1", "h2"}));
            REQUIRE(test::run_until(map, [&] { return p.srv_log.established == 1; }));
            CHECK(p.srv->tls_alpn_protocol() == "h2");
            CHECK(p.cli->tls_alpn_protocol() == "h2");
        }
        SUBCASE("nothing in common") {
            TlsPair p(map, server, client_ctx().set_alpn_protocols({"imap"}));
            REQUIRE(test::run_until(map, [&] { return p.cli_log.failed(); }));
            CHECK(contains(p.cli_log.reasons[0], "no application protocol"));
            CHECK(p.cli_log.established == 0);
        }
        CHECK_THROWS_AS(server.set_alpn_protocols({""}), std::invalid_argument);
    }

    TEST_CASE("loading bad certificate files throws TlsError naming the file") {
        const auto& f = test::tls_files();
        try {
            TlsContext::server(f.dir + "/missing.pem", f.server_key);
            FAIL("no exception");
        } catch (const TlsError& e) {
            CHECK(e.code() == errc::tls_error);
            CHECK(contains(e.what(), "missing.pem"));
        }
        CHECK_THROWS_AS(TlsContext::server(f.server_cert, f.client_key), TlsError);
        CHECK_THROWS_AS(TlsContext::client(f.dir + "/missing.pem"), TlsError);
    }

    TEST_CASE("start_tls refuses a channel without a connection or with TLS already running") {
        ChannelMap map;
        Log log;
        Peer unconnected(map, log);
        CHECK_THROWS_AS(unconnected.start_tls(client_ctx(), false, "localhost"), std::logic_error);
        TlsPair p(map, server_ctx(), client_ctx());
        CHECK_THROWS_AS(p.cli->start_tls(client_ctx(), false, "localhost"), std::logic_error);
    }
}
