// The settings CONFIG SET changes while resp_server runs. One instance
// serves every shard's thread, so its values are atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

namespace resp {

struct ServerConfig {
    /// redis' "timeout": a connection with no traffic either way for this
    /// many seconds is closed; 0, the default, disables it.
    std::atomic<std::int64_t> timeout{0};
    /// Runs on the thread of a CONFIG SET that changed a value, after the
    /// change, for what a stored value alone would not reach: the timeout
    /// of the connections already open.
    std::function<void()> changed;
};

}  // namespace resp
