#include "keyspace.hpp"

#include <algorithm>
#include <chrono>

namespace resp {

std::int64_t now_ms() noexcept {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

namespace {
bool expired(const Entry& e, std::int64_t now) {
    return e.expire_at != Entry::no_expiry && e.expire_at <= now;
}
}  // namespace

Entry* Keyspace::get(std::string_view key) {
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    // The clock is read only for keys that can expire: most lookups skip it.
    if (it->second.expire_at != Entry::no_expiry && expired(it->second, now_ms())) {
        erase_it(it);
        return nullptr;
    }
    return &it->second;
}

Entry& Keyspace::create(std::string_view key) {
    return map_.emplace(std::string(key), Entry{}).first->second;
}

bool Keyspace::erase(std::string_view key) {
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    bool live = !expired(it->second, now_ms());
    erase_it(it);
    return live;
}

void Keyspace::set_expiry(std::string_view key, Entry& entry, std::int64_t expire_at) {
    if (expire_at == Entry::no_expiry) {
        if (entry.expire_at != Entry::no_expiry) unlist_volatile(entry);
    } else if (entry.expire_at == Entry::no_expiry) {
        entry.volatile_slot = volatile_.size();
        volatile_.push_back(&*map_.find(key));
    }
    entry.expire_at = expire_at;
}

void Keyspace::clear() {
    map_.clear();
    volatile_.clear();
}

void Keyspace::for_each_live_key(const std::function<void(const std::string&)>& fn) const {
    std::int64_t now = now_ms();
    for (const auto& [key, entry] : map_) {
        if (!expired(entry, now)) fn(key);
    }
}

std::size_t Keyspace::sweep(std::size_t per_round, int max_rounds) {
    std::size_t removed = 0;
    std::int64_t now = now_ms();
    for (int round = 0; round < max_rounds && !volatile_.empty(); ++round) {
        std::size_t samples = std::min(per_round, volatile_.size());
        std::size_t hits = 0;
        for (std::size_t i = 0; i < samples && !volatile_.empty(); ++i) {
            Map::value_type* node = volatile_[rng_() % volatile_.size()];
            if (expired(node->second, now)) {
                erase_it(map_.find(node->first));
                ++hits;
            }
        }
        removed += hits;
        if (hits * 4 <= samples) break;
    }
    return removed;
}

void Keyspace::erase_it(Map::iterator it) {
    if (it->second.expire_at != Entry::no_expiry) unlist_volatile(it->second);
    map_.erase(it);
}

void Keyspace::unlist_volatile(Entry& entry) {
    // Swap-remove: move the last listed key into the freed slot.
    std::size_t slot = entry.volatile_slot;
    Map::value_type* last = volatile_.back();
    volatile_[slot] = last;
    last->second.volatile_slot = slot;
    volatile_.pop_back();
    entry.expire_at = Entry::no_expiry;
}

}  // namespace resp
