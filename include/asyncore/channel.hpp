// Channel<T>: pycos' publish/subscribe broadcast between tasks.
//
//   Channel<std::string> news;
//   news.subscribe(reader_task);            // reader does co_await receive<std::string>()
//   news.send("hello");                     // to every current subscriber
//   std::size_t got = co_await news.deliver("hi", 2, 1s);  // waits for 2 subscribers
//
// Subscribers are tasks (the message lands in their mailbox, whose type
// must then be T) or other channels of the same T (which pass it on to
// their own subscribers, through their own transform). A task that has
// finished is dropped from the subscribers when a send finds it so.
//
// The optional transform runs once per send, before delivery; returning
// std::nullopt drops the message (no subscriber gets it, the count is 0).
//
// Everything runs on the loop thread; send() never resumes a subscriber
// inline. A channel subscribed to another must be unsubscribed before it
// is destroyed; a channel must outlive the tasks waiting in deliver().
#pragma once

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <asyncore/task.hpp>

namespace asyncore {

template <class T>
class Channel {
  public:
    /// Maps a message before delivery; std::nullopt drops it.
    using Transform = std::function<std::optional<T>(T)>;

    explicit Channel(std::string name = {}, Transform transform = {})
        : name_(std::move(name)), transform_(std::move(transform)) {}
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;

    const std::string& name() const noexcept { return name_; }

    /// Adds a subscriber (no effect if already subscribed). Wakes deliver()
    /// waits that now have enough subscribers.
    void subscribe(TaskRef task) { add(Subscriber(std::move(task))); }
    void subscribe(Channel& channel) { add(Subscriber(&channel)); }
    /// Removes a subscriber; returns false if it was not subscribed.
    bool unsubscribe(const TaskRef& task) { return remove(Subscriber(task)); }
    bool unsubscribe(Channel& channel) { return remove(Subscriber(&channel)); }
    /// Direct subscribers (tasks and channels).
    std::size_t subscribers() const noexcept { return subs_.size(); }

    /// Sends `msg` to every current subscriber; returns how many tasks got
    /// it (through nested channels too).
    std::size_t send(T msg);

    /// co_await deliver(msg, n, timeout): waits until at least `n` direct
    /// subscribers exist, then sends; yields how many tasks received it.
    /// Throws TimeoutError, Cancelled (the message is then not sent).
    class Deliver : public detail::Wait {
      public:
        Deliver(Channel& c, T msg, std::size_t n, Timeout t)
            : c_(c), msg_(std::move(msg)), n_(n), timeout_(t) {}
        bool await_ready() const noexcept { return c_.subs_.size() >= n_; }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            detail::TaskCore& t = detail::task_of(h);
            if (t.cancel_pending(*this)) return false;
            c_.waiting_.push_back(*this);
            t.suspend(*this, h, timeout_);
            return true;
        }
        std::size_t await_resume() {
            throw_if_failed();
            return c_.send(std::move(msg_));
        }

      private:
        friend class Channel;
        Channel& c_;
        T msg_;
        std::size_t n_;
        Timeout timeout_;
    };
    Deliver deliver(T msg, std::size_t n = 1, Timeout timeout = std::nullopt) {
        return Deliver(*this, std::move(msg), n, timeout);
    }

  private:
    using Subscriber = std::variant<TaskRef, Channel*>;

    void add(Subscriber s);
    bool remove(const Subscriber& s);
    std::size_t deliver_to(Subscriber& s, const T& msg);

    std::string name_;
    Transform transform_;
    std::vector<Subscriber> subs_;
    detail::WaitList waiting_;
    bool sending_ = false;  ///< breaks subscription cycles
};

template <class T>
void Channel<T>::add(Subscriber s) {
    if (std::find(subs_.begin(), subs_.end(), s) != subs_.end()) return;
    subs_.push_back(std::move(s));
    // Wake, in order, every deliver() whose count is now reached.
    detail::Wait* w = waiting_.front();
    while (w != nullptr) {
        detail::Wait* next = w->next;
        if (static_cast<Deliver*>(w)->n_ <= subs_.size()) {
            waiting_.remove(*w);
            w->task->complete(*w);
        }
        w = next;
    }
}

template <class T>
bool Channel<T>::remove(const Subscriber& s) {
    auto it = std::find(subs_.begin(), subs_.end(), s);
    if (it == subs_.end()) return false;
    subs_.erase(it);
    return true;
}

template <class T>
std::size_t Channel<T>::deliver_to(Subscriber& s, const T& msg) {
    if (auto* task = std::get_if<TaskRef>(&s)) return task->send(msg) ? 1 : 0;
    return std::get<Channel*>(s)->send(msg);
}

template <class T>
std::size_t Channel<T>::send(T msg) {
    if (sending_) return 0;
    if (transform_) {
        std::optional<T> mapped = transform_(std::move(msg));
        if (!mapped) return 0;
        msg = std::move(*mapped);
    }
    sending_ = true;
    std::size_t count = 0;
    auto subs = subs_;  // a subscriber may (un)subscribe while we send
    for (Subscriber& s : subs) {
        std::size_t n = deliver_to(s, msg);
        auto* task = std::get_if<TaskRef>(&s);
        if (task != nullptr && task->done()) remove(s);
        count += n;
    }
    sending_ = false;
    return count;
}

}  // namespace asyncore
