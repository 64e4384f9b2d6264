// lossless_client: streams a seeded byte pattern through an echo server over
// many connections at once and checks every byte that comes back, without
// keeping what it sent. It shares no code with the library it checks (plain
// non-blocking sockets, poll(), and OpenSSL for --mode tls).
//
//   lossless_client --port P [--host 127.0.0.1] [--mode raw|msg|tls]
//                   [--cafile FILE] [--conns 100] [--bytes N[K|M|G]] [--seed S]
//                   [--max-message N] [--slow-conns 5] [--slow-bytes 6M]
//                   [--timeout SECONDS] [--stall SECONDS]
//
// Each connection's stream is a function of (seed, connection number): the
// receiving side regenerates what it expects from a second generator and
// compares as bytes arrive. --bytes is the total over all connections: the
// slow readers' (below) and an even split of the rest. Modes:
//   raw  bytes as they come (echo_server);
//   msg  pycos framing, a 4-byte big-endian length then the payload, with
//        lengths drawn from the seed: 0 B, small, medium and up to
//        --max-message (msg_echo_server echoes each message, so the stream
//        that comes back is the same bytes);
//   tls  raw over TLS, verifying the server's certificate for "localhost"
//        against --cafile (tls_echo_server).
// Once a connection has sent everything it half-closes (shutdown(SHUT_WR),
// or a TLS close_notify) and must then receive every byte back followed by
// the server's own close: bytes lost, reordered, corrupted, duplicated or
// held back all fail. --slow-conns of them (5 by default) read slowly (8
// KiB per wake-up against up to 256 KiB written, through a 16 KiB receive
// buffer) and each carry --slow-bytes (6 MiB: more than the kernel's socket
// buffers absorb on loopback), so the server has echo queued for them, held
// back by its own backpressure, when their half-close arrives.
//
// Output: one line "lossless: ..." with the bytes and MB/s (10^6 bytes of
// stream echoed per second, each byte counted once). Exit status: 0 every
// byte verified, 1 a connection failed (refused, reset, TLS error, closed
// early), 2 a byte differed, 3 the deadline or a stall, 64 bad usage.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
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
#include <vector>

namespace {

enum class Mode { raw, msg, tls };

struct Options {
    std::string host = "127.0.0.1";
    std::string port;
    Mode mode = Mode::raw;
    std::string cafile;
    int conns = 100;
    std::uint64_t bytes = 64ull << 20;
    std::uint64_t seed = 1;
    std::uint32_t max_message = 1 << 20;
    double timeout = 600;
    double stall = 60;
    int slow_conns = 5;
    std::uint64_t slow_bytes = 6ull << 20;
};

[[noreturn]] __attribute__((format(printf, 2, 3))) void fail(int status, const char* fmt, ...) {
    std::fputs("lossless: FAIL: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fputc('\n', stderr);
    std::fflush(nullptr);
    std::_Exit(status);
}

double now() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// wyrand: one 64-bit multiply per 8 bytes, so generating the pattern costs
// far less than moving it through the kernel twice.
class Rng {
  public:
    explicit Rng(std::uint64_t seed) : state_(seed) {}
    std::uint64_t next() {
        state_ += 0xa0761d6478bd642full;
        __uint128_t m = static_cast<__uint128_t>(state_) * (state_ ^ 0xe7037ed1a0b428dbull);
        return static_cast<std::uint64_t>(m >> 64) ^ static_cast<std::uint64_t>(m);
    }

  private:
    std::uint64_t state_;
};

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
    Rng r(a * 0x9e3779b97f4a7c15ull ^ b);
    r.next();
    return r.next();
}

// The bytes of one connection's stream, produced in order. Two instances
// with the same arguments produce the same bytes: one feeds the socket, the
// other says what must come back.
class Stream {
  public:
    Stream(const Options& o, std::uint32_t conn, std::uint64_t budget)
        : bytes_(mix(o.seed, conn)),
          lengths_(mix(o.seed ^ 0x5bd1e995, conn)),
          framed_(o.mode == Mode::msg),
          max_message_(o.max_message),
          budget_(budget) {}

