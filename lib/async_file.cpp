// AsyncFile and AsyncPipe: coroutines over the readiness seam. Files are not
// a per-message hot path, so each operation is a small coroutine.

#include <asyncore/async_file.hpp>

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <spawn.h>
#include <cerrno>
#include <chrono>
#include <csignal>

#include "detail/io_wait.hpp"
#include "detail/no_sigpipe.hpp"

extern char** environ;

namespace asyncore {
namespace detail {

struct FileState {
    int fd = -1;
    IoWatch read_watch;
    IoWatch write_watch;
    Timeout timeout;
    std::string buffered;  ///< read ahead by readline()
    bool reading = false;
    bool writing = false;

    ~FileState() { close(); }
    // Gives up the descriptor: a waiting task is woken, finds fd < 0 and
    // fails with EBADF. Returns the descriptor (-1 if none).
    int detach() noexcept {
        for (IoWatch* w : {&read_watch, &write_watch}) {
            IoWaiter* waiter = w->waiter();
            w->close();
            if (waiter != nullptr) waiter->task->complete(*waiter);
        }
        return std::exchange(fd, -1);
    }
    void close() noexcept {
        if (int old = detach(); old >= 0) ::close(old);
    }
};

namespace {

// Marks a direction busy for the life of one operation.
class Claim {
  public:
    Claim(bool& flag) : flag_(flag) {
        if (flag_) throw std::system_error(make_error_code(errc::busy), "AsyncFile");
        flag_ = true;
    }
    ~Claim() { flag_ = false; }
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;

  private:
    bool& flag_;
};

bool would_block(int err) {
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

// An operation holds the state for its whole life: the AsyncFile may be
// closed, replaced or destroyed while it waits, and the operation still
// reads the state when it resumes (or unwinds after terminate()).
std::shared_ptr<FileState> live(const std::shared_ptr<FileState>& s) {
    if (!s || s->fd < 0) throw_errno(EBADF, "AsyncFile");
    return s;
}

}  // namespace
}  // namespace detail

using detail::FileState;

AsyncFile::AsyncFile() noexcept = default;

AsyncFile::AsyncFile(int fd) : s_(std::make_shared<FileState>()) {
    s_->fd = fd;
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        int err = errno;
        s_->fd = -1;
        ::close(fd);
        throw_errno(err, "AsyncFile");
    }
    s_->read_watch.bind(fd, detail::watch_read);
    s_->write_watch.bind(fd, detail::watch_write);
}

AsyncFile::AsyncFile(AsyncFile&&) noexcept = default;

// The old state may outlive this object in a waiting operation: close it
// now so that the operation wakes.
AsyncFile& AsyncFile::operator=(AsyncFile&& o) noexcept {
    if (this != &o) {
        close();
        s_ = std::move(o.s_);
    }
    return *this;
}

AsyncFile::~AsyncFile() {
    close();
}

int AsyncFile::fd() const noexcept {
    return s_ ? s_->fd : -1;
}

void AsyncFile::close() noexcept {
    if (s_) s_->close();
}

int AsyncFile::release() noexcept {
    return s_ ? s_->detach() : -1;
}

void AsyncFile::settimeout(Timeout timeout) noexcept {
    if (s_) s_->timeout = timeout;
}

Task<std::string> AsyncFile::read(std::size_t size, bool full) {
    std::shared_ptr<FileState> held = detail::live(s_);
    FileState& s = *held;
    detail::Claim claim(s.reading);
    std::string out = std::move(s.buffered);
    s.buffered.clear();
    if (out.size() > size) {
        s.buffered = out.substr(size);
        out.resize(size);
    }
    while (out.size() < size && (out.empty() || full)) {
        std::size_t have = out.size();
        out.resize(size);
        ssize_t n = ::read(s.fd, out.data() + have, size - have);
        int err = errno;
        out.resize(have + (n > 0 ? static_cast<std::size_t>(n) : 0));
        if (n == 0) break;
        if (n > 0) continue;
        if (!detail::would_block(err)) throw_errno(err, "read");
        co_await detail::IoReady(s.read_watch, s.timeout);
        if (s.fd < 0) throw_errno(EBADF, "read");
    }
    co_return out;
}

Task<std::size_t> AsyncFile::write(std::string_view data, bool full) {
    std::shared_ptr<FileState> held = detail::live(s_);
    FileState& s = *held;
    detail::Claim claim(s.writing);
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = detail::write_no_sigpipe(s.fd, data.data() + done, data.size() - done);
        if (n > 0) {
            done += static_cast<std::size_t>(n);
            if (!full) break;
            continue;
        }
        if (n < 0 && !detail::would_block(errno)) throw_errno(errno, "write");
        co_await detail::IoReady(s.write_watch, s.timeout);
        if (s.fd < 0) throw_errno(EBADF, "write");
    }
    co_return done;
}

