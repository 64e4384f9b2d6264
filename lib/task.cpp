// Tasks: the ready queue, task timers, joining, terminate and shutdown.

#include <asyncore/task.hpp>

#include <pthread.h>

#include <algorithm>
#include <cstdio>

#include "detail/map_core.hpp"
#include "detail/scheduler.hpp"

namespace asyncore {
namespace detail {
namespace {

// The lowest address of the calling thread's stack (null if unknown) and
// how far from it a chain of inline awaits may go down.
struct StackBounds {
    char* low = nullptr;
    char* floor = nullptr;
};

// Symmetric transfer between an awaiting coroutine and the one it awaits
// inline is a tail call only when the compiler makes it one; GCC does not
// under -O0 or AddressSanitizer. Rather than trust it, a transfer made with
// less than this much stack left goes through the ready queue instead, which
// unwinds the stack: a chain of any depth then runs in bounded stack.
constexpr std::size_t stack_reserve = 1024 * 1024;

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer keeps at most 64 Ki frames of a stack and aborts past that:
// under it a chain may use only this much of the stack, from the top.
constexpr std::size_t chain_budget = 256 * 1024;
#endif

StackBounds stack_bounds() noexcept {
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) return {};
    void* addr = nullptr;
    std::size_t size = 0;
    int rc = pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    if (rc != 0) return {};
    StackBounds b;
    b.low = static_cast<char*>(addr);
    b.floor = b.low + stack_reserve;
#if defined(__SANITIZE_THREAD__)
    if (size > chain_budget) b.floor = std::max(b.floor, b.low + size - chain_budget);
#endif
    return b;
}

bool stack_is_deep() noexcept {
    thread_local const StackBounds bounds = stack_bounds();
    auto* here = static_cast<char*>(__builtin_frame_address(0));
    return bounds.low != nullptr && here < bounds.floor;
}

thread_local TaskCore* current = nullptr;

// Resumes `h`, running in task `t`, with current_task() telling who runs.
void resume_in(std::coroutine_handle<> h, TaskCore* t) noexcept {
    TaskCore* saved = std::exchange(current, t);
    h.resume();
    current = saved;
}

void on_ready(int, short, void* arg) {
    static_cast<Scheduler*>(arg)->drain();
}

bool is_cancelled(std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const Cancelled&) {
        return true;
    } catch (...) {
        return false;
    }
}

}  // namespace

// -- Scheduler ----------------------------------------------------------------

Scheduler::Scheduler(MapCore& c) : core(c), post_link(std::make_shared<PostLink>()) {
    post_link->map = &c.owner;
    ready_watch = core.reactor.user(on_ready, this);
}

// A task that catches Cancelled and waits again is cancelled again; after a
// bounded number of rounds what is left is reported rather than spun on.
Scheduler::~Scheduler() {
    closing = true;
    for (int round = 0; head != nullptr && round < 64; ++round) {
        cancel_all();
        while (!ready.empty())
            drain();
    }
    if (head != nullptr) std::fprintf(stderr, "error: tasks survived their map's destruction\n");
    {
        std::lock_guard lock(post_link->mutex);
        post_link->map = nullptr;
    }
}

void Scheduler::cancel_all() noexcept {
    for (TaskCore* t = head; t != nullptr; t = t->next_) {
        t->cancel_requested_ = true;
        if (Wait* w = t->wait_; w != nullptr && w->cancellable) {
            w->detach();
            t->complete(*w, errc::cancelled);
        }
    }
}

void Scheduler::push(std::coroutine_handle<> h, TaskCore* t) {
    if (ready.empty() && !closing) ready_watch.activate(watch_read);
    ready.emplace_back(h, t);
}

void Scheduler::drain() noexcept {
    batch.swap(ready);
    for (auto [h, t] : batch)
        resume_in(h, t);
    batch.clear();
    if (!ready.empty() && !closing) {
        // More work was queued: end this pass so that dispatchers' interest
        // is refreshed before it runs; the event stays active for the next.
        ready_watch.activate(watch_read);
        core.reactor.break_pass();
    }
}

