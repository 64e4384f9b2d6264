// AsyncChat over TLS: records and pushes across TLS, and AsyncChat::start_tls()
// mid-connection (STARTTLS) with its injection defence. Part of the tls suite.
#include <asyncore/async_chat.hpp>

#include <doctest/doctest.h>

#include <asyncore/async_socket.hpp>
#include <asyncore/sync.hpp>
#include <asyncore/task.hpp>

#include <asyncore/dispatcher_with_send.hpp>
#include <asyncore/producer.hpp>
#include <asyncore/tls.hpp>

#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "support/chat_fixtures.hpp"
#include "support/fixtures.hpp"
#include "support/tls_fixtures.hpp"

using namespace asyncore;

namespace {

using test::client_ctx;
using test::server_ctx;

/// A record as its receiver saw it: the text, and whether TLS carried it.
struct Record {
    std::string text;
    bool tls;
    bool operator==(const Record&) const = default;
};

}  // namespace

namespace doctest {
template <>
struct StringMaker<std::vector<Record>> {
    static String convert(const std::vector<Record>& v) {
        std::string s = "{";
        for (const Record& r : v)
            s += " \"" + r.text.substr(0, 40) + (r.text.size() > 40 ? "...\"" : "\"") +
                 (r.tls ? "/tls" : "/clear");
        return (s + " }").c_str();
    }
};
}  // namespace doctest

namespace {

std::string describe(std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    }
    return "unknown exception";
}

/// A CRLF line channel that records every line and lets a test react.
class Line : public AsyncChat {
  public:
    Line(Socket s, ChannelMap& map) : AsyncChat(std::move(s), map) { configure(); }
    explicit Line(ChannelMap& map) : AsyncChat(map) { configure(); }

    std::vector<Record> records;
    std::vector<std::string> errors;
    int established = 0;
    std::function<void(Line&, std::string_view)> on_record;
    std::function<void(Line&)> on_established;
    std::function<bool()> gate;      ///< readable() when set
    std::function<void()> on_close;  ///< handle_close(), before closing

    void found_record(std::string_view r) override {
        records.push_back({std::string(r), tls_established()});
        if (on_record) on_record(*this, r);
    }
    void handle_tls_established() override {
        ++established;
        if (on_established) on_established(*this);
    }
    bool readable() override { return !gate || gate(); }
    void handle_close() override {
        if (on_close) on_close();
        AsyncChat::handle_close();
    }
    void handle_error(std::exception_ptr e) override {
        errors.push_back(describe(e));
        close();
    }
    void configure() {
        set_terminator("\r\n");
        set_max_input_buffer(0);
    }
    bool has(std::string_view text) const {
        for (const Record& r : records) {
            if (r.text == text) return true;
        }
        return false;
    }
};

/// One side of a man in the middle that forwards bytes unchanged and keeps
/// a copy: what an eavesdropper on the wire sees.
class Tap : public DispatcherWithSend {
  public:
    Tap(Socket s, ChannelMap& map, std::string& wire)
        : DispatcherWithSend(std::move(s), map), wire_(wire) {}
    Tap* other = nullptr;

    void handle_read() override {
        std::string data = recv(65536);
        if (data.empty()) return;
        wire_.append(data);
        other->send(data);
    }
    void handle_close() override { close(); }

  private:
    std::string& wire_;
};

/// client <-> tap <-> server, with the bytes each way on record.
struct TappedPair {
    explicit TappedPair(ChannelMap& map) {
        auto [c, t1] = test::connected_pair(AF_INET);
        auto [t2, s] = test::connected_pair(AF_INET);
        to_server = std::make_unique<Tap>(std::move(t1), map, client_to_server);
        to_client = std::make_unique<Tap>(std::move(t2), map, server_to_client);
        to_server->other = to_client.get();
        to_client->other = to_server.get();
        cli = std::make_unique<Line>(std::move(c), map);
        srv = std::make_unique<Line>(std::move(s), map);
    }
    std::string client_to_server, server_to_client;
    std::unique_ptr<Tap> to_server, to_client;
    std::unique_ptr<Line> cli, srv;
};

/// A server speaking a tiny SMTP-like protocol: STARTTLS gets "220 go ahead"
/// (plus `extra`, to play an injecting server) and TLS; any other line gets
/// "250 LINE".
void serve_starttls(Line& srv, const TlsContext& ctx, std::string extra = {}) {
    srv.on_record = [&ctx, extra](Line& s, std::string_view r) {
        if (r == "STARTTLS") {
            s.push("220 go ahead\r\n" + extra);
            s.start_tls(ctx, true);
        } else {
            s.push("250 " + std::string(r) + "\r\n");
        }
    };
}

