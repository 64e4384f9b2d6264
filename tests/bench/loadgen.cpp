// loadgen: a closed-loop echo load generator that shares no code with the
// library it measures (plain epoll, level-triggered, one thread by default).
//
// Each of --conns connections keeps --pipeline messages of --size bytes in
// flight: a new message leaves as soon as an older one has fully come back.
// Every echoed byte is checked against the pattern it was generated from; the
// first wrong byte ends the run with exit status 2. --idle more connections
// are opened first and then held silent, to show what registered but idle
// sockets cost a server.
//
// --lines 1 makes every message a line for a line-oriented echo server (an
// AsyncChat with a "\n" terminator, evbuffer_readln): each message's last
// byte is '\n' and no other byte is (a '\n' the pattern would put elsewhere
// becomes 0x0b). --bind ADDR sets the source address of every connection
// (127.0.0.2, ...), so that many processes together can open more
// connections to one server than one address has ephemeral ports.
//
// Output: progress markers on stderr ("loadgen: connected", "loadgen:
// measuring", "loadgen: done", printed when each phase starts, so run.py can
// sample the server's CPU time over exactly the measured window), then one
// JSON line on stdout. Exit status: 0 ok, 1 connection errors, 2 wrong data,
// 3 could not connect, 64 bad usage.

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr size_t kChunk = 64 * 1024;  // largest single send() or recv()
constexpr int kMaxEvents = 256;
constexpr size_t kHeader = 12;  // 4-byte connection id, 8-byte sequence number

std::atomic<bool> g_stop{false};

struct Options {
    std::string host = "127.0.0.1";
    std::string port;
    std::string unix_path;
    int conns = 50;
    size_t size = 64;
    int pipeline = 1;
    double duration = 5;
    double warmup = 1;
    int idle = 0;
    int threads = 1;
    double connect_timeout = 10;
    int connect_window = 64;
    bool lines = false;
    std::string bind;  // source address, numeric; empty: the kernel's choice
};

