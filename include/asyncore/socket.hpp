// Socket: the owner of one file descriptor.
#pragma once

#include <utility>

namespace asyncore {

/// Owns a file descriptor (usually a socket) and closes it on destruction.
/// Move-only. Dispatcher::accept() hands out accepted connections as Socket so
/// that a connection nobody takes is closed, never leaked.
class Socket {
  public:
    Socket() noexcept = default;
    /// Takes ownership of `fd` (-1 means none).
    explicit Socket(int fd) noexcept : fd_(fd) {}
    Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Socket& operator=(Socket&& other) noexcept {
        if (this != &other) reset(std::exchange(other.fd_, -1));
        return *this;
    }
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    ~Socket() { reset(); }

    /// Creates a non-blocking, close-on-exec socket. Throws std::system_error.
    static Socket create(int family, int type, int protocol = 0);

    int fd() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    /// Gives up ownership without closing.
    int release() noexcept { return std::exchange(fd_, -1); }
    /// Closes the current descriptor (if any) and takes `fd`.
    void reset(int fd = -1) noexcept;

    /// Puts the descriptor in non-blocking (or blocking) mode. Throws std::system_error.
    void set_nonblocking(bool on = true) const;

  private:
    int fd_ = -1;
};

}  // namespace asyncore