/// A client that starts TLS on "220 go ahead" and then pushes `after`.
void follow_starttls(Line& cli, const TlsContext& ctx, std::string after) {
    cli.on_record = [&ctx](Line& c, std::string_view r) {
        if (r == "220 go ahead") c.start_tls(ctx, false, "localhost");
    };
    cli.on_established = [after](Line& c) { c.push(after); };
}

/// Printable bytes without CR or LF.
std::string line_payload(std::size_t n) {
    std::string s(n, '\0');
    unsigned x = 7;
    for (char& c : s) {
        x = x * 1103515245u + 12345u;
        c = static_cast<char>(' ' + (x >> 16) % 95);
    }
    return s;
}

bool failed(const Line& a, const Line& b) {
    return !a.errors.empty() || !b.errors.empty();
}

// A TLS client that sends close_notify and shuts down its sending side at
// once, then waits for `go` and reads until the server's close_notify
// (`clean`) or an error.
Task<void> half_close_and_read(AsyncSocket& s, Event& go, std::string& got, bool& clean) {
    co_await s.start_tls(client_ctx(), "localhost");
    co_await s.shutdown_tls();
    REQUIRE(::shutdown(s.fd(), SHUT_WR) == 0);
    co_await go.wait();
    for (;;) {
        std::string chunk = co_await s.recv(65536);
        if (chunk.empty()) break;
        got += chunk;
    }
    clean = true;
}

constexpr char tls_handshake_record = 0x16;

}  // namespace

