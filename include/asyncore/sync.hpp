// Synchronisation between tasks: Lock, RLock, Condition, Event, Semaphore,
// with pycos' contracts and `co_await` where pycos writes `yield`.
//
//   Lock lock;
//   Task<void> worker() {
//       auto held = co_await lock.scoped(1s);   // TimeoutError after 1 s
//       ...                                      // released when `held` dies
//   }
//
// All of them are for one loop thread (tasks never run in parallel; these
// order tasks across suspension points). Waiters are woken in FIFO order,
// and a released lock or semaphore is handed to the first waiter directly,
// so a task that releases and re-acquires at once cannot overtake it.
// Every wait takes an optional timeout (TimeoutError) and is cancellable
// (Cancelled); a wait that fails leaves its queue as if it never came.
// Wake-ups never run the woken task inline: it runs from the loop.
//
// Ownership: Lock, RLock and Condition belong to the task that acquired
// them; release() from any other task (or from outside a task) throws
// std::logic_error and changes nothing. Semaphore and Event have no owner.
// A primitive must outlive every task waiting on it.
#pragma once

#include <coroutine>
#include <cstddef>
#include <stdexcept>
#include <utility>

#include <asyncore/task.hpp>

namespace asyncore {

namespace detail {

/// A waiter that, when granted a lock, gets this re-entrancy depth.
struct LockWait : Wait {
    std::size_t depth = 1;
};

/// A FIFO lock owned by a task, optionally re-entrant: the core of Lock,
/// RLock and Condition.
class OwnedLock {
  public:
    explicit OwnedLock(bool reentrant) noexcept : reentrant_(reentrant) {}
    /// Takes the lock for `me` if it is free and nobody queues (or, if
    /// re-entrant, `me` holds it already).
    bool try_take(TaskCore* me) noexcept;
    /// Takes the lock for `me` at `depth` if it is free and nobody queues.
    bool take_free(TaskCore* me, std::size_t depth) noexcept;
    /// Queues `w` for the lock (cancellation is checked by the caller).
    void enqueue(LockWait& w) noexcept { waiters_.push_back(w); }
    /// One level of release by `me`; at depth 0 the first waiter gets it.
    void release(TaskCore* me, const char* what);
    bool locked() const noexcept { return owner_ != nullptr; }
    TaskCore* owner() const noexcept { return owner_; }

  private:
    void check_owner(TaskCore* me, const char* what) const;
    void hand_over() noexcept;

    TaskCore* owner_ = nullptr;
    std::size_t depth_ = 0;
    WaitList waiters_;
    bool reentrant_;
};

/// co_await on an acquire: joins the queue unless the lock is free.
class AcquireLock : public LockWait {
  public:
    AcquireLock(OwnedLock& l, Timeout t) noexcept : lock_(l), timeout_(t) {}
    bool await_ready() noexcept { return lock_.try_take(current_task()); }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        TaskCore& t = task_of(h);
        if (t.cancel_pending(*this)) return false;
        lock_.enqueue(*this);
        t.suspend(*this, h, timeout_);
        return true;
    }
    void await_resume() const { throw_if_failed(); }

  protected:
    OwnedLock& lock_;
    Timeout timeout_;
};

}  // namespace detail

/// Releases what it guards when destroyed (unless released before).
template <class L>
class [[nodiscard]] Guard {
  public:
    explicit Guard(L& l) noexcept : l_(&l) {}
    Guard(Guard&& o) noexcept : l_(std::exchange(o.l_, nullptr)) {}
    Guard& operator=(Guard&&) = delete;
    ~Guard() {
        if (l_ != nullptr) l_->release_guard();
    }
    /// Releases now.
    void release() {
        if (l_ != nullptr) std::exchange(l_, nullptr)->release_guard();
    }

  private:
    L* l_;
};

/// The awaitable of a scoped acquire: yields a Guard once acquired.
template <class L, class Base>
class ScopedAcquire : public Base {
  public:
    template <class... A>
    explicit ScopedAcquire(L& owner, A&&... a) : Base(std::forward<A>(a)...), owner_(owner) {}
    Guard<L> await_resume() {
        Base::await_resume();
        return Guard<L>(owner_);
    }

  private:
    L& owner_;
};

/// pycos' Lock: not re-entrant; acquiring it twice from one task deadlocks
/// (or times out), as in pycos and threading.
class Lock {
  public:
    /// co_await: takes the lock, waiting in FIFO order. TimeoutError, Cancelled.
    detail::AcquireLock acquire(Timeout timeout = std::nullopt) noexcept {
        return detail::AcquireLock(lock_, timeout);
    }
    /// co_await: as acquire(), yielding a Guard that releases it.
    ScopedAcquire<Lock, detail::AcquireLock> scoped(Timeout timeout = std::nullopt) noexcept {
        return ScopedAcquire<Lock, detail::AcquireLock>(*this, lock_, timeout);
    }
    /// Releases; the first waiter (if any) gets it. std::logic_error unless
    /// the calling task holds it.
    void release() { lock_.release(detail::current_task(), "Lock::release"); }
    bool locked() const noexcept { return lock_.locked(); }

