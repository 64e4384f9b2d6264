// Tasks: pycos-style coroutines (C++20) run by the same loop() as dispatchers.
//
//   Task<int> add(int a, int b) { co_await sleep(10ms); co_return a + b; }
//   Task<void> main_task() {
//       Task<int> t = spawn(add(1, 2));   // runs concurrently from the next pass
//       int three = co_await t;           // joins it; rethrows its exception
//       int seven = co_await add(3, 4);   // not spawned: runs inline, as a call
//   }
//   spawn(main_task());
//   loop();   // returns when every non-daemon task has finished
//
// A coroutine returning Task<T> does not run until it is spawned (it then
// becomes a task of its own, pycos' Task(...)) or awaited (it then runs as a
// part of the awaiting task, pycos' `yield generator()`). Everything a task
// does runs on its map's loop thread; tasks are never resumed inline from the
// call that woke them (send, release, set...): a woken task runs from the loop,
// on the ready queue drained each pass, or straight from a libevent callback.
//
// Waiting: every awaitable takes an optional timeout (Timeout, nullopt = wait
// forever) and throws TimeoutError when it expires. TaskRef::terminate()
// throws Cancelled at the task's current (or next) suspension point, so that
// RAII unwinds the task; whatever the wait had registered (timer, fd
// interest, place in a queue) is removed first. Both are std::system_error,
// with asyncore::errc::timed_out / errc::cancelled.
//
// Messages: each task has one mailbox. Its message type is fixed by the first
// send<M>() or receive<M>() that touches it (a typed RingQueue<M>, created on
// first use; no std::any, no allocation per message beyond the ring's growth);
// using another type afterwards throws std::logic_error. Monitors are not
// mailbox messages: monitor() takes a callback, which may send() whatever
// the watching task's mailbox holds.
//
// Ownership: a spawned task is owned by its map and lives until its coroutine
// finishes; Task handles are shared references that keep its result readable
// after that. Destroying the map (e.g. at thread exit for socket_map())
// cancels every task still running and lets it unwind.
//
// A finished task releases what it holds at once (pycos: a task that returns
// is gone). When its coroutine finishes (returns, throws, or ends by
// terminate()), the coroutine frame is destroyed right there, before the
// loop's next pass, whoever still holds a TaskRef or Task<T>: its parameters
// (an AsyncSocket taken by value is closed, so the peer sees EOF), its
// mailbox and anything else the frame owned. Only the outcome stays, in a
// small block the handles share: the value or exception for co_await,
// finished() and monitor(), and done(). (The frame's memory itself is
// returned to the allocator when the last handle goes, as a make_shared
// control block's is; nothing in it is alive.) A coroutine awaited inline is
// destroyed the same way when it returns to its caller.
//
// Errors nobody looks at: when the last reference to a task that failed is
// dropped without anyone having awaited it (co_await, finished(), monitor()),
// the exception is reported on stderr. A detached task that fails is reported
// when it ends. Cancelled is never reported: terminating a task is intended.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <asyncore/detail/task_core.hpp>
#include <asyncore/error.hpp>
#include <asyncore/loop.hpp>