    /// Up to `n` next bytes into `out`; returns how many (0 at the end).
    std::size_t fill(std::uint8_t* out, std::size_t n) {
        std::size_t done = 0;
        while (done < n && produced_ < budget_limit()) {
            if (framed_ && header_left_ == 0 && payload_left_ == 0) start_message();
            std::size_t take;
            if (header_left_ > 0) {
                take = std::min<std::size_t>(n - done, header_left_);
                for (std::size_t i = 0; i < take; ++i)
                    out[done + i] = header_[4 - header_left_ + i];
                header_left_ -= static_cast<std::uint32_t>(take);
            } else {
                std::uint64_t avail = framed_ ? payload_left_ : budget_ - produced_;
                take = static_cast<std::size_t>(std::min<std::uint64_t>(n - done, avail));
                payload(out + done, take);
                if (framed_) payload_left_ -= take;
            }
            done += take;
            produced_ += take;
        }
        return done;
    }

    std::uint64_t produced() const noexcept { return produced_; }
    /// Messages begun so far (msg mode).
    std::uint64_t messages() const noexcept { return messages_; }

  private:
    // Framed streams end after the message that reaches the budget, so the
    // total is known only as it is produced; both generators agree on it.
    std::uint64_t budget_limit() const noexcept {
        if (!framed_) return budget_;
        return produced_ < budget_ || header_left_ > 0 || payload_left_ > 0 ? UINT64_MAX
                                                                            : produced_;
    }

    void start_message() {
        std::uint64_t r = lengths_.next();
        std::uint64_t room = budget_ - produced_;  // > 0 here
        std::uint32_t len;
        unsigned bucket = static_cast<unsigned>(r % 100);
        std::uint64_t v = r >> 8;
        if (bucket < 5) {
            len = 0;
        } else if (bucket < 50) {
            len = 1 + static_cast<std::uint32_t>(v % 1024);
        } else if (bucket < 90) {
            len = 1024 + static_cast<std::uint32_t>(v % (64 * 1024));
        } else {
            len = 1 + static_cast<std::uint32_t>(v % max_message_);
        }
        len = std::min(len, max_message_);
        // The last message ends at the budget (or just past it, by the header).
        len = static_cast<std::uint32_t>(std::min<std::uint64_t>(len, room > 4 ? room - 4 : 0));
        header_[0] = static_cast<std::uint8_t>(len >> 24);
        header_[1] = static_cast<std::uint8_t>(len >> 16);
        header_[2] = static_cast<std::uint8_t>(len >> 8);
        header_[3] = static_cast<std::uint8_t>(len);
        header_left_ = 4;
        payload_left_ = len;
        ++messages_;
    }

    // The payload bytes continue one sequence across messages.
    void payload(std::uint8_t* out, std::size_t n) {
        while (n > 0) {
            if (word_left_ == 0) {
                word_ = bytes_.next();
                word_left_ = 8;
            }
            std::size_t k = std::min<std::size_t>(n, word_left_);
            std::memcpy(out, reinterpret_cast<const std::uint8_t*>(&word_) + (8 - word_left_), k);
            word_left_ -= static_cast<unsigned>(k);
            out += k;
            n -= k;
        }
    }

