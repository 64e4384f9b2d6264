// echo_server: asyncore's echo server. A Dispatcher listens; each connection
// gets a DispatcherWithSend, made with make<>() and forgotten, that sends
// back every byte it reads.
//
//   echo_server [--host 127.0.0.1] [--port 0] [--max-fds N] [--threads N]
//               [--idle-timeout SECONDS]
//
// Backpressure the asyncore way: while more than 1 MiB of echo waits for a
// peer that does not read, readable() is false for that peer, so memory stays
// bounded. A peer that half-closes gets every byte echoed before the close. --max-fds lowers
// RLIMIT_NOFILE: flooded with more connections than descriptors, the server keeps serving and
// accepts again once fds free up.
// --threads N runs N loops, shared-nothing: each thread has its own
// ChannelMap and its own listener on the same port (SO_REUSEPORT), and the
// kernel spreads the connections over them. --idle-timeout closes a
// connection that sends nothing for that long (0, the default: never).
// SIGINT or SIGTERM closes every channel and exits 0.

#include <asyncore/asyncore.hpp>

#include <sys/resource.h>
#include <sys/signalfd.h>
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

    bool readable() override { return !draining_ && pending() <= high_water; }
    void handle_read() override {
        std::size_t n = recv_into(shared_buffer);
        if (n > 0) send(std::string_view(shared_buffer, n));
    }
    // The peer closed its side. If it only half-closed, it still reads: the
    // echo still queued for it goes out first, then the connection closes.
    // A peer that is gone fails the next send, which closes at once.
    void handle_close() override {
        if (pending() > 0 && !draining_) {
            draining_ = true;
            return;
        }
        close();
    }
    void handle_write() override {
        DispatcherWithSend::handle_write();
        if (draining_ && pending() == 0 && fileno() >= 0) close();
    }

  private:
    bool draining_ = false;
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

// SIGINT/SIGTERM arrive through a signalfd watched like any channel: the
// loop stays single-threaded and the handler may do anything.
// With --threads, the other loops are told through ChannelMap::post, the
// one call that is safe from another thread.
class SignalWatcher : public asyncore::FileDispatcher {
  public:
    SignalWatcher(int fd, asyncore::ChannelMap& map, std::vector<asyncore::ChannelMap*> others)
        : FileDispatcher(fd, map), others_(std::move(others)) {}
    bool writable() override { return false; }
    void handle_read() override {
        signalfd_siginfo info;
        if (::read(fileno(), &info, sizeof info) != static_cast<ssize_t>(sizeof info)) return;
        std::fprintf(stderr, "echo_server: %s, closing\n", ::strsignal(info.ssi_signo));
        for (asyncore::ChannelMap* m : others_)
            m->post([m] { asyncore::close_all(*m, true); });
        asyncore::close_all(map(), true);
    }

  private:
    std::vector<asyncore::ChannelMap*> others_;
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

int signal_fd() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) asyncore::throw_errno(errno, "signalfd");
    return fd;
}

}  // namespace

int main(int argc, char** argv) try {
    Options opt = parse(argc, argv);
    // Blocked before any thread starts, so every thread inherits the mask and
    // the signals reach only the signalfd.
    int sigfd = signal_fd();
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
    SignalWatcher signals(sigfd, map, others);
    ::close(sigfd);  // the watcher holds its own duplicate
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
