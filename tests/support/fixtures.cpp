// Test fixtures; see fixtures.hpp.

#include "support/fixtures.hpp"

#include <doctest/doctest.h>

#include <asyncore/error.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <poll.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>

namespace test {

namespace {

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits for `events` on `fd` until the watchdog; false on timeout.
bool wait_fd(int fd, short events, std::chrono::steady_clock::time_point deadline) {
    pollfd p{fd, events, 0};
    for (;;) {
        int n = ::poll(&p, 1, remaining_ms(deadline));
        if (n > 0) return true;
        if (n == 0) return false;
        if (errno != EINTR) asyncore::throw_errno(errno, "poll");
    }
}

}  // namespace

bool run_until(asyncore::ChannelMap& map, const std::function<bool()>& done,
               std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        map.run_pass(std::chrono::milliseconds(50));
    }
    return true;
}

void run_passes(asyncore::ChannelMap& map, int passes) {
    for (int i = 0; i < passes; ++i)
        map.run_pass(asyncore::Duration::zero());
}

asyncore::Address loopback(int family) {
    switch (family) {
        case AF_INET:
            return asyncore::Address::ipv4("127.0.0.1", 0);
        case AF_INET6:
            return asyncore::Address::ipv6("::1", 0);
        case AF_UNIX: {
            static std::atomic<int> counter{0};
            static const std::string dir = [] {
                char tmpl[] = "/tmp/asyncore-test-XXXXXX";
                if (::mkdtemp(tmpl) == nullptr) asyncore::throw_errno(errno, "mkdtemp");
                return std::string(tmpl);
            }();
            return asyncore::Address::unix_path(dir + "/s" + std::to_string(::getpid()) + "-" +
                                                std::to_string(counter++));
        }
        default:
            throw std::invalid_argument("loopback: unsupported family");
    }
}

Listener listen_on(int family, int backlog) {
    Listener l{asyncore::Socket::create(family, SOCK_STREAM), loopback(family)};
    int on = 1;
    ::setsockopt(l.sock.fd(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(l.sock.fd(), l.addr.native(), l.addr.native_size()) < 0) {
        asyncore::throw_errno(errno, "bind");
    }
    if (::listen(l.sock.fd(), backlog) < 0) asyncore::throw_errno(errno, "listen");
    socklen_t len = asyncore::Address::capacity;
    ::getsockname(l.sock.fd(), l.addr.native(), &len);
    l.addr.set_native_size(len);
    return l;
}

std::pair<asyncore::Socket, asyncore::Socket> connected_pair(int family) {
    if (family == AF_UNIX) {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
            asyncore::throw_errno(errno, "socketpair");
        }
        return {asyncore::Socket(fds[0]), asyncore::Socket(fds[1])};
    }
    Listener l = listen_on(family, 1);
    asyncore::Socket client = asyncore::Socket::create(family, SOCK_STREAM);
    if (::connect(client.fd(), l.addr.native(), l.addr.native_size()) < 0 && errno != EINPROGRESS) {
        asyncore::throw_errno(errno, "connect");
    }
    auto deadline = std::chrono::steady_clock::now() + watchdog;
    if (!wait_fd(l.sock.fd(), POLLIN, deadline)) throw std::runtime_error("accept timed out");
    int fd = ::accept4(l.sock.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) asyncore::throw_errno(errno, "accept");
    if (!wait_fd(client.fd(), POLLOUT, deadline)) throw std::runtime_error("connect timed out");
    return {std::move(client), asyncore::Socket(fd)};
}

void write_all(int fd, const std::string& data) {
    auto deadline = std::chrono::steady_clock::now() + watchdog;
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n < 0 && ::send(fd, nullptr, 0, MSG_NOSIGNAL) < 0 && errno == ENOTSOCK) {
            n = ::write(fd, data.data() + off, data.size() - off);
        }
        if (n > 0) {
            off += static_cast<std::size_t>(n);
        } else if (errno == EAGAIN || errno == EINTR) {
            if (!wait_fd(fd, POLLOUT, deadline)) throw std::runtime_error("write_all timed out");
        } else {
            asyncore::throw_errno(errno, "write_all");
        }
    }
}

std::string read_exactly(int fd, std::size_t n) {
    auto deadline = std::chrono::steady_clock::now() + watchdog;
    std::string out;
    char buf[65536];
    while (out.size() < n) {
        ssize_t got = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
        if (got > 0) {
            out.append(buf, static_cast<std::size_t>(got));
        } else if (got == 0) {
            break;
        } else if (errno == EAGAIN || errno == EINTR) {
            if (!wait_fd(fd, POLLIN, deadline)) break;
        } else {
            asyncore::throw_errno(errno, "read_exactly");
        }
    }
    return out;
}

std::string read_to_eof(int fd) {
    return read_exactly(fd, static_cast<std::size_t>(-1) / 2);
}

std::function<void()> never_called(std::string what) {
    return [what = std::move(what)] { FAIL("callback must never run: " << what); };
}

}  // namespace test