  private:
    friend class Guard<Lock>;
    void release_guard() noexcept { lock_.release(lock_.owner(), "Lock"); }
    detail::OwnedLock lock_{false};
};

/// pycos' RLock: the owning task may acquire it again; it is free once
/// released as many times as acquired.
class RLock {
  public:
    detail::AcquireLock acquire(Timeout timeout = std::nullopt) noexcept {
        return detail::AcquireLock(lock_, timeout);
    }
    ScopedAcquire<RLock, detail::AcquireLock> scoped(Timeout timeout = std::nullopt) noexcept {
        return ScopedAcquire<RLock, detail::AcquireLock>(*this, lock_, timeout);
    }
    /// One level of release. std::logic_error unless the calling task holds it.
    void release() { lock_.release(detail::current_task(), "RLock::release"); }
    bool locked() const noexcept { return lock_.locked(); }

  private:
    friend class Guard<RLock>;
    void release_guard() noexcept { lock_.release(lock_.owner(), "RLock"); }
    detail::OwnedLock lock_{true};
};

/// pycos' Event: wait() returns once the flag is set.
class Event {
  public:
    class Wait : public detail::Wait {
      public:
        Wait(Event& e, Timeout t) noexcept : e_(e), timeout_(t) {}
        bool await_ready() const noexcept { return e_.set_; }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            detail::TaskCore& t = detail::task_of(h);
            if (t.cancel_pending(*this)) return false;
            e_.waiters_.push_back(*this);
            t.suspend(*this, h, timeout_);
            return true;
        }
        void await_resume() const { throw_if_failed(); }

      private:
        Event& e_;
        Timeout timeout_;
    };

    /// Sets the flag and wakes every waiter (in the order they came).
    void set() noexcept;
    void clear() noexcept { set_ = false; }
    bool is_set() const noexcept { return set_; }
    /// co_await: until the flag is set. TimeoutError, Cancelled.
    Wait wait(Timeout timeout = std::nullopt) noexcept { return Wait(*this, timeout); }

  private:
    bool set_ = false;
    detail::WaitList waiters_;
};

/// A counting semaphore (pycos' has no timeout; this one does).
class Semaphore {
  public:
    class Acquire : public detail::Wait {
      public:
        Acquire(Semaphore& s, Timeout t) noexcept : s_(s), timeout_(t) {}
        bool await_ready() noexcept { return s_.try_acquire(); }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            detail::TaskCore& t = detail::task_of(h);
            if (t.cancel_pending(*this)) return false;
            s_.waiters_.push_back(*this);
            t.suspend(*this, h, timeout_);
            return true;
        }
        void await_resume() const { throw_if_failed(); }

      private:
        Semaphore& s_;
        Timeout timeout_;
    };

    /// Throws std::invalid_argument if `value` is negative.
    explicit Semaphore(std::ptrdiff_t value = 1);
    /// co_await: takes one unit, waiting in FIFO order. TimeoutError, Cancelled.
    Acquire acquire(Timeout timeout = std::nullopt) noexcept { return Acquire(*this, timeout); }
    ScopedAcquire<Semaphore, Acquire> scoped(Timeout timeout = std::nullopt) noexcept {
        return ScopedAcquire<Semaphore, Acquire>(*this, *this, timeout);
    }
    /// Returns one unit: the first waiter gets it, or the count grows.
    void release() noexcept;
    /// Takes a unit if one is free and nobody queues.
    bool try_acquire() noexcept;
    std::ptrdiff_t value() const noexcept { return value_; }

  private:
    friend class Guard<Semaphore>;
    void release_guard() noexcept { release(); }
    std::ptrdiff_t value_;
    detail::WaitList waiters_;
};

/// pycos' Condition: a re-entrant lock with wait/notify.
class Condition {
  public:
    detail::AcquireLock acquire(Timeout timeout = std::nullopt) noexcept {
        return detail::AcquireLock(lock_, timeout);
    }
    ScopedAcquire<Condition, detail::AcquireLock> scoped(Timeout timeout = std::nullopt) noexcept {
        return ScopedAcquire<Condition, detail::AcquireLock>(*this, lock_, timeout);
    }
    void release() { lock_.release(detail::current_task(), "Condition::release"); }
    bool locked() const noexcept { return lock_.locked(); }

    /// co_await wait(timeout): releases the lock (all levels), waits for a
    /// notify, then re-acquires it at the same depth before returning or
    /// throwing: after TimeoutError or Cancelled the task holds the lock
    /// again, so a Guard around the wait stays correct. Re-acquiring is not
    /// itself cancellable (a terminate() then lands at the next wait).
    /// std::logic_error unless the calling task holds the lock.
    Task<void> wait(Timeout timeout = std::nullopt);
    /// Wakes up to `n` waiters, oldest first. std::logic_error unless the
    /// calling task holds the lock (as threading.Condition).
    void notify(std::size_t n = 1);
    void notify_all() { notify(static_cast<std::size_t>(-1)); }

  private:
    friend class Guard<Condition>;
    void release_guard() noexcept { lock_.release(lock_.owner(), "Condition"); }
    detail::OwnedLock lock_{true};
    detail::WaitList waiters_;
};

}  // namespace asyncore
