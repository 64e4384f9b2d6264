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

#include <asyncore/detail/watch.hpp>
#include <asyncore/error.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/ring_queue.hpp>

namespace asyncore {

/// Thrown by an awaitable whose timeout expired (errc::timed_out).
class TimeoutError : public std::system_error {
  public:
    explicit TimeoutError(const char* what = "timed out")
        : std::system_error(make_error_code(errc::timed_out), what) {}
};

/// Thrown at a task's suspension point by TaskRef::terminate() (errc::cancelled).
class Cancelled : public std::system_error {
  public:
    explicit Cancelled(const char* what = "task terminated")
        : std::system_error(make_error_code(errc::cancelled), what) {}
};

class TaskRef;
template <class T>
class Task;

namespace detail {

class TaskCore;
class PromiseBase;
class TaskState;
class WaitList;
struct Scheduler;

/// One suspended operation of a task: what the task waits on, and how to
/// take it back. Lives in the coroutine frame (no allocation per wait).
struct Wait {
    enum class Kind : std::uint8_t { other, receive, suspend, sleep };

    Wait* prev = nullptr;  ///< intrusive WaitList membership
    Wait* next = nullptr;
    WaitList* list = nullptr;
    std::coroutine_handle<> handle;  ///< the suspended coroutine
    TaskCore* task = nullptr;
    /// Undoes a registration other than list membership (e.g. fd interest).
    void (*detach_fn)(Wait&) noexcept = nullptr;
    errc outcome{};  ///< zero: completed; timed_out or cancelled otherwise
    Kind kind = Kind::other;
    /// False for a wait terminate() must not interrupt (it then lands at
    /// the task's next wait).
    bool cancellable = true;

    /// Removes every registration of this wait (list and detach_fn).
    void detach() noexcept;
    /// Throws TimeoutError or Cancelled if the wait did not complete.
    void throw_if_failed() const {
        if (outcome != errc{}) throw_failure();
    }
    void throw_failure() const;
};

/// A wait for a descriptor's readiness (lib/detail/io_wait.hpp). When the
/// descriptor is ready, `step` (if set) retries the operation; the wait ends
/// when it returns true.
struct IoWaiter : Wait {
    bool (*step)(IoWaiter&) noexcept = nullptr;
    void* watch = nullptr;  ///< the IoWatch it is registered with
};

/// A FIFO of waits, intrusive so that removing a cancelled one is O(1).
class WaitList {
  public:
    WaitList() = default;
    WaitList(const WaitList&) = delete;
    WaitList& operator=(const WaitList&) = delete;
    bool empty() const noexcept { return head_ == nullptr; }
    std::size_t size() const noexcept { return size_; }
    Wait* front() const noexcept { return head_; }
    void push_back(Wait& w) noexcept;
    void remove(Wait& w) noexcept;
    Wait* pop_front() noexcept;

  private:
    Wait* head_ = nullptr;
    Wait* tail_ = nullptr;
    std::size_t size_ = 0;
};

/// A task's mailbox: one message type, fixed by the first send or receive.
struct MailboxBase {
    virtual ~MailboxBase() = default;
    const void* tag = nullptr;
};
template <class M>
inline constexpr char mailbox_tag = 0;
template <class M>
struct Mailbox final : MailboxBase {
    Mailbox() { tag = &mailbox_tag<M>; }
    RingQueue<M> queue;
};

/// The scheduling state of one task (a spawned coroutine and whatever it
/// awaits inline). Lives in the task's promise.
class TaskCore {
  public:
    TaskCore() = default;
    TaskCore(const TaskCore&) = delete;
    TaskCore& operator=(const TaskCore&) = delete;

