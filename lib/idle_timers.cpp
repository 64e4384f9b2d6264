// IdleTimers: a min-heap of idle countdowns under one libevent timer.

#include "detail/idle_timers.hpp"

#include <algorithm>
#include <new>

#include "detail/map_core.hpp"

namespace asyncore::detail {

IdleTimers::IdleTimers(MapCore& core) {
    timer_ = evtimer_new(core.base, on_timer, this);
    if (timer_ == nullptr) throw std::bad_alloc();
}

IdleTimers::~IdleTimers() {
    for (IdleEntry* e : heap_)
        e->index = IdleEntry::unscheduled;
    event_free(timer_);
}

namespace {

// How often an active entry is checked: its lateness bound.
IdleClock::duration check_interval(const IdleEntry& e) noexcept {
    return std::max<IdleClock::duration>(e.timeout / 8, std::chrono::milliseconds(1));
}

}  // namespace

void IdleTimers::start(IdleEntry& e) {
    if (e.scheduled()) erase(e.index);
    if (e.timeout <= IdleClock::duration::zero()) {
        e.sleeping = false;
        arm();
        return;
    }
    e.idle_since = IdleClock::now();
    e.seen = e.activity;
    e.sleeping = true;
    e.due = e.idle_since + e.timeout;
    push(e);
    arm();
}

void IdleTimers::stop(IdleEntry& e) noexcept {
    e.sleeping = false;
    if (!e.scheduled()) return;
    erase(e.index);
    arm();
}

// The first activity after a quiet check: idle from now, looked at again a
// check interval from now (earlier or later than its old expiry).
void IdleTimers::wake(IdleEntry& e) noexcept {
    if (!e.scheduled()) {
        e.sleeping = false;
        return;
    }
    const IdleClock::time_point now = IdleClock::now();
    e.sleeping = false;
    e.seen = e.activity;
    e.idle_since = now;
    e.due = now + check_interval(e);
    sift_up(e.index);
    sift_down(e.index);
    arm();
}

void IdleTimers::on_timer(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<IdleTimers*>(arg);
    self->armed_for_ = IdleClock::time_point::max();
    self->expire();
}

// Entries whose time has come (the top is read afresh each time: a callback
// may start, stop or destroy any entry).
void IdleTimers::expire() noexcept {
    const IdleClock::time_point now = IdleClock::now();
    while (!heap_.empty() && heap_.front()->due <= now)
        check(*heap_.front(), now);
    arm();
}

// `e` is at the top of the heap and due.
void IdleTimers::check(IdleEntry& e, IdleClock::time_point now) noexcept {
    if (e.activity != e.seen) {
        // Active since the last check, whenever exactly: idle from now at most.
        e.seen = e.activity;
        e.idle_since = now;
        e.sleeping = false;
        e.due = now + check_interval(e);
        sift_down(0);
    } else if (now - e.idle_since >= e.timeout) {
        erase(0);
        e.sleeping = false;
        e.expired(e);
    } else {
        e.sleeping = true;
        e.due = e.idle_since + e.timeout;
        sift_down(0);
    }
}

// The timer follows the heap's top, and is re-armed only when that changed.
void IdleTimers::arm() noexcept {
    if (heap_.empty()) {
        if (armed_for_ != IdleClock::time_point::max()) evtimer_del(timer_);
        armed_for_ = IdleClock::time_point::max();
        return;
    }
    const IdleClock::time_point due = heap_.front()->due;
    if (due == armed_for_) return;
    auto wait = std::chrono::duration_cast<std::chrono::microseconds>(due - IdleClock::now());
    if (wait.count() < 0) wait = wait.zero();
    timeval tv{static_cast<time_t>(wait.count() / 1000000),
               static_cast<suseconds_t>(wait.count() % 1000000)};
    evtimer_add(timer_, &tv);
    armed_for_ = due;
}

// -- The heap ---------------------------------------------------------------------

void IdleTimers::push(IdleEntry& e) {
    heap_.push_back(&e);
    e.index = heap_.size() - 1;
    sift_up(e.index);
}

void IdleTimers::erase(std::size_t i) noexcept {
    IdleEntry* gone = heap_[i];
    IdleEntry* last = heap_.back();
    heap_.pop_back();
    gone->index = IdleEntry::unscheduled;
    if (i == heap_.size()) return;
    place(i, last);
    sift_up(i);
    sift_down(last->index);
}

void IdleTimers::sift_up(std::size_t i) noexcept {
    IdleEntry* e = heap_[i];
    while (i > 0) {
        std::size_t parent = (i - 1) / 2;
        if (heap_[parent]->due <= e->due) break;
        place(i, heap_[parent]);
        i = parent;
    }
    place(i, e);
}

void IdleTimers::sift_down(std::size_t i) noexcept {
    IdleEntry* e = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
        std::size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && heap_[child + 1]->due < heap_[child]->due) ++child;
        if (e->due <= heap_[child]->due) break;
        place(i, heap_[child]);
        i = child;
    }
    place(i, e);
}

}  // namespace asyncore::detail
