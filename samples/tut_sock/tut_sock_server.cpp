// pycos' socket tutorial server: an accept task spawns one task per
// connection, which reads until EOF and prints what it received. A message
// is kept whole until then, so one over 1 MiB is refused: its connection is
// closed (and logged) rather than letting a peer that never stops sending
// grow the server without bound.
//
//   tut_sock_server [--host H] [--port P]

#include <asyncore/async_socket.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>

#include <cstdio>
#include <string>
#include <system_error>

#include "../common/task_server.hpp"

using asyncore::AsyncSocket;
using asyncore::Task;

namespace {

constexpr std::size_t max_message = 1 << 20;

Task<void> process(AsyncSocket conn, int& count) {
    std::string data;
    try {
        for (;;) {
            std::string chunk = co_await conn.recv(1024);
            if (chunk.empty()) break;
            data += chunk;
            if (data.size() > max_message) {
                std::fprintf(stderr, "refused a message over %zu bytes; closing its connection\n",
                             max_message);
                co_return;
            }
        }
    } catch (const asyncore::Cancelled&) {
        throw;
    } catch (const std::system_error& e) {
        // A peer that resets is gone with its message: one line, not a task failure.
        std::fprintf(stderr, "connection: %s\n", e.what());
        co_return;
    }
    std::printf("received: %s\n", data.c_str());
    std::fflush(stdout);
    ++count;
}

}  // namespace

int main(int argc, char** argv) {
    sample::CommandLine opts(argc, argv, "usage: tut_sock_server [--host H] [--port P]",
                             {"host", "port"});
    AsyncSocket listener = sample::listen_from(opts);
    sample::Server server(listener);
    int count = 0;
    asyncore::spawn(server.stop_on_signal());
    auto handler = [&count](AsyncSocket conn, const asyncore::Address&) {
        return process(std::move(conn), count);
    };
    asyncore::spawn(sample::accept_loop(listener, server, handler));
    asyncore::loop();
    std::printf("messages received: %d\n", count);
    return 0;
}
