// The reactor: the one component of the library that talks to libevent.
// Everything else watches descriptors, runs timers and wakes the loop
// through the RAII handles it hands out (redis keeps its whole backend
// behind seven aeApi functions in ae.c; this is the same seam).
//
// It owns the event_base, the cross-thread wake-up and the urgent-data
// watch, and picks a portable mechanism for each where the fast one is
// Linux-only: libevent chooses the backend (epoll here; kqueue on the BSDs
// and macOS; poll or select when EVENT_NOEPOLL and friends say so), the
// wake-up is an eventfd under epoll and a pipe otherwise, and urgent data
// uses a second, edge-triggered epoll set where epoll exists at all (it
// does not exist elsewhere: see Dispatcher::handle_expt()).
//
// Threads: a reactor belongs to its loop's thread; only wake() may be called
// from others.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <asyncore/detail/watch.hpp>

struct event_base;

namespace asyncore::detail {

class Reactor {
  public:
    Reactor();
    ~Reactor();
    Reactor(const Reactor&) = delete;
    Reactor& operator=(const Reactor&) = delete;

    /// libevent's backend: "epoll", "kqueue", "poll", "select"...
    std::string_view backend() const noexcept;
    /// Watches started now (the reactor's own included): for tests that
    /// prove a wait left nothing registered.
    std::size_t started_watches() const noexcept;

    /// A persistent watch of `fd` for watch_read or watch_write; not started.
    /// Throws std::bad_alloc.
    Watch io(int fd, short what, WatchCallback cb, void* arg);
    /// A one-shot timer; not started. Throws std::bad_alloc.
    Watch timer(WatchCallback cb, void* arg);
    /// A watch that runs only when activate()d. Throws std::bad_alloc.
    Watch user(WatchCallback cb, void* arg);

    /// One pass: unless `poll` (or a watch was activated), waits for the first
    /// events, then runs each ready callback once and returns.
    void run_pass(bool poll);
    /// Ends the pass that runs now after the current callback.
    void break_pass() noexcept;

    /// Makes `cb(arg)` run in the loop's next pass; the one call that is
    /// safe from any thread. The callback is set once, by the loop.
    void set_wake(void (*cb)(void*), void* arg);
    void wake() noexcept;

    /// Urgent (out-of-band) data: `cb(token, arg)` runs for each descriptor
    /// that has some. Unsupported where epoll does not exist: then
    /// watch_urgent() does nothing.
    bool urgent_supported() const noexcept { return urgent_fd_ >= 0; }
    void set_urgent(void (*cb)(std::uint64_t token, void* arg), void* arg);
    void watch_urgent(int fd, std::uint64_t token) noexcept;
    void unwatch_urgent(int fd) noexcept;

  private:
    static void on_wake(int fd, short what, void* arg);
    static void on_urgent(int fd, short what, void* arg);

    event_base* base_ = nullptr;
    // The wake-up: an eventfd (both ends the same) or a pipe.
    int wake_read_ = -1;
    int wake_write_ = -1;
    Watch wake_watch_;
    void (*wake_cb_)(void*) = nullptr;
    void* wake_arg_ = nullptr;
    int urgent_fd_ = -1;  ///< the urgent-data epoll set, or -1
    Watch urgent_watch_;
    void (*urgent_cb_)(std::uint64_t, void*) = nullptr;
    void* urgent_arg_ = nullptr;
};

}  // namespace asyncore::detail
