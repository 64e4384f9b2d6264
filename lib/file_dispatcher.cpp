// FileWrapper and FileDispatcher: asyncore's file_wrapper / file_dispatcher.

#include <asyncore/error.hpp>
#include <asyncore/file_dispatcher.hpp>

#include <unistd.h>

#include <fcntl.h>
#include <cerrno>

#include "detail/no_sigpipe.hpp"

namespace asyncore {

FileWrapper::FileWrapper(int fd) : fd_(::fcntl(fd, F_DUPFD_CLOEXEC, 0)) {
    if (fd_ < 0) throw_errno(errno, "dup");
}

FileWrapper::~FileWrapper() {
    if (fd_ >= 0) ::close(fd_);
}

FileWrapper::FileWrapper(FileWrapper&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

std::string FileWrapper::recv(std::size_t n) {
    std::string data(n, '\0');
    ssize_t got;
    do {
        got = ::read(fd_, data.data(), n);
    } while (got < 0 && errno == EINTR);
    if (got < 0) throw_errno(errno, "read");
    data.resize(static_cast<std::size_t>(got));
    return data;
}

std::size_t FileWrapper::send(std::string_view data) {
    ssize_t n;
    do {
        n = detail::write_no_sigpipe(fd_, data.data(), data.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno(errno, "write");
    return static_cast<std::size_t>(n);
}

void FileWrapper::close() {
    if (fd_ < 0) return;
    // As asyncore's file_wrapper: the descriptor is forgotten even when
    // close(2) fails, so a second close() is a no-op rather than a retry.
    if (::close(std::exchange(fd_, -1)) < 0 && errno != EINTR) throw_errno(errno, "close");
}

int FileWrapper::release() noexcept {
    return std::exchange(fd_, -1);
}

FileDispatcher::FileDispatcher(int fd, ChannelMap& map) : Dispatcher(map) {
    set_file(fd);
    set_connected(true);
}

void FileDispatcher::set_file(int fd) {
    FileWrapper dup(fd);
    Socket owned(dup.release());
    owned.set_nonblocking();
    Dispatcher::set_file(std::move(owned));
}

}  // namespace asyncore