    /// Delivers a pending terminate() to `w` instead of suspending: true if
    /// the awaitable must not suspend (w.outcome is then cancelled).
    bool cancel_pending(Wait& w) noexcept { return cancel_requested_ && deliver_cancel(w); }
    /// Records `w` as this task's wait and arms the timeout (if any).
    void suspend(Wait& w, std::coroutine_handle<> h, Timeout timeout);
    /// Ends the current wait `w` with `outcome` (its registrations must
    /// already be gone) and resumes it from the ready queue.
    void complete(Wait& w, errc outcome = errc{}) noexcept;
    /// As complete(), but resumes at once: only from a loop callback.
    void complete_inline(Wait& w, errc outcome = errc{}) noexcept;
    /// Takes (and clears) a pending terminate request.
    bool take_cancel() noexcept;

    template <class M>
    Mailbox<M>& mailbox();
    Wait* current_wait() const noexcept { return wait_; }
    ChannelMap& map() const noexcept { return *map_; }
    PromiseBase& root() const noexcept { return *root_; }

  private:
    friend class PromiseBase;
    friend class JoinWait;
    friend class asyncore::TaskRef;
    friend struct Scheduler;

    void disarm() noexcept;
    bool deliver_cancel(Wait& w) noexcept;
    void mailbox_type_error() const;
    Scheduler& sched() const noexcept { return *sched_; }

    ChannelMap* map_ = nullptr;
    Scheduler* sched_ = nullptr;
    PromiseBase* root_ = nullptr;
    Wait* wait_ = nullptr;
    Watch timer_;  ///< the wait's timeout, created on first use
    std::unique_ptr<MailboxBase> mailbox_;
    WaitList joiners_;
    std::vector<std::function<void(const TaskRef&, std::exception_ptr)>> monitors_;
    TaskCore* prev_ = nullptr;  ///< the scheduler's list of running tasks
    TaskCore* next_ = nullptr;
    bool timer_armed_ = false;
    bool daemon_ = false;
    bool cancel_requested_ = false;
};

template <class M>
Mailbox<M>& TaskCore::mailbox() {
    if (!mailbox_) mailbox_ = std::make_unique<Mailbox<M>>();
    if (mailbox_->tag != &mailbox_tag<M>) mailbox_type_error();
    return static_cast<Mailbox<M>&>(*mailbox_);
}

/// The part of a task that outlives its coroutine frame, shared by its
/// TaskRef/Task handles: the reference count, the outcome (exception, and in
/// TaskResult<T> the value) and the flags the handles read. It is allocated
/// ahead of the frame, in the same block, when the coroutine's allocation
/// can be found from its promise (always with GCC and Clang), else on its
/// own; either way a finished task keeps only this alive.
class TaskState {
  public:
    TaskState(const TaskState&) = delete;
    TaskState& operator=(const TaskState&) = delete;

    bool started() const noexcept { return started_; }
    bool done() const noexcept { return done_; }
    /// The exception the coroutine ended with; marks it observed.
    std::exception_ptr take_error() noexcept {
        observed_ = true;
        return error_;
    }
    std::exception_ptr error() const noexcept { return error_; }
    /// The live coroutine's promise: null once the frame is destroyed.
    PromiseBase* promise() const noexcept { return promise_; }
    /// True if `frame` was allocated behind this block.
    bool allocated_with(const void* frame) const noexcept { return frame_ == frame; }

    void add_ref() noexcept { ++refs_; }
    /// Drops a reference. The last one destroys a coroutine that never
    /// started, and this block once the frame is gone.
    void release() noexcept;

  protected:
    using Destroy = void (*)(TaskState*) noexcept;
    explicit TaskState(Destroy destroy) noexcept : destroy_(destroy) {}
    /// Reports an exception nobody awaited (not Cancelled) on stderr.
    ~TaskState();

  private:
    friend class PromiseBase;
    template <class T>
    friend class PromiseFor;
    template <class T>
    friend class TaskResult;
    /// Frees this block once nothing refers to it or lives in its memory.
    void free_if_unused() noexcept;