    Rng bytes_, lengths_;
    bool framed_;
    std::uint32_t max_message_;
    std::uint64_t budget_;
    std::uint64_t produced_ = 0;
    std::uint64_t messages_ = 0;
    std::uint8_t header_[4] = {};
    std::uint32_t header_left_ = 0;
    std::uint64_t payload_left_ = 0;
    std::uint64_t word_ = 0;
    unsigned word_left_ = 0;
};

constexpr std::size_t kChunk = 64 * 1024;
// At most this much is read or written per connection per wake-up, so that
// one fast connection cannot starve the others.
constexpr std::size_t kTurn = 256 * 1024;
// A slow reader reads at most this much per wake-up while writing up to
// kTurn, through a small receive buffer: the server's queue for it fills up
// and its half-close arrives while echo is still queued.
constexpr std::size_t kSlowTurn = 8 * 1024;
constexpr std::size_t kSlowBuffer = 16 * 1024;

std::string openssl_error() {
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0) return "no OpenSSL error queued";
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

struct Conn {
    std::uint32_t id = 0;
    int fd = -1;
    SSL* ssl = nullptr;
    bool connected = false;
    bool handshaken = false;
    bool want_write = false;  // the last write-side operation waits for POLLOUT
    bool shut = false;        // our half-close went out
    bool eof = false;         // the server closed its side
    std::unique_ptr<Stream> out, expect;
    std::vector<std::uint8_t> sendbuf;
    std::size_t send_off = 0, send_len = 0;
    std::uint64_t received = 0;
    bool slow = false;
};

class Client {
  public:
    explicit Client(const Options& o) : o_(o), recvbuf_(kChunk), expected_(kChunk) {}

    void run();

  private:
    void open(Conn& c, const sockaddr_storage& addr, socklen_t len);
    void step(Conn& c, short revents);
    void finish_connect(Conn& c);
    bool handshake(Conn& c);
    void read_side(Conn& c);
    void write_side(Conn& c);
    void received(Conn& c, const std::uint8_t* data, std::size_t n);
    void at_eof(Conn& c);
    [[noreturn]] void conn_fail(const Conn& c, const std::string& what);

    const Options& o_;
    SSL_CTX* ctx_ = nullptr;
    std::vector<Conn> conns_;
    std::vector<std::uint8_t> recvbuf_, expected_;
    std::uint64_t progress_ = 0;
};

void Client::conn_fail(const Conn& c, const std::string& what) {
    fail(1, "connection %u: %s (sent %llu of its bytes, %llu verified back)", c.id, what.c_str(),
         static_cast<unsigned long long>(c.out->produced() - (c.send_len - c.send_off)),
         static_cast<unsigned long long>(c.received));
}

void Client::open(Conn& c, const sockaddr_storage& addr, socklen_t len) {
    c.fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) fail(1, "socket: %s", std::strerror(errno));
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c.slow) {
        // A small receive buffer, so that the kernel cannot absorb what the
        // server sends: the queue builds up in the server.
        int size = static_cast<int>(kSlowBuffer);
        ::setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0) {
        c.connected = true;
    } else if (errno != EINPROGRESS) {
        fail(1, "connect: %s", std::strerror(errno));
    }
    if (o_.mode == Mode::tls) {
        c.ssl = SSL_new(ctx_);
        if (c.ssl == nullptr) fail(1, "SSL_new: %s", openssl_error().c_str());
        SSL_set_fd(c.ssl, c.fd);
        SSL_set_connect_state(c.ssl);
        SSL_set_tlsext_host_name(c.ssl, "localhost");
        SSL_set1_host(c.ssl, "localhost");
        SSL_set_mode(c.ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    c.want_write = true;  // the connect's completion is a write event
}

void Client::finish_connect(Conn& c) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) conn_fail(c, std::string("connect: ") + std::strerror(err));
    c.connected = true;
    c.want_write = false;
}

// One TLS handshake step; true once it is done.
bool Client::handshake(Conn& c) {
    int r = SSL_do_handshake(c.ssl);
    if (r == 1) {
        c.handshaken = true;
        c.want_write = false;
        return true;
    }
    int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        c.want_write = false;
        return false;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        c.want_write = true;
        return false;
    }
    long verify = SSL_get_verify_result(c.ssl);
    std::string why = openssl_error();
    if (verify != X509_V_OK) why += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
    conn_fail(c, "TLS handshake: " + why);
}