TEST_SUITE("tls") {
    TEST_CASE("AsyncChat: a 1 MiB record and short lines cross TLS both ways intact") {
        for (int family : {AF_INET, AF_UNIX}) {
            CAPTURE(family);
            ChannelMap map;
            auto [a, b] = test::connected_pair(family);
            Line srv(std::move(b), map);
            Line cli(std::move(a), map);
            srv.on_record = [](Line& s, std::string_view r) { s.push(std::string(r) + "\r\n"); };
            srv.start_tls(server_ctx(), true);
            cli.start_tls(client_ctx(), false, "localhost");
            const std::string big = line_payload(1 << 20);
            cli.push("first\r\n");  // during the handshake: held back, then encrypted
            cli.push_with_producer(std::make_unique<SimpleProducer>(big + "\r\n", 50000));
            cli.push("last\r\n");
            REQUIRE(
                test::run_until(map, [&] { return cli.records.size() == 3 || failed(srv, cli); }));
            CHECK(srv.errors.empty());
            CHECK(cli.errors.empty());
            const std::vector<Record> expected = {{"first", true}, {big, true}, {"last", true}};
            CHECK(srv.records == expected);
            CHECK(cli.records == expected);
            CHECK(cli.output_queued() == 0);
            CHECK(srv.plaintext_discarded() == 0);
        }
    }

    TEST_CASE("AsyncChat: close_when_done over TLS flushes 4 MiB, then closes cleanly") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        test::shrink_buffers(a.fd());
        test::shrink_buffers(b.fd());
        Line srv(std::move(b), map);
        Line cli(std::move(a), map);
        int closes = 0;
        cli.on_close = [&] { ++closes; };
        srv.start_tls(server_ctx(), true);
        cli.start_tls(client_ctx(), false, "localhost");
        const std::string big = line_payload(4 << 20);
        srv.push(big + "\r\n");
        srv.push_with_producer(std::make_unique<SimpleProducer>("last\r\n", 2));
        srv.close_when_done();
        srv.push("never\r\n");
        REQUIRE(test::run_until(map, [&] { return cli.fileno() < 0 || failed(srv, cli); }));
        CHECK(srv.errors.empty());
        CHECK(cli.errors.empty());  // a close_notify, not a truncation
        CHECK(srv.fileno() < 0);
        CHECK(closes == 1);
        REQUIRE(cli.records.size() == 2);
        CHECK((cli.records[0] == Record{big, true}));
        CHECK((cli.records[1] == Record{"last", true}));
    }

    TEST_CASE("AsyncChat: close_when_done over TLS reaches a peer that sent close_notify first") {
        // The TLS half-close: the peer sends close_notify and a FIN, and
        // still reads. Reading stops (quietly: the EOF is not polled in a
        // loop), the queued 4 MiB goes out, then the close.
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        test::shrink_buffers(a.fd());
        test::shrink_buffers(b.fd());
        Line srv(std::move(b), map);
        int closes = 0;
        srv.on_close = [&] { ++closes; };
        srv.start_tls(server_ctx(), true);
        const std::string big = line_payload(4 << 20) + "\r\n";
        srv.push(big);
        srv.close_when_done();
        AsyncSocket cli(std::move(a));
        Event go;
        std::string got;
        bool clean = false;
        auto t = spawn(half_close_and_read(cli, go, got, clean), map);
        REQUIRE(test::run_until(map, [&] { return closes == 1; }));  // the EOF, seen
        REQUIRE(srv.fileno() >= 0);
        // The client reads nothing yet: the server can neither write nor
        // read, so a pass waits out its whole timeout (a TCP window update
        // may still end one early). An EOF polled in a loop would make
        // thousands of passes in these 200 ms.
        auto start = std::chrono::steady_clock::now();
        int passes = 0;
        while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(200)) {
            asyncore::loop(std::chrono::milliseconds(40), map, 1);
            ++passes;
        }
        CHECK(passes <= 10);
        go.set();
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        if (auto e = t.state()->take_error()) CHECK_MESSAGE(false, describe(e));
        CHECK(srv.errors.empty());
        CHECK(srv.fileno() < 0);
        CHECK(closes == 2);  // the EOF, then the close mark
        CHECK(clean);        // ended by the server's close_notify
        CHECK(got.size() == big.size());
        CHECK((got == big));
    }

    TEST_CASE("AsyncChat STARTTLS: plaintext lines, then TLS, nothing lost and nothing in clear") {
        ChannelMap map;
        TappedPair p(map);
        const TlsContext sctx = server_ctx(), cctx = client_ctx();
        serve_starttls(*p.srv, sctx);
        follow_starttls(*p.cli, cctx, "secret one\r\nsecret two\r\n");
        p.cli->push("HELLO\r\n");
        p.cli->push("STARTTLS\r\n");
        REQUIRE(test::run_until(
            map, [&] { return p.cli->records.size() == 4 || failed(*p.srv, *p.cli); }));
        CHECK(p.srv->errors.empty());
        CHECK(p.cli->errors.empty());
        const std::vector<Record> srv_expected = {
            {"HELLO", false}, {"STARTTLS", false}, {"secret one", true}, {"secret two", true}};
        const std::vector<Record> cli_expected = {{"250 HELLO", false},
                                                  {"220 go ahead", false},
                                                  {"250 secret one", true},
                                                  {"250 secret two", true}};
        CHECK(p.srv->records == srv_expected);
        CHECK(p.cli->records == cli_expected);
        CHECK(p.srv->plaintext_discarded() == 0);
        CHECK(p.cli->plaintext_discarded() == 0);

        // On the wire: the plaintext exactly, then TLS records only.
        const std::string c_plain = "HELLO\r\nSTARTTLS\r\n";
        const std::string s_plain = "250 HELLO\r\n220 go ahead\r\n";
        REQUIRE(p.client_to_server.size() > c_plain.size());
        REQUIRE(p.server_to_client.size() > s_plain.size());
        CHECK(p.client_to_server.substr(0, c_plain.size()) == c_plain);
        CHECK(p.server_to_client.substr(0, s_plain.size()) == s_plain);
        CHECK(p.client_to_server[c_plain.size()] == tls_handshake_record);
        CHECK(p.server_to_client[s_plain.size()] == tls_handshake_record);
        CHECK(p.client_to_server.find("secret") == std::string::npos);
        CHECK(p.server_to_client.find("secret") == std::string::npos);
    }

    TEST_CASE("AsyncChat STARTTLS: commands pipelined after STARTTLS are discarded, not run") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        Line srv(std::move(b), map);
        Line cli(std::move(a), map);
        const TlsContext sctx = server_ctx(), cctx = client_ctx();
        serve_starttls(srv, sctx);
        follow_starttls(cli, cctx, "NOOP\r\n");
        // One send before the server runs: its first read holds all of it,
        // a whole injected command and part of another.
        const std::string injected = "NOOP injected\r\nRSET";
        cli.push("STARTTLS\r\n" + injected);
        REQUIRE(test::run_until(map, [&] { return cli.has("250 NOOP") || failed(srv, cli); }));
        CHECK(srv.errors.empty());
        const std::vector<Record> srv_expected = {{"STARTTLS", false}, {"NOOP", true}};
        const std::vector<Record> cli_expected = {{"220 go ahead", false}, {"250 NOOP", true}};
        CHECK(srv.records == srv_expected);
        CHECK(cli.records == cli_expected);
        CHECK(srv.plaintext_discarded() == injected.size());
        CHECK(cli.plaintext_discarded() == 0);
    }

    TEST_CASE("AsyncChat STARTTLS: a client discards replies injected after the go-ahead") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        Line srv(std::move(b), map);
        Line cli(std::move(a), map);
        const TlsContext sctx = server_ctx(), cctx = client_ctx();
        const std::string injected = "250 forged reply\r\n";
        serve_starttls(srv, sctx, injected);
        follow_starttls(cli, cctx, "NOOP\r\n");
        cli.push("STARTTLS\r\n");
        REQUIRE(test::run_until(map, [&] { return cli.has("250 NOOP") || failed(srv, cli); }));
        const std::vector<Record> cli_expected = {{"220 go ahead", false}, {"250 NOOP", true}};
        CHECK(cli.records == cli_expected);
        CHECK(cli.plaintext_discarded() == injected.size());
    }

    TEST_CASE(
        "AsyncChat STARTTLS waits for queued output, dropping plaintext that arrives meanwhile") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        // Small fixed buffers: the reply below cannot all be in flight.
        const int small = 16384;
        REQUIRE(::setsockopt(b.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
        REQUIRE(::setsockopt(a.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
        Line srv(std::move(b), map);
        Line cli(std::move(a), map);
        const TlsContext sctx = server_ctx(), cctx = client_ctx();
        std::string blob;
        for (int i = 0; i < 2048; ++i)
            blob += line_payload(1000) + "\r\n";
        srv.on_record = [&](Line& s, std::string_view r) {
            if (r == "STARTTLS") {
                s.push(blob);
                s.push("220 go ahead\r\n");
                s.start_tls(sctx, true);
            } else {
                s.push("250 " + std::string(r) + "\r\n");
            }
        };
        follow_starttls(cli, cctx, "AFTER\r\n");
        bool client_reads = false;
        cli.gate = [&] { return client_reads; };
        cli.push("STARTTLS\r\n");
        REQUIRE(test::run_until(map, [&] { return srv.tls_pending() || failed(srv, cli); }));
        CHECK_FALSE(srv.tls_active());
        CHECK(srv.output_queued() > 0);

        cli.push("PIPELINED\r\n");  // still plaintext: the client saw no go-ahead
        REQUIRE(test::run_until(map, [&] { return srv.plaintext_discarded() > 0; }));
        CHECK(srv.plaintext_discarded() == 11);
        CHECK(srv.tls_pending());

        client_reads = true;
        cli.rearm();
        REQUIRE(test::run_until(map, [&] { return cli.has("250 AFTER") || failed(srv, cli); }));
        CHECK(srv.errors.empty());
        CHECK(cli.errors.empty());
        const std::vector<Record> srv_expected = {{"STARTTLS", false}, {"AFTER", true}};
        CHECK(srv.records == srv_expected);
        REQUIRE(cli.records.size() == 2048 + 2);
        CHECK(cli.records[0] == Record{blob.substr(0, 1000), false});
        CHECK(cli.records[2048] == Record{"220 go ahead", false});
        CHECK(cli.records[2049] == Record{"250 AFTER", true});
        CHECK_FALSE(srv.tls_pending());
    }

    TEST_CASE("AsyncChat::start_tls refuses bad calls before deferring, and close cancels it") {
        ChannelMap map;
        test::Listener l = test::listen_on(AF_INET);
        auto connecting_line = [&] {
            auto c = std::make_unique<Line>(map);
            c->create_socket(AF_INET, SOCK_STREAM);
            c->connect(l.addr);
            c->push("queued while connecting\r\n");  // output waits: start_tls is deferred
            return c;
        };
        SUBCASE("a second call while the first waits") {
            auto c = connecting_line();
            c->start_tls(client_ctx(), false, "localhost");
            CHECK(c->tls_pending());
            CHECK_FALSE(c->tls_active());
            CHECK_THROWS_AS(c->start_tls(client_ctx(), false, "localhost"), std::logic_error);
            c->close();
            CHECK_FALSE(c->tls_pending());
        }
        SUBCASE("the wrong side, or no name to verify") {
            auto c = connecting_line();
            CHECK_THROWS_AS(c->start_tls(server_ctx(), false, "localhost"), std::invalid_argument);
            CHECK_THROWS_AS(c->start_tls(client_ctx(), true), std::invalid_argument);
            CHECK_FALSE(c->tls_pending());
            auto [u, v] = test::connected_pair(AF_UNIX);
            Line unix_line(std::move(u), map);
            CHECK_THROWS_AS(unix_line.start_tls(client_ctx(), false), std::invalid_argument);
        }
        SUBCASE("discard_buffers() cancels a waiting start") {
            auto c = connecting_line();
            c->start_tls(client_ctx(), false, "localhost");
            c->discard_buffers();
            CHECK_FALSE(c->tls_pending());
            CHECK(c->output_items() == 0);
        }
        SUBCASE("a channel running TLS") {
            auto [u, v] = test::connected_pair(AF_INET);
            Line s(std::move(u), map);
            s.start_tls(server_ctx(), true);
            CHECK_THROWS_AS(s.start_tls(server_ctx(), true), std::logic_error);
            s.push("held\r\n");
            CHECK_THROWS_AS(s.start_tls(server_ctx(), true), std::logic_error);
        }
    }
}
