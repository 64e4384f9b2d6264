// The Task-layer contender: an echo server written the way the AsyncSocket
// documentation shows, one task accepting and one task per connection looping
// on recv_into() and sendall() until EOF. run.py measures it against the
// reference servers, so it stays as plain as a user's first server would be.
//
//   task_echo_server [--host HOST] [--port PORT]
//
// SIGINT and SIGTERM are read from a signalfd by a task of their own, which
// leaves loop() with ExitNow; the map's destruction then cancels the
// connection tasks, which unwind and close their sockets.

#include <asyncore/async_file.hpp>
#include <asyncore/async_socket.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>

#include <sys/signalfd.h>
#include <sys/socket.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

using asyncore::AsyncSocket;
using asyncore::Task;

namespace {

struct Args {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
};

[[noreturn]] void usage(const char* prog) {
    std::fprintf(stderr, "usage: %s [--host HOST] [--port PORT]\n", prog);
    std::exit(2);
}

Args parse_args(int argc, char** argv) {
    Args args;
    for (int i = 1; i < argc; i += 2) {
        std::string_view opt = argv[i];
        if (i + 1 >= argc) usage(argv[0]);
        if (opt == "--host") {
            args.host = argv[i + 1];
        } else if (opt == "--port") {
            args.port = static_cast<std::uint16_t>(std::strtoul(argv[i + 1], nullptr, 10));
        } else {
            usage(argv[0]);
        }
    }
    return args;
}

Task<void> echo(AsyncSocket conn) {
    try {
        std::string data;  // reused: no allocation per message
        while (co_await conn.recv_into(data, 4096) > 0)
            co_await conn.sendall(data);
    } catch (const asyncore::Cancelled&) {
        throw;
    } catch (const std::system_error&) {
        // A reset from the client is an ordinary close here.
    }
}

Task<void> accept_loop(AsyncSocket listener) {
    for (;;) {
        bool failed = false;
        try {
            auto [conn, addr] = co_await listener.accept();
            asyncore::spawn(echo(std::move(conn)));
        } catch (const asyncore::Cancelled&) {
            throw;
        } catch (const std::system_error& e) {
            // An unexpected accept error (out of descriptors, accept() waits
            // by itself): report, back off, keep serving the others.
            std::fprintf(stderr, "accept: %s\n", e.what());
            failed = true;
        }
        if (failed) co_await asyncore::sleep(std::chrono::milliseconds(10));
    }
}

Task<void> exit_on_signal(int signal_fd) {
    asyncore::AsyncFile signals(signal_fd);
    co_await signals.read(sizeof(signalfd_siginfo), true);
    throw asyncore::ExitNow();
}

}  // namespace

int main(int argc, char** argv) {
    Args args = parse_args(argc, argv);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    int signal_fd = ::signalfd(-1, &set, SFD_CLOEXEC);
    if (signal_fd < 0) {
        std::perror("signalfd");
        return 1;
    }
    try {
        auto addr = asyncore::Address::ip(args.host, args.port);
        AsyncSocket listener(addr.family(), SOCK_STREAM);
        listener.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
        listener.bind(addr);
        listener.listen(4096);
        std::printf("listening on %s\n", listener.local_address().to_string().c_str());
        std::fflush(stdout);
        asyncore::spawn(exit_on_signal(signal_fd));
        asyncore::spawn(accept_loop(std::move(listener)));
        asyncore::loop();
    } catch (const asyncore::ExitNow&) {
    } catch (const std::exception& e) {
        std::fprintf(stderr, "task_echo_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