// Prints "loadgen: ..." on stderr and ends the process at once: used for the
// failures after which no figure would mean anything.
[[noreturn]] __attribute__((format(printf, 2, 3))) void fail(int status, const char* fmt, ...) {
    std::fputs("loadgen: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fputc('\n', stderr);
    std::fflush(nullptr);
    std::_Exit(status);
}

uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t seconds_to_ns(double s) {
    return static_cast<uint64_t>(s * 1e9);
}

// Log-linear latency histogram in nanoseconds (HdrHistogram's layout): exact
// below 256 ns, then 128 buckets per power of two, so any percentile is within
// 0.8 % of the true value while the memory stays fixed (58 KiB) however many
// millions of messages are recorded.
class Histogram {
  public:
    void record(uint64_t v) {
        ++counts_[index(v)];
        ++total_;
        max_ = std::max(max_, v);
    }

    void merge(const Histogram& other) {
        for (size_t i = 0; i < kBuckets; ++i)
            counts_[i] += other.counts_[i];
        total_ += other.total_;
        max_ = std::max(max_, other.max_);
    }

    // The value below which a fraction q of the samples lie: the midpoint of
    // the bucket that holds the q-quantile, never above the largest sample.
    uint64_t percentile(double q) const {
        if (total_ == 0) return 0;
        auto target = std::max<uint64_t>(1, static_cast<uint64_t>(q * static_cast<double>(total_)));
        uint64_t seen = 0;
        for (size_t i = 0; i < kBuckets; ++i) {
            seen += counts_[i];
            if (seen >= target) return std::min(max_, lower(i) + width(i) / 2);
        }
        return max_;
    }

    uint64_t max() const { return max_; }

  private:
    static constexpr int kSubBits = 7;
    static constexpr uint64_t kLinear = uint64_t{1} << (kSubBits + 1);
    static constexpr size_t kBuckets = size_t{65 - kSubBits} << kSubBits;

    static size_t index(uint64_t v) {
        if (v < kLinear) return v;
        int e = (63 - std::countl_zero(v)) - kSubBits;
        return (static_cast<size_t>(e + 1) << kSubBits) + ((v >> e) - (uint64_t{1} << kSubBits));
    }
    static int exponent(size_t i) { return i < kLinear ? 0 : static_cast<int>(i >> kSubBits) - 1; }
    static uint64_t width(size_t i) { return uint64_t{1} << exponent(i); }
    static uint64_t lower(size_t i) {
        if (i < kLinear) return i;
        uint64_t mantissa = (i & ((size_t{1} << kSubBits) - 1)) + (uint64_t{1} << kSubBits);
        return mantissa << exponent(i);
    }

    std::vector<uint64_t> counts_ = std::vector<uint64_t>(kBuckets);
    uint64_t total_ = 0;
    uint64_t max_ = 0;
};

// The bytes of each connection's stream are a function of (connection id,
// position), so the receiver regenerates what it expects instead of keeping
// what it sent. Message k of connection c starts with c (4 bytes) and k (8
// bytes), little-endian; the rest of its bytes depend on c, k and the offset.
// Misrouted, reordered, duplicated or corrupted bytes all fail the check.
class Pattern {
  public:
    Pattern(size_t size, bool lines) : size_(size), lines_(lines), body_(size) {
        for (size_t i = 0; i < size; ++i)
            body_[i] = static_cast<uint8_t>(i * 7);
    }

    void fill(uint32_t conn, uint64_t pos, uint8_t* out, size_t len) const {
        uint64_t msg = pos / size_;
        size_t off = pos % size_;
        while (len > 0) {
            size_t n = std::min(len, size_ - off);
            auto delta = static_cast<uint8_t>(msg * 13 + conn * 29);
            for (size_t i = 0; i < n; ++i)
                out[i] = static_cast<uint8_t>(body_[off + i] + delta);
            for (size_t h = off; h < std::min(kHeader, off + n); ++h)
                out[h - off] = header_byte(conn, msg, h);
            if (lines_) {
                for (size_t i = 0; i < n; ++i)
                    if (out[i] == '\n') out[i] = 0x0b;
                if (off + n == size_) out[n - 1] = '\n';
            }
            out += n;
            len -= n;
            off = 0;
            ++msg;
        }
    }

  private:
    static uint8_t header_byte(uint32_t conn, uint64_t msg, size_t h) {
        return static_cast<uint8_t>(h < 4 ? conn >> (8 * h) : msg >> (8 * (h - 4)));
    }

    size_t size_;
    bool lines_;
    std::vector<uint8_t> body_;
};

struct Target {
    sockaddr_storage addr{};
    socklen_t len = 0;
    bool tcp = true;
    sockaddr_storage source{};
    socklen_t source_len = 0;  // 0: no --bind
};

Target resolve(const Options& o) {
    Target t;
    if (!o.unix_path.empty()) {
        sockaddr_un un{};
        un.sun_family = AF_UNIX;
        if (o.unix_path.size() >= sizeof un.sun_path) fail(64, "--unix path too long");
        std::memcpy(un.sun_path, o.unix_path.c_str(), o.unix_path.size() + 1);
        std::memcpy(&t.addr, &un, sizeof un);
        t.len = sizeof un;
        t.tcp = false;
        return t;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (getaddrinfo(o.host.c_str(), o.port.c_str(), &hints, &res) != 0)
        fail(64, "bad address %s:%s (numeric host and port expected)", o.host.c_str(),
             o.port.c_str());
    std::memcpy(&t.addr, res->ai_addr, res->ai_addrlen);
    t.len = res->ai_addrlen;
    freeaddrinfo(res);
    if (!o.bind.empty()) {
        hints.ai_family = t.addr.ss_family;
        if (getaddrinfo(o.bind.c_str(), "0", &hints, &res) != 0)
            fail(64, "bad --bind address %s (numeric, same family as --host)", o.bind.c_str());
        std::memcpy(&t.source, res->ai_addr, res->ai_addrlen);
        t.source_len = res->ai_addrlen;
        freeaddrinfo(res);
    }
    return t;
}

struct Conn {
    int fd = -1;
    uint32_t id = 0;
    bool idle = false;
    bool connected = false;
    bool writing = false;  // EPOLLOUT registered: only after a short send
    uint64_t connect_start = 0;
    uint64_t sent = 0;              // stream bytes sent
    uint64_t received = 0;          // stream bytes received, all verified
    uint64_t done = 0;              // messages fully echoed
    std::vector<uint64_t> sent_at;  // send time of message k, at [k % pipeline]
};

struct Result {
    Histogram hist;
    uint64_t msgs = 0;      // echoed within the measured window
    uint64_t verified = 0;  // echoed and checked, warm-up included
    uint64_t errors = 0;
};

// Closes with an RST (SO_LINGER 0) rather than a FIN: the active closer keeps
// a TIME_WAIT socket for a minute, and ten thousand idle connections per run
// would exhaust the loopback's ephemeral ports within a few rounds.
void abort_close(int fd) {
    linger lg{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

void report(const char* marker) {
    std::fprintf(stderr, "loadgen: %s\n", marker);
    std::fflush(stderr);
}

class Worker {
  public:
    Worker(const Options& o, const Target& t, const Pattern& p, uint32_t first_id, int active,
           int idle, bool reporter)
        : o_(o),
          target_(t),
          pattern_(p),
          reporter_(reporter),
          live_(active),
          conns_(static_cast<size_t>(active + idle)),
          rbuf_(kChunk),
          sbuf_(kChunk),
          expect_(kChunk) {
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0) fail(3, "epoll_create1: %s", std::strerror(errno));
        // Idle connections first, so that the server has accepted every one of
        // them (its accept queue is FIFO) before the first echo comes back.
        for (size_t i = 0; i < conns_.size(); ++i) {
            conns_[i].id = first_id + static_cast<uint32_t>(i);
            conns_[i].idle = i < static_cast<size_t>(idle);
            if (!conns_[i].idle) conns_[i].sent_at.resize(static_cast<size_t>(o.pipeline));
        }
    }

    ~Worker() {
        for (Conn& c : conns_)
            if (c.fd >= 0) abort_close(c.fd);
        close(ep_);
    }

    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void connect_all();
    void run(uint64_t warm_end, uint64_t end);
    const Result& result() const { return result_; }

  private:
    void start_connect(Conn& c, uint64_t now);
    void finish_connect(Conn& c);
    void check_connect_timeouts(uint64_t now) const;
    void on_event(Conn& c, uint32_t events);
    void on_readable(Conn& c);
    void complete_messages(Conn& c, uint64_t now);
    void pump(Conn& c, uint64_t now);
    void stamp_sent(Conn& c, uint64_t from, uint64_t n, uint64_t now) const;
    void verify(const Conn& c, size_t n);
    void set_writing(Conn& c, bool on);
    void drop(Conn& c, const char* why);
    void watch(Conn& c, int op, uint32_t events);

    const Options& o_;
    const Target& target_;
    const Pattern& pattern_;
    bool reporter_;
    bool measuring_ = false;
    int live_;  // active connections still open
    int ep_ = -1;
    int in_flight_ = 0;
    size_t connected_ = 0;
    std::vector<Conn> conns_;  // never resized: epoll keeps pointers into it
    std::vector<Conn*> retry_;
    std::vector<uint8_t> rbuf_, sbuf_, expect_;
    Result result_;
};

void Worker::watch(Conn& c, int op, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = &c;
    if (epoll_ctl(ep_, op, c.fd, &ev) < 0) fail(3, "epoll_ctl: %s", std::strerror(errno));
}

void Worker::start_connect(Conn& c, uint64_t now) {
    int family = target_.addr.ss_family;
    c.fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) fail(3, "socket: %s", std::strerror(errno));
    if (c.connect_start == 0) c.connect_start = now;
    if (target_.tcp) {
        // Without it Nagle would hold back a pipelined message until the
        // previous one is acknowledged: we would measure delayed ACKs.
        int one = 1;
        setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (target_.source_len != 0) {
        // The port is then chosen by connect(), per 4-tuple, not by bind().
        int one = 1;
        setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    }
    if (target_.source_len != 0 &&
        bind(c.fd, reinterpret_cast<const sockaddr*>(&target_.source), target_.source_len) < 0)
        fail(3, "bind to --bind %s: %s", o_.bind.c_str(), std::strerror(errno));
    if (connect(c.fd, reinterpret_cast<const sockaddr*>(&target_.addr), target_.len) == 0) {
        watch(c, EPOLL_CTL_ADD, EPOLLOUT);
        ++in_flight_;
        return;  // a connect that completes at once still reports EPOLLOUT
    }
    if (errno == EINPROGRESS) {
        watch(c, EPOLL_CTL_ADD, EPOLLOUT);
        ++in_flight_;
    } else if (errno == EAGAIN) {
        // A full Unix-socket backlog: try again once the server has accepted.
        close(c.fd);
        c.fd = -1;
        retry_.push_back(&c);
    } else {
        fail(3, "connect: %s", std::strerror(errno));
    }
}

void Worker::finish_connect(Conn& c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) fail(3, "connect: %s", std::strerror(err));
    c.connected = true;
    --in_flight_;
    ++connected_;
    // An idle connection must stay silent both ways: any byte or close from
    // the server on it is an error, so it is watched for that alone.
    watch(c, EPOLL_CTL_MOD, c.idle ? EPOLLIN | EPOLLRDHUP : EPOLLIN);
}

void Worker::check_connect_timeouts(uint64_t now) const {
    for (const Conn& c : conns_)
        if (!c.connected && c.connect_start != 0 &&
            now - c.connect_start > seconds_to_ns(o_.connect_timeout))
            fail(3, "connect timed out after %.1f s (%zu of %zu connected)", o_.connect_timeout,
                 connected_, conns_.size());
}

// Opens every connection, at most --connect-window at a time so that a burst
// of ten thousand never overflows the server's accept queue.
void Worker::connect_all() {
    size_t next = 0;
    uint64_t last_check = now_ns();
    epoll_event events[kMaxEvents];
    while (connected_ < conns_.size()) {
        if (g_stop.load()) fail(3, "interrupted while connecting");
        uint64_t now = now_ns();
        while (in_flight_ < o_.connect_window && (next < conns_.size() || !retry_.empty())) {
            Conn* c = nullptr;
            if (!retry_.empty()) {
                c = retry_.back();
                retry_.pop_back();
            } else {
                c = &conns_[next++];
            }
            start_connect(*c, now);
            if (c->fd < 0) break;  // backlog full: wait for the server
        }
        int n = epoll_wait(ep_, events, kMaxEvents, 10);
        for (int i = 0; i < n; ++i) {
            Conn& c = *static_cast<Conn*>(events[i].data.ptr);
            if (c.connected) {
                on_event(c, events[i].events);  // an idle connection the server closed
            } else {
                finish_connect(c);
            }
        }
        if (now - last_check > 100'000'000) {
            check_connect_timeouts(now);
            last_check = now;
        }
    }
}

void Worker::drop(Conn& c, const char* why) {
    if (++result_.errors <= 5) std::fprintf(stderr, "loadgen: connection %u: %s\n", c.id, why);
    abort_close(c.fd);
    c.fd = -1;
    if (!c.idle) --live_;
}

void Worker::set_writing(Conn& c, bool on) {
    if (c.writing == on) return;
    c.writing = on;
    watch(c, EPOLL_CTL_MOD, on ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

// Records the send time of every message whose first byte is in
// [from, from + n).
void Worker::stamp_sent(Conn& c, uint64_t from, uint64_t n, uint64_t now) const {
    uint64_t first = (from + o_.size - 1) / o_.size;
    uint64_t last = (from + n - 1) / o_.size;
    for (uint64_t k = first; k <= last; ++k)
        c.sent_at[k % static_cast<uint64_t>(o_.pipeline)] = now;
}

// Sends until --pipeline messages are in flight. A short send leaves the rest
// for EPOLLOUT; the bytes are regenerated from the pattern, not buffered.
void Worker::pump(Conn& c, uint64_t now) {
    uint64_t limit = (c.done + static_cast<uint64_t>(o_.pipeline)) * o_.size;
    while (c.sent < limit) {
        size_t len = static_cast<size_t>(std::min<uint64_t>(limit - c.sent, kChunk));
        pattern_.fill(c.id, c.sent, sbuf_.data(), len);
        ssize_t n = send(c.fd, sbuf_.data(), len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) return set_writing(c, true);
            if (errno == EINTR) continue;
            return drop(c, std::strerror(errno));
        }
        stamp_sent(c, c.sent, static_cast<uint64_t>(n), now);
        c.sent += static_cast<uint64_t>(n);
        if (static_cast<size_t>(n) < len) return set_writing(c, true);
    }
    set_writing(c, false);
}

void Worker::verify(const Conn& c, size_t n) {
    pattern_.fill(c.id, c.received, expect_.data(), n);
    if (std::memcmp(expect_.data(), rbuf_.data(), n) == 0) return;
    size_t i = 0;
    while (expect_[i] == rbuf_[i])
        ++i;
    uint64_t pos = c.received + i;
    fail(2,
         "wrong byte on connection %u at stream offset %llu (message %llu, byte %llu): "
         "expected 0x%02x, got 0x%02x",
         c.id, static_cast<unsigned long long>(pos), static_cast<unsigned long long>(pos / o_.size),
         static_cast<unsigned long long>(pos % o_.size), expect_[i], rbuf_[i]);
}

void Worker::complete_messages(Conn& c, uint64_t now) {
    while (c.received >= (c.done + 1) * o_.size) {
        if (measuring_) {
            result_.hist.record(now - c.sent_at[c.done % static_cast<uint64_t>(o_.pipeline)]);
            ++result_.msgs;
        }
        ++result_.verified;
        ++c.done;
    }
}

void Worker::on_readable(Conn& c) {
    ssize_t n = recv(c.fd, rbuf_.data(), kChunk, 0);
    uint64_t now = now_ns();
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) drop(c, std::strerror(errno));
        return;
    }
    if (n == 0) return drop(c, "closed by the server");
    auto len = static_cast<size_t>(n);
    if (c.received + len > c.sent)
        fail(2, "connection %u received %llu bytes but sent only %llu", c.id,
             static_cast<unsigned long long>(c.received + len),
             static_cast<unsigned long long>(c.sent));
    verify(c, len);
    c.received += len;
    complete_messages(c, now);
    pump(c, now);
}

void Worker::on_event(Conn& c, uint32_t events) {
    if (c.fd < 0) return;  // dropped earlier in this batch
    if (c.idle) return drop(c, "idle connection got data or was closed");
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
    if (c.fd >= 0 && (events & EPOLLOUT)) pump(c, now_ns());
}

void Worker::run(uint64_t warm_end, uint64_t end) {
    uint64_t start = now_ns();
    for (Conn& c : conns_)
        if (!c.idle) pump(c, start);
    bool has_active = live_ > 0;
    epoll_event events[kMaxEvents];
    while (!g_stop.load() && (!has_active || live_ > 0)) {
        uint64_t now = now_ns();
        if (!measuring_ && now >= warm_end) {
            measuring_ = true;
            if (reporter_) report("measuring");
        }
        if (now >= end) break;
        uint64_t boundary = measuring_ ? end : warm_end;
        int timeout = static_cast<int>(std::min<uint64_t>(10, (boundary - now) / 1'000'000 + 1));
        int n = epoll_wait(ep_, events, kMaxEvents, timeout);
        for (int i = 0; i < n; ++i)
            on_event(*static_cast<Conn*>(events[i].data.ptr), events[i].events);
    }
    if (reporter_) report("done");
}

double parse_number(const char* opt, const char* value, double min) {
    char* end = nullptr;
    double v = std::strtod(value, &end);
    if (end == value || *end != '\0' || v < min) fail(64, "bad value for %s: %s", opt, value);
    return v;
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i += 2) {
        std::string_view opt = argv[i];
        if (i + 1 >= argc) fail(64, "missing value after %s", argv[i]);
        const char* v = argv[i + 1];
        auto integer = [&](double min) { return static_cast<int>(parse_number(argv[i], v, min)); };
        if (opt == "--host")
            o.host = v;
        else if (opt == "--port")
            o.port = v;
        else if (opt == "--unix")
            o.unix_path = v;
        else if (opt == "--conns")
            o.conns = integer(0);
        else if (opt == "--size")
            o.size = static_cast<size_t>(integer(1));
        else if (opt == "--pipeline")
            o.pipeline = integer(1);
        else if (opt == "--duration")
            o.duration = parse_number(argv[i], v, 0.001);
        else if (opt == "--warmup")
            o.warmup = parse_number(argv[i], v, 0);
        else if (opt == "--idle")
            o.idle = integer(0);
        else if (opt == "--threads")
            o.threads = integer(1);
        else if (opt == "--connect-timeout")
            o.connect_timeout = parse_number(argv[i], v, 0.001);
        else if (opt == "--connect-window")
            o.connect_window = integer(1);
        else if (opt == "--lines")
            o.lines = integer(0) != 0;
        else if (opt == "--bind")
            o.bind = v;
        else
            fail(64, "unknown option %s", argv[i]);
    }
    if (o.port.empty() && o.unix_path.empty()) fail(64, "--port or --unix is required");
    if (o.conns + o.idle == 0) fail(64, "nothing to do: --conns and --idle are both 0");
    if (!o.bind.empty() && !o.unix_path.empty()) fail(64, "--bind is for TCP, not --unix");
    return o;
}

