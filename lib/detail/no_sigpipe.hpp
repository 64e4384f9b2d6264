// Writing to a pipe whose reader has gone raises SIGPIPE, which kills a
// program that did not ignore it. Sockets avoid it with MSG_NOSIGNAL; pipes
// and terminals have no such flag, and the library must not change the
// process's signal dispositions behind the program's back. These writes
// block SIGPIPE in the calling thread for the one system call and consume
// the signal if that call raised it: the writer sees EPIPE, nothing else.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>

namespace asyncore::detail {

/// write(2) that reports a gone reader as EPIPE and never raises SIGPIPE.
ssize_t write_no_sigpipe(int fd, const void* data, std::size_t size) noexcept;
/// writev(2) likewise.
ssize_t writev_no_sigpipe(int fd, const iovec* iov, int count) noexcept;

}  // namespace asyncore::detail