namespace {

Task<void> skip_line(FileState& s) {
    for (;;) {
        std::size_t nl = s.buffered.find('\n');
        if (nl != std::string::npos) {
            s.buffered.erase(0, nl + 1);
            co_return;
        }
        s.buffered.resize(4096);
        ssize_t n = ::read(s.fd, s.buffered.data(), 4096);
        int err = errno;
        s.buffered.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
        if (n == 0) co_return;
        if (n < 0 && !detail::would_block(err)) throw_errno(err, "read");
        if (n < 0) co_await detail::IoReady(s.read_watch, s.timeout);
    }
}

}  // namespace

Task<std::string> AsyncFile::readline(std::size_t limit) {
    std::shared_ptr<FileState> held = detail::live(s_);
    FileState& s = *held;
    std::string line = std::move(s.buffered);
    s.buffered.clear();
    std::size_t scanned = 0;
    for (;;) {
        std::size_t nl = line.find('\n', scanned);
        if (nl != std::string::npos || line.size() > limit) {
            std::size_t end = nl != std::string::npos ? nl + 1 : line.size();
            s.buffered = line.substr(end);
            line.resize(end);
            // An overlong line is dropped (its rest too, up to its '\n'),
            // so the next readline starts on a line boundary.
            if (line.size() > limit) {
                if (nl == std::string::npos) co_await skip_line(s);
                throw std::system_error(make_error_code(errc::limit_exceeded), "readline");
            }
            co_return line;
        }
        scanned = line.size();
        std::string more = co_await read(4096);
        if (more.empty()) co_return line;
        line += more;
    }
}

// -- AsyncPipe -----------------------------------------------------------------

namespace {

struct Pipe {
    int r = -1, w = -1;
    Pipe() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) < 0) throw_errno(errno, "pipe2");
        r = fds[0];
        w = fds[1];
    }
};

}  // namespace

namespace detail {

// The child, shared with the wait() calls in progress: the AsyncPipe may be
// destroyed (or moved) while they wait.
struct ChildState {
    int pid = -1;
    int pidfd = -1;
    int status = -1;    ///< decoded, once reaped
    bool gone = false;  ///< the AsyncPipe was destroyed; the pid may be reused
    ~ChildState() {
        if (pidfd >= 0) ::close(pidfd);
    }
};

}  // namespace detail

namespace {

int decode_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

}  // namespace

