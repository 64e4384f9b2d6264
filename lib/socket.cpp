// Socket: an owned descriptor.

#include <asyncore/error.hpp>
#include <asyncore/socket.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>
#include <cerrno>

namespace asyncore {

Socket Socket::create(int family, int type, int protocol) {
    int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0) throw_errno(errno, "socket");
    return Socket(fd);
}

void Socket::reset(int fd) noexcept {
    if (fd_ >= 0 && fd_ != fd) ::close(fd_);
    fd_ = fd;
}

void Socket::set_nonblocking(bool on) const {
    int flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0) throw_errno(errno, "fcntl(F_GETFL)");
    int wanted = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (wanted != flags && ::fcntl(fd_, F_SETFL, wanted) < 0) throw_errno(errno, "fcntl(F_SETFL)");
}

}  // namespace asyncore
