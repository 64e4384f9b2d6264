// Pipe writes without SIGPIPE: see detail/no_sigpipe.hpp.

#include "detail/no_sigpipe.hpp"

#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <ctime>

namespace asyncore::detail {
namespace {

// Runs `call` with SIGPIPE blocked in this thread. A SIGPIPE that the call
// raised is left pending by the block; it is taken back with sigtimedwait()
// unless one was pending already (the program's own, which stays).
template <class Call>
ssize_t without_sigpipe(Call call) noexcept {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    ssize_t r = call();
    const int err = errno;
    if (r < 0 && err == EPIPE && !was_pending) {
        const timespec now{0, 0};
        while (sigtimedwait(&pipe_only, nullptr, &now) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    errno = err;
    return r;
}

}  // namespace

ssize_t write_no_sigpipe(int fd, const void* data, std::size_t size) noexcept {
    return without_sigpipe([&] { return ::write(fd, data, size); });
}

ssize_t writev_no_sigpipe(int fd, const iovec* iov, int count) noexcept {
    return without_sigpipe([&] { return ::writev(fd, iov, count); });
}

}  // namespace asyncore::detail
