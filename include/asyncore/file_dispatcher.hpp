// FileDispatcher and FileWrapper: asyncore's file_dispatcher for pipes,
// terminals and other descriptors that are not sockets.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <asyncore/dispatcher.hpp>

namespace asyncore {

/// asyncore's file_wrapper: owns a dup() of a descriptor and offers the
/// socket-like calls Dispatcher uses. close() is safe to call twice; the
/// destructor closes what is still open and ignores errors.
class FileWrapper {
  public:
    /// Duplicates `fd` (the caller keeps its own). Throws std::system_error.
    explicit FileWrapper(int fd);
    ~FileWrapper();
    FileWrapper(FileWrapper&& other) noexcept;
    FileWrapper& operator=(FileWrapper&&) = delete;
    FileWrapper(const FileWrapper&) = delete;
    FileWrapper& operator=(const FileWrapper&) = delete;

    /// read(2) of at most `n` bytes; empty at EOF. Throws std::system_error.
    std::string recv(std::size_t n);
    std::string read(std::size_t n) { return recv(n); }
    /// write(2); returns the byte count. Throws std::system_error.
    std::size_t send(std::string_view data);
    std::size_t write(std::string_view data) { return send(data); }
    /// Closes the duplicate; a second call does nothing. Throws
    /// std::system_error if close(2) fails (e.g. EBADF when the descriptor
    /// was closed behind the wrapper's back); fileno() is -1 afterwards anyway.
    void close();
    /// The duplicate descriptor, or -1 once closed.
    int fileno() const noexcept { return fd_; }
    /// Gives up ownership of the descriptor.
    int release() noexcept;

  private:
    int fd_;
};

/// asyncore's file_dispatcher: watches a duplicate of `fd` (made
/// non-blocking) with the Dispatcher machinery. connected() is true from the
/// start; send()/recv() use write()/read(); EOF calls handle_close().
///
/// Descriptors epoll cannot watch (regular files) are rejected: add_channel
/// reports EPERM through handle_error().
class FileDispatcher : public Dispatcher {
  public:
    explicit FileDispatcher(int fd, ChannelMap& map = socket_map());
    /// Replaces the watched descriptor with a duplicate of `fd`.
    void set_file(int fd);
};

}  // namespace asyncore
