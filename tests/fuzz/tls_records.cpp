// Properties of a server-side TLS channel (an AsyncChat after
// start_tls(ctx, true)) fed the fuzzer's bytes as its client, over a
// socketpair, in pseudo-random pieces with the loop run between them:
//
// - no crash and no sanitizer report (in the library; OpenSSL itself is the
//   system's, not instrumented);
// - handle_tls_established() never runs: no input forges a handshake
//   without the client's keys;
// - not a byte reaches collect_incoming_data() or found_record(): nothing
//   is ever read in clear;
// - the loop keeps running: a failure reaches handle_error() as a TlsError
//   and closes the channel, or the channel waits for more; at EOF it is
//   closed.
//
// The server's key and certificate are generated once per process (the
// test fixtures' throwaway PKI).

#include <asyncore/async_chat.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/socket.hpp>
#include <asyncore/tls.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "fuzz/split.hpp"
#include "support/tls_fixtures.hpp"

namespace {

using namespace std::chrono_literals;

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "tls_records: %s\n", what.c_str());
    std::abort();
}

const asyncore::TlsContext& server_context() {
    static const asyncore::TlsContext ctx = test::server_ctx();
    return ctx;
}

class TlsServer : public asyncore::AsyncChat {
  public:
    TlsServer(asyncore::Socket sock, asyncore::ChannelMap& map) : AsyncChat(std::move(sock), map) {
        set_terminator("\n");
    }

    void collect_incoming_data(std::string_view data) override {
        fail("plaintext reached collect_incoming_data(): " + std::to_string(data.size()) +
             " bytes");
    }
    void found_record(std::string_view) override { fail("plaintext reached found_record()"); }
    void handle_tls_established() override { fail("the handshake completed"); }
    void handle_error(std::exception_ptr error) override {
        try {
            std::rethrow_exception(error);
        } catch (const asyncore::TlsError&) {
            ++tls_errors;
        } catch (const std::exception& e) {
            fail(std::string("handle_error() with something other than a TlsError: ") + e.what());
        }
        close();
    }

    int tls_errors = 0;
};

int unread(int fd) {
    int n = 0;
    if (fd < 0 || ::ioctl(fd, FIONREAD, &n) < 0) return 0;
    return n;
}

// Reads and drops what the server sent (its handshake messages, alerts).
void drain(int fd) {
    char buf[4096];
    while (::recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
}

// Runs passes until the server has read everything sent and two passes
// in a row changed nothing.
void settle(asyncore::ChannelMap& map, const TlsServer& server, int server_fd, int client_fd) {
    constexpr int max_passes = 1000;
    int quiet = 0;
    for (int pass = 0; pass < max_passes && quiet < 2; ++pass) {
        const int errors = server.tls_errors;
        const bool open = server.fileno() >= 0;
        map.run_pass(0s);
        drain(client_fd);
        const bool changed = server.tls_errors != errors || (server.fileno() >= 0) != open;
        const bool pending = server.fileno() >= 0 && unread(server_fd) > 0;
        quiet = changed || pending ? 0 : quiet + 1;
    }
    if (quiet < 2)
        fail("the channel did not settle within " + std::to_string(max_passes) + " passes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const asyncore::TlsContext& ctx = server_context();
    FuzzedDataProvider in(data, size);
    const bool eof = in.ConsumeBool();
    const std::uint32_t seed = in.ConsumeIntegral<std::uint32_t>();
    const std::string stream = in.ConsumeRemainingBytesAsString();

    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
        fail("socketpair");
    }
    asyncore::Socket client(fds[1]);
    asyncore::ChannelMap map;
    TlsServer server(asyncore::Socket(fds[0]), map);
    server.start_tls(ctx, true);
    settle(map, server, fds[0], client.fd());
    for (std::string_view piece : fuzz::split_random(stream, seed)) {
        if (server.fileno() < 0) break;
        if (piece.empty()) continue;
        if (::send(client.fd(), piece.data(), piece.size(), MSG_NOSIGNAL) < 0) break;
        settle(map, server, fds[0], client.fd());
    }
    if (eof) {
        ::shutdown(client.fd(), SHUT_WR);
        settle(map, server, fds[0], client.fd());
        if (server.fileno() >= 0) fail("the channel is still open after the client's EOF");
    }
    if (server.fileno() < 0 && server.tls_errors == 0)
        fail("the channel closed without a TlsError");
    server.close();
    return 0;
}
