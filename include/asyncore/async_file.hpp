// Files, pipes and threads for tasks: AsyncFile, AsyncPipe, run_in_thread.
#pragma once

#include <coroutine>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include <asyncore/task.hpp>

namespace asyncore {

namespace detail {

/// A job for the thread pool and the task waiting for it. Shared between the
/// pool thread and the loop; `waiter` is cleared if the wait is abandoned.
struct ThreadJob {
    virtual ~ThreadJob() = default;
    virtual void run() noexcept = 0;
    Wait* waiter = nullptr;
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
    std::exception_ptr error;
};

}  // namespace detail

/// co_await run_in_thread(fn, timeout): runs `fn` on a small thread pool
/// (started on first use) and yields its result or rethrows its exception,
/// while the loop keeps serving everyone else. `fn` must not touch the loop
/// except through ChannelMap::post. On timeout or cancellation the waiter
/// gets TimeoutError/Cancelled at once; `fn` still runs to its end and its
/// result is dropped.
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
RunInThread<std::decay_t<F>> run_in_thread(F&& fn, Timeout timeout = std::nullopt) {
    return RunInThread<std::decay_t<F>>(std::forward<F>(fn), timeout);
}

}  // namespace asyncore