namespace asyncore {

class TaskRef;
template <class T>
class Task;

/// An untyped, shared reference to a task: message it, terminate it, watch
/// it. Copies refer to the same task. All methods are for the loop thread.
class TaskRef {
  public:
    TaskRef() noexcept = default;
    TaskRef(const TaskRef& o) noexcept : s_(o.s_) {
        if (s_) s_->add_ref();
    }
    TaskRef(TaskRef&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    TaskRef& operator=(TaskRef o) noexcept {
        std::swap(s_, o.s_);
        return *this;
    }
    ~TaskRef() {
        if (s_) s_->release();
    }

    explicit operator bool() const noexcept { return s_ != nullptr; }
    /// True once the coroutine has finished (returned, thrown or been
    /// cancelled); its frame is destroyed by then (see the top of this file).
    bool done() const noexcept { return s_ && s_->done(); }
    /// True once spawned or started by an await.
    bool started() const noexcept { return s_ && s_->started(); }

    /// Puts `msg` in the task's mailbox and wakes it if it waits in
    /// receive<M>(). Returns false (and drops msg) if the task has finished.
    /// Throws std::logic_error if the mailbox holds another message type.
    template <class M>
    bool send(M msg);
    bool send(const char* msg) { return send(std::string(msg)); }

    /// Throws Cancelled at the task's current suspension point (or at its
    /// next one if it is running or already woken); a task not yet started
    /// never runs its body. Returns false if the task has finished.
    bool terminate() noexcept;
    /// Wakes the task if it waits in suspend(); returns false otherwise.
    bool resume() noexcept;
    /// Daemon tasks do not keep loop() running (pycos' set_daemon).
    void set_daemon(bool daemon = true) noexcept;

    /// Calls `fn(task, error)` on the loop thread when the task ends (at once
    /// if it has ended); `error` is null on success, Cancelled if terminated.
    /// A monitored task's exception counts as observed.
    void monitor(std::function<void(const TaskRef&, std::exception_ptr)> fn);

    /// Awaits the end of the task without rethrowing its exception: yields
    /// the exception (null on success). Throws TimeoutError / Cancelled for
    /// the waiter only. The task must have been spawned.
    class Finished : public detail::JoinWait {
      public:
        using JoinWait::JoinWait;
        std::exception_ptr await_resume() const {
            throw_if_failed();
            return s_->take_error();
        }
    };
    Finished finished(Timeout timeout = std::nullopt) const;

    friend bool operator==(const TaskRef& a, const TaskRef& b) noexcept { return a.s_ == b.s_; }

    /// The library's view of the task (not part of the public API).
    detail::TaskState* state() const noexcept { return s_; }

  protected:
    explicit TaskRef(detail::TaskState* s) noexcept : s_(s) {
        if (s_) s_->add_ref();
    }
    /// The live coroutine of an unfinished task.
    detail::PromiseBase& live() const noexcept { return *s_->promise(); }
    detail::TaskState* s_ = nullptr;
    friend class detail::TaskCore;
    friend class detail::PromiseBase;
    template <class U>
    friend class Task;
    friend struct ThisTask;
};

/// A coroutine that produces a T (or void). See the top of this file.
template <class T = void>
class Task : public TaskRef {
    static_assert(!std::is_reference_v<T>, "Task<T&> is not supported; use a pointer");

  public:
    using promise_type = detail::Promise<T>;
    Task() noexcept = default;

    /// Joins: awaits the end of the task and returns its value or rethrows its
    /// exception. An unstarted coroutine runs inline in the awaiting task.
    class Join : public detail::JoinWait {
      public:
        Join(detail::TaskState* s, Timeout t, bool move) noexcept : JoinWait(s, t), move_(move) {}
        T await_resume() const;

      private:
        bool move_;
    };
    Join operator co_await() const& noexcept { return Join(s_, std::nullopt, false); }
    Join operator co_await() && noexcept { return Join(s_, std::nullopt, true); }
    /// Joins with a timeout. An unstarted coroutine is spawned first (on the
    /// awaiting task's map); on timeout it keeps running (terminate() it if
    /// it should not).
    Join join(Timeout timeout) const noexcept { return Join(s_, timeout, false); }

  private:
    friend class detail::Promise<T>;
    explicit Task(detail::TaskState* s) noexcept : TaskRef(s) {}
};

template <class T>
T Task<T>::Join::await_resume() const {
    check();
    auto& v = static_cast<detail::TaskResult<T>*>(s_)->value;
    if constexpr (!std::is_void_v<T>) {
        if (move_) return std::move(*v);
        return *v;
    }
}

template <>
inline void Task<void>::Join::await_resume() const {
    check();
}

/// Makes `task` a task of its own on `map`, queued to run from the loop's
/// next ready-queue drain (never inline). Returns the same handle. Throws
/// std::logic_error if it was already started.
template <class T>
Task<T> spawn(Task<T> task, ChannelMap& map = socket_map()) {
    if (!task) throw std::logic_error("spawn: empty task");
    detail::spawn_task(*task.state(), map);
    return task;
}

/// co_await sleep(d): lets other tasks and dispatchers run for `d` (at least
/// one pass, even for zero). Throws Cancelled if terminated meanwhile.
class [[nodiscard]] Sleep : public detail::Wait {
  public:
    explicit Sleep(Duration d) noexcept : d_(d) {}
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        return start(detail::task_of(h), h);
    }
    void await_resume() const { throw_if_failed(); }