AsyncPipe::AsyncPipe(std::vector<std::string> argv, AsyncFile input) {
    if (argv.empty()) throw std::invalid_argument("AsyncPipe: empty argv");
    int child_in = input ? input.release() : -1;
    Pipe in_pipe, out_pipe, err_pipe;
    if (child_in < 0) {
        child_in = in_pipe.r;
    } else {
        // The descriptor was non-blocking for us; the child expects blocking I/O.
        int flags = ::fcntl(child_in, F_GETFL);
        if (flags >= 0) ::fcntl(child_in, F_SETFL, flags & ~O_NONBLOCK);
        ::close(in_pipe.r);
        ::close(in_pipe.w);
        in_pipe.w = -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, child_in, 0);
    posix_spawn_file_actions_adddup2(&fa, out_pipe.w, 1);
    posix_spawn_file_actions_adddup2(&fa, err_pipe.w, 2);
    std::vector<char*> args;
    for (auto& a : argv)
        args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(child_in);
    ::close(out_pipe.w);
    ::close(err_pipe.w);
    if (rc != 0) {
        for (int fd : {in_pipe.w, out_pipe.r, err_pipe.r})
            if (fd >= 0) ::close(fd);
        throw_errno(rc, "posix_spawn");
    }
    if (in_pipe.w >= 0) in_ = AsyncFile(in_pipe.w);
    out_ = AsyncFile(out_pipe.r);
    err_ = AsyncFile(err_pipe.r);
    child_ = std::make_shared<detail::ChildState>();
    child_->pid = pid;
    child_->pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

AsyncPipe::AsyncPipe(AsyncPipe&&) noexcept = default;

// A wait() in progress wakes by itself: the pidfd of a reaped child is
// readable, and it stays open as long as the wait holds the child.
AsyncPipe::~AsyncPipe() {
    if (!child_) return;
    if (child_->status < 0) {
        ::kill(child_->pid, SIGKILL);
        ::waitpid(child_->pid, nullptr, 0);
    }
    child_->gone = true;
}

int AsyncPipe::pid() const noexcept {
    return child_ ? child_->pid : -1;
}

// The pidfd becomes readable when the child exits; without one (kernels
// before 5.3) the exit is polled every 10 ms.
Task<int> AsyncPipe::wait(Timeout timeout) {
    using Clock = std::chrono::steady_clock;
    std::optional<Clock::time_point> deadline;
    if (timeout) deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(*timeout);
    std::shared_ptr<detail::ChildState> child = child_;
    detail::IoWatch exited;
    if (child) exited.bind(child->pidfd, detail::watch_read);
    for (;;) {
        if (!child || child->gone) throw_errno(EBADF, "wait");
        if (child->status >= 0) break;
        int status = 0;
        pid_t r = ::waitpid(child->pid, &status, WNOHANG);
        if (r == child->pid) {
            child->status = decode_status(status);
            break;
        }
        if (r < 0 && errno != EINTR) throw_errno(errno, "waitpid");
        if (deadline && Clock::now() >= *deadline) throw TimeoutError();
        if (child->pidfd >= 0) {
            Timeout left;
            if (deadline) left = *deadline - Clock::now();
            co_await detail::IoReady(exited, left);
        } else {
            co_await sleep(std::chrono::milliseconds(10));
        }
    }
    co_return child->status;
}

Task<AsyncPipe::Output> AsyncPipe::communicate(std::string input, Timeout timeout) {
    Output result;
    ChannelMap& map = detail::current_task()->map();
    auto feed = [](AsyncFile& in, std::string data) -> Task<void> {
        if (!in) co_return;
        if (!data.empty()) co_await in.write(data);
        in.close();
    };
    // The helpers keep what they fill alive themselves, and are terminated
    // if this coroutine is: they may outlive it by a pass.
    auto drain = [](AsyncFile& f, std::shared_ptr<std::string> out) -> Task<void> {
        if (!f) co_return;
        for (std::string chunk; !(chunk = co_await f.read(65536)).empty();)
            *out += chunk;
    };
    for (AsyncFile* f : {&in_, &out_, &err_})
        f->settimeout(timeout);
    auto out = std::make_shared<std::string>();
    auto err = std::make_shared<std::string>();
    Task<void> writer = spawn(feed(in_, std::move(input)), map);
    Task<void> errors = spawn(drain(err_, err), map);
    struct Stop {
        TaskRef a, b;
        ~Stop() {
            a.terminate();
            b.terminate();
        }
    } stop{writer, errors};
    co_await drain(out_, out);
    co_await writer;
    co_await errors;
    result.status = co_await wait(timeout);
    result.out = std::move(*out);
    result.err = std::move(*err);
    co_return result;
}

}  // namespace asyncore
