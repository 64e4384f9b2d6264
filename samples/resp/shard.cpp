#include "shard.hpp"

namespace resp {

Cluster::Cluster(std::size_t shards) {
    shards_.reserve(shards);
    for (std::size_t i = 0; i < shards; ++i)
        shards_.push_back(std::make_unique<Shard>(i, config_));
}

void Cluster::post_to_all(std::function<void(Shard&)> fn) {
    for (auto& s : shards_) {
        Shard* shard = s.get();
        shard->map.post([shard, fn] { fn(*shard); });
    }
}

void Cluster::stop_all() {
    post_to_all([](Shard& shard) {
        if (shard.stop) shard.stop();
    });
}

void RequestBatch::add(std::uint64_t seq, std::uint32_t part, Args argv) {
    for (std::string_view arg : argv) {
        bytes.append(arg);
        ends.push_back(bytes.size());
    }
    items.push_back({seq, part, static_cast<std::uint32_t>(argv.size())});
}

ReplyBatch serve_batch(Shard& shard, const RequestBatch& batch) {
    ReplyBatch replies;
    replies.items.reserve(batch.items.size());
    std::size_t arg = 0, start = 0;
    for (const RequestBatch::Item& item : batch.items) {
        shard.scratch.clear();
        for (std::uint32_t k = 0; k < item.argc; ++k, ++arg) {
            shard.scratch.emplace_back(batch.bytes.data() + start, batch.ends[arg] - start);
            start = batch.ends[arg];
        }
        // Only key commands travel, and none of them closes the connection.
        (void)shard.commands.execute(shard.scratch, replies.bytes);
        replies.items.push_back({item.seq, item.part, replies.bytes.size()});
    }
    return replies;
}

}  // namespace resp
