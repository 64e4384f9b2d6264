// Watch: one registration with a map's reactor (lib/detail/reactor.hpp), a
// handle that owns it. Part of the library's internals: it is here, beside
// the public headers, only because task.hpp's scheduling state holds one.
#pragma once

#include <chrono>

struct event;

namespace asyncore::detail {

class Reactor;

/// What a watch waits for, and what its callback is told. The values are
/// libevent's (checked in reactor.cpp), so no translation happens per event.
enum : short {
    watch_timeout = 0x01,
    watch_read = 0x02,
    watch_write = 0x04,
};

/// A callback: the descriptor (-1 for timers), what happened, its argument.
/// Its shape is libevent's, so the reactor registers it as it is: no extra
/// call per event on the per-message path.
using WatchCallback = void (*)(int fd, short what, void* arg);

/// One registration with the reactor: a descriptor's readiness in one
/// direction (persistent until stopped), a timer, or a callback run only by
/// activate(). Destroying it stops it at once and frees it once it is not
/// running: a callback may destroy its own watch.
class Watch {
  public:
    Watch() noexcept = default;
    Watch(Watch&& o) noexcept : ev_(o.ev_) { o.ev_ = nullptr; }
    Watch& operator=(Watch&& o) noexcept;
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;
    ~Watch() { reset(); }

    explicit operator bool() const noexcept { return ev_ != nullptr; }

    /// Starts watching a descriptor. False, with errno set, when the backend
    /// refuses it (epoll refuses regular files with EPERM).
    bool start() noexcept;
    /// (Re)arms a timer to fire `delay` from now (negative: at once).
    void start(std::chrono::microseconds delay) noexcept;
    void stop() noexcept;
    /// True while started (a timer: until it fires).
    bool pending() const noexcept;
    /// Runs the callback from the loop, in the current pass if one runs (the
    /// pass then polls instead of waiting), as if `what` had happened.
    void activate(short what) noexcept;
    /// Stops and frees the registration now (see the class comment).
    void reset() noexcept;

  private:
    friend class Reactor;
    explicit Watch(::event* ev) noexcept : ev_(ev) {}
    ::event* ev_ = nullptr;
};

}  // namespace asyncore::detail