void Scheduler::link(TaskCore& t) noexcept {
    t.prev_ = nullptr;
    t.next_ = head;
    if (head != nullptr) head->prev_ = &t;
    head = &t;
}

void Scheduler::unlink(TaskCore& t) noexcept {
    if (t.prev_ != nullptr) t.prev_->next_ = t.next_;
    if (t.next_ != nullptr) t.next_->prev_ = t.prev_;
    if (head == &t) head = t.next_;
    t.prev_ = t.next_ = nullptr;
}

void Scheduler::on_timer(int, short, void* arg) {
    auto* t = static_cast<TaskCore*>(arg);
    t->timer_armed_ = false;
    Wait* w = t->wait_;
    if (w == nullptr) return;
    w->detach();
    t->complete_inline(*w, w->kind == Wait::Kind::sleep ? errc{} : errc::timed_out);
}

Scheduler& scheduler_of(ChannelMap& map) {
    MapCore& c = core_of(map);
    if (!c.tasks) c.tasks = std::make_unique<Scheduler>(c);
    return static_cast<Scheduler&>(*c.tasks);
}

// -- Wait, WaitList -------------------------------------------------------------

void Wait::detach() noexcept {
    if (list != nullptr) list->remove(*this);
    if (detach_fn != nullptr) detach_fn(*this);
}

void Wait::throw_failure() const {
    if (outcome == errc::timed_out) throw TimeoutError();
    if (outcome == errc::cancelled) throw Cancelled();
}

void WaitList::push_back(Wait& w) noexcept {
    w.list = this;
    w.next = nullptr;
    w.prev = tail_;
    if (tail_ != nullptr) {
        tail_->next = &w;
    } else {
        head_ = &w;
    }
    tail_ = &w;
    ++size_;
}

void WaitList::remove(Wait& w) noexcept {
    if (w.prev != nullptr) {
        w.prev->next = w.next;
    } else {
        head_ = w.next;
    }
    if (w.next != nullptr) {
        w.next->prev = w.prev;
    } else {
        tail_ = w.prev;
    }
    w.prev = w.next = nullptr;
    w.list = nullptr;
    --size_;
}

Wait* WaitList::pop_front() noexcept {
    Wait* w = head_;
    if (w != nullptr) remove(*w);
    return w;
}

// -- TaskCore -------------------------------------------------------------------

bool TaskCore::take_cancel() noexcept {
    if (!cancel_requested_) return false;
    // While the map is being destroyed every wait is refused.
    if (sched_ == nullptr || !sched_->closing) cancel_requested_ = false;
    return true;
}

bool TaskCore::deliver_cancel(Wait& w) noexcept {
    if (!take_cancel()) return false;
    w.outcome = errc::cancelled;
    return true;
}

void TaskCore::suspend(Wait& w, std::coroutine_handle<> h, Timeout timeout) {
    w.handle = h;
    w.task = this;
    w.outcome = errc{};
    wait_ = &w;
    if (!timeout) return;
    if (!timer_) timer_ = core_of(*map_).reactor.timer(Scheduler::on_timer, this);
    timer_.start(to_micros(*timeout));
    timer_armed_ = true;
}

void TaskCore::disarm() noexcept {
    if (!timer_armed_) return;
    timer_.stop();
    timer_armed_ = false;
}

void TaskCore::complete(Wait& w, errc outcome) noexcept {
    disarm();
    wait_ = nullptr;
    w.outcome = outcome;
    sched().push(w.handle, this);
}

void TaskCore::complete_inline(Wait& w, errc outcome) noexcept {
    disarm();
    wait_ = nullptr;
    w.outcome = outcome;
    resume_in(w.handle, this);
}

void TaskCore::mailbox_type_error() const {
    throw std::logic_error("task mailbox: message type differs from the one it holds");
}

// -- TaskState --------------------------------------------------------------------

namespace {
// The block Promise<T>::operator new allocated on this thread, waiting for
// its promise (constructed next, after the parameters are copied) to adopt it.
thread_local TaskState* offered = nullptr;
}  // namespace

void* allocate_frame_block(std::size_t size) {
    return ::operator new(size);
}

void free_frame_block(void* block) noexcept {
    ::operator delete(block);
}

