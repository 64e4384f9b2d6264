// Files, pipes and threads for tasks: AsyncFile, AsyncPipe, run_in_thread.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <asyncore/task.hpp>
#include <asyncore/thread_pool.hpp>

namespace asyncore {

namespace detail {
struct FileState;
struct ChildState;
}  // namespace detail

/// pycos' AsyncFile: a non-blocking descriptor (pipe, tty, socket, FIFO) for
/// tasks. Each operation tries the system call first and waits for
/// readiness only on EAGAIN; waits take the file's timeout (TimeoutError)
/// and are cancellable. One read and one write may be pending at once.
/// Closing, releasing, destroying or assigning over the file wakes a task
/// waiting in one of its operations with EBADF (std::system_error); the
/// operation touches nothing of the file afterwards.
/// Regular files are always "ready" to the kernel: use run_in_thread for
/// those if their reads may block on a slow disk.
class AsyncFile {
  public:
    AsyncFile() noexcept;
    /// Takes ownership of `fd` and makes it non-blocking.
    explicit AsyncFile(int fd);
    AsyncFile(AsyncFile&&) noexcept;
    /// Closes the descriptor held here first (as close()).
    AsyncFile& operator=(AsyncFile&&) noexcept;
    /// Closes the descriptor (as close()).
    ~AsyncFile();

    int fd() const noexcept;
    explicit operator bool() const noexcept { return fd() >= 0; }
    /// Closes the descriptor; a task still waiting on it fails with EBADF.
    void close() noexcept;
    /// Gives up the descriptor without closing it (-1 if none); a task still
    /// waiting on it fails with EBADF.
    int release() noexcept;
    void settimeout(Timeout timeout) noexcept;

    /// Up to `size` bytes (what is available), or, with `full`, exactly
    /// `size` unless EOF comes first. An empty string means EOF.
    Task<std::string> read(std::size_t size, bool full = false);
    /// Writes `data` (all of it with `full`, else what the kernel takes at
    /// once) and returns the count. `data` must stay valid until done.
    Task<std::size_t> write(std::string_view data, bool full = true);
    /// The next line, its '\n' included; the last line may lack it; empty at
    /// EOF. errc::limit_exceeded for a line longer than `limit` bytes.
    Task<std::string> readline(std::size_t limit = 65536);

  private:
    /// Shared with the operations in progress, which may outlive this object.
    std::shared_ptr<detail::FileState> s_;
};

/// pycos' AsyncPipe: a subprocess (posix_spawn, PATH searched) whose stdin,
/// stdout and stderr are AsyncFiles. Pipelines: give the next process the
/// previous one's stdout (`AsyncPipe b({"sort"}, a.take_stdout())`).
class AsyncPipe {
  public:
    /// Starts `argv`. `input`, if given, becomes the child's stdin (and is
    /// closed here); otherwise stdin is a pipe. stdout and stderr are pipes.
    /// Throws std::system_error if the program cannot be started.
    explicit AsyncPipe(std::vector<std::string> argv, AsyncFile input = AsyncFile());
    AsyncPipe(AsyncPipe&&) noexcept;
    /// Kills (SIGKILL) and reaps a child still running.
    ~AsyncPipe();

    int pid() const noexcept;
    AsyncFile& stdin_file() noexcept { return in_; }
    AsyncFile& stdout_file() noexcept { return out_; }
    AsyncFile& stderr_file() noexcept { return err_; }
    /// Hands the stdout pipe to the caller (to feed another process).
    AsyncFile take_stdout() noexcept { return std::move(out_); }

    struct Output {
        std::string out;
        std::string err;
        int status = 0;  ///< as wait()
    };
    /// Writes `input` to stdin and closes it while reading stdout and stderr
    /// to EOF, then waits for the exit. Output fields are empty for streams
    /// handed away. `timeout` bounds each read, write and the final wait
    /// (TimeoutError). The AsyncPipe must outlive the call.
    Task<Output> communicate(std::string input = {}, Timeout timeout = std::nullopt);
    /// Waits for the child to exit: its exit code, or 128 + signal. A task
    /// waiting here when the AsyncPipe is destroyed fails with EBADF, as does
    /// a wait on a moved-from AsyncPipe.
    Task<int> wait(Timeout timeout = std::nullopt);

  private:
    /// Shared with the wait() calls in progress, which may outlive this object.
    std::shared_ptr<detail::ChildState> child_;
    AsyncFile in_, out_, err_;
};

namespace detail {

/// A job for the thread pool and the task waiting for it. Shared between the
/// pool thread and the loop; `waiter` is cleared if the wait is abandoned.
struct ThreadJob {
    virtual ~ThreadJob() = default;
    virtual void run() noexcept = 0;
    /// The pool shut down before the job ran: it fails with ECANCELED.
    void cancel() noexcept;
    Wait* waiter = nullptr;
    std::exception_ptr error;
};

/// Runs `job` on the pool (started on first use) and, when done, resumes
/// its waiter from `t`'s loop through ChannelMap::post.
void submit(std::shared_ptr<ThreadJob> job, TaskCore& t);

template <class F>
struct ThreadJobFor final : ThreadJob {
    using R = std::invoke_result_t<F&>;
    explicit ThreadJobFor(F f) : fn(std::move(f)) {}
    void run() noexcept override {
        try {
            if constexpr (std::is_void_v<R>) {
                fn();
            } else {
                result.emplace(fn());
            }
        } catch (...) {
            error = std::current_exception();
        }
    }
    F fn;
    std::optional<std::conditional_t<std::is_void_v<R>, char, R>> result;
};

}  // namespace detail

/// co_await run_in_thread(fn, timeout): runs `fn` on the thread pool
/// (thread_pool.hpp: its size, start and shutdown) and yields its result or
/// rethrows its exception,
/// while the loop keeps serving everyone else. `fn` must not touch the loop
/// except through ChannelMap::post. On timeout or cancellation the waiter
/// gets TimeoutError/Cancelled at once; `fn` still runs to its end and its
/// result is dropped, so it must own (capture by value) what it uses.
///
/// GCC 12 caveat: a lambda written inside the co_await expression and
/// capturing a std::string (or another self-referencing object) by value is
/// miscompiled (the capture is copied bitwise). Name it first and move it:
/// `auto job = [s] {...}; co_await run_in_thread(std::move(job));`.
template <class F>
class [[nodiscard]] RunInThread : public detail::Wait {
  public:
    using R = std::invoke_result_t<F&>;
    RunInThread(F fn, Timeout t)
        : job_(std::make_shared<detail::ThreadJobFor<F>>(std::move(fn))), timeout_(t) {}
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        detail::TaskCore& t = detail::task_of(h);
        if (t.cancel_pending(*this)) return false;
        job_->waiter = this;
        detach_fn = [](detail::Wait& w) noexcept {
            static_cast<RunInThread&>(w).job_->waiter = nullptr;
        };
        t.suspend(*this, h, timeout_);
        detail::submit(job_, t);
        return true;
    }
    R await_resume() {
        throw_if_failed();
        if (job_->error) std::rethrow_exception(job_->error);
        if constexpr (!std::is_void_v<R>) return std::move(*job_->result);
    }

  private:
    std::shared_ptr<detail::ThreadJobFor<F>> job_;
    Timeout timeout_;
};

template <class F>
RunInThread<F> run_in_thread(F fn, Timeout timeout = std::nullopt) {
    return RunInThread<F>(std::move(fn), timeout);
}

}  // namespace asyncore
