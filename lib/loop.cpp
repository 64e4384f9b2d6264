// ChannelMap and loop(): one reactor per map, one pass per loop()
// iteration, handlers called straight from the watch callbacks.

#include <asyncore/dispatcher.hpp>
#include <asyncore/error.hpp>
#include <asyncore/loop.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <poll.h>

#include <cerrno>
#include <cstdio>
#include <system_error>

#include "detail/dispatcher_tls.hpp"
#include "detail/map_core.hpp"
#include "detail/map_signals.hpp"
#include "detail/routing.hpp"

namespace asyncore {
namespace detail {
namespace {

bool is_regular_file(int fd) noexcept {
    struct stat st {};
    return ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

// Read and write interest are separate watches, so each callback knows its
// one direction: no poll-flag translation on the per-message path.
void on_read(int fd, short, void* arg) {
    static_cast<MapCore*>(arg)->dispatch_io(fd, true);
}

void on_write(int fd, short, void* arg) {
    static_cast<MapCore*>(arg)->dispatch_io(fd, false);
}

void on_wake(void* arg) {
    static_cast<MapCore*>(arg)->run_posted();
}

void on_urgent(std::uint64_t token, void* arg) {
    static_cast<MapCore*>(arg)->urgent(token);
}

// The pass timer only ends a pass's wait; it has no work of its own.
void on_pass_timeout(int, short, void*) {}

}  // namespace

MapCore::MapCore(ChannelMap& o) : owner(o) {
    reactor.set_wake(on_wake, this);
    reactor.set_urgent(on_urgent, this);
    pass_timer = reactor.timer(on_pass_timeout, this);
}

// What a higher layer or a timer may still reach goes first, while the
// channels and the reactor exist; the members follow, the reactor last.
MapCore::~MapCore() {
    tasks.reset();
    idle.reset();
    signals.reset();
    drop_timers();
}

// -- Channels -----------------------------------------------------------------

void MapCore::add(Dispatcher& d, int fd) {
    if (fd < 0) throw_errno(EBADF, "add_channel");
    if (static_cast<std::size_t>(fd) >= slots.size()) slots.resize(fd + 64);
    Slot& s = slots[fd];
    if (s.channel == &d) return;
    if (s.channel != nullptr) remove(fd);
    Watch read = reactor.io(fd, watch_read, on_read, this);
    Watch write = reactor.io(fd, watch_write, on_write, this);
    s.channel = &d;
    s.generation++;
    s.read = std::move(read);
    s.write = std::move(write);
    s.always_ready = !d.is_socket_ && is_regular_file(fd);
    if (s.always_ready) always_ready.push_back(fd);
    ++channel_count;
    if (d.idle_) idle_timers().start(*d.idle_);
    if (d.is_socket_) {
        reactor.watch_urgent(fd, (std::uint64_t{s.generation} << 32) | static_cast<unsigned>(fd));
    }
    mark_dirty(fd);
}

void MapCore::remove(int fd) noexcept {
    if (fd < 0 || static_cast<std::size_t>(fd) >= slots.size()) return;
    Slot& s = slots[fd];
    if (s.channel == nullptr) return;
    if (s.channel->is_socket_) reactor.unwatch_urgent(fd);
    if (s.channel->idle_) idle->stop(*s.channel->idle_);
    // Dropping a watch also drops an activation already queued for this
    // pass: that is what keeps a closed channel from seeing another callback.
    s.read.reset();
    s.write.reset();
    if (s.always_ready) {
        std::erase(always_ready, fd);
        s.always_ready = false;
    }
    s.channel = nullptr;
    s.want_read = s.want_write = false;
    s.dirty = false;
    --channel_count;
}

void MapCore::queue_dirty(int fd) noexcept {
    // The unsigned compare also rejects fd < 0.
    if (static_cast<unsigned>(fd) >= slots.size()) return;
    Slot& s = slots[fd];
    if (s.dirty || s.channel == nullptr) return;
    s.dirty = true;
    dirty.push_back(fd);
}

// -- Interest -----------------------------------------------------------------

// Only channels that ran a handler or had a method called are asked again:
// with 10,000 idle connections a pass still costs what its active ones do.
void MapCore::refresh_interest() {
    if (poll_all) {
        for (std::size_t fd = 0; fd < slots.size(); ++fd) {
            if (slots[fd].channel != nullptr) update_interest(slots[fd]);
        }
        for (int fd : dirty)
            slots[fd].dirty = false;
        dirty.clear();
        return;
    }
    // Handlers run from readable()/writable() may dirty more channels; they
    // are checked on the next pass.
    std::vector<int> batch;
    batch.swap(dirty);
    for (int fd : batch) {
        Slot& s = slots[fd];
        if (!s.dirty) continue;
        s.dirty = false;
        if (s.channel != nullptr) update_interest(s);
    }
    batch.clear();
    if (dirty.empty()) dirty.swap(batch);  // keep the capacity
}

namespace {

// An error outside a handler (a failed registration, or readable() /
// writable() throwing) goes through the handlers' routing; whatever escapes
// that (ExitNow, or anything under ErrorPolicy::propagate) leaves loop().
void route_error(MapCore& core, Dispatcher& d, std::exception_ptr error) noexcept {
    try {
        route_failure(d, std::move(error));
    } catch (...) {
        core.request_exit(std::current_exception());
    }
}

// Starts or stops one of a slot's watches. A descriptor the backend refuses
// (epoll gives EPERM for a regular file) is the channel's error, not a
// silent log line.
bool set_interest(MapCore& core, Slot& s, Watch& w, bool& state, bool on) {
    state = on;
    ++core.stats.interest_changes;
    if (s.always_ready) return true;  // the pass activates it itself
    if (!on) {
        w.stop();
        return true;
    }
    if (w.start()) return true;
    int err = errno;
    state = false;
    route_error(core, *s.channel,
                std::make_exception_ptr(
                    std::system_error(err, std::generic_category(), "cannot watch descriptor")));
    return false;
}

}  // namespace

void MapCore::update_interest(Slot& s) {
    Dispatcher& d = *s.channel;
    int fd = d.fd_;
    bool want_read = false;
    bool want_write = false;
    bool run_read = false;
    ++stats.interest_checks;
    try {
        if (d.tls_) [[unlikely]] {
            run_read = DispatcherTls::interest(d, want_read, want_write);
        } else {
            want_read = !d.reads_off_ && d.readable();
            want_write = !d.accepting_ && (d.connecting_ || d.writable());
        }
    } catch (...) {
        interest_failed(d, std::current_exception());
        return;
    }
    if (!apply_interest(fd, d, want_read, want_write)) return;
    // Input OpenSSL already holds will never make the kernel report the
    // socket readable again: queue the read callback for this pass ourselves
    // (libevent then polls without waiting), or the data would sit there
    // until the peer happens to send more.
    if (run_read) slots[fd].read.activate(watch_read);
}

// Registers the interest readable()/writable() gave, if `d` is still the
// channel on `fd` (they may have closed it). False when it is not, or when
// the registration failed (the error went to the channel).
bool MapCore::apply_interest(int fd, Dispatcher& d, bool want_read, bool want_write) {
    if (find(fd) != &d) return false;
    Slot& s = slots[fd];
    if (want_read != s.want_read && !set_interest(*this, s, s.read, s.want_read, want_read)) {
        return false;
    }
    return want_write == s.want_write || set_interest(*this, s, s.write, s.want_write, want_write);
}

// -- Dispatch -----------------------------------------------------------------

namespace {

// Runs one handler call for the channel on `fd`, if it still has one, and
// queues the channel for an interest check. What escapes the handlers'
// routing (ExitNow, or anything under ErrorPolicy::propagate) leaves loop().
template <class Fn>
void run_channel(MapCore& core, int fd, Fn&& fn) noexcept {
    Dispatcher* d = core.find(fd);
    if (d == nullptr) return;
    try {
        fn(*d);
    } catch (...) {
        core.request_exit(std::current_exception());
    }
    core.mark_dirty(fd);
}

}  // namespace

void MapCore::dispatch(int fd, int poll_flags) noexcept {
    run_channel(*this, fd, [&](Dispatcher& d) { readwrite(d, poll_flags); });
}

inline void MapCore::dispatch_io(int fd, bool read_ready) noexcept {
    // libevent calls back only for an event that is added, and remove()
    // deletes both of a slot's events: `fd` indexes a live slot.
    Dispatcher* d = slots[fd].channel;
    if (d == nullptr) [[unlikely]] {
        return;
    }
    dispatching = fd;
    if (d->idle_) [[unlikely]] {
        touch(*d->idle_);
    }
    try {
        if (read_ready) {
            routed(*d, [d] { d->handle_read_event(); });
        } else {
            routed(*d, [d] { d->handle_write_event(); });
        }
    } catch (...) {
        // ExitNow, or a handle_error()/handle_close() failure under
        // ErrorPolicy::propagate: both leave loop().
        request_exit(std::current_exception());
    }
    dispatching = -1;
    settle(fd, d);
}

// The channel that just ran a handler has its interest checked right away,
// while its state is still in cache, rather than going through the dirty
// list: on the per-message path that list cost as much as the handler's own
// bookkeeping. The outcome is the same as checking at the end of the pass
// for everything a channel's own handlers and methods change; a later
// handler in the same pass that calls this channel's methods queues it
// again. TLS channels (whose check may queue a read for this pass) and
// set_poll_all() maps keep the end-of-pass check.
//
// `slots` never shrinks, so `fd` stays in range; it may have grown (the
// handler accepted), so the slot is looked up again after each user call.
void MapCore::settle(int fd, Dispatcher* d) noexcept {
    if (Dispatcher* now = slots[fd].channel; now != d) [[unlikely]] {
        // Closed by its handler. A channel the handler then added on the
        // same (reused) descriptor skipped the dirty list, as mark_dirty()
        // skips the descriptor being dispatched: queue it now.
        if (now != nullptr) queue_dirty(fd);
        return;
    }
    if (d->tls_ || poll_all) [[unlikely]] {
        queue_dirty(fd);
        return;
    }
    slots[fd].dirty = false;  // an earlier entry in the dirty list is now redundant
    ++stats.interest_checks;
    bool want_read;
    bool want_write;
    try {
        want_read = !d->reads_off_ && d->readable();
        want_write = !d->accepting_ && (d->connecting_ || d->writable());
    } catch (...) {
        interest_failed(*d, std::current_exception());
        return;
    }
    const Slot& s = slots[fd];
    if (s.want_read == want_read && s.want_write == want_write) [[likely]] {
        return;  // the common case: nothing to register
    }
    apply_interest(fd, *d, want_read, want_write);
}

// `token` is the descriptor and the slot generation it was added with: a
// report for a socket since replaced on the same descriptor is dropped.
void MapCore::urgent(std::uint64_t token) noexcept {
    int fd = static_cast<int>(token & 0xffffffffu);
    auto generation = static_cast<std::uint32_t>(token >> 32);
    if (find(fd) == nullptr || slots[fd].generation != generation) return;
    // As asyncore, urgent data is reported only to channels being polled.
    if (!slots[fd].want_read && !slots[fd].want_write) return;
    dispatch(fd, POLLPRI);
}

void MapCore::request_exit(std::exception_ptr e) noexcept {
    if (!exit_request) exit_request = std::move(e);
    reactor.break_pass();
}

// asyncore calls readable() and writable() outside any try: under
// ErrorPolicy::propagate their exceptions leave loop() as they do there.
void MapCore::interest_failed(Dispatcher& d, std::exception_ptr e) noexcept {
    if (error_policy == ErrorPolicy::propagate) {
        request_exit(std::move(e));
        return;
    }
    route_error(*this, d, std::move(e));
}

void MapCore::guarded(const char* what, const std::function<void()>& fn) noexcept {
    try {
        fn();
    } catch (const ExitNow&) {
        request_exit(std::current_exception());
    } catch (...) {
        if (error_policy == ErrorPolicy::propagate) {
            request_exit(std::current_exception());
            return;
        }
        std::fprintf(stderr, "error: uncaptured exception in %s (%s)\n", what,
                     describe_exception(std::current_exception()).c_str());
    }
}

// -- Posting ------------------------------------------------------------------

void MapCore::run_posted() noexcept {
    std::vector<std::function<void()>> batch;
    {
        std::lock_guard lock(post_mutex);
        batch.swap(posted);
    }
    for (auto& fn : batch) {
        guarded("posted function", fn);
        posted_count.fetch_sub(1, std::memory_order_acq_rel);
    }
}

// -- The pass -----------------------------------------------------------------

void MapCore::run_pass(Duration timeout, bool bounded) {
    // A busy loop's passes mostly have nothing queued: test before calling.
    if (poll_all || !dirty.empty()) refresh_interest();
    if (!always_ready.empty()) ready_always_ready();
    ++stats.passes;
    bool poll = false;
    if (timeout <= Duration::zero()) {
        poll = true;
    } else if (bounded || poll_all || !dirty.empty()) {
        arm_pass_timer(timeout);
    } else if (!has_work()) {
        // The interest checks closed the last channel: nothing would end
        // an unbounded wait.
        poll = true;
    }
    reactor.run_pass(poll);
    if (!graveyard.empty()) flush_graveyard();
    if (exit_request) std::rethrow_exception(std::exchange(exit_request, nullptr));
}

// An activated watch makes the pass poll instead of waiting: a regular file
// that is wanted keeps the loop busy, exactly as select() does in asyncore.
void MapCore::ready_always_ready() noexcept {
    for (int fd : always_ready) {
        Slot& s = slots[fd];
        if (s.want_read) s.read.activate(watch_read);
        if (s.want_write) s.write.activate(watch_write);
    }
}

// The pass timer is re-armed only when it would end this wait too late, so a
// busy loop does not touch the timer heap on every pass.
void MapCore::arm_pass_timer(Duration timeout) {
    auto now = std::chrono::steady_clock::now();
    auto deadline = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
    if (!pass_timer.pending() || deadline < pass_deadline) {
        pass_timer.start(to_micros(timeout));
        pass_deadline = deadline;
    }
}

// -- Idle timeouts ------------------------------------------------------------

IdleTimers& MapCore::idle_timers() {
    if (!idle) idle = std::make_unique<IdleTimers>(*this);
    return *idle;
}

// -- Ownership ----------------------------------------------------------------

void MapCore::adopt(std::unique_ptr<Dispatcher> d) {
    Dispatcher* raw = d.get();
    raw->owned_ = true;
    if (raw->closed_) {
        graveyard.push_back(std::move(d));
        return;
    }
    owned.emplace(raw, std::move(d));
}

void MapCore::bury(Dispatcher& d) noexcept {
    auto it = owned.find(&d);
    if (it == owned.end()) return;
    graveyard.push_back(std::move(it->second));
    owned.erase(it);
}

void MapCore::flush_graveyard() noexcept {
    while (!graveyard.empty()) {
        // Destructors may close (and bury) other dispatchers.
        auto batch = std::move(graveyard);
        graveyard.clear();
        batch.clear();
    }
}

}  // namespace detail

// -- ChannelMap ---------------------------------------------------------------

ChannelMap::ChannelMap() : core_(std::make_unique<detail::MapCore>(*this)) {}

ChannelMap::~ChannelMap() {
    try {
        close_all(*this, true);
    } catch (...) {
    }
    // Owned dispatchers that never had a socket are still here.
    auto owned = std::move(core_->owned);
    owned.clear();
    core_->flush_graveyard();
}

std::size_t ChannelMap::size() const noexcept {
    return core_->channel_count;
}

Dispatcher* ChannelMap::find(int fd) const noexcept {
    return core_->find(fd);
}

std::vector<Dispatcher*> ChannelMap::channels() const {
    std::vector<Dispatcher*> out;
    out.reserve(core_->channel_count);
    for (const detail::Slot& s : core_->slots) {
        if (s.channel != nullptr) out.push_back(s.channel);
    }
    return out;
}

bool ChannelMap::has_work() const noexcept {
    return core_->has_work();
}

void ChannelMap::run_pass(Duration timeout) {
    core_->run_pass(timeout, true);
}

void ChannelMap::set_poll_all(bool on) noexcept {
    core_->poll_all = on;
}

bool ChannelMap::poll_all() const noexcept {
    return core_->poll_all;
}

std::string_view ChannelMap::backend() const noexcept {
    return core_->reactor.backend();
}

void ChannelMap::set_error_policy(ErrorPolicy policy) noexcept {
    core_->error_policy = policy;
}

ErrorPolicy ChannelMap::error_policy() const noexcept {
    return core_->error_policy;
}

TimerHandle ChannelMap::call_later(Duration delay, std::function<void()> fn) {
    return core_->schedule(delay, std::move(fn));
}

void ChannelMap::post(std::function<void()> fn) {
    bool was_empty;
    {
        std::lock_guard lock(core_->post_mutex);
        was_empty = core_->posted.empty();
        core_->posted.push_back(std::move(fn));
        core_->posted_count.fetch_add(1, std::memory_order_acq_rel);
    }
    // One wake-up per batch: later posts find the queue non-empty.
    if (was_empty) core_->reactor.wake();
}

const LoopStats& ChannelMap::stats() const noexcept {
    return core_->stats;
}

ChannelMap& socket_map() {
    thread_local ChannelMap map;
    return map;
}

void loop(Duration timeout, ChannelMap& map, std::optional<std::size_t> count) {
    if (!count) {
        // Passes that are not counted need no timer to end them: a pass that
        // only timed out would find nothing to do (no channel is dirty, no
        // timer due) and start the same wait again. See MapCore::run_pass.
        detail::MapCore& core = map.core();
        while (map.has_work())
            core.run_pass(timeout, false);
        return;
    }
    for (std::size_t n = 0; n < *count && map.has_work(); ++n)
        map.run_pass(timeout);
}

void close_all(ChannelMap& map, bool ignore_all) {
    for (Dispatcher* d : map.channels()) {
        try {
            d->close();
        } catch (const std::system_error& e) {
            if (e.code().value() != EBADF && !ignore_all) throw;
        } catch (const ExitNow&) {
            throw;
        } catch (...) {
            if (!ignore_all) throw;
        }
    }
    // asyncore clears the map even when a close() failed and was ignored: a
    // channel whose close() threw must not keep loop() running.
    for (Dispatcher* d : map.channels())
        d->del_channel();
}

void close_all_when_done(ChannelMap& map, Duration grace) {
    for (Dispatcher* d : map.channels()) {
        // A handler of an earlier channel may have closed this one.
        if (map.find(d->fileno()) != d) continue;
        // handle_close() is a handler: what it throws goes to handle_error().
        detail::routed(*d, [d] {
            if (d->accepting()) {
                d->close();
            } else {
                d->close_when_done();
            }
        });
    }
    if (map.empty()) return;
    map.core().schedule(
        grace, [&map] { close_all(map, true); }, false);
}

TimerHandle call_later(Duration delay, std::function<void()> fn) {
    return socket_map().call_later(delay, std::move(fn));
}

}  // namespace asyncore
