// tls_echo_server: an echo server over TLS, on tasks and AsyncSocket.
//
//   tls_echo_server --cert FILE --key FILE [--host HOST] [--port PORT]
//
// Every connection gets a task that runs the server-side handshake
// (AsyncSocket::start_tls, bounded by a handshake timeout) and then echoes
// every byte until the client closes. The handshake runs in the
// connection's task rather than in accept() so that one slow or silent
// client never delays the next. A failed handshake is logged as one line
// and ends that connection only. SIGINT/SIGTERM shut down gracefully (see
// samples/common/task_server.hpp) and exit 0.

#include <asyncore/async_socket.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>
#include <asyncore/tls.hpp>

#include <chrono>
#include <cstdio>
#include <string>

#include "../common/task_server.hpp"

using asyncore::AsyncSocket;
using asyncore::Task;
using asyncore::TlsContext;

namespace {

constexpr auto handshake_timeout = std::chrono::seconds(10);

Task<void> echo(AsyncSocket conn, TlsContext ctx, asyncore::Address peer,
                const sample::Server& server) {
    try {
        conn.set_handshake_timeout(handshake_timeout);
        co_await conn.start_tls(ctx);
        for (;;) {
            std::string data = co_await conn.recv(16384);
            if (data.empty()) break;  // close_notify: the client is done
            co_await conn.sendall(data);
        }
    } catch (const asyncore::Cancelled&) {
        throw;
    } catch (const std::exception& e) {
        // A shutdown ends reading with a plain EOF, which TLS calls truncation.
        if (!server.stopping()) {
            std::fprintf(stderr, "closing %s: %s\n", peer.to_string().c_str(), e.what());
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    sample::CommandLine opts(
        argc, argv, "usage: tls_echo_server --cert FILE --key FILE [--host HOST] [--port PORT]",
        {"host", "port", "cert", "key"});
    std::string cert = opts.get("cert"), key = opts.get("key");
    if (cert.empty() || key.empty()) opts.usage();
    try {
        auto ctx = TlsContext::server(cert, key);
        AsyncSocket listener = sample::listen_from(opts);
        sample::Server server(listener);
        asyncore::spawn(server.stop_on_signal());
        auto handler = [ctx, &server](AsyncSocket conn, const asyncore::Address& addr) {
            return echo(std::move(conn), ctx, addr, server);
        };
        asyncore::spawn(sample::accept_loop(listener, server, handler));
        asyncore::loop();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tls_echo_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
