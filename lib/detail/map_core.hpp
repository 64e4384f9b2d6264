// The inside of a ChannelMap: the reactor, the fd -> channel slots, the
// dirty list that keeps each pass O(active), timers and posted functions.
// Private to lib/: public headers never see it, and it never sees libevent
// (lib/detail/reactor.hpp does).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <asyncore/loop.hpp>

#include "idle_timers.hpp"
#include "reactor.hpp"

namespace asyncore {
class Dispatcher;
}

namespace asyncore::detail {

class MapSignals;

/// One watched descriptor: the channel and its two persistent watches. Read
/// and write interest are separate watches so that turning write interest
/// on after a short write is a single epoll_ctl.
struct Slot {
    Dispatcher* channel = nullptr;
    Watch read;
    Watch write;
    std::uint32_t generation = 0;  ///< bumped on every add, to spot stale urgent events
    bool want_read = false;        ///< `read` is started
    bool want_write = false;       ///< `write` is started
    bool dirty = false;            ///< queued for an interest check
    /// A regular file: select and poll report it always ready and epoll
    /// refuses it, so the loop never asks the reactor and runs the wanted
    /// handlers every pass itself (asyncore's behaviour on every backend).
    bool always_ready = false;
};

/// A dispatcher's idle countdown (Dispatcher::set_idle_timeout).
struct ChannelIdle : IdleEntry {
    Dispatcher* channel = nullptr;
};

/// A call_later() entry. Pending timers are kept alive by the map through
/// `self`; handles share ownership.
struct Timer {
    MapCore* core = nullptr;
    Watch watch;
    std::function<void()> fn;
    Duration delay{};
    bool done = false;       ///< ran or cancelled
    bool keeps_loop = true;  ///< counted by has_work()
    std::shared_ptr<Timer> self;
    ~Timer();
};

struct MapCore {
    explicit MapCore(ChannelMap& owner);
    ~MapCore();

    // -- Channels.
    void add(Dispatcher& d, int fd);
    void remove(int fd) noexcept;
    /// Queues `fd` for an interest check before the next wait. Inline: send()
    /// calls it for every message.
    void mark_dirty(int fd) noexcept {
        // The channel whose handler is running is checked when it returns.
        if (fd != dispatching) queue_dirty(fd);
    }
    void queue_dirty(int fd) noexcept;
    Dispatcher* find(int fd) const noexcept {
        return fd >= 0 && static_cast<std::size_t>(fd) < slots.size() ? slots[fd].channel : nullptr;
    }

    // -- Ownership (make<T>).
    void adopt(std::unique_ptr<Dispatcher> d);
    void bury(Dispatcher& d) noexcept;  ///< an owned dispatcher was closed
    void flush_graveyard() noexcept;

    // -- The pass.
    /// One pass. `bounded`: the wait ends after `timeout` even with nothing
    /// to do (ChannelMap::run_pass, loop() with a count). loop() without a
    /// count passes false: then only poll_all mode, or channels still waiting
    /// for an interest check, need the timer.
    void run_pass(Duration timeout, bool bounded);
    /// Activates the watches of the always-ready slots that want events.
    void ready_always_ready() noexcept;
    void arm_pass_timer(Duration timeout);
    void refresh_interest();
    void update_interest(Slot& s);
    bool apply_interest(int fd, Dispatcher& d, bool want_read, bool want_write);
    void dispatch(int fd, int poll_flags) noexcept;
    /// Urgent data on the socket the reactor knows by `token`.
    void urgent(std::uint64_t token) noexcept;
    /// One readiness event of a read or write event: handle_read_event() or
    /// handle_write_event() with asyncore's error routing. Inlined into the
    /// two libevent callbacks: it is the per-message path.
    [[gnu::always_inline]] inline void dispatch_io(int fd, bool read_ready) noexcept;
    /// After `d`'s handler ran: checks its interest at once (see loop.cpp).
    void settle(int fd, Dispatcher* d) noexcept;
    void run_posted() noexcept;
    /// Runs `fn`, routing exceptions: ExitNow (and under
    /// ErrorPolicy::propagate anything) is kept to be rethrown by
    /// run_pass(), anything else is logged with `what`.
    void guarded(const char* what, const std::function<void()>& fn) noexcept;
    /// Ends the pass; run_pass() then rethrows `e` (the first one kept).
    void request_exit(std::exception_ptr e) noexcept;
    /// readable()/writable() of `d` threw `e`.
    void interest_failed(Dispatcher& d, std::exception_ptr e) noexcept;

