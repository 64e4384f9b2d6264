// The signal watches of one map (signals.hpp): its slot in the process-wide
// registry the signal handler reads, the event on that slot's wake-up pipe,
// and the functions to run per signal.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include <asyncore/detail/watch.hpp>

namespace asyncore::detail {

struct MapCore;
class MapSignals;

/// One watch: held by its SignalWatch and by the map's list while active.
struct SignalSubscription {
    MapSignals* owner = nullptr;  ///< null once cancelled or the map is gone
    int signo = 0;
    std::function<void(int)> fn;
};

class MapSignals {
  public:
    explicit MapSignals(MapCore& core) noexcept : core_(core) {}
    /// Ends every watch; gives the slot back.
    ~MapSignals();
    MapSignals(const MapSignals&) = delete;
    MapSignals& operator=(const MapSignals&) = delete;

    std::shared_ptr<SignalSubscription> watch(int signo, std::function<void(int)> fn);
    void cancel(SignalSubscription& s) noexcept;

  private:
    static void on_wake(int fd, short, void* arg);
    void dispatch() noexcept;
    void claim_slot();
    void release_slot() noexcept;

    MapCore& core_;
    int slot_ = -1;
    Watch wake_watch_;
    std::map<int, std::vector<std::shared_ptr<SignalSubscription>>> watches_;
};

}  // namespace asyncore::detail