    Destroy destroy_;  ///< runs the typed destructor and frees
    PromiseBase* promise_ = nullptr;
    std::exception_ptr error_;
    void* frame_ = nullptr;  ///< the frame allocated behind this block, if any
    std::uint32_t refs_ = 0;
    bool started_ = false;
    bool done_ = false;
    bool observed_ = false;
    bool adopted_ = false;       ///< a promise took this block as its state
    bool frame_memory_ = false;  ///< the frame's memory (behind this block) is not freed yet
};

/// Where a task's value is kept: none for void.
template <class T>
struct ResultValue {
    std::optional<T> value;
};
template <>
struct ResultValue<void> {};

/// A task's state with its value.
template <class T>
class TaskResult final : public TaskState, public ResultValue<T> {
  public:
    TaskResult() noexcept : TaskState(&destroy) {}

  private:
    static void destroy(TaskState* s) noexcept;
};

/// The coroutine frame allocation: the frame, behind a TaskResult<T> that
/// its promise adopts (see Promise::Promise). Not for over-aligned values,
/// which get a state of their own.
template <class T>
struct FrameBlock {
    static constexpr std::size_t align = __STDCPP_DEFAULT_NEW_ALIGNMENT__;
    static constexpr bool used = alignof(TaskResult<T>) <= align;
    static constexpr std::size_t head = (sizeof(TaskResult<T>) + align - 1) / align * align;
};

/// The memory of a frame and the block ahead of it (out of line, so that the
/// compiler pairs the class operator new/delete below and not the global
/// ones they use).
void* allocate_frame_block(std::size_t size);
void free_frame_block(void* block) noexcept;

/// The block allocated with the frame being created on this thread, until
/// its promise adopts it (hand-off from operator new to the constructor).
void offer_state(TaskState* s) noexcept;
/// Takes the offered block if it was allocated with `frame`; null otherwise
/// (the promise then allocates its state on its own).
TaskState* adopt_offered_state(void* frame) noexcept;
/// Withdraws `s` if it is still on offer (its frame is being freed).
void withdraw_state(TaskState* s) noexcept;

/// What every Task promise shares: its state, the inline caller it returns
/// to, and (for a spawned task) the task's scheduling state.
class PromiseBase {
  public:
    PromiseBase(const PromiseBase&) = delete;
    PromiseBase& operator=(const PromiseBase&) = delete;

    struct InitialAwaiter {
        PromiseBase* p;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<>) const noexcept {}
        /// A task terminated before it first ran never runs its body.
        void await_resume() const {
            if (p->task_->take_cancel()) throw Cancelled();
        }
    };
    struct FinalAwaiter {
        PromiseBase* p;
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<>) const noexcept {
            return p->on_final();
        }
        void await_resume() const noexcept {}
    };

    InitialAwaiter initial_suspend() noexcept { return {this}; }
    FinalAwaiter final_suspend() noexcept { return {this}; }
    /// Keeps the exception for whoever joins; an ExitNow also leaves loop().
    void unhandled_exception() noexcept;

    TaskCore& task() const noexcept { return *task_; }
    TaskState& state() const noexcept { return *state_; }
    bool spawned() const noexcept { return task_ == &core_ && core_.map_ != nullptr; }

    /// Starts this coroutine inline, as a part of `parent`'s task; when it
    /// ends it transfers back to `caller`. Returns the handle to transfer to.
    std::coroutine_handle<> start_inline(TaskCore& parent, std::coroutine_handle<> caller) noexcept;
    /// Makes this coroutine a task of its own on `map` and queues it to run.
    void spawn(ChannelMap& map);

  protected:
    PromiseBase() noexcept { core_.root_ = this; }
    /// Detaches the state, which outlives the frame.
    ~PromiseBase();
    /// Makes `s` this coroutine's state.
    void attach(TaskState* s) noexcept;
    std::coroutine_handle<> self_;
    TaskState* state_ = nullptr;

  private:
    friend class TaskCore;
    friend class TaskState;
    friend class JoinWait;
    friend struct Scheduler;
    friend class asyncore::TaskRef;
    std::coroutine_handle<> on_final() noexcept;
    void finish_task() noexcept;

    TaskCore core_;
    TaskCore* task_ = &core_;
    std::coroutine_handle<> caller_;
};

/// Makes the unstarted coroutine of `s` a task of its own on `map`; throws
/// std::logic_error if it was already started.
void spawn_task(TaskState& s, ChannelMap& map);

