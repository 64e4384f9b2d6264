// pycos' socket tutorial server: an accept task spawns one task per
// connection, which reads until EOF and prints what it received. A message
// is kept whole until then, so one over 1 MiB is refused: its connection is
// closed (and logged) rather than letting a peer that never stops sending
// grow the server without bound.
//
//   tut_sock_server [--host H] [--port P] [--max-message BYTES]
//
// Each message is printed on one line, "received: MESSAGE", with printable
// ASCII as it is, a backslash doubled and any other byte as \xNN, so that a
// binary message can neither end the line early nor cut it at a NUL. A
// connection that sends more than --max-message bytes (1 MiB by default)
// is closed without reading the rest, and its message is not printed.

#include <asyncore/async_socket.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>

#include <cstdio>
#include <string>
#include <string_view>
#include <system_error>

#include "../common/task_server.hpp"

using asyncore::AsyncSocket;
using asyncore::Task;

namespace {

// The message as one line of printable ASCII.
std::string escaped(std::string_view data) {
    std::string out;
    out.reserve(data.size());
    for (char c : data) {
        auto u = static_cast<unsigned char>(c);
        if (c == '\\') {
            out += "\\\\";
        } else if (u >= 0x20 && u <= 0x7e) {
            out += c;
        } else {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", u);
            out += hex;
        }
    }
    return out;
}

Task<void> process(AsyncSocket conn, asyncore::Address peer, std::size_t max_message, int& count) {
    std::string data;
    try {
        for (;;) {
            std::string chunk = co_await conn.recv(1024);
            if (chunk.empty()) break;
            if (chunk.size() > max_message - data.size()) {
                std::printf("closing %s: message over %zu bytes\n", peer.to_string().c_str(),
                            max_message);
                std::fflush(stdout);
                co_return;
            }
            data += chunk;
        }
    } catch (const asyncore::Cancelled&) {
        throw;
    } catch (const std::system_error& e) {
        // A peer that resets is gone with its message: one line, not a task failure.
        std::fprintf(stderr, "connection from %s: %s\n", peer.to_string().c_str(), e.what());
        co_return;
    }
    std::printf("received: %s\n", escaped(data).c_str());
    std::fflush(stdout);
    ++count;
}

}  // namespace

int main(int argc, char** argv) {
    sample::CommandLine opts(argc, argv,
                             "usage: tut_sock_server [--host H] [--port P] [--max-message BYTES]",
                             {"host", "port", "max-message"});
    auto max_message = static_cast<std::size_t>(opts.number("max-message", 1 << 20, 1, 1L << 30));
    AsyncSocket listener = sample::listen_from(opts);
    sample::Server server(listener);
    int count = 0;
    asyncore::spawn(server.stop_on_signal());
    auto handler = [&count, max_message](AsyncSocket conn, const asyncore::Address& addr) {
        return process(std::move(conn), addr, max_message, count);
    };
    asyncore::spawn(sample::accept_loop(listener, server, handler));
    asyncore::loop();
    std::printf("messages received: %d\n", count);
    return 0;
}
