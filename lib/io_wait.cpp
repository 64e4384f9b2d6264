// IoWatch: one persistent libevent event per direction, lazily deleted.

#include "detail/io_wait.hpp"

#include <cerrno>
#include <stdexcept>

#include "detail/map_core.hpp"

namespace asyncore::detail {

void IoWatch::ensure_event(TaskCore& t) {
    MapCore& core = core_of(t.map());
    if (ev_ != nullptr) {
        if (core_ != &core) throw std::logic_error("descriptor awaited from two different maps");
        return;
    }
    ev_ = event_new(core.base, fd_, what_ | EV_PERSIST, on_ready, this);
    if (ev_ == nullptr) throw std::bad_alloc();
    core_ = &core;
}

bool IoWatch::suspend(IoWaiter& w, TaskCore& t, std::coroutine_handle<> h, Timeout timeout) {
    if (t.cancel_pending(w)) return false;
    if (waiter_ != nullptr) throw std::logic_error("IoWatch: a wait is already registered");
    if (ev_ == nullptr || core_ != &core_of(t.map())) ensure_event(t);
    if (!added_) {
        if (event_add(ev_, nullptr) != 0) throw_errno(errno ? errno : ENOMEM, "event_add");
        added_ = true;
    }
    w.watch = this;
    w.detach_fn = detach;
    waiter_ = &w;
    t.suspend(w, h, timeout);
    return true;
}

void IoWatch::detach(Wait& w) noexcept {
    auto& iw = static_cast<IoWaiter&>(w);
    auto* self = static_cast<IoWatch*>(iw.watch);
    iw.detach_fn = nullptr;
    if (self == nullptr) return;
    self->waiter_ = nullptr;
    if (self->added_) {
        event_del(self->ev_);
        self->added_ = false;
    }
}

void IoWatch::on_ready(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<IoWatch*>(arg);
    IoWaiter* w = self->waiter_;
    if (w == nullptr) {
        event_del(self->ev_);
        self->added_ = false;
        return;
    }
    if (w->step != nullptr && !w->step(*w)) return;
    self->waiter_ = nullptr;
    w->detach_fn = nullptr;
    w->task->complete_inline(*w);
}

bool IoWatch::move_waiter(IoWaiter& w, IoWatch& to) noexcept {
    try {
        to.ensure_event(*w.task);
    } catch (...) {
        return false;
    }
    if (!to.added_) {
        if (event_add(to.ev_, nullptr) != 0) return false;
        to.added_ = true;
    }
    waiter_ = nullptr;
    if (added_) {
        event_del(ev_);
        added_ = false;
    }
    w.watch = &to;
    to.waiter_ = &w;
    return true;
}

void IoWatch::pause() noexcept {
    if (!added_) return;
    event_del(ev_);
    added_ = false;
}

bool IoWatch::resume() noexcept {
    if (waiter_ == nullptr || added_ || ev_ == nullptr) return true;
    if (event_add(ev_, nullptr) != 0) return false;
    added_ = true;
    return true;
}

void IoWatch::close() noexcept {
    if (waiter_ != nullptr) detach(*waiter_);
    if (ev_ == nullptr) return;
    event_del(ev_);
    // Freed after the pass: close() may run inside this event's callback.
    core_->dead_events.push_back(ev_);
    ev_ = nullptr;
    added_ = false;
}

}  // namespace asyncore::detail