// Each connection is one descriptor; the default soft limit (1024) is far
// below what --idle asks for, so raise it to the hard limit when needed.
void ensure_fd_limit(const Options& o) {
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    auto need = static_cast<rlim_t>(o.conns + o.idle + 16 + 2 * o.threads);
    if (rl.rlim_cur >= need) return;
    rl.rlim_cur = std::min(rl.rlim_max, need);
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need)
        fail(3, "need %llu descriptors but the hard limit is %llu",
             static_cast<unsigned long long>(need), static_cast<unsigned long long>(rl.rlim_max));
}

void on_signal(int) {
    g_stop.store(true);
}

void install_signals() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

void print_json(const Options& o, const Result& r, double window) {
    auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    double msgs = static_cast<double>(r.msgs);
    std::printf(
        "{\"msgs_per_s\": %.1f, \"mib_per_s\": %.3f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
        "\"p999_us\": %.1f, \"max_us\": %.1f, \"msgs\": %llu, \"verified_msgs\": %llu, "
        "\"errors\": %llu, \"window_s\": %.3f, \"conns\": %d, \"idle\": %d, \"size\": %zu, "
        "\"pipeline\": %d, \"threads\": %d, \"lines\": %s}\n",
        msgs / window, msgs * static_cast<double>(o.size) / window / (1024.0 * 1024.0),
        us(r.hist.percentile(0.50)), us(r.hist.percentile(0.99)), us(r.hist.percentile(0.999)),
        us(r.hist.max()), static_cast<unsigned long long>(r.msgs),
        static_cast<unsigned long long>(r.verified), static_cast<unsigned long long>(r.errors),
        window, o.conns, o.idle, o.size, o.pipeline, o.threads, o.lines ? "true" : "false");
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    Options o = parse_options(argc, argv);
    ensure_fd_limit(o);
    install_signals();
    Target target = resolve(o);
    Pattern pattern(o.size, o.lines);

    std::vector<std::unique_ptr<Worker>> workers;
    for (int w = 0; w < o.threads; ++w) {
        int active = o.conns * (w + 1) / o.threads - o.conns * w / o.threads;
        int idle = o.idle * (w + 1) / o.threads - o.idle * w / o.threads;
        auto first = static_cast<uint32_t>(o.conns * w / o.threads + o.idle * w / o.threads);
        workers.push_back(
            std::make_unique<Worker>(o, target, pattern, first, active, idle, w == 0));
    }
    // Phases are absolute times shared by all workers, fixed once every
    // connection of every worker is open.
    uint64_t warm_end = 0;
    uint64_t end = 0;
    std::barrier connected(o.threads, [&]() noexcept {
        warm_end = now_ns() + seconds_to_ns(o.warmup);
        end = warm_end + seconds_to_ns(o.duration);
        report("connected");
    });
    std::vector<std::thread> threads;
    for (auto& w : workers) {
        threads.emplace_back([&, wp = w.get()] {
            wp->connect_all();
            connected.arrive_and_wait();
            wp->run(warm_end, end);
        });
    }
    for (auto& t : threads)
        t.join();

    uint64_t stopped = now_ns();
    double window = static_cast<double>(std::min(stopped, end) - std::min(stopped, warm_end));
    Result total;
    for (auto& w : workers) {
        total.hist.merge(w->result().hist);
        total.msgs += w->result().msgs;
        total.verified += w->result().verified;
        total.errors += w->result().errors;
    }
    print_json(o, total, std::max(window / 1e9, 1e-9));
    if (total.errors > 0 || (o.conns > 0 && total.verified == 0)) return 1;
    return 0;
}
