// pycos' socket tutorial client: --count N tasks, each connects, sends
// "<i>: " followed by 100 to 300 dashes and a '/', and closes.
//
//   tut_sock_client [--host H] --port P [--count N]

#include <asyncore/async_socket.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>

#include <sys/socket.h>

#include <cstdio>
#include <random>
#include <string>

#include "../common/command_line.hpp"

using asyncore::AsyncSocket;
using asyncore::Task;

namespace {

Task<void> client(asyncore::Address server, int i, int dashes, int& failures) {
    try {
        AsyncSocket sock(server.family(), SOCK_STREAM);
        sock.settimeout(std::chrono::seconds(10));
        co_await sock.connect(server);
        std::string msg = std::to_string(i) + ": " + std::string(dashes, '-') + "/";
        co_await sock.sendall(msg);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "client %d: %s\n", i, e.what());
        ++failures;
    }
}

}  // namespace

int main(int argc, char** argv) {
    sample::CommandLine opts(argc, argv, "usage: tut_sock_client [--host H] --port P [--count N]",
                             {"host", "port", "count"});
    auto server =
        asyncore::Address::ip(opts.get("host", "127.0.0.1"),
                              static_cast<std::uint16_t>(opts.number("port", 0, 0, 65535)));
    long count = opts.number("count", 10);
    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> dashes(100, 300);
    int failures = 0;
    for (int i = 0; i < count; ++i)
        asyncore::spawn(client(server, i, dashes(rng), failures));
    asyncore::loop();
    std::printf("sent %ld messages, %d failed\n", count - failures, failures);
    return failures == 0 ? 0 : 1;
}