void Client::received(Conn& c, const std::uint8_t* data, std::size_t n) {
    std::size_t got = c.expect->fill(expected_.data(), n);
    std::size_t same = 0;
    while (same < got && data[same] == expected_[same])
        ++same;
    if (same == n) {
        c.received += n;
        progress_ += n;
        return;
    }
    if (same == got) {
        fail(2, "connection %u: %zu bytes more than the %llu sent came back", c.id, n - got,
             static_cast<unsigned long long>(c.expect->produced()));
    }
    std::uint64_t at = c.received + same;
    std::string want, have;
    char hex[4];
    for (std::size_t i = same; i < std::min(got, same + 16); ++i) {
        std::snprintf(hex, sizeof hex, "%02x", expected_[i]);
        want += hex;
        std::snprintf(hex, sizeof hex, "%02x", data[i]);
        have += hex;
    }
    fail(2, "connection %u: byte %llu of its stream differs: expected %s..., got %s...", c.id,
         static_cast<unsigned long long>(at), want.c_str(), have.c_str());
}

void Client::at_eof(Conn& c) {
    c.eof = true;
    std::uint64_t left = 0;
    while (std::size_t n = c.expect->fill(expected_.data(), kChunk))
        left += n;
    if (left > 0 || !c.shut) {
        conn_fail(c, "the server closed with " + std::to_string(left) + " bytes not echoed back" +
                         (c.shut ? "" : " (before our half-close)"));
    }
}

void Client::read_side(Conn& c) {
    std::size_t turn = 0;
    const std::size_t limit = c.slow ? kSlowTurn : kTurn;
    while (!c.eof && turn < limit) {
        ssize_t n;
        if (c.ssl != nullptr) {
            int r = SSL_read(c.ssl, recvbuf_.data(),
                             static_cast<int>(std::min(recvbuf_.size(), limit)));
            if (r <= 0) {
                int e = SSL_get_error(c.ssl, r);
                if (e == SSL_ERROR_WANT_READ) return;
                if (e == SSL_ERROR_WANT_WRITE) {
                    c.want_write = true;
                    return;
                }
                if (e == SSL_ERROR_ZERO_RETURN) return at_eof(c);
                conn_fail(c,
                          "TLS read: " + openssl_error() +
                              (e == SSL_ERROR_SYSCALL ? " (EOF without close_notify, or " +
                                                            std::string(std::strerror(errno)) + ")"
                                                      : ""));
            }
            n = r;
        } else {
            n = ::recv(c.fd, recvbuf_.data(), std::min(recvbuf_.size(), limit), 0);
            if (n == 0) return at_eof(c);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) return;
                conn_fail(c, std::string("recv: ") + std::strerror(errno));
            }
        }
        received(c, recvbuf_.data(), static_cast<std::size_t>(n));
        turn += static_cast<std::size_t>(n);
    }
}

void Client::write_side(Conn& c) {
    std::size_t turn = 0;
    c.want_write = false;
    while (!c.shut && turn < kTurn) {
        if (c.send_off == c.send_len) {
            c.send_len = c.out->fill(c.sendbuf.data(), c.sendbuf.size());
            c.send_off = 0;
        }
        if (c.send_len == 0) {
            // Everything sent: half-close.
            if (c.ssl != nullptr) {
                int r = SSL_shutdown(c.ssl);
                if (r < 0) {
                    int e = SSL_get_error(c.ssl, r);
                    if (e == SSL_ERROR_WANT_WRITE) {
                        c.want_write = true;
                        return;
                    }
                    if (e == SSL_ERROR_WANT_READ) return;
                    conn_fail(c, "TLS shutdown: " + openssl_error());
                }
            } else if (::shutdown(c.fd, SHUT_WR) != 0) {
                conn_fail(c, std::string("shutdown: ") + std::strerror(errno));
            }
            c.shut = true;
            return;
        }
        const std::uint8_t* p = c.sendbuf.data() + c.send_off;
        std::size_t len = c.send_len - c.send_off;
        ssize_t n;
        if (c.ssl != nullptr) {
            int r = SSL_write(c.ssl, p, static_cast<int>(len));
            if (r <= 0) {
                int e = SSL_get_error(c.ssl, r);
                if (e == SSL_ERROR_WANT_WRITE) {
                    c.want_write = true;
                    return;
                }
                if (e == SSL_ERROR_WANT_READ) return;
                conn_fail(c, "TLS write: " + openssl_error());
            }
            n = r;
        } else {
            n = ::send(c.fd, p, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    c.want_write = true;
                    return;
                }
                conn_fail(c, std::string("send: ") + std::strerror(errno));
            }
        }
        c.send_off += static_cast<std::size_t>(n);
        turn += static_cast<std::size_t>(n);
    }
    if (!c.shut) c.want_write = true;  // turn used up: come back
}