void offer_state(TaskState* s) noexcept {
    offered = s;
}

TaskState* adopt_offered_state(void* frame) noexcept {
    TaskState* s = offered;
    // Another frame's block (a coroutine made while copying this one's
    // parameters) is left alone; so is an elided allocation's absence.
    if (s == nullptr || !s->allocated_with(frame)) return nullptr;
    offered = nullptr;
    return s;
}

void withdraw_state(TaskState* s) noexcept {
    if (offered == s) offered = nullptr;
}

TaskState::~TaskState() {
    if (error_ && !observed_ && !is_cancelled(error_)) {
        std::fprintf(stderr, "error: exception in a task nobody awaited (%s)\n",
                     describe_exception(error_).c_str());
    }
}

void TaskState::free_if_unused() noexcept {
    if (refs_ == 0 && promise_ == nullptr && !frame_memory_) destroy_(this);
}

void TaskState::release() noexcept {
    if (--refs_ != 0) return;
    if (promise_ == nullptr) {
        free_if_unused();
    } else if (!started_) {
        // Nobody can start it any more. Destroying the frame frees this block.
        promise_->self_.destroy();
    }
}

// -- PromiseBase ------------------------------------------------------------------

void PromiseBase::attach(TaskState* s) noexcept {
    state_ = s;
    s->adopted_ = true;
    s->promise_ = this;
}

PromiseBase::~PromiseBase() {
    if (state_ == nullptr) return;  // get_return_object() failed
    state_->promise_ = nullptr;
    state_->free_if_unused();
}

void PromiseBase::unhandled_exception() noexcept {
    state_->error_ = std::current_exception();
    try {
        throw;
    } catch (const ExitNow&) {
        state_->observed_ = true;
        if (task_->map_ != nullptr) core_of(*task_->map_).request_exit(state_->error_);
    } catch (...) {
    }
}

std::coroutine_handle<> PromiseBase::start_inline(TaskCore& parent,
                                                  std::coroutine_handle<> caller) noexcept {
    state_->started_ = true;
    task_ = &parent;
    caller_ = caller;
    return self_;
}

void PromiseBase::spawn(ChannelMap& map) {
    if (state_->started_) throw std::logic_error("spawn: the task was already started");
    Scheduler& s = scheduler_of(map);
    state_->started_ = true;
    core_.map_ = &map;
    core_.sched_ = &s;  // looked up once: while the map destroys it, its slot is empty
    state_->add_ref();  // the running task's own reference, dropped when it ends
    s.link(core_);
    if (!core_.daemon_) ++s.core.live_tasks;
    s.push(self_, &core_);
}

void spawn_task(TaskState& s, ChannelMap& map) {
    if (s.promise() == nullptr) throw std::logic_error("spawn: the task was already started");
    s.promise()->spawn(map);
}

// The frame is destroyed here, whoever holds a handle: parameters and
// whatever else the coroutine owned go now (see task.hpp); the state keeps
// the outcome. Nothing of this promise is touched after the destroy.
std::coroutine_handle<> PromiseBase::on_final() noexcept {
    TaskState* state = state_;
    state->done_ = true;
    std::coroutine_handle<> next = std::noop_coroutine();
    const bool spawned_task = task_ == &core_;
    if (!spawned_task) {
        while (Wait* w = core_.joiners_.pop_front())
            w->task->complete(*w);
        if (!stack_is_deep()) {
            next = caller_;
        } else {
            task_->sched().push(caller_, task_);
        }
    } else {
        finish_task();
    }
    self_.destroy();
    if (spawned_task) state->release();  // the running task's own reference
    return next;
}

void PromiseBase::finish_task() noexcept {
    Scheduler& s = core_.sched();
    s.unlink(core_);
    if (!core_.daemon_) --s.core.live_tasks;
    core_.disarm();
    core_.timer_.reset();
    while (Wait* w = core_.joiners_.pop_front())
        w->task->complete(*w);
    if (core_.monitors_.empty()) return;
    state_->observed_ = true;
    auto monitors = std::move(core_.monitors_);
    TaskRef self(state_);
    for (auto& fn : monitors)
        s.core.guarded("task monitor", [&] { fn(self, state_->error_); });
}

