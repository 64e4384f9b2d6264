// IoWatch: one persistent reactor watch per direction, lazily stopped.

#include "detail/io_wait.hpp"

#include <cerrno>
#include <stdexcept>

#include "detail/map_core.hpp"

namespace asyncore::detail {

void IoWatch::ensure_event(TaskCore& t) {
    MapCore& core = core_of(t.map());
    if (ev_) {
        if (core_ != &core) throw std::logic_error("descriptor awaited from two different maps");
        return;
    }
    ev_ = core.reactor.io(fd_, what_, on_ready, this);
    core_ = &core;
}

bool IoWatch::suspend(IoWaiter& w, TaskCore& t, std::coroutine_handle<> h, Timeout timeout) {
    if (t.cancel_pending(w)) return false;
    if (waiter_ != nullptr) throw std::logic_error("IoWatch: a wait is already registered");
    if (!ev_ || core_ != &core_of(t.map())) ensure_event(t);
    if (!added_) {
        if (!ev_.start()) throw_errno(errno, "watch");
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
        self->ev_.stop();
        self->added_ = false;
    }
}

void IoWatch::on_ready(int, short, void* arg) {
    auto* self = static_cast<IoWatch*>(arg);
    IoWaiter* w = self->waiter_;
    if (w == nullptr) {
        self->ev_.stop();
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
        if (!to.ev_.start()) return false;
        to.added_ = true;
    }
    waiter_ = nullptr;
    if (added_) {
        ev_.stop();
        added_ = false;
    }
    w.watch = &to;
    to.waiter_ = &w;
    return true;
}

void IoWatch::pause() noexcept {
    if (!added_) return;
    ev_.stop();
    added_ = false;
}

bool IoWatch::resume() noexcept {
    if (waiter_ == nullptr || added_ || !ev_) return true;
    if (!ev_.start()) return false;
    added_ = true;
    return true;
}

void IoWatch::close() noexcept {
    if (waiter_ != nullptr) detach(*waiter_);
    // Freed once not running: close() may run inside this watch's callback.
    ev_.reset();
    added_ = false;
}

}  // namespace asyncore::detail
