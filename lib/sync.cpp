// Lock, RLock, Condition, Event, Semaphore: FIFO wait lists with direct
// hand-over, so a releasing task cannot overtake the tasks already queued.

#include <asyncore/sync.hpp>

#include <string>

namespace asyncore {
namespace detail {

bool OwnedLock::try_take(TaskCore* me) noexcept {
    if (owner_ != nullptr) {
        if (!reentrant_ || owner_ != me || me == nullptr) return false;
        ++depth_;
        return true;
    }
    return take_free(me, 1);
}

bool OwnedLock::take_free(TaskCore* me, std::size_t depth) noexcept {
    if (owner_ != nullptr || !waiters_.empty() || me == nullptr) return false;
    owner_ = me;
    depth_ = depth;
    return true;
}

void OwnedLock::check_owner(TaskCore* me, const char* what) const {
    if (owner_ == nullptr) throw std::logic_error(std::string(what) + ": not locked");
    if (owner_ != me) throw std::logic_error(std::string(what) + ": not held by the calling task");
}

void OwnedLock::release(TaskCore* me, const char* what) {
    check_owner(me, what);
    if (--depth_ == 0) hand_over();
}

void OwnedLock::hand_over() noexcept {
    owner_ = nullptr;
    depth_ = 0;
    Wait* w = waiters_.pop_front();
    if (w == nullptr) return;
    owner_ = w->task;
    depth_ = static_cast<LockWait*>(w)->depth;
    w->task->complete(*w);
}

namespace {

/// Condition::wait's second half: take the lock back at `depth`, whatever
/// happened to the first half.
class Reacquire : public LockWait {
  public:
    Reacquire(OwnedLock& l, std::size_t d) noexcept : lock_(l) {
        depth = d;
        cancellable = false;
    }
    bool await_ready() noexcept { return lock_.take_free(current_task(), depth); }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        TaskCore& t = task_of(h);
        lock_.enqueue(*this);
        t.suspend(*this, h, std::nullopt);
    }
    void await_resume() const noexcept {}

  private:
    OwnedLock& lock_;
};

/// Condition::wait's first half: wait in the condition's queue for a notify.
class NotifyWait : public Wait {
  public:
    NotifyWait(WaitList& l, Timeout t) noexcept : list_(l), timeout_(t) {}
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        TaskCore& t = task_of(h);
        if (t.cancel_pending(*this)) return false;
        list_.push_back(*this);
        t.suspend(*this, h, timeout_);
        return true;
    }
    void await_resume() const { throw_if_failed(); }

  private:
    WaitList& list_;
    Timeout timeout_;
};

}  // namespace
}  // namespace detail

void Event::set() noexcept {
    set_ = true;
    while (detail::Wait* w = waiters_.pop_front())
        w->task->complete(*w);
}

Semaphore::Semaphore(std::ptrdiff_t value) : value_(value) {
    if (value < 0) throw std::invalid_argument("Semaphore: negative initial value");
}

bool Semaphore::try_acquire() noexcept {
    if (value_ == 0 || !waiters_.empty()) return false;
    --value_;
    return true;
}

void Semaphore::release() noexcept {
    if (detail::Wait* w = waiters_.pop_front()) {
        w->task->complete(*w);
        return;
    }
    ++value_;
}

Task<void> Condition::wait(Timeout timeout) {
    detail::TaskCore* me = detail::current_task();
    if (lock_.owner() != me || me == nullptr) {
        throw std::logic_error("Condition::wait: lock not held by the calling task");
    }
    std::size_t depth = 0;
    while (lock_.owner() == me) {
        ++depth;
        lock_.release(me, "Condition::wait");
    }
    std::exception_ptr failed;
    try {
        co_await detail::NotifyWait(waiters_, timeout);
    } catch (const std::system_error&) {
        failed = std::current_exception();
    }
    co_await detail::Reacquire(lock_, depth);
    if (failed) std::rethrow_exception(failed);
}

void Condition::notify(std::size_t n) {
    if (lock_.owner() != detail::current_task() || !lock_.locked()) {
        throw std::logic_error("Condition::notify: lock not held by the calling task");
    }
    for (; n > 0; --n) {
        detail::Wait* w = waiters_.pop_front();
        if (w == nullptr) break;
        w->task->complete(*w);
    }
}

}  // namespace asyncore