    // -- Timers.
    /// A call_later(); one that does not keep loop() running (a deadline
    /// for work that ends it sooner) passes keeps_loop = false.
    TimerHandle schedule(Duration delay, std::function<void()> fn, bool keeps_loop = true);
    void arm(Timer& t);
    void cancel(Timer& t) noexcept;

    // -- Idle timeouts.
    /// The map's idle countdowns, created on first use.
    IdleTimers& idle_timers();
    /// Activity on `e`: a counter bump, and for a sleeping entry a wake-up
    /// (see idle_timers.hpp). The map's IdleTimers exists while `e` is in it.
    void touch(IdleEntry& e) noexcept {
        ++e.activity;
        if (e.sleeping) [[unlikely]] {
            idle->wake(e);
        }
    }

    bool has_work() const noexcept {
        return channel_count > 0 || pending_timers > 0 || live_tasks > 0 ||
               posted_count.load(std::memory_order_acquire) > 0;
    }

    // First: destroyed last, after every watch of the members below.
    Reactor reactor;
    ChannelMap& owner;
    std::vector<Slot> slots;
    std::size_t channel_count = 0;
    std::vector<int> dirty;
    std::vector<int> always_ready;  ///< descriptors of always-ready slots
    int dispatching = -1;           ///< the fd whose read or write handler is running
    bool poll_all = false;
    ErrorPolicy error_policy = ErrorPolicy::log_and_close;
    LoopStats stats;

    std::unordered_map<Dispatcher*, std::unique_ptr<Dispatcher>> owned;
    std::vector<std::unique_ptr<Dispatcher>> graveyard;

    std::size_t pending_timers = 0;
    std::unordered_set<Timer*> timers;  ///< every live Timer, so the map can outlive none
    void drop_timers() noexcept;

    /// Tasks alive on this map (the task layer counts them; loop() waits for them).
    std::size_t live_tasks = 0;

    std::unique_ptr<IdleTimers> idle;
    /// The map's signal watches (signals.hpp), created by the first.
    std::unique_ptr<MapSignals> signals;

    /// State a higher layer keeps per map (the task layer's scheduler). It is
    /// destroyed first in ~MapCore, while the base, timers and channels are
    /// still usable, so that it can unwind what it owns.
    struct Extension {
        virtual ~Extension() = default;
    };
    std::unique_ptr<Extension> tasks;

    std::mutex post_mutex;
    std::vector<std::function<void()>> posted;
    std::atomic<std::size_t> posted_count{0};

    Watch pass_timer;
    std::chrono::steady_clock::time_point pass_deadline{};

    std::exception_ptr exit_request;  ///< an ExitNow caught in a callback, rethrown by run_pass()
};

/// A reactor delay from a duration, rounded up to the microsecond (a
/// timer never fires before its time); negative durations are zero.
inline std::chrono::microseconds to_micros(Duration d) noexcept {
    auto us = std::chrono::ceil<std::chrono::microseconds>(d);
    return us.count() < 0 ? std::chrono::microseconds::zero() : us;
}

/// The map a dispatcher or task belongs to, as the library sees it.
inline MapCore& core_of(ChannelMap& m) noexcept {
    return m.core();
}

/// "TYPE: what()" for an exception, with the type name demangled.
std::string describe_exception(std::exception_ptr e);
/// The demangled dynamic type name of an object.
std::string type_name(const std::type_info& t);

}  // namespace asyncore::detail
