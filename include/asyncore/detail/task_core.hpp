// The task layer's scheduling machinery: what a wait is, a task's
// scheduling state (TaskCore), the block a finished task leaves behind
// (TaskState) and the promise every Task coroutine shares (PromiseBase).
// Internals of task.hpp: not part of the API, and free to change.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include <asyncore/detail/watch.hpp>
#include <asyncore/error.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/ring_queue.hpp>

namespace asyncore {

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

}  // namespace asyncore
