// The task layer's per-map state: the ready queue of coroutines to resume
// and the list of running tasks (so that a dying map can unwind them).
#pragma once

#include <coroutine>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <asyncore/detail/watch.hpp>
#include <asyncore/task.hpp>

#include "map_core.hpp"

namespace asyncore::detail {

/// How pool threads reach a map: cleared (under the mutex) when the map's
/// scheduler dies, so a late result is dropped instead of posted to nothing.
struct PostLink {
    std::mutex mutex;
    ChannelMap* map = nullptr;
};

struct Scheduler final : MapCore::Extension {
    explicit Scheduler(MapCore& core);
    /// Cancels every task still running and resumes it until it ends.
    ~Scheduler() override;

    /// Queues `h` (running in task `t`) to be resumed from the loop. Never
    /// resumes inline.
    void push(std::coroutine_handle<> h, TaskCore* t);
    /// Resumes the coroutines queued before the call (one batch per pass, so
    /// that tasks yielding to each other cannot starve dispatchers).
    void drain() noexcept;

    void link(TaskCore& t) noexcept;
    void unlink(TaskCore& t) noexcept;
    /// Called with the task timer's event when it fires.
    static void on_timer(int, short, void* arg);

    MapCore& core;
    Watch ready_watch;  ///< activated while the ready queue has work
    using Entry = std::pair<std::coroutine_handle<>, TaskCore*>;
    std::vector<Entry> ready;
    std::vector<Entry> batch;
    TaskCore* head = nullptr;
    bool closing = false;
    std::shared_ptr<PostLink> post_link;

  private:
    void cancel_all() noexcept;
};

/// The scheduler of `map`, created on first use.
Scheduler& scheduler_of(ChannelMap& map);

}  // namespace asyncore::detail
