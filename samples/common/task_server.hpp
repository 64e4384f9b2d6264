// What the task-based sample servers share: a listening AsyncSocket on
// --host/--port (options parsed by command_line.hpp) that announces itself,
// an accept loop that runs a task per connection, and the server's signals:
// SIGINT/SIGTERM shut it down gracefully, SIGUSR1 prints the loop's counters.
//
// Graceful shutdown: the listener closes, every connection's reading side is
// shut down (its task sees EOF at its next read, after finishing what it is
// sending), and a task still running after the grace period is terminated.
// Then loop() returns and main exits 0.
#pragma once

#include <asyncore/async_socket.hpp>
#include <asyncore/signals.hpp>
#include <asyncore/sync.hpp>
#include <asyncore/task.hpp>

#include <sys/socket.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "command_line.hpp"

namespace sample {

/// A listening socket on --host/--port (Server announces it).
inline asyncore::AsyncSocket listen_from(const CommandLine& opts) {
    auto addr = asyncore::Address::ip(opts.get("host", "127.0.0.1"),
                                      static_cast<std::uint16_t>(opts.number("port", 0, 0, 65535)));
    asyncore::AsyncSocket listener(addr.family(), SOCK_STREAM);
    listener.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
    listener.bind(addr);
    listener.listen(1024);
    return listener;
}

/// Tracks connection tasks and stops everything on SIGINT/SIGTERM.
class Server {
  public:
    /// How long a shutdown waits for connections to finish.
    static constexpr std::chrono::seconds grace{5};

    /// Watches the signals, then prints "listening on HOST:PORT": whoever
    /// reads that line may send SIGTERM at once and see a clean exit. (The
    /// watches are made here, not in stop_on_signal(), which as a task
    /// starts only on the loop's first pass.)
    explicit Server(asyncore::AsyncSocket& listener,
                    asyncore::ChannelMap& map = asyncore::socket_map())
        : listener_(listener),
          stats_(map.on_signal(SIGUSR1, [&map](int) { print_stats(map); })),
          on_int_(map.on_signal(SIGINT, [this](int) { stop_requested_.set(); })),
          on_term_(map.on_signal(SIGTERM, [this](int) { stop_requested_.set(); })) {
        std::printf("listening on %s\n", listener.local_address().to_string().c_str());
        std::fflush(stdout);
    }

    /// Keeps the task serving the connection on descriptor `fd`.
    void track(asyncore::TaskRef t, int fd) {
        std::erase_if(conns_, [](const Conn& c) { return c.task.done(); });
        conns_.push_back({std::move(t), fd});
    }
    bool stopping() const noexcept { return stopping_; }

    /// Waits for SIGINT or SIGTERM, then shuts down gracefully.
    asyncore::Task<void> stop_on_signal() {
        co_await stop_requested_.wait();
        stopping_ = true;
        listener_.close();
        // A task still running holds its socket open: the descriptor is its own.
        for (Conn& c : conns_)
            if (!c.task.done()) ::shutdown(c.fd, SHUT_RD);
        auto deadline = std::chrono::steady_clock::now() + grace;
        for (Conn& c : conns_) {
            if (c.task.done()) continue;
            auto left = deadline - std::chrono::steady_clock::now();
            if (left <= left.zero()) break;
            try {
                co_await c.task.finished(std::chrono::duration_cast<asyncore::Duration>(left));
            } catch (const asyncore::TimeoutError&) {
                break;
            }
        }
        for (Conn& c : conns_)
            c.task.terminate();
    }

  private:
    struct Conn {
        asyncore::TaskRef task;
        int fd;
    };

    static void print_stats(asyncore::ChannelMap& map) {
        const asyncore::LoopStats& s = map.stats();
        std::fprintf(stderr, "stats: passes=%llu interest_checks=%llu interest_changes=%llu\n",
                     static_cast<unsigned long long>(s.passes),
                     static_cast<unsigned long long>(s.interest_checks),
                     static_cast<unsigned long long>(s.interest_changes));
    }

    asyncore::AsyncSocket& listener_;
    asyncore::SignalWatch stats_;
    asyncore::Event stop_requested_;
    asyncore::SignalWatch on_int_;
    asyncore::SignalWatch on_term_;
    std::vector<Conn> conns_;
    bool stopping_ = false;
};

/// Accepts connections until `server` stops, running `handler(conn, addr)`
/// (which returns a Task) as a tracked task for each. Out of descriptors,
/// accept() itself waits, pausing, until it can take a connection (see
/// async_socket.hpp). Any other failed accept is logged and the next try
/// waits 100 ms, so that no error stops the server or spins the loop.
template <class Handler>
asyncore::Task<void> accept_loop(asyncore::AsyncSocket& listener, Server& server, Handler handler) {
    while (!server.stopping()) {
        bool failed = false;
        try {
            auto [conn, addr] = co_await listener.accept();
            int fd = conn.fd();
            server.track(asyncore::spawn(handler(std::move(conn), addr)), fd);
        } catch (const asyncore::Cancelled&) {
            throw;
        } catch (const std::system_error& e) {
            if (server.stopping()) break;
            std::fprintf(stderr, "accept: %s\n", e.what());
            failed = true;
        }
        if (failed) co_await asyncore::sleep(std::chrono::milliseconds(100));
    }
}

/// Ends a connection after a protocol error without losing what the peer
/// was already sent. Closing a socket whose input is unread makes the kernel
/// send a reset, and a reset makes the peer's kernel throw away the replies
/// it has not read yet. So, as nginx's lingering close: end our side (a FIN
/// behind the replies), then read and drop what the peer still sends, until
/// its EOF or `linger` has passed; the caller then closes.
inline asyncore::Task<void> lingering_close(
    asyncore::AsyncSocket& conn, std::chrono::milliseconds linger = std::chrono::seconds(5)) {
    try {
        conn.shutdown(SHUT_WR);
        conn.settimeout(std::chrono::duration_cast<asyncore::Duration>(linger));
        const auto deadline = std::chrono::steady_clock::now() + linger;
        while (std::chrono::steady_clock::now() < deadline) {
            if ((co_await conn.recv(65536)).empty()) break;
        }
    } catch (const asyncore::Cancelled&) {
        throw;
    } catch (const std::exception&) {
        // A timeout or a reset: the peer had its chance to read.
    }
}

}  // namespace sample
