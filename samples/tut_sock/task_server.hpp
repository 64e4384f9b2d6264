// What the task-based sample servers share: a listening AsyncSocket on
// --host/--port (options parsed by command_line.hpp) that announces itself,
// and an in-loop SIGINT/SIGTERM handler (a signalfd read by a task) that
// closes the listener and terminates the connections so that loop() returns
// and main exits 0.
#pragma once

#include <asyncore/async_file.hpp>
#include <asyncore/async_socket.hpp>
#include <asyncore/task.hpp>

#include <sys/signalfd.h>
#include <sys/socket.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

#include "../common/command_line.hpp"

namespace sample {

/// A listening socket on --host/--port; prints "listening on HOST:PORT".
inline asyncore::AsyncSocket listen_from(const CommandLine& opts) {
    auto addr = asyncore::Address::ip(opts.get("host", "127.0.0.1"),
                                      static_cast<std::uint16_t>(opts.number("port", 0, 0, 65535)));
    asyncore::AsyncSocket listener(addr.family(), SOCK_STREAM);
    listener.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
    listener.bind(addr);
    listener.listen(1024);
    std::printf("listening on %s\n", listener.local_address().to_string().c_str());
    std::fflush(stdout);
    return listener;
}

/// Tracks connection tasks and stops everything on SIGINT/SIGTERM.
class Server {
  public:
    explicit Server(asyncore::AsyncSocket& listener) : listener_(listener) {}

    void track(asyncore::TaskRef t) {
        std::erase_if(conns_, [](const asyncore::TaskRef& c) { return c.done(); });
        conns_.push_back(std::move(t));
    }
    bool stopping() const noexcept { return stopping_; }

    /// Blocks SIGINT and SIGTERM and waits for them on a signalfd.
    asyncore::Task<void> stop_on_signal() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigprocmask(SIG_BLOCK, &set, nullptr);
        asyncore::AsyncFile signals(::signalfd(-1, &set, SFD_CLOEXEC));
        co_await signals.read(sizeof(signalfd_siginfo), true);
        stopping_ = true;
        listener_.close();
        for (auto& c : conns_)
            c.terminate();
    }

  private:
    asyncore::AsyncSocket& listener_;
    std::vector<asyncore::TaskRef> conns_;
    bool stopping_ = false;
};

/// Accepts connections until `server` stops, running `handler(conn, addr)`
/// (which returns a Task) as a tracked task for each. A failed accept is
/// logged and does not stop the server: the next connection is served.
template <class Handler>
asyncore::Task<void> accept_loop(asyncore::AsyncSocket& listener, Server& server, Handler handler) {
    while (!server.stopping()) {
        try {
            auto [conn, addr] = co_await listener.accept();
            server.track(asyncore::spawn(handler(std::move(conn), addr)));
        } catch (const std::system_error& e) {
            if (server.stopping()) break;
            std::fprintf(stderr, "accept: %s\n", e.what());
        }
    }
}

}  // namespace sample