void Client::step(Conn& c, short revents) {
    if (!c.connected) {
        if ((revents & (POLLOUT | POLLERR | POLLHUP)) == 0) return;
        finish_connect(c);
    }
    if (c.ssl != nullptr && !c.handshaken && !handshake(c)) return;
    read_side(c);
    if (!c.eof) write_side(c);
}

void Client::run() {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(o_.host.c_str(), o_.port.c_str(), &hints, &res); rc != 0)
        fail(64, "%s:%s: %s", o_.host.c_str(), o_.port.c_str(), gai_strerror(rc));
    sockaddr_storage addr{};
    std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
    auto addrlen = static_cast<socklen_t>(res->ai_addrlen);
    ::freeaddrinfo(res);

    if (o_.mode == Mode::tls) {
        ctx_ = SSL_CTX_new(TLS_client_method());
        if (ctx_ == nullptr) fail(1, "SSL_CTX_new: %s", openssl_error().c_str());
        SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
        if (SSL_CTX_load_verify_locations(ctx_, o_.cafile.c_str(), nullptr) != 1)
            fail(64, "--cafile %s: %s", o_.cafile.c_str(), openssl_error().c_str());
    }

    conns_.resize(static_cast<std::size_t>(o_.conns));
    // The slow readers are spread over the connection numbers; each carries
    // --slow-bytes, and the others share the rest evenly.
    std::size_t fast = conns_.size() - static_cast<std::size_t>(o_.slow_conns);
    std::uint64_t rest = o_.bytes - static_cast<std::uint64_t>(o_.slow_conns) * o_.slow_bytes;
    std::size_t fast_seen = 0;
    const auto slow = static_cast<std::size_t>(o_.slow_conns);
    const std::size_t stride = slow > 0 ? conns_.size() / slow : 0;
    for (std::size_t i = 0; i < conns_.size(); ++i) {
        Conn& c = conns_[i];
        c.id = static_cast<std::uint32_t>(i);
        c.slow = stride > 0 && i % stride == 0 && i / stride < slow;
        std::uint64_t budget = o_.slow_bytes;
        if (!c.slow) {
            budget = rest / fast + (fast_seen < rest % fast ? 1 : 0);
            ++fast_seen;
        }
        c.out = std::make_unique<Stream>(o_, c.id, budget);
        c.expect = std::make_unique<Stream>(o_, c.id, budget);
        c.sendbuf.resize(kChunk);
        open(c, addr, addrlen);
    }

    double start = now();
    double last_progress = start;
    std::uint64_t seen = 0;
    std::vector<pollfd> fds;
    std::vector<Conn*> live;
    for (;;) {
        fds.clear();
        live.clear();
        for (Conn& c : conns_) {
            if (c.eof) continue;
            short ev = POLLIN;
            if (c.want_write || !c.connected) ev = static_cast<short>(ev | POLLOUT);
            fds.push_back(pollfd{c.fd, ev, 0});
            live.push_back(&c);
        }
        if (live.empty()) break;
        double t = now();
        if (progress_ != seen) {
            seen = progress_;
            last_progress = t;
        }
        if (t - start > o_.timeout)
            fail(3, "not done after %.0f s (%llu bytes verified)", o_.timeout,
                 static_cast<unsigned long long>(progress_));
        if (t - last_progress > o_.stall) {
            std::size_t waiting = live.size();
            fail(3,
                 "no byte came back for %.0f s; %zu connections unfinished, e.g. #%u (%llu "
                 "verified)",
                 o_.stall, waiting, live.front()->id,
                 static_cast<unsigned long long>(live.front()->received));
        }
        int n = ::poll(fds.data(), fds.size(), 1000);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail(1, "poll: %s", std::strerror(errno));
        }
        for (std::size_t i = 0; i < fds.size(); ++i) {
            // A connection whose SSL object holds buffered plaintext is
            // stepped although the kernel has nothing new for it.
            bool buffered = live[i]->ssl != nullptr && SSL_has_pending(live[i]->ssl) == 1;
            if (fds[i].revents != 0 || buffered) step(*live[i], fds[i].revents);
        }
    }
    double secs = std::max(now() - start, 1e-6);
    std::uint64_t total = 0, messages = 0;
    for (Conn& c : conns_) {
        total += c.received;
        messages += c.out->messages();
        if (c.ssl != nullptr) SSL_free(c.ssl);
        ::close(c.fd);
    }
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    const char* mode = o_.mode == Mode::raw ? "raw" : o_.mode == Mode::msg ? "msg" : "tls";
    std::printf("lossless: mode %s, %d connections, seed %llu: %llu bytes echoed and verified",
                mode, o_.conns, static_cast<unsigned long long>(o_.seed),
                static_cast<unsigned long long>(total));
    if (o_.mode == Mode::msg)
        std::printf(" (%llu messages)", static_cast<unsigned long long>(messages));
    std::printf(" in %.2f s, %.1f MB/s\n", secs, static_cast<double>(total) / secs / 1e6);
}