// -- JoinWait ---------------------------------------------------------------------

// The joined task is not done (await_ready said so): its frame is alive.
std::coroutine_handle<> JoinWait::suspend_on(TaskCore& me, std::coroutine_handle<> h) {
    PromiseBase& p = *s_->promise();
    if (!s_->started()) {
        if (!timeout_) {
            std::coroutine_handle<> child = p.start_inline(me, h);
            if (!stack_is_deep()) return child;
            me.sched().push(child, &me);
            return std::noop_coroutine();
        }
        p.spawn(me.map());
    }
    if (me.cancel_pending(*this)) return h;
    p.core_.joiners_.push_back(*this);
    me.suspend(*this, h, timeout_);
    return std::noop_coroutine();
}

void JoinWait::check() const {
    throw_if_failed();
    if (std::exception_ptr e = s_->take_error()) std::rethrow_exception(e);
}

TaskCore* current_task() noexcept {
    return current;
}

}  // namespace detail

// -- TaskRef, Sleep ------------------------------------------------------------------

bool TaskRef::terminate() noexcept {
    if (!s_ || s_->done()) return false;
    detail::TaskCore& t = live().task();
    if (detail::Wait* w = t.wait_; w != nullptr && w->cancellable) {
        w->detach();
        t.complete(*w, errc::cancelled);
    } else {
        t.cancel_requested_ = true;
    }
    return true;
}

bool TaskRef::resume() noexcept {
    if (!s_ || s_->done()) return false;
    detail::TaskCore& t = live().task();
    detail::Wait* w = t.wait_;
    if (w == nullptr || w->kind != detail::Wait::Kind::suspend) return false;
    t.complete(*w);
    return true;
}

void TaskRef::set_daemon(bool daemon) noexcept {
    if (!s_ || s_->done()) return;  // a finished task keeps nothing running
    detail::PromiseBase& p = live();
    detail::TaskCore& t = p.core_;
    if (t.daemon_ == daemon) return;
    t.daemon_ = daemon;
    if (p.spawned()) {
        std::size_t& live = detail::core_of(t.map()).live_tasks;
        daemon ? --live : ++live;
    }
}

void TaskRef::monitor(std::function<void(const TaskRef&, std::exception_ptr)> fn) {
    if (!s_) throw std::logic_error("monitor: empty task");
    if (s_->done()) {
        fn(*this, s_->take_error());
        return;
    }
    live().core_.monitors_.push_back(std::move(fn));
}

TaskRef::Finished TaskRef::finished(Timeout timeout) const {
    if (!s_) throw std::logic_error("finished: empty task");
    return Finished(s_, timeout);
}

bool WaitSignal::start(detail::TaskCore& t, std::coroutine_handle<> h) {
    if (t.cancel_pending(*this)) return false;
    watches_.reserve(8);
    for (int signo : signals_)
        watches_.push_back(t.map().on_signal(signo, [this](int s) { delivered(s); }));
    detach_fn = stop_watching;
    t.suspend(*this, h, timeout_);
    return true;
}

// The first delivery ends the wait; a second one in the same pass finds the
// task no longer waiting here.
void WaitSignal::delivered(int signo) noexcept {
    if (task == nullptr || task->current_wait() != this) return;
    received_ = signo;
    detach_fn = nullptr;
    task->complete(*this);
}

// A timeout or terminate() takes the wait back: its watches end with it.
void WaitSignal::stop_watching(detail::Wait& w) noexcept {
    auto& self = static_cast<WaitSignal&>(w);
    for (SignalWatch& watch : self.watches_)
        watch.cancel();
    self.detach_fn = nullptr;
}

bool Sleep::start(detail::TaskCore& t, std::coroutine_handle<> h) {
    if (t.cancel_pending(*this)) return false;
    kind = Kind::sleep;
    if (d_ <= Duration::zero()) {
        t.suspend(*this, h, std::nullopt);
        t.complete(*this);
        return true;
    }
    t.suspend(*this, h, d_);
    return true;
}

}  // namespace asyncore
