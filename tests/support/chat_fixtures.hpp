// Fixtures for the AsyncChat suites: a peer that feeds a channel one read
// at a time, and a recording chat channel (test_asynchat's echo_client).
#pragma once

#include <asyncore/async_chat.hpp>

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/fixtures.hpp"

namespace test {

/// Bytes waiting in `fd`'s receive queue.
inline std::size_t unread(int fd) {
    int n = 0;
    if (::ioctl(fd, FIONREAD, &n) < 0) asyncore::throw_errno(errno, "FIONREAD");
    return static_cast<std::size_t>(n);
}

/// Waits (bounded) until `fd` has at least `n` bytes queued for reading.
inline bool wait_unread(int fd, std::size_t n) {
    auto deadline = std::chrono::steady_clock::now() + watchdog;
    while (unread(fd) < n) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        pollfd p{fd, POLLIN, 0};
        (void)::poll(&p, 1, 10);
    }
    return true;
}

/// Appends what `fd` has to read now, without blocking. False at EOF.
inline bool drain(int fd, std::string& into) {
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            into.append(buf, static_cast<std::size_t>(n));
        } else if (n == 0) {
            return false;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return true;
        } else if (errno != EINTR) {
            asyncore::throw_errno(errno, "recv");
        }
    }
}

/// Writes `data` to `peer_fd` `chunk` bytes at a time and, after each piece,
/// runs `map` until the channel on `chat_fd` has read it: every piece is one
/// read of its own (test_asynchat's echo_server with chunk_size).
inline bool send_in_chunks(asyncore::ChannelMap& map, int peer_fd, int chat_fd,
                           std::string_view data, std::size_t chunk) {
    for (std::size_t off = 0; off < data.size(); off += chunk) {
        std::string piece(data.substr(off, chunk));
        write_all(peer_fd, piece);
        if (!wait_unread(chat_fd, piece.size())) return false;
        if (!run_until(map, [&] { return unread(chat_fd) == 0; })) return false;
    }
    return true;
}

/// `n` bytes of a pattern that depends on `seed` and repeats only after
/// 251 * 256 bytes: misplaced or repeated chunks do not compare equal.
inline std::string pattern(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>(i * 7 + seed * 131 + i / 251);
    return s;
}

/// A slow reader: reads `fd` at most `chunk` bytes at a time until EOF or
/// the watchdog, waiting for each read; returns what arrived.
inline std::string read_slowly(int fd, std::size_t chunk) {
    auto deadline = std::chrono::steady_clock::now() + watchdog;
    std::string out;
    std::string buf(chunk, '\0');
    while (std::chrono::steady_clock::now() < deadline) {
        ssize_t n = ::recv(fd, buf.data(), chunk, MSG_DONTWAIT);
        if (n > 0) {
            out.append(buf, 0, static_cast<std::size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            break;
        } else {
            pollfd p{fd, POLLIN, 0};
            (void)::poll(&p, 1, 10);
        }
    }
    return out;
}

/// Makes a socket's kernel buffers small, so that a test fills them with
/// little data.
inline void shrink_buffers(int fd, int bytes = 16384) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

/// Accepts one connection on a listener, waiting (bounded) for it.
inline asyncore::Socket accept_one(const Listener& l) {
    pollfd p{l.sock.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(watchdog.count() * 1000)) <= 0) {
        throw std::runtime_error("accept timed out");
    }
    int fd = ::accept4(l.sock.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) asyncore::throw_errno(errno, "accept");
    return asyncore::Socket(fd);
}

/// test_asynchat's echo_client: records every piece and record it is given.
class RecordingChat : public asyncore::AsyncChat {
  public:
    using AsyncChat::AsyncChat;

    void collect_incoming_data(std::string_view data) override {
        buffer.append(data);
        ++collects;
    }
    void found_terminator() override { contents.push_back(std::exchange(buffer, {})); }
    void handle_read() override {
        ++reads;
        AsyncChat::handle_read();
    }
    void handle_connect() override {}
    void handle_error(std::exception_ptr e) override {
        errors.push_back(e);
        AsyncChat::handle_error(e);
    }

    std::vector<std::string> contents;
    std::string buffer;
    int collects = 0;
    int reads = 0;
    std::vector<std::exception_ptr> errors;
};

}  // namespace test
