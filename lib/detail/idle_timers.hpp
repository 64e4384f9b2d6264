// Idle timeouts: "drop this connection after `timeout` without activity",
// for every channel and socket of a map, at no cost per message.
//
// Activity only bumps a counter in the entry (touch()): no clock, no heap,
// no timer. The entries sit in a min-heap keyed by when to look at them
// next, and one libevent timer per map is armed for the earliest. An entry
// that comes up is in one of two states:
// - it had activity since its last check: it is active, and is checked again
//   an eighth of its timeout later (so an active connection costs eight heap
//   moves per timeout period, never one per message);
// - it had none: it has been idle since the check that last saw activity,
//   and either expired (its callback runs) or sleeps until it will. The
//   first activity of a sleeping entry wakes it (one clock read and one heap
//   move), so a connection that speaks once in a while is not dropped late.
// An entry expires between `timeout` and `timeout` plus an eighth after its
// last activity, never before. Re-arming a timer per read, as a timer per
// connection would need, is what this avoids.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <event2/event.h>

namespace asyncore::detail {

struct MapCore;

using IdleClock = std::chrono::steady_clock;

/// One connection's countdown, embedded in what owns it.
struct IdleEntry {
    static constexpr std::size_t unscheduled = static_cast<std::size_t>(-1);

    std::uint32_t activity = 0;          ///< bumped by every touch
    std::uint32_t seen = 0;              ///< `activity` at the last check
    bool sleeping = false;               ///< quiet at the last check: `due` is its expiry
    IdleClock::time_point idle_since{};  ///< no activity since (all of it came before)
    IdleClock::time_point due{};         ///< when the heap looks at it next
    IdleClock::duration timeout{};       ///< zero: off
    std::size_t index = unscheduled;     ///< place in the heap
    /// Runs when the entry expired; it is out of the heap by then. It may
    /// start() it again or destroy its owner.
    void (*expired)(IdleEntry&) noexcept = nullptr;

    bool scheduled() const noexcept { return index != unscheduled; }
};

class IdleTimers {
  public:
    explicit IdleTimers(MapCore& core);
    ~IdleTimers();
    IdleTimers(const IdleTimers&) = delete;
    IdleTimers& operator=(const IdleTimers&) = delete;

    /// (Re)starts `e`'s countdown from now with its timeout; a zero timeout
    /// takes it out instead.
    void start(IdleEntry& e);
    /// Takes `e` out: its callback will not run.
    void stop(IdleEntry& e) noexcept;
    /// The first activity of a sleeping entry (MapCore::touch bumps the
    /// counter of the others without calling here).
    void wake(IdleEntry& e) noexcept;
    std::size_t size() const noexcept { return heap_.size(); }

  private:
    static void on_timer(evutil_socket_t, short, void* arg);
    void check(IdleEntry& e, IdleClock::time_point now) noexcept;
    void expire() noexcept;
    void arm() noexcept;
    void push(IdleEntry& e);
    void erase(std::size_t i) noexcept;
    void sift_up(std::size_t i) noexcept;
    void sift_down(std::size_t i) noexcept;
    void place(std::size_t i, IdleEntry* e) noexcept {
        heap_[i] = e;
        e->index = i;
    }

    event* timer_ = nullptr;
    std::vector<IdleEntry*> heap_;
    /// The deadline the timer is armed for (max when disarmed).
    IdleClock::time_point armed_for_ = IdleClock::time_point::max();
};

}  // namespace asyncore::detail
