// The event loop: ChannelMap (asyncore's socket_map), loop(), timers, post().
//
// A ChannelMap is the set of channels (dispatchers) watched together, the
// libevent base that watches them, the timers and the cross-thread wake-up.
// socket_map() is the calling thread's default map; every Dispatcher
// constructor and loop() take an optional map instead.
//
// Threads: a ChannelMap belongs to the thread that runs its loop. Only
// ChannelMap::post() may be called from other threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include <asyncore/signals.hpp>

namespace asyncore {

class Dispatcher;
namespace detail {
struct MapCore;
struct Timer;
}  // namespace detail

/// Seconds, fractional, as asyncore's timeouts. Any std::chrono duration
/// converts to it implicitly: `loop(100ms)`, `call_later(2s, fn)`.
using Duration = std::chrono::duration<double>;

/// How long a wait may last; std::nullopt waits forever (or: no timeout).
using Timeout = std::optional<Duration>;

/// A scheduled call made by call_later() (python-astm's call_later contract).
///
/// The handle may be copied; copies refer to the same call. Dropping every
/// handle does not cancel the call. Operations on a cancelled (or already
/// run) call throw std::logic_error, as astm's assertions do.
class TimerHandle {
  public:
    TimerHandle() = default;

    /// Cancels the call: it will not run. Throws std::logic_error if the call
    /// was already cancelled or has run.
    void cancel();
    /// Restarts the countdown: the call now runs `delay` after this moment.
    void reset();
    /// Reschedules the call to run `seconds` from now and makes that the new
    /// delay used by reset(). Throws std::invalid_argument if negative.
    void delay(Duration seconds);
    /// True once the call was cancelled or has run.
    bool cancelled() const noexcept;
    /// True if this handle refers to a call at all.
    explicit operator bool() const noexcept { return static_cast<bool>(timer_); }

  private:
    friend struct detail::MapCore;
    explicit TimerHandle(std::shared_ptr<detail::Timer> t) : timer_(std::move(t)) {}
    std::shared_ptr<detail::Timer> timer_;
};

/// Counters a test or a monitoring endpoint can read.
struct LoopStats {
    std::uint64_t passes = 0;            ///< loop passes run
    std::uint64_t interest_checks = 0;   ///< readable()/writable() evaluations
    std::uint64_t interest_changes = 0;  ///< registrations changed with the kernel
};

/// What the loop does with an exception that no handler is left to take.
///
/// A handler's exception goes to the channel's handle_error() (a disconnect
/// errno to handle_close()) under either policy; the policy decides what
/// happens when that call throws in turn, and to exceptions from
/// readable()/writable(), call_later() callbacks, posted functions and task
/// monitors. ExitNow always leaves loop().
enum class ErrorPolicy {
    /// The default, for servers: one misbehaving channel never takes the
    /// loop down. An exception from handle_error() or handle_close() is
    /// logged through the channel's log_info() as an 'error', with its repr
    /// ("handle_error() raised TYPE: what, closing channel <repr>"), and
    /// the channel is closed. readable()/writable() exceptions go to
    /// handle_error(); callback and posted-function exceptions are logged to
    /// stderr.
    log_and_close,
    /// Python asyncore's behaviour, for test suites ported from Python that
    /// must see unexpected callbacks fail: each of those exceptions leaves
    /// loop() (or run_pass(), or the read()/write()/readwrite() helper) as
    /// thrown, and the channel is left as it was, not closed.
    propagate,
};

/// asyncore's socket_map: fd -> Dispatcher*, and the machinery that watches them.
class ChannelMap {
  public:
    ChannelMap();
    /// Closes every channel still in the map (close_all with ignore_all) and
    /// destroys the dispatchers the map owns (see make()).
    ~ChannelMap();
    ChannelMap(const ChannelMap&) = delete;
    ChannelMap& operator=(const ChannelMap&) = delete;

    /// Number of channels (open dispatchers with a descriptor) in the map.
    std::size_t size() const noexcept;
    bool empty() const noexcept { return size() == 0; }
    /// The dispatcher registered for `fd`, or nullptr.
    Dispatcher* find(int fd) const noexcept;
    /// A snapshot of the channels, in descriptor order.
    std::vector<Dispatcher*> channels() const;