std::uint64_t parse_size(const char* s) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s, &end, 10);
    if (errno != 0 || end == s) fail(64, "bad size '%s'", s);
    std::string_view unit(end);
    if (unit == "K" || unit == "k")
        v <<= 10;
    else if (unit == "M" || unit == "m")
        v <<= 20;
    else if (unit == "G" || unit == "g")
        v <<= 30;
    else if (!unit.empty())
        fail(64, "bad size '%s' (a number, optionally K, M or G)", s);
    return v;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (i + 1 >= argc)
            fail(64, "usage: %s needs a value (see the comment in lossless_client.cpp)", argv[i]);
        const char* v = argv[++i];
        if (a == "--host")
            o.host = v;
        else if (a == "--port")
            o.port = v;
        else if (a == "--cafile")
            o.cafile = v;
        else if (a == "--conns")
            o.conns = static_cast<int>(parse_size(v));
        else if (a == "--bytes")
            o.bytes = parse_size(v);
        else if (a == "--seed")
            o.seed = parse_size(v);
        else if (a == "--max-message")
            o.max_message = static_cast<std::uint32_t>(parse_size(v));
        else if (a == "--slow-conns")
            o.slow_conns = static_cast<int>(parse_size(v));
        else if (a == "--slow-bytes")
            o.slow_bytes = parse_size(v);
        else if (a == "--timeout")
            o.timeout = std::atof(v);
        else if (a == "--stall")
            o.stall = std::atof(v);
        else if (a == "--mode") {
            std::string_view m = v;
            if (m == "raw")
                o.mode = Mode::raw;
            else if (m == "msg")
                o.mode = Mode::msg;
            else if (m == "tls")
                o.mode = Mode::tls;
            else
                fail(64, "--mode is raw, msg or tls");
        } else {
            fail(64, "unknown option %s", argv[i - 1]);
        }
    }
    if (o.port.empty()) fail(64, "--port is required");
    if (o.conns < 1 || o.conns > 10000) fail(64, "--conns is 1 to 10000");
    if (o.mode == Mode::tls && o.cafile.empty()) fail(64, "--mode tls needs --cafile");
    if (o.max_message < 1) fail(64, "--max-message is at least 1");
    if (o.slow_conns < 0 || o.slow_conns >= o.conns)
        fail(64, "--slow-conns is 0 to --conns minus one");
    if (static_cast<std::uint64_t>(o.slow_conns) * o.slow_bytes > o.bytes)
        fail(64, "--bytes must cover --slow-conns times --slow-bytes");
    if (o.timeout <= 0 || o.stall <= 0) fail(64, "--timeout and --stall are positive");
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    Options o = parse(argc, argv);
    Client client(o);
    client.run();
    return 0;
}
