// Reactor: the event_base and its registrations. The only file of the
// library that includes libevent.

#include "detail/reactor.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <event2/event.h>

#include <cerrno>
#include <new>
#include <string>

#include <asyncore/error.hpp>

#if defined(__linux__)
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif

namespace asyncore::detail {

static_assert(watch_timeout == EV_TIMEOUT && watch_read == EV_READ && watch_write == EV_WRITE,
              "watch flags are libevent's");
static_assert(sizeof(evutil_socket_t) == sizeof(int), "a descriptor is an int");

namespace {

// Freed by libevent once its callback is not running (it may be the one
// destroying it); nothing to do before that.
void forget(event*, void*) {}

timeval to_timeval(std::chrono::microseconds d) noexcept {
    auto usec = d.count() < 0 ? 0 : d.count();
    return timeval{static_cast<time_t>(usec / 1000000), static_cast<suseconds_t>(usec % 1000000)};
}

// A pipe with both ends non-blocking and close-on-exec, without pipe2():
// the portable wake-up.
bool make_pipe(int& read_end, int& write_end) noexcept {
    int fds[2];
    if (::pipe(fds) != 0) return false;
    for (int fd : fds) {
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
        ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    read_end = fds[0];
    write_end = fds[1];
    return true;
}

}  // namespace

// -- Watch ------------------------------------------------------------------------

Watch& Watch::operator=(Watch&& o) noexcept {
    if (this != &o) {
        reset();
        ev_ = o.ev_;
        o.ev_ = nullptr;
    }
    return *this;
}

bool Watch::start() noexcept {
    errno = 0;
    if (event_add(ev_, nullptr) == 0) return true;
    if (errno == 0) errno = EPERM;
    return false;
}

void Watch::start(std::chrono::microseconds delay) noexcept {
    // libevent counts a relative timeout from its cached clock, which stands
    // still from the backend's wake-up to the end of the pass's callbacks: a
    // timer armed late in a busy pass would fire early by as much. Refreshed
    // first (one vDSO clock read), the delay counts from now: never early.
    event_base_update_cache_time(event_get_base(ev_));
    timeval tv = to_timeval(delay);
    event_add(ev_, &tv);
}

void Watch::stop() noexcept {
    event_del(ev_);
}

bool Watch::pending() const noexcept {
    return ev_ != nullptr && event_pending(ev_, EV_READ | EV_WRITE | EV_TIMEOUT, nullptr) != 0;
}

void Watch::activate(short what) noexcept {
    event_active(ev_, what, 0);
}

void Watch::reset() noexcept {
    if (ev_ == nullptr) return;
    event_free_finalize(0, ev_, forget);
    ev_ = nullptr;
}

// -- Reactor ----------------------------------------------------------------------

Reactor::Reactor() {
    base_ = event_base_new();
    if (base_ == nullptr) throw_errno(errno != 0 ? errno : ENOMEM, "event_base_new");
#if defined(__linux__)
    // eventfd is the cheaper wake-up, but only the epoll backend is known
    // to be Linux; any other backend gets the portable pipe, so that the
    // poll test run exercises it.
    if (backend() == "epoll") {
        wake_read_ = wake_write_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    }
    urgent_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
#endif
    if (wake_read_ < 0 && !make_pipe(wake_read_, wake_write_)) {
        int err = errno;
        if (urgent_fd_ >= 0) ::close(urgent_fd_);
        event_base_free(base_);
        throw_errno(err, "Reactor wake-up");
    }
}

Reactor::~Reactor() {
    wake_watch_.reset();
    urgent_watch_.reset();
    event_base_free(base_);  // runs the finalizers of the watches freed last
    if (wake_write_ != wake_read_) ::close(wake_write_);
    ::close(wake_read_);
    if (urgent_fd_ >= 0) ::close(urgent_fd_);
}

std::string_view Reactor::backend() const noexcept {
    return event_base_get_method(base_);
}

std::size_t Reactor::started_watches() const noexcept {
    return static_cast<std::size_t>(event_base_get_num_events(base_, EVENT_BASE_COUNT_ADDED));
}

Watch Reactor::io(int fd, short what, WatchCallback cb, void* arg) {
    event* ev = event_new(base_, fd, static_cast<short>(what | EV_PERSIST), cb, arg);
    if (ev == nullptr) throw std::bad_alloc();
    return Watch(ev);
}

Watch Reactor::timer(WatchCallback cb, void* arg) {
    event* ev = evtimer_new(base_, cb, arg);
    if (ev == nullptr) throw std::bad_alloc();
    return Watch(ev);
}

Watch Reactor::user(WatchCallback cb, void* arg) {
    event* ev = event_new(base_, -1, 0, cb, arg);
    if (ev == nullptr) throw std::bad_alloc();
    return Watch(ev);
}

// EVLOOP_ONCE makes this one pass: each ready event's callback runs once and
// event_base_loop() returns. EVLOOP_NONBLOCK alone would go on polling while
// anything is ready: a channel that stays writable would keep a zero-timeout
// pass from ever returning.
void Reactor::run_pass(bool poll) {
    event_base_loop(base_, EVLOOP_ONCE | (poll ? EVLOOP_NONBLOCK : 0));
}

void Reactor::break_pass() noexcept {
    event_base_loopbreak(base_);
}

// -- Wake-up ----------------------------------------------------------------------

void Reactor::set_wake(void (*cb)(void*), void* arg) {
    wake_cb_ = cb;
    wake_arg_ = arg;
    wake_watch_ = io(wake_read_, EV_READ, on_wake, this);
    wake_watch_.start();
}

void Reactor::wake() noexcept {
    std::uint64_t one = 1;  // an eventfd takes 8 bytes; a pipe any
    (void)!::write(wake_write_, &one, sizeof one);
}

void Reactor::on_wake(int fd, short, void* arg) {
    char buf[64];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
    auto* self = static_cast<Reactor*>(arg);
    self->wake_cb_(self->wake_arg_);
}

// -- Urgent data ------------------------------------------------------------------

void Reactor::set_urgent(void (*cb)(std::uint64_t, void*), void* arg) {
    urgent_cb_ = cb;
    urgent_arg_ = arg;
    if (urgent_fd_ < 0) return;
    urgent_watch_ = io(urgent_fd_, EV_READ, on_urgent, this);
    urgent_watch_.start();
}

// libevent 2.1 cannot watch for EPOLLPRI: sockets are also registered,
// edge-triggered, in a second epoll set whose descriptor libevent watches.
// A failure only costs urgent-data notification for that descriptor.
void Reactor::watch_urgent([[maybe_unused]] int fd, [[maybe_unused]] std::uint64_t token) noexcept {
#if defined(__linux__)
    if (urgent_fd_ < 0) return;
    epoll_event ev{};
    ev.events = EPOLLPRI | EPOLLET;
    ev.data.u64 = token;
    (void)::epoll_ctl(urgent_fd_, EPOLL_CTL_ADD, fd, &ev);
#endif
}

void Reactor::unwatch_urgent([[maybe_unused]] int fd) noexcept {
#if defined(__linux__)
    if (urgent_fd_ >= 0) (void)::epoll_ctl(urgent_fd_, EPOLL_CTL_DEL, fd, nullptr);
#endif
}

void Reactor::on_urgent([[maybe_unused]] int fd, short, [[maybe_unused]] void* arg) {
#if defined(__linux__)
    auto* self = static_cast<Reactor*>(arg);
    epoll_event events[64];
    int n = ::epoll_wait(fd, events, 64, 0);
    for (int i = 0; i < n; ++i) {
        if (events[i].events & EPOLLPRI) self->urgent_cb_(events[i].data.u64, self->urgent_arg_);
    }
#endif
}

}  // namespace asyncore::detail