/// The task running on this thread right now, or null outside tasks.
TaskCore* current_task() noexcept;

/// The task an awaitable's coroutine runs in.
template <class P>
TaskCore& task_of(std::coroutine_handle<P> h) noexcept {
    static_assert(std::is_base_of_v<PromiseBase, P>,
                  "asyncore awaitables can only be awaited inside a Task coroutine");
    return h.promise().task();
}

template <class T>
class Promise;

/// co_await on a task handle: runs an unstarted coroutine inline, or waits
/// for a spawned task to end.
class JoinWait : public Wait {
  public:
    JoinWait(TaskState* s, Timeout t) noexcept : s_(s), timeout_(t) {}
    bool await_ready() const noexcept { return s_->done(); }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) {
        return suspend_on(task_of(h), h);
    }

  protected:
    /// Rethrows the waiter's own failure (timeout, cancel), then the task's.
    void check() const;
    TaskState* s_;

  private:
    std::coroutine_handle<> suspend_on(TaskCore& me, std::coroutine_handle<> h);
    Timeout timeout_;
};

}  // namespace detail

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

namespace detail {

template <class T>
void TaskResult<T>::destroy(TaskState* s) noexcept {
    auto* r = static_cast<TaskResult*>(s);
    void* frame = r->frame_;
    r->~TaskResult();
    if (frame != nullptr) {
        free_frame_block(static_cast<char*>(frame) - FrameBlock<T>::head);
    } else {
        ::operator delete(static_cast<void*>(r));
    }
}

/// What Promise<T> and Promise<void> share: the frame is allocated behind
/// the task's TaskResult<T>, so that a task whose frame is destroyed still
/// has its outcome without a second allocation per coroutine.
template <class T>
class PromiseFor : public PromiseBase {
  public:
    static void* operator new(std::size_t size) {
        if constexpr (!FrameBlock<T>::used) {
            return ::operator new(size);
        } else {
            char* block = static_cast<char*>(allocate_frame_block(FrameBlock<T>::head + size));
            auto* state = ::new (block) TaskResult<T>();
            void* frame = block + FrameBlock<T>::head;
            state->frame_ = frame;
            state->frame_memory_ = true;
            offer_state(state);
            return frame;
        }
    }
    static void operator delete(void* frame) noexcept {
        if constexpr (!FrameBlock<T>::used) {
            ::operator delete(frame);
        } else {
            auto* state =
                reinterpret_cast<TaskResult<T>*>(static_cast<char*>(frame) - FrameBlock<T>::head);
            withdraw_state(state);
            state->frame_memory_ = false;
            state->free_if_unused();
        }
    }

  protected:
    PromiseFor() noexcept = default;
    /// Called by get_return_object(), the first thing that runs after the
    /// promise is constructed: adopts the block allocated with `frame`, or
    /// (when the allocation was elided, or a parameter's copy created another
    /// coroutine meanwhile) allocates a state of its own.
    void attach_state(void* frame) {
        TaskState* s = nullptr;
        if constexpr (FrameBlock<T>::used) s = adopt_offered_state(frame);
        attach(s != nullptr ? s : new TaskResult<T>());
    }
    TaskResult<T>& result() noexcept { return static_cast<TaskResult<T>&>(*state_); }
};

template <class T>
class Promise : public PromiseFor<T> {
  public:
    Task<T> get_return_object() {
        auto h = std::coroutine_handle<Promise>::from_promise(*this);
        this->self_ = h;
        this->attach_state(h.address());
        return Task<T>(this->state_);
    }
    template <class U>
    void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
        this->result().value.emplace(std::forward<U>(v));
    }
};

template <>
class Promise<void> : public PromiseFor<void> {
  public:
    Task<void> get_return_object() {
        auto h = std::coroutine_handle<Promise>::from_promise(*this);
        self_ = h;
        attach_state(h.address());
        return Task<void>(state_);
    }
    void return_void() noexcept {}
};

}  // namespace detail

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
