// resp_server: a Redis-protocol (RESP2) key-value server on AsyncChat.
//
//   resp_server [--host HOST] [--port PORT]
//
// Prints "listening on HOST:PORT" once ready (PORT 0 picks a free port).
// SIGINT or SIGTERM close every channel and the server exits 0. Signals
// arrive through a signalfd watched by the loop, so no handler runs
// asynchronously and no thread is hidden.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include <asyncore/asyncore.hpp>
#include <asyncore/file_dispatcher.hpp>

#include "commands.hpp"
#include "keyspace.hpp"
#include "resp_channel.hpp"

namespace {

using namespace std::chrono_literals;

struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
};

[[noreturn]] void usage(const char* prog) {
    std::fprintf(stderr, "usage: %s [--host HOST] [--port PORT]\n", prog);
    std::exit(2);
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (i + 1 >= argc) usage(argv[0]);
        if (arg == "--host") {
            o.host = argv[++i];
        } else if (arg == "--port") {
            char* end = nullptr;
            long port = std::strtol(argv[++i], &end, 10);
            if (*end != '\0' || port < 0 || port > 65535) usage(argv[0]);
            o.port = static_cast<std::uint16_t>(port);
        } else {
            usage(argv[0]);
        }
    }
    return o;
}

// The listening socket: each accepted connection becomes a RespChannel
// owned by the map.
class RespServer : public asyncore::Dispatcher {
  public:
    RespServer(const asyncore::Address& addr, resp::Commands& commands, asyncore::ChannelMap& map)
        : Dispatcher(map), commands_(commands) {
        create_socket(addr.family(), SOCK_STREAM);
        set_reuse_addr();
        bind(addr);
        listen(511);  // redis' default tcp-backlog
    }

    void handle_accepted(asyncore::Socket sock, const asyncore::Address&) override {
        // Replies are written whole, once per read: Nagle would only delay them.
        int on = 1;
        ::setsockopt(sock.fd(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        asyncore::make<resp::RespChannel>(std::move(sock), commands_, map());
    }

  private:
    resp::Commands& commands_;
};

// SIGINT/SIGTERM as readable events on a signalfd.
class SignalWatcher : public asyncore::FileDispatcher {
  public:
    SignalWatcher(int fd, asyncore::ChannelMap& map, std::function<void()> on_signal)
        : FileDispatcher(fd, map), on_signal_(std::move(on_signal)) {}

    void handle_read() override {
        recv(sizeof(signalfd_siginfo));
        on_signal_();
    }

  private:
    std::function<void()> on_signal_;
};

int blocked_signals_fd() {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return -1;
    return ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

// Redis' active expiry: ten times a second, a bounded sample of the keys
// that have a TTL, so expired keys nobody reads still free their memory.
class ExpirySweeper {
  public:
    ExpirySweeper(resp::Keyspace& db, asyncore::ChannelMap& map) : db_(db), map_(map) {
        schedule();
    }
    void stop() {
        if (timer_ && !timer_.cancelled()) timer_.cancel();
    }

  private:
    void schedule() {
        timer_ = map_.call_later(100ms, [this] {
            db_.sweep();
            schedule();
        });
    }

    resp::Keyspace& db_;
    asyncore::ChannelMap& map_;
    asyncore::TimerHandle timer_;
};

int serve(const Options& o) {
    asyncore::ChannelMap map;
    resp::Keyspace db;
    resp::Commands commands(db);
    RespServer server(asyncore::Address::ip(o.host, o.port), commands, map);
    ExpirySweeper sweeper(db, map);

    int sfd = blocked_signals_fd();
    if (sfd < 0) throw std::system_error(errno, std::generic_category(), "signalfd");
    SignalWatcher signals(sfd, map, [&] {
        sweeper.stop();
        asyncore::close_all(map, true);
    });
    ::close(sfd);  // the watcher holds its own duplicate

    std::printf("listening on %s:%u\n", o.host.c_str(), server.local_address().port());
    std::fflush(stdout);
    asyncore::loop(30s, map);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o = parse_options(argc, argv);
    std::signal(SIGPIPE, SIG_IGN);
    try {
        return serve(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "resp_server: %s\n", e.what());
        return 1;
    }
}
