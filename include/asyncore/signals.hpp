// Signals in the loop: run a function on a map's loop thread when the
// process receives a signal (asio's signal_set, libuv's uv_signal_t).
//
//   SignalWatch stop = map.on_signal(SIGTERM, [&](int) { server.close(); });
//
// The function runs from the loop, on the map's thread, like any handler:
// it may do anything a handler may (close channels, post, spawn tasks).
// Several functions may watch one signal, on one map or on several maps in
// several threads; each runs once for a delivery. Deliveries of a signal
// that arrive before its functions ran coalesce into one call, as signals
// do. Exceptions follow the map's ErrorPolicy (logged by default).
//
// Process-wide effects, only while asked for: while at least one watch of a
// signal exists anywhere in the process, the library's handler is that
// signal's disposition (installed with SA_RESTART, so no other system call
// of the program sees EINTR for it); when the last watch of it goes, the
// disposition it replaced is put back. A signal that every thread blocks
// never reaches the handler: do not block what you watch (samples that used
// signalfd blocked SIGINT/SIGTERM; with a watch they need not).
//
// The handler only marks the signal pending for each map that watches it and
// writes a byte to that map's wake-up pipe (async-signal-safe); the map runs
// the functions in its next pass. A watch does not keep loop() running.
//
// Threads: on_signal() and SignalWatch are for the map's loop thread. Limits:
// signals 1 to 64 but SIGKILL and SIGSTOP (std::invalid_argument); at most
// 128 maps watching signals at once (std::runtime_error beyond).
#pragma once

#include <csignal>  // the SIG* numbers the API takes
#include <functional>
#include <memory>

namespace asyncore {

class ChannelMap;
namespace detail {
struct SignalSubscription;
}

/// One function watching one signal on one map, from on_signal() until the
/// watch is destroyed, cancel()led or moved from. It must not outlive its map
/// (a map that dies first ends it, and it then does nothing).
class [[nodiscard]] SignalWatch {
  public:
    SignalWatch() noexcept = default;
    SignalWatch(SignalWatch&&) noexcept = default;
    SignalWatch& operator=(SignalWatch&& o) noexcept;
    SignalWatch(const SignalWatch&) = delete;
    SignalWatch& operator=(const SignalWatch&) = delete;
    ~SignalWatch() { cancel(); }

    /// Stops watching: the function never runs again, even for a delivery
    /// already pending. Safe from inside the function itself.
    void cancel() noexcept;
    /// True while the watch is active.
    explicit operator bool() const noexcept { return static_cast<bool>(sub_); }

  private:
    friend class ChannelMap;
    explicit SignalWatch(std::shared_ptr<detail::SignalSubscription> s) noexcept
        : sub_(std::move(s)) {}
    std::shared_ptr<detail::SignalSubscription> sub_;
};

/// ChannelMap::on_signal() (loop.hpp) on the calling thread's default map.
SignalWatch on_signal(int signo, std::function<void(int)> fn);

}  // namespace asyncore
