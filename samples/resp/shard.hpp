// Shared-nothing sharding for resp_server --threads N (Seastar's model):
// each thread runs its own loop over its own ChannelMap and owns one shard
// of the keyspace. A key belongs to exactly one shard, and only that shard's
// thread ever touches it; requests for it from connections on other threads
// travel there and back with ChannelMap::post, the one thread-safe call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <asyncore/loop.hpp>

#include "commands.hpp"
#include "keyspace.hpp"
#include "server_config.hpp"

namespace resp {

/// One thread's part of the server: its loop's map, its keys, its commands.
/// The map outlives the thread that runs it (the Cluster owns it), so a
/// function posted to a shard whose loop has already ended is destroyed
/// unrun rather than posted to freed memory.
struct Shard {
    Shard(std::size_t index, ServerConfig& config) : index(index), commands(db, config) {}
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;

    std::size_t index;
    asyncore::ChannelMap map;
    Keyspace db;
    Commands commands;
    /// Set by the shard's thread before serving: closes its listener and
    /// channels and stops its timers, so its loop ends. Runs on that thread.
    std::function<void()> stop;
    std::vector<std::string_view> scratch;  ///< argument views while serving a batch
};

/// Every shard, created up front by the main thread and destroyed after
/// every shard thread has been joined.
class Cluster {
  public:
    explicit Cluster(std::size_t shards);

    std::size_t size() const noexcept { return shards_.size(); }
    Shard& shard(std::size_t i) noexcept { return *shards_[i]; }
    /// The shard that owns `key`.
    std::size_t owner(std::string_view key) const noexcept {
        return std::hash<std::string_view>{}(key) % shards_.size();
    }
    /// The settings every shard's commands read and CONFIG SET changes.
    ServerConfig& config() noexcept { return config_; }
    /// Runs `fn` on every shard's thread, with that shard (a post to each).
    /// Safe from any thread.
    void post_to_all(std::function<void(Shard&)> fn);
    /// Asks every shard's loop to stop. Safe from any thread.
    void stop_all();

  private:
    ServerConfig config_;
    std::vector<std::unique_ptr<Shard>> shards_;
};

/// The part index of a request forwarded whole rather than split by shard.
constexpr std::uint32_t whole_request = UINT32_MAX;

/// Requests one connection sends to one other shard, collected during a
/// read and posted together: arguments back to back in one buffer, so a
/// batch costs a few allocations however many requests it carries.
struct RequestBatch {
    struct Item {
        std::uint64_t seq;   ///< the connection's reply slot
        std::uint32_t part;  ///< the shard's part of a split request, or whole_request
        std::uint32_t argc;
    };
    std::string bytes;
    std::vector<std::size_t> ends;  ///< one past each argument's last byte
    std::vector<Item> items;

    void add(std::uint64_t seq, std::uint32_t part, Args argv);
    bool empty() const noexcept { return items.empty(); }
};

/// The replies to a RequestBatch, in its order, back to back.
struct ReplyBatch {
    struct Item {
        std::uint64_t seq;
        std::uint32_t part;
        std::size_t end;  ///< one past the reply's last byte
    };
    std::string bytes;
    std::vector<Item> items;
};

/// Runs every request of `batch` on `shard` (on its thread) and returns the replies.
ReplyBatch serve_batch(Shard& shard, const RequestBatch& batch);

}  // namespace resp