    /// True while there is something for loop() to wait for: channels, pending
    /// timers, live tasks, or functions posted and not yet run.
    bool has_work() const noexcept;

    /// Runs one pass: waits at most `timeout` (and never past the next timer)
    /// for readiness, then runs every handler, timer and posted function that
    /// became due, each once, and returns. A zero timeout polls (asyncore's
    /// poll(0)): it never waits, and returns even if a channel stays ready.
    /// loop() is a sequence of passes.
    void run_pass(Duration timeout);

    /// By default only channels that ran a handler, had a method called or
    /// were rearm()ed have readable()/writable() evaluated before the next
    /// wait: O(active) per pass. With poll_all, every channel is evaluated on
    /// every pass, exactly as Python's asyncore does, for code whose
    /// readable()/writable() depend on state changed from outside.
    void set_poll_all(bool on) noexcept;
    bool poll_all() const noexcept;

    /// libevent's backend this map runs on: "epoll" (Linux), "kqueue" (the
    /// BSDs, macOS), "poll" or "select" (any system; chosen when libevent's
    /// EVENT_NOEPOLL / EVENT_NOKQUEUE environment variables rule the others
    /// out). Every feature works on each but urgent data, which needs epoll
    /// (Dispatcher::handle_expt()).
    std::string_view backend() const noexcept;

    /// See ErrorPolicy; the default is ErrorPolicy::log_and_close.
    void set_error_policy(ErrorPolicy policy) noexcept;
    ErrorPolicy error_policy() const noexcept;

    /// Runs `fn` once, `delay` from now, on this map's loop thread. Throws
    /// std::invalid_argument for a negative delay. Exceptions from `fn` are
    /// logged to stderr; ExitNow leaves loop().
    TimerHandle call_later(Duration delay, std::function<void()> fn);

    /// Queues `fn` to run on the loop thread during the next pass and wakes
    /// the loop. The one call that is safe from any thread.
    void post(std::function<void()> fn);

    /// Runs `fn(signo)` on this map's loop thread each time the process
    /// receives `signo`, until the returned watch ends (signals.hpp has the
    /// rules). Throws std::invalid_argument for SIGKILL, SIGSTOP or a number
    /// out of 1..64, std::system_error if the handler cannot be installed.
    SignalWatch on_signal(int signo, std::function<void(int)> fn);

    const LoopStats& stats() const noexcept;

    /// The library's internals (lib/ only); not part of the public API.
    detail::MapCore& core() noexcept { return *core_; }

  private:
    std::unique_ptr<detail::MapCore> core_;
};

/// The calling thread's default map (asyncore's global socket_map). Created
/// on first use and destroyed when the thread exits.
ChannelMap& socket_map();

/// Runs passes until the map has no work left (no channels, timers, tasks or
/// posted functions) or `count` passes were run. `timeout` bounds each pass's
/// wait, as in asyncore, when passes are counted or with
/// ChannelMap::set_poll_all(); otherwise a pass that could only time out
/// would have nothing to do, so it waits for the next event or timer
/// instead (and the loop costs no timer work per pass). An ExitNow thrown by
/// a handler propagates out.
void loop(Duration timeout = std::chrono::seconds(30), ChannelMap& map = socket_map(),
          std::optional<std::size_t> count = std::nullopt);

/// Closes every channel in `map` and empties it. Errors from close() are
/// rethrown unless `ignore_all` (EBADF is always ignored), as asyncore does.
void close_all(ChannelMap& map = socket_map(), bool ignore_all = false);

/// A graceful close_all(): listeners close now; every other channel closes
/// once its queued output is written (Dispatcher::close_when_done(), which
/// runs handle_close()); whatever is still open `grace` later is closed
/// as close_all(map, true) would. Returns at once: the loop does the rest,
/// and loop() returns when the last channel is closed (the grace timer does
/// not keep it running). For SIGTERM in a server:
///   auto stop = map.on_signal(SIGTERM, [&](int) { close_all_when_done(map, 5s); });
void close_all_when_done(ChannelMap& map, Duration grace);

/// call_later() on the calling thread's default map.
TimerHandle call_later(Duration delay, std::function<void()> fn);

}  // namespace asyncore
