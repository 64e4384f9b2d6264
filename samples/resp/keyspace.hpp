// The keyspace of resp_server: binary-safe string keys and values, each with
// an optional expiry time, expired lazily on access and by a bounded sweep.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace resp {

/// Milliseconds since the Unix epoch (redis' mstime()).
std::int64_t now_ms() noexcept;

/// One value and its expiry (no_expiry when persistent).
struct Entry {
    static constexpr std::int64_t no_expiry = -1;
    std::string value;
    std::int64_t expire_at = no_expiry;  ///< Unix time in milliseconds
    std::size_t volatile_slot = 0;       ///< index in Keyspace's volatile list when it expires
};

/// A single database. Every lookup through get() treats an expired key as
/// missing and removes it (lazy expiry); sweep() removes expired keys nobody
/// asks for. Not thread-safe: one keyspace per loop thread.
class Keyspace {
  public:
    /// The live entry for `key`, or nullptr if absent or expired (then removed).
    Entry* get(std::string_view key);
    /// A new empty, persistent entry for `key`, which must be absent (get()
    /// returned nullptr).
    Entry& create(std::string_view key);
    /// Removes `key`; true if it was present and live.
    bool erase(std::string_view key);
    /// Sets or clears (Entry::no_expiry) the expiry of an entry got from this keyspace.
    void set_expiry(std::string_view key, Entry& entry, std::int64_t expire_at);
    /// Drops every key.
    void clear();
    /// Keys stored, including expired ones not yet removed (as redis' DBSIZE).
    std::size_t size() const noexcept { return map_.size(); }
    /// Calls `fn` with every live key.
    void for_each_live_key(const std::function<void(const std::string&)>& fn) const;
    /// Removes expired keys, sampling the keys that have an expiry: at most
    /// `max_rounds` rounds of `per_round` samples, continuing only while more
    /// than a quarter of a round's samples had expired (redis' active expiry).
    /// Returns the number removed.
    std::size_t sweep(std::size_t per_round = 20, int max_rounds = 16);
    /// Keys that have an expiry.
    std::size_t volatile_count() const noexcept { return volatile_.size(); }

  private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    using Map = std::unordered_map<std::string, Entry, Hash, std::equal_to<>>;

    void erase_it(Map::iterator it);
    void unlist_volatile(Entry& entry);

    Map map_;
    // Keys with an expiry, as pointers to the map's own nodes (node-based
    // storage keeps them stable across rehashing): sampling and removal are
    // O(1), which keeps every sweep tick's work bounded.
    std::vector<Map::value_type*> volatile_;
    std::minstd_rand rng_;
};

}  // namespace resp
