// resp_server: a Redis-protocol (RESP2) key-value server on AsyncChat.
//
//   resp_server [--host HOST] [--port PORT] [--threads N] [--timeout SECONDS]
//
// Prints "listening on HOST:PORT" once ready (PORT 0 picks a free port).
// --timeout is redis' "timeout": a client idle for that many seconds is
// closed (default 0: never); CONFIG SET timeout changes it at run time, for
// the connections already open too.
// SIGINT or SIGTERM shut down gracefully: the listeners close at once, every
// connection once its replies are written (at most 5 s later), and the
// server exits 0. SIGUSR1 prints the first loop's counters on stderr.
//
// --threads N (default 1) runs N loops, shared-nothing as Seastar does:
// the main thread and N-1 more, each with its own map, its own listener on
// the same port (SO_REUSEPORT: the kernel spreads connections over them)
// and its own shard of the keyspace (see shard.hpp and router.hpp). With
// N = 1 no thread is started.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <latch>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <asyncore/asyncore.hpp>
#include <asyncore/file_dispatcher.hpp>

#include "keyspace.hpp"
#include "resp_channel.hpp"
#include "shard.hpp"

#include "../common/command_line.hpp"

namespace {

using namespace std::chrono_literals;

struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    std::size_t threads = 1;
    std::int64_t timeout = 0;  ///< seconds; 0: idle clients are never closed
};

// Far more than any machine this runs on has cores; a typo's guard.
constexpr long max_threads = 256;
// redis' bounds for "timeout", the same for CONFIG SET.
constexpr long max_timeout = std::numeric_limits<int>::max();

Options parse_options(int argc, char** argv) {
    sample::CommandLine cl(argc, argv,
                           "usage: resp_server [--host HOST] [--port PORT] [--threads N] "
                           "[--timeout SECONDS]",
                           {"host", "port", "threads", "timeout"});
    Options o;
    o.host = cl.get("host", o.host);
    o.port = static_cast<std::uint16_t>(cl.number("port", o.port, 0, 65535));
    o.threads = static_cast<std::size_t>(
        cl.number("threads", static_cast<long>(o.threads), 1, max_threads));
    o.timeout = cl.number("timeout", 0, 0, max_timeout);
    return o;
}

// A shard's listening socket: each accepted connection becomes a
// RespChannel owned by the shard's map. With several shards every listener
// sets SO_REUSEPORT before bind, so that all can bind the same port.
class RespServer : public asyncore::Dispatcher {
  public:
    RespServer(const asyncore::Address& addr, resp::Cluster& cluster, resp::Shard& shard)
        : Dispatcher(shard.map), cluster_(cluster), shard_(shard) {
        create_socket(addr.family(), SOCK_STREAM);
        set_reuse_addr();
        if (cluster.size() > 1) set_reuse_port();
        bind(addr);
        listen(511);  // redis' default tcp-backlog
    }

    void handle_accepted(asyncore::Socket sock, const asyncore::Address&) override {
        // Replies are written whole, once per read: Nagle would only delay them.
        int on = 1;
        ::setsockopt(sock.fd(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        asyncore::make<resp::RespChannel>(std::move(sock), cluster_, shard_);
    }

  private:
    void set_reuse_port() {
        int on = 1;
        if (::setsockopt(fileno(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
            throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
        }
    }

    resp::Cluster& cluster_;
    resp::Shard& shard_;
};

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

// What one shard's thread serves: its listener and its expiry sweep. Built
// and destroyed on that thread; shard.stop ends its loop.
class ShardServer {
  public:
    ShardServer(const Options& o, std::uint16_t port, resp::Cluster& cluster, resp::Shard& shard)
        : shard_(shard),
          listener_(asyncore::Address::ip(o.host, port), cluster, shard),
          sweeper_(shard.db, shard.map) {
        shard.stop = [this] {
            sweeper_.stop();
            asyncore::close_all_when_done(shard_.map, std::chrono::seconds(5));
        };
    }
    ~ShardServer() { shard_.stop = nullptr; }
    std::uint16_t port() const { return listener_.local_address().port(); }

  private:
    resp::Shard& shard_;
    RespServer listener_;
    ExpirySweeper sweeper_;
};

// Threads 1..N-1 start once shard 0 has its port, build their own shard
// server, and serve only once every shard is built: a request forwarded to
// a shard before then would find no thread serving it.
struct Startup {
    explicit Startup(std::size_t threads) : built(static_cast<std::ptrdiff_t>(threads)) {}
    std::latch built;
    std::latch go{1};
    std::atomic<bool> failed{false};
    bool ok = false;  ///< written before go opens, read after
};

void shard_thread(const Options& o, std::uint16_t port, resp::Cluster& cluster, std::size_t i,
                  Startup& startup) {
    bool built = false;
    try {
        resp::Shard& shard = cluster.shard(i);
        ShardServer server(o, port, cluster, shard);
        built = true;
        startup.built.count_down();
        startup.go.wait();
        if (startup.ok) asyncore::loop(30s, shard.map);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "resp_server: thread %zu: %s\n", i, e.what());
        startup.failed = true;
        // A shard that cannot serve its keys takes the whole server down.
        if (built) cluster.stop_all();
    }
    if (!built) startup.built.count_down();
}

// The timeout setting, from the command line and from every later CONFIG
// SET. A change reaches each thread's connections on that thread, the only
// one that may touch them. Each post reads the value when it runs, so with
// concurrent CONFIG SETs every thread still ends at the last one stored.
void configure_timeout(resp::Cluster& cluster, std::int64_t seconds) {
    resp::ServerConfig& config = cluster.config();
    config.timeout = seconds;
    config.changed = [&cluster, &config] {
        cluster.post_to_all([&config](resp::Shard& shard) {
            resp::RespChannel::set_timeout_of_all(shard.map, config.timeout);
        });
    };
}

int serve(const Options& o) {
    resp::Cluster cluster(o.threads);
    configure_timeout(cluster, o.timeout);
    resp::Shard& home = cluster.shard(0);
    // Signals run from the first loop, whichever thread the kernel picks;
    // stop_all() reaches the others through post().
    auto stop = [&](int) { cluster.stop_all(); };
    asyncore::SignalWatch on_int = home.map.on_signal(SIGINT, stop);
    asyncore::SignalWatch on_term = home.map.on_signal(SIGTERM, stop);
    asyncore::SignalWatch on_usr1 = home.map.on_signal(SIGUSR1, [&](int) {
        std::fprintf(stderr, "stats: channels=%zu passes=%llu\n", home.map.size(),
                     static_cast<unsigned long long>(home.map.stats().passes));
    });
    ShardServer server(o, o.port, cluster, home);

    Startup startup(o.threads);
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < o.threads; ++i)
        threads.emplace_back(shard_thread, std::cref(o), server.port(), std::ref(cluster), i,
                             std::ref(startup));
    startup.built.count_down();
    startup.built.wait();
    startup.ok = !startup.failed;
    startup.go.count_down();
    if (startup.ok) {
        std::printf("listening on %s:%u\n", o.host.c_str(), server.port());
        std::fflush(stdout);
        asyncore::loop(30s, home.map);
    }
    for (std::thread& t : threads)
        t.join();
    return startup.failed ? 1 : 0;
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
