// echo_server: asyncore's echo server. A Dispatcher listens; each connection
// gets a DispatcherWithSend, made with make<>() and forgotten, that sends
// back every byte it reads.
//
//   echo_server [--host 127.0.0.1] [--port 0] [--max-fds N] [--threads N]
//               [--idle-timeout SECONDS]
//
// Backpressure the asyncore way: while more than 1 MiB of echo waits for a
// peer that does not read, readable() is false for that peer, so memory stays
// bounded. A peer that half-closes gets the rest of its echo, then the close.
// --max-fds lowers RLIMIT_NOFILE: flooded with more connections than
// descriptors, the server keeps serving and accepts again once fds free up.
// --threads N runs N loops, shared-nothing: each thread has its own
// ChannelMap and its own listener on the same port (SO_REUSEPORT), and the
// kernel spreads the connections over them. --idle-timeout closes a
// connection that sends nothing for that long (0, the default: never).
// SIGINT or SIGTERM shuts down gracefully: the listeners close at once,
// every connection once its pending echo is written (at most 5 s later),
// and the program exits 0. SIGUSR1 prints the first loop's counters.

#include <asyncore/asyncore.hpp>

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../common/command_line.hpp"

namespace {

constexpr std::size_t high_water = 1 << 20;  // stop reading above 1 MiB queued

// The one receive buffer every connection of a loop reads into: a loop runs
// its handlers one at a time, and DispatcherWithSend copies only what the
// socket does not take.
thread_local char shared_buffer[65536];

class EchoHandler : public asyncore::DispatcherWithSend {
  public:
    EchoHandler(asyncore::Socket sock, asyncore::ChannelMap& map, asyncore::Timeout idle_timeout)
        : DispatcherWithSend(std::move(sock), map) {
        set_idle_timeout(idle_timeout);
    }

    bool readable() override { return !input_ended_ && pending() <= high_water; }
    void handle_read() override {
        std::size_t n = recv_into(shared_buffer);
        if (n > 0) send(std::string_view(shared_buffer, n));
    }
    // The peer's EOF ends its input, not its echo: what is still pending is
    // sent, then the connection closes, so a peer that half-closes gets
    // every byte back. After a reset the next send fails and closes it.
    void handle_close() override {
        if (input_ended_ || pending() == 0) return close();
        input_ended_ = true;
        close_when_done();
    }
    // Idle: closed at once, pending echo or not.
    void handle_idle_timeout() override { close(); }

  private:
    bool input_ended_ = false;
};

class EchoServer : public asyncore::Dispatcher {
  public:
    EchoServer(const asyncore::Address& addr, bool reuse_port, asyncore::Timeout idle_timeout,
               asyncore::ChannelMap& map)
        : Dispatcher(map), idle_timeout_(idle_timeout) {
        create_socket(addr.family(), SOCK_STREAM);
        set_reuse_addr();
        if (reuse_port) set_reuse_port();
        bind(addr);
        listen(SOMAXCONN);
    }
    void handle_accepted(asyncore::Socket sock, const asyncore::Address&) override {
        asyncore::make<EchoHandler>(std::move(sock), map(), idle_timeout_);
    }

  private:
    asyncore::Timeout idle_timeout_;
};

struct Options {
    std::string host = "127.0.0.1";
    unsigned port = 0;
    long max_fds = 0;
    long threads = 1;
    asyncore::Timeout idle_timeout;
};

Options parse(int argc, char** argv) {
    sample::CommandLine cl(
        argc, argv,
        "usage: echo_server [--host ADDR] [--port N] [--max-fds N] [--threads N] "
        "[--idle-timeout SECONDS]",
        {"host", "port", "max-fds", "threads", "idle-timeout"});
    Options o;
    o.host = cl.get("host", o.host);
    o.port = static_cast<unsigned>(cl.number("port", 0));
    o.max_fds = cl.number("max-fds", o.max_fds);
    o.threads = cl.number("threads", o.threads);
    if (long idle = cl.number("idle-timeout", 0, 0, 86400); idle > 0) {
        o.idle_timeout = std::chrono::seconds(idle);
    }
    if (o.port > 65535 || o.threads < 1 || o.threads > 256) cl.usage();
    return o;
}

void limit_fds(long n) {
    rlimit r{};
    ::getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = static_cast<rlim_t>(n);
    if (::setrlimit(RLIMIT_NOFILE, &r) < 0) {
        std::fprintf(stderr, "echo_server: --max-fds %ld: %s\n", n, std::strerror(errno));
        std::exit(2);
    }
}

// How long a shutdown waits for connections to take their pending echo.
constexpr std::chrono::seconds shutdown_grace{5};

// A graceful close of every loop: `map` here, the others through post(),
// the one call that is safe from another thread.
void shut_down(asyncore::ChannelMap& map, const std::vector<asyncore::ChannelMap*>& others) {
    std::fprintf(stderr, "echo_server: shutting down\n");
    for (asyncore::ChannelMap* m : others)
        m->post([m] { asyncore::close_all_when_done(*m, shutdown_grace); });
    asyncore::close_all_when_done(map, shutdown_grace);
}

void print_stats(const asyncore::ChannelMap& map) {
    const asyncore::LoopStats& s = map.stats();
    std::fprintf(stderr, "stats: channels=%zu passes=%llu interest_checks=%llu\n", map.size(),
                 static_cast<unsigned long long>(s.passes),
                 static_cast<unsigned long long>(s.interest_checks));
}

}  // namespace

int main(int argc, char** argv) try {
    Options opt = parse(argc, argv);
    asyncore::ChannelMap& map = asyncore::socket_map();
    bool reuse_port = opt.threads > 1;
    EchoServer server(asyncore::Address::ip(opt.host, static_cast<std::uint16_t>(opt.port)),
                      reuse_port, opt.idle_timeout, map);
    // The other loops listen on the port the first one got (--port 0 included).
    std::vector<std::unique_ptr<asyncore::ChannelMap>> maps;
    std::vector<std::unique_ptr<EchoServer>> servers;
    std::vector<asyncore::ChannelMap*> others;
    for (long i = 1; i < opt.threads; ++i) {
        maps.push_back(std::make_unique<asyncore::ChannelMap>());
        servers.push_back(std::make_unique<EchoServer>(server.local_address(), true,
                                                       opt.idle_timeout, *maps.back()));
        others.push_back(maps.back().get());
    }
    // Signals run from the first loop, whichever thread the kernel picks.
    auto on_stop = [&](int) { shut_down(map, others); };
    asyncore::SignalWatch on_int = map.on_signal(SIGINT, on_stop);
    asyncore::SignalWatch on_term = map.on_signal(SIGTERM, on_stop);
    asyncore::SignalWatch on_usr1 = map.on_signal(SIGUSR1, [&](int) { print_stats(map); });
    if (opt.max_fds > 0) limit_fds(opt.max_fds);
    std::vector<std::thread> threads;
    for (asyncore::ChannelMap* m : others)
        threads.emplace_back([m] {
            try {
                asyncore::loop(std::chrono::seconds(30), *m);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "echo_server: %s\n", e.what());
                std::exit(1);
            }
        });
    // Ready means every loop's thread exists: whoever reads this line may
    // count them.
    std::printf("listening on %s\n", server.local_address().to_string().c_str());
    std::fflush(stdout);
    asyncore::loop();
    for (std::thread& t : threads)
        t.join();
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
}
