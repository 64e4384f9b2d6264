// call_later(): timers on the map's reactor (libevent's min-heap), with
// python-astm's cancel/reset/delay contract.

#include <asyncore/loop.hpp>

#include <stdexcept>

#include "detail/map_core.hpp"

namespace asyncore {
namespace detail {
namespace {

void on_timer(int, short, void* arg) {
    auto* t = static_cast<Timer*>(arg);
    // The map's reference is dropped before the call so that a timer that
    // reschedules itself from fn() sees a consistent state; `keep` holds the
    // object until fn returns.
    std::shared_ptr<Timer> keep = std::move(t->self);
    MapCore* core = t->core;
    t->done = true;
    if (t->keeps_loop) --core->pending_timers;
    auto fn = std::move(t->fn);
    core->guarded("call_later callback", fn);
}

void check_delay(Duration d) {
    if (d < Duration::zero()) throw std::invalid_argument("call_later: negative delay");
}

Timer& live(const std::shared_ptr<Timer>& t, const char* op) {
    if (!t) throw std::logic_error(std::string("TimerHandle::") + op + ": empty handle");
    if (t->done || t->core == nullptr) {
        throw std::logic_error(std::string("TimerHandle::") + op + ": already cancelled");
    }
    return *t;
}

}  // namespace

TimerHandle MapCore::schedule(Duration delay, std::function<void()> fn, bool keeps_loop) {
    check_delay(delay);
    auto t = std::make_shared<Timer>();
    t->core = this;
    t->fn = std::move(fn);
    t->delay = delay;
    t->keeps_loop = keeps_loop;
    t->watch = reactor.timer(on_timer, t.get());
    timers.insert(t.get());
    t->self = t;
    if (keeps_loop) ++pending_timers;
    arm(*t);
    return TimerHandle(std::move(t));
}

void MapCore::arm(Timer& t) {
    t.watch.start(to_micros(t.delay));
}

void MapCore::cancel(Timer& t) noexcept {
    t.watch.stop();
    t.done = true;
    t.fn = nullptr;
    if (t.keeps_loop) --pending_timers;
    t.self.reset();  // may destroy t if no handle is left
}

// The watch belongs to the timer for its whole life, even after it ran, so
// that reset() after the call ran is a clean error rather than a dangling one.
Timer::~Timer() {
    if (core != nullptr) core->timers.erase(this);
}

void MapCore::drop_timers() noexcept {
    // Copied out first: a Timer whose last handle goes here leaves the set.
    std::vector<Timer*> all(timers.begin(), timers.end());
    timers.clear();
    std::vector<std::shared_ptr<Timer>> keep;
    keep.reserve(all.size());
    for (Timer* t : all) {
        t->watch.reset();
        t->core = nullptr;
        t->done = true;
        if (t->self) keep.push_back(std::move(t->self));
    }
}

}  // namespace detail

void TimerHandle::cancel() {
    detail::Timer& t = detail::live(timer_, "cancel");
    t.core->cancel(t);
}

void TimerHandle::reset() {
    detail::Timer& t = detail::live(timer_, "reset");
    t.core->arm(t);
}

void TimerHandle::delay(Duration seconds) {
    detail::Timer& t = detail::live(timer_, "delay");
    detail::check_delay(seconds);
    t.delay = seconds;
    t.core->arm(t);
}

bool TimerHandle::cancelled() const noexcept {
    return !timer_ || timer_->done;
}

}  // namespace asyncore
