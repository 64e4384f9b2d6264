// on_signal(): a process-wide registry of the maps watching each signal,
// filled by the maps on their threads and read by the signal handler, which
// only sets bits and writes a byte to each watching map's pipe.

#include <asyncore/loop.hpp>
#include <asyncore/signals.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <system_error>

#include <asyncore/error.hpp>

#include "detail/map_core.hpp"
#include "detail/map_signals.hpp"

namespace asyncore {
namespace detail {
namespace {

constexpr int max_signo = 64;
constexpr std::size_t max_slots = 128;

// One map's delivery point. The pipe lives as long as the process: a handler
// that read a slot just as its map let go of it writes into a pipe that no
// other descriptor can have taken the number of. A later map reuses the slot
// and its pipe (draining what is left in it).
struct SignalSlot {
    std::atomic<std::uint64_t> interest{0};  ///< the signals its map watches
    std::atomic<std::uint64_t> pending{0};   ///< delivered, not yet dispatched
    int read_fd = -1;
    int write_fd = -1;
    bool taken = false;  ///< under the registry mutex
};

struct Registry {
    std::mutex mutex;
    std::array<SignalSlot, max_slots> slots;
    std::array<int, max_signo + 1> watchers{};  ///< maps watching each signal
    std::array<struct sigaction, max_signo + 1> replaced{};
};

// Set once, before any handler is installed, and never freed: the handler
// may run at any time on any thread.
std::atomic<Registry*> the_registry{nullptr};

Registry& registry() {
    static Registry* r = [] {
        auto* made = new Registry;
        the_registry.store(made, std::memory_order_release);
        return made;
    }();
    return *r;
}

std::uint64_t bit(int signo) noexcept {
    return std::uint64_t{1} << (signo - 1);
}

// Async-signal-safe: atomics that are lock-free, and write().
extern "C" void on_process_signal(int signo) {
    Registry* r = the_registry.load(std::memory_order_acquire);
    if (r == nullptr || signo < 1 || signo > max_signo) return;
    const int saved_errno = errno;
    for (SignalSlot& s : r->slots) {
        if ((s.interest.load(std::memory_order_acquire) & bit(signo)) == 0) continue;
        s.pending.fetch_or(bit(signo), std::memory_order_acq_rel);
        const char one = 1;
        (void)!::write(s.write_fd, &one, 1);  // a full pipe already wakes the map
    }
    errno = saved_errno;
}

static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "the signal handler needs lock-free 64-bit atomics");

void check_signo(int signo) {
    if (signo < 1 || signo > max_signo || signo == SIGKILL || signo == SIGSTOP) {
        throw std::invalid_argument("on_signal: signal " + std::to_string(signo) +
                                    " cannot be watched");
    }
}

// The first watch of `signo` in the process installs the handler.
void add_watcher(Registry& r, int signo) {
    if (r.watchers[signo]++ > 0) return;
    struct sigaction sa {};
    sa.sa_handler = on_process_signal;
    sigfillset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (::sigaction(signo, &sa, &r.replaced[signo]) < 0) {
        int err = errno;
        --r.watchers[signo];
        throw_errno(err, "sigaction");
    }
}

// The last watch of `signo` in the process puts the old disposition back.
void remove_watcher(Registry& r, int signo) noexcept {
    if (--r.watchers[signo] > 0) return;
    (void)::sigaction(signo, &r.replaced[signo], nullptr);
}

void drain(int fd) noexcept {
    char buf[256];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
}

}  // namespace

MapSignals::~MapSignals() {
    for (auto& [signo, subs] : watches_)
        for (auto& s : subs)
            s->owner = nullptr;
    if (slot_ >= 0) {
        Registry& r = registry();
        std::lock_guard lock(r.mutex);
        for (auto& entry : watches_)
            remove_watcher(r, entry.first);
        r.slots[static_cast<std::size_t>(slot_)].interest.store(0, std::memory_order_release);
    }
    watches_.clear();
    release_slot();
}

void MapSignals::claim_slot() {
    if (slot_ >= 0) return;
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    for (std::size_t i = 0; i < max_slots; ++i) {
        SignalSlot& s = r.slots[i];
        if (s.taken) continue;
        if (s.read_fd < 0) {
            int fds[2];
            if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) throw_errno(errno, "on_signal: pipe");
            s.read_fd = fds[0];
            s.write_fd = fds[1];
        }
        drain(s.read_fd);
        s.pending.store(0, std::memory_order_release);
        Watch w = core_.reactor.io(s.read_fd, watch_read, on_wake, this);
        if (!w.start()) throw_errno(errno, "on_signal: watch");
        wake_watch_ = std::move(w);
        s.taken = true;
        slot_ = static_cast<int>(i);
        return;
    }
    throw std::runtime_error("on_signal: more than 128 maps watch signals");
}

