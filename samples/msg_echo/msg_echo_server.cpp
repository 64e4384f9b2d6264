// An echo of pycos-framed messages (4-byte big-endian length, then the
// payload) over AsyncSocket send_msg/recv_msg, for pycos-compatible peers.
//
//   msg_echo_server [--host H] [--port P] [--max-message BYTES]

#include <asyncore/async_socket.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>

#include <cstdio>

#include "../common/task_server.hpp"

using asyncore::AsyncSocket;
using asyncore::Task;

namespace {

Task<void> echo(AsyncSocket conn, std::size_t max_message) {
    conn.set_max_message_size(max_message);
    bool failed = false;
    try {
        while (auto msg = co_await conn.recv_msg())
            co_await conn.send_msg(*msg);
    } catch (const asyncore::Cancelled&) {
        throw;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "connection: %s\n", e.what());
        failed = true;
    }
    // A message over the limit: the echoes already sent must still reach the
    // peer (a close with its input unread would reset them away).
    if (failed) co_await sample::lingering_close(conn);
}

}  // namespace

int main(int argc, char** argv) {
    sample::CommandLine opts(argc, argv,
                             "usage: msg_echo_server [--host H] [--port P] [--max-message BYTES]",
                             {"host", "port", "max-message"});
    auto max_message = static_cast<std::size_t>(opts.number("max-message", 64L << 20));
    AsyncSocket listener = sample::listen_from(opts);
    sample::Server server(listener);
    asyncore::spawn(server.stop_on_signal());
    auto handler = [max_message](AsyncSocket conn, const asyncore::Address&) {
        return echo(std::move(conn), max_message);
    };
    asyncore::spawn(sample::accept_loop(listener, server, handler));
    asyncore::loop();
    return 0;
}
