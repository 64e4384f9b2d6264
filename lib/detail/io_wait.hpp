// The readiness seam of the task layer: wait until a descriptor is readable
// or writable, with a timeout and cancellation. AsyncSocket, AsyncFile and
// TLS build on it.
//
// Operations try their system call first and come here only on EAGAIN. An
// IoWatch is one persistent reactor watch for one direction of one
// descriptor. It stays added after a wait completes, so a task that reads,
// answers and reads again costs no epoll_ctl per message; if it fires while
// nobody waits it is deleted then (level-triggered epoll would otherwise
// report the same readiness on every pass). A cancelled or timed-out wait
// deletes it at once: nothing stays registered for a wait that is gone.
#pragma once

#include <coroutine>

#include <asyncore/detail/watch.hpp>

#include <asyncore/task.hpp>

namespace asyncore::detail {

struct MapCore;

class IoWatch {
  public:
    IoWatch() = default;
    IoWatch(const IoWatch&) = delete;
    IoWatch& operator=(const IoWatch&) = delete;
    ~IoWatch() { close(); }

    /// Binds the watch to `fd` and direction watch_read or watch_write. The watch
    /// is created on `map` at the first wait.
    void bind(int fd, short what) noexcept {
        fd_ = fd;
        what_ = what;
    }
    /// Registers `w` (which must be the task's next wait) and suspends the
    /// task; false if a pending terminate() was delivered instead.
    bool suspend(IoWaiter& w, TaskCore& t, std::coroutine_handle<> h, Timeout timeout);
    /// Moves the waiter registered here to `to` (which must have none), for
    /// an operation whose next step needs the other readiness or another
    /// descriptor (TLS). Its timeout keeps running. False, leaving it here,
    /// if `to` cannot register it.
    bool move_waiter(IoWaiter& w, IoWatch& to) noexcept;
    /// Stops watching the descriptor while keeping the waiter registered
    /// (its timeout keeps running), until resume(): accept() backing off
    /// while the process is out of descriptors.
    void pause() noexcept;
    /// Watches again after pause() if a waiter is still registered; false
    /// if the event could not be added back.
    bool resume() noexcept;
    /// Deletes and frees the event; a waiter still registered is detached
    /// (the caller completes it).
    void close() noexcept;
    IoWaiter* waiter() const noexcept { return waiter_; }
    /// Takes `w` (an IoWaiter) back from its watch: the detach_fn suspend()
    /// installs, for an operation's own detach_fn to call first.
    static void detach(Wait& w) noexcept;

  private:
    static void on_ready(int, short, void* arg);
    void ensure_event(TaskCore& t);

    MapCore* core_ = nullptr;
    Watch ev_;
    IoWaiter* waiter_ = nullptr;
    int fd_ = -1;
    short what_ = 0;
    bool added_ = false;
};

/// co_await IoReady(watch, timeout): resumes when the watch's descriptor is
/// ready. Throws TimeoutError, Cancelled.
class IoReady : public IoWaiter {
  public:
    IoReady(IoWatch& watch, Timeout timeout) noexcept : watch_(watch), timeout_(timeout) {}
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        return watch_.suspend(*this, task_of(h), h, timeout_);
    }
    void await_resume() const { throw_if_failed(); }

  private:
    IoWatch& watch_;
    Timeout timeout_;
};

}  // namespace asyncore::detail