void MapSignals::release_slot() noexcept {
    if (slot_ < 0) return;
    wake_watch_.reset();  // freed once not running: this may be its callback
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    r.slots[static_cast<std::size_t>(slot_)].taken = false;
    slot_ = -1;
}

std::shared_ptr<SignalSubscription> MapSignals::watch(int signo, std::function<void(int)> fn) {
    check_signo(signo);
    auto sub = std::make_shared<SignalSubscription>();
    sub->owner = this;
    sub->signo = signo;
    sub->fn = std::move(fn);
    claim_slot();
    auto& subs = watches_[signo];
    try {
        subs.reserve(subs.size() + 1);  // nothing below throws once installed
        if (subs.empty()) {
            Registry& r = registry();
            std::lock_guard lock(r.mutex);
            add_watcher(r, signo);
            r.slots[static_cast<std::size_t>(slot_)].interest.fetch_or(bit(signo),
                                                                       std::memory_order_release);
        }
    } catch (...) {
        if (subs.empty()) watches_.erase(signo);
        if (watches_.empty()) release_slot();
        throw;
    }
    subs.push_back(sub);
    return sub;
}

void MapSignals::cancel(SignalSubscription& sub) noexcept {
    sub.owner = nullptr;
    auto it = watches_.find(sub.signo);
    if (it == watches_.end()) return;
    std::erase_if(it->second, [&](const auto& p) { return p.get() == &sub; });
    if (!it->second.empty()) return;
    const int signo = it->first;
    watches_.erase(it);
    {
        Registry& r = registry();
        std::lock_guard lock(r.mutex);
        r.slots[static_cast<std::size_t>(slot_)].interest.fetch_and(~bit(signo),
                                                                    std::memory_order_release);
        remove_watcher(r, signo);
    }
    if (watches_.empty()) release_slot();
}

void MapSignals::on_wake(int fd, short, void* arg) {
    drain(fd);
    static_cast<MapSignals*>(arg)->dispatch();
}

// The pipe is drained before the bits are taken: a signal arriving between
// the two leaves its bit for this dispatch and a byte for a later, empty one.
void MapSignals::dispatch() noexcept {
    if (slot_ < 0) return;
    SignalSlot& s = registry().slots[static_cast<std::size_t>(slot_)];
    std::uint64_t pending = s.pending.exchange(0, std::memory_order_acq_rel);
    for (int signo = 1; signo <= max_signo && pending != 0; ++signo) {
        if ((pending & bit(signo)) == 0) continue;
        pending &= ~bit(signo);
        auto it = watches_.find(signo);
        if (it == watches_.end()) continue;
        // A function may cancel itself or others, or add watches.
        auto subs = it->second;
        for (auto& sub : subs) {
            if (sub->owner != this) continue;
            core_.guarded("signal handler", [&] { sub->fn(signo); });
        }
    }
}

}  // namespace detail

SignalWatch& SignalWatch::operator=(SignalWatch&& o) noexcept {
    if (this != &o) {
        cancel();
        sub_ = std::move(o.sub_);
    }
    return *this;
}

void SignalWatch::cancel() noexcept {
    if (!sub_) return;
    if (sub_->owner != nullptr) sub_->owner->cancel(*sub_);
    sub_.reset();
}

SignalWatch ChannelMap::on_signal(int signo, std::function<void(int)> fn) {
    detail::MapCore& c = core();
    if (!c.signals) c.signals = std::make_unique<detail::MapSignals>(c);
    return SignalWatch(c.signals->watch(signo, std::move(fn)));
}

SignalWatch on_signal(int signo, std::function<void(int)> fn) {
    return socket_map().on_signal(signo, std::move(fn));
}

}  // namespace asyncore
