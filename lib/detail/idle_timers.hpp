// Idle timeouts: "drop this connection after `timeout` without activity",
// for every channel and socket of a map, at no cost per message.
//
// Activity only stores the pass's time in the entry (touch()). The entries
// sit in a min-heap keyed by when to look at them next, and one libevent
// timer per map is armed for the earliest. When an entry comes up it has
// either expired (no activity for `timeout`: its callback runs) or seen
// activity meanwhile (it goes back into the heap at last + timeout). So an
// active connection costs one heap move per timeout period, never one per
// message, and an idle one nothing until it expires. Re-arming a timer per
// read, as a timer per connection would need, is what this avoids.
#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

#include <event2/event.h>

namespace asyncore::detail {

struct MapCore;

using IdleClock = std::chrono::steady_clock;

/// One connection's countdown, embedded in what owns it.
struct IdleEntry {
    static constexpr std::size_t unscheduled = static_cast<std::size_t>(-1);

    IdleClock::time_point last{};     ///< the last activity
    IdleClock::time_point due{};      ///< when the heap looks at it next
    IdleClock::duration timeout{};    ///< zero: off
    std::size_t index = unscheduled;  ///< place in the heap
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
    std::size_t size() const noexcept { return heap_.size(); }

  private:
    static void on_timer(evutil_socket_t, short, void* arg);
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

    MapCore& core_;
    event* timer_ = nullptr;
    std::vector<IdleEntry*> heap_;
    /// The deadline the timer is armed for (max when disarmed).
    IdleClock::time_point armed_for_ = IdleClock::time_point::max();
};

}  // namespace asyncore::detail