  private:
    bool start(detail::TaskCore& t, std::coroutine_handle<> h);
    Duration d_;
};
inline Sleep sleep(Duration d) noexcept {
    return Sleep(d);
}

/// A few signal numbers: `{SIGINT, SIGTERM}` or one number. (Not an
/// std::initializer_list: GCC 12 mishandles its array in co_await operands.)
class SignalSet {
  public:
    template <class... More>
    SignalSet(int first, More... more) noexcept
        : signals_{first, more...}, size_(1 + sizeof...(more)) {
        static_assert(sizeof...(more) < 8, "SignalSet: at most 8 signals");
    }
    const int* begin() const noexcept { return signals_; }
    const int* end() const noexcept { return signals_ + size_; }

  private:
    int signals_[8];
    int size_;
};

/// co_await wait_signal({SIGINT, SIGTERM}, timeout): the number of the first
/// of these signals the process receives from now on. They are watched (see
/// signals.hpp) on the task's map while it waits, and no longer. Throws
/// TimeoutError, Cancelled; std::invalid_argument for a signal that cannot
/// be watched.
class [[nodiscard]] WaitSignal : public detail::Wait {
  public:
    WaitSignal(SignalSet signals, Timeout timeout) : signals_(signals), timeout_(timeout) {}
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        return start(detail::task_of(h), h);
    }
    int await_resume() {
        watches_.clear();
        throw_if_failed();
        return received_;
    }

  private:
    bool start(detail::TaskCore& t, std::coroutine_handle<> h);
    void delivered(int signo) noexcept;
    static void stop_watching(detail::Wait& w) noexcept;

    SignalSet signals_;
    std::vector<SignalWatch> watches_;
    Timeout timeout_;
    int received_ = 0;
};
inline WaitSignal wait_signal(SignalSet signals, Timeout timeout = std::nullopt) {
    return WaitSignal(signals, timeout);
}

/// co_await suspend(timeout): waits until another task calls resume() on
/// this one (pycos' suspend/resume). Throws TimeoutError, Cancelled.
class [[nodiscard]] Suspend : public detail::Wait {
  public:
    explicit Suspend(Timeout t) noexcept : timeout_(t) {}
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        detail::TaskCore& t = detail::task_of(h);
        if (t.cancel_pending(*this)) return false;
        kind = Kind::suspend;
        t.suspend(*this, h, timeout_);
        return true;
    }
    void await_resume() const { throw_if_failed(); }

  private:
    Timeout timeout_;
};
inline Suspend suspend(Timeout timeout = std::nullopt) noexcept {
    return Suspend(timeout);
}

/// co_await receive<M>(timeout): the next message from this task's mailbox,
/// in the order sent. Throws TimeoutError, Cancelled; a message is never lost
/// by a wait that fails. std::logic_error if the mailbox holds another type.
template <class M>
class [[nodiscard]] Receive : public detail::Wait {
  public:
    explicit Receive(Timeout t) noexcept : timeout_(t) {}
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        detail::TaskCore& t = detail::task_of(h);
        box_ = &t.template mailbox<M>();
        if (t.cancel_pending(*this) || !box_->queue.empty()) return false;
        kind = Kind::receive;
        t.suspend(*this, h, timeout_);
        return true;
    }
    M await_resume() {
        throw_if_failed();
        M m = std::move(box_->queue.front());
        box_->queue.pop_front();
        return m;
    }

  private:
    Timeout timeout_;
    detail::Mailbox<M>* box_ = nullptr;
};
template <class M>
Receive<M> receive(Timeout timeout = std::nullopt) noexcept {
    return Receive<M>(timeout);
}

/// co_await this_task(): a reference to the task the caller runs in (pycos'
/// `task` argument). Never suspends.
struct ThisTask {
    TaskRef self;
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) noexcept {
        self = TaskRef(&detail::task_of(h).root().state());
        return false;
    }
    TaskRef await_resume() { return std::move(self); }
};
inline ThisTask this_task() noexcept {
    return {};
}

template <class M>
bool TaskRef::send(M msg) {
    if (!s_ || s_->done()) return false;
    detail::TaskCore& t = live().task();
    t.mailbox<M>().queue.push_back(std::move(msg));
    detail::Wait* w = t.current_wait();
    if (w != nullptr && w->kind == detail::Wait::Kind::receive) t.complete(*w);
    return true;
}

}  // namespace asyncore

// The coroutine machinery of Task<T>.
#include <asyncore/detail/task_promise.hpp>
