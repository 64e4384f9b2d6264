// pycos' socket tutorial server: an accept task spawns one task per
// connection, which reads until EOF and prints what it received.
//
//   tut_sock_server [--host H] [--port P]

#include <asyncore/async_socket.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>

#include <cstdio>
#include <string>

#include "task_server.hpp"

using asyncore::AsyncSocket;
using asyncore::Task;

namespace {

Task<void> process(AsyncSocket conn, int& count) {
    std::string data;
    for (;;) {
        std::string chunk = co_await conn.recv(1024);
        if (chunk.empty()) break;
        data += chunk;
    }
    std::printf("received: %s\n", data.c_str());
    std::fflush(stdout);
    ++count;
}

Task<void> accept_loop(AsyncSocket& listener, sample::Server& server, int& count) {
    while (!server.stopping()) {
        try {
            auto [conn, addr] = co_await listener.accept();
            server.track(asyncore::spawn(process(std::move(conn), count)));
        } catch (const std::system_error& e) {
            if (server.stopping()) break;
            std::fprintf(stderr, "accept: %s\n", e.what());
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    sample::Options opts(argc, argv);
    AsyncSocket listener = sample::listen_from(opts);
    sample::Server server(listener);
    int count = 0;
    asyncore::spawn(server.stop_on_signal());
    asyncore::spawn(accept_loop(listener, server, count));
    asyncore::loop();
    std::printf("messages received: %d\n", count);
    return 0;
}
