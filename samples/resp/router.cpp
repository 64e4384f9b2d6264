#include "router.hpp"

#include <algorithm>

#include "reply.hpp"
#include "resp_channel.hpp"

namespace resp {
namespace {

// The integer of a ":N" reply; false for anything else (an error).
bool integer_reply(std::string_view reply, std::int64_t& n) {
    if (reply.size() < 3 || reply[0] != ':') return false;
    return parse_int64(reply.substr(1, reply.size() - 3), n);
}

// An array reply's element count and the bytes after its header.
bool array_reply(std::string_view reply, std::int64_t& count, std::string_view& body) {
    std::size_t eol = reply.find("\r\n");
    if (reply.empty() || reply[0] != '*' || eol == std::string_view::npos) return false;
    body = reply.substr(eol + 2);
    return parse_int64(reply.substr(1, eol - 1), count);
}

// The elements of MGET's reply: bulk strings and nulls.
bool bulk_items(std::string_view reply, std::vector<std::string_view>& items) {
    std::int64_t count = 0;
    std::string_view body;
    if (!array_reply(reply, count, body)) return false;
    for (std::int64_t i = 0; i < count; ++i) {
        std::size_t eol = body.find("\r\n");
        std::int64_t len = 0;
        if (eol == std::string_view::npos || !parse_int64(body.substr(1, eol - 1), len)) {
            return false;
        }
        std::size_t size = eol + 2 + (len < 0 ? 0 : static_cast<std::size_t>(len) + 2);
        items.push_back(body.substr(0, size));
        body.remove_prefix(size);
    }
    return true;
}

// Each part's reply is one shard's; parts of shards not involved are empty.
// A part that is not the expected kind (an error) becomes the reply.
std::string combine_sum(const std::vector<std::string>& parts) {
    std::int64_t total = 0;
    for (const std::string& p : parts) {
        std::int64_t n = 0;
        if (p.empty()) continue;
        if (!integer_reply(p, n)) return p;
        total += n;
    }
    std::string out;
    add_int(out, total);
    return out;
}

std::string combine_concat(const std::vector<std::string>& parts) {
    std::int64_t total = 0;
    std::string body;
    for (const std::string& p : parts) {
        std::int64_t n = 0;
        std::string_view items;
        if (p.empty()) continue;
        if (!array_reply(p, n, items)) return p;
        total += n;
        body.append(items);
    }
    std::string out;
    add_array(out, static_cast<std::size_t>(total));
    return out.append(body);
}

std::string combine_in_key_order(const std::vector<std::string>& parts,
                                 const std::vector<std::uint32_t>& key_shards) {
    std::vector<std::vector<std::string_view>> items(parts.size());
    for (std::size_t s = 0; s < parts.size(); ++s) {
        if (!parts[s].empty() && !bulk_items(parts[s], items[s])) return parts[s];
    }
    std::vector<std::size_t> next(parts.size(), 0);
    std::string out;
    add_array(out, key_shards.size());
    for (std::uint32_t s : key_shards)
        out.append(items[s][next[s]++]);
    return out;
}

std::string combine(Gather gather, const std::vector<std::string>& parts,
                    const std::vector<std::uint32_t>& key_shards) {
    switch (gather) {
        case Gather::sum:
            return combine_sum(parts);
        case Gather::concat:
            return combine_concat(parts);
        case Gather::in_key_order:
            return combine_in_key_order(parts, key_shards);
        case Gather::same:
        case Gather::none:
            break;
    }
    auto first = std::find_if(parts.begin(), parts.end(), [](auto& p) { return !p.empty(); });
    return first == parts.end() ? std::string() : *first;
}

}  // namespace

Router::Router(Cluster& cluster, Shard& home, RespChannel& channel)
    : cluster_(cluster),
      home_(home),
      link_(std::make_shared<ReplyLink>(ReplyLink{&channel})),
      outbox_(cluster.size()) {}

Router::~Router() {
    link_->channel = nullptr;
}

After Router::run(Args argv, std::string& direct) {
    const CommandSpec* spec = Commands::resolve(argv);
    // Unknown commands and wrong arities get the same error on any shard.
    if (!spec || !spec->handler || !arity_ok(*spec, argv.size())) {
        return run_here(spec, argv, direct);
    }
    if (spec->gather != Gather::none) return split(*spec, argv, direct);
    if (spec->first_key != 1) return run_here(spec, argv, direct);
    std::size_t owner = cluster_.owner(argv[1]);
    if (owner == home_.index) return run_here(spec, argv, direct);
    forward(owner, argv);
    return After::keep_open;
}

After Router::run_here(const CommandSpec* spec, Args argv, std::string& direct) {
    return home_.commands.execute(spec, argv, reply_buffer(direct));
}

std::string& Router::reply_buffer(std::string& direct) {
    if (slots_.empty()) return direct;
    // Replies made here while one is outstanding wait behind it, sharing a
    // slot with any made here just before.
    if (!slots_.back().ready) slots_.emplace_back().ready = true;
    return slots_.back().reply;
}

Router::Slot& Router::open_slot(std::uint64_t& seq) {
    seq = front_seq_ + slots_.size();
    return slots_.emplace_back();
}

void Router::forward(std::size_t shard, Args argv) {
    std::uint64_t seq = 0;
    open_slot(seq);
    outbox_[shard].add(seq, whole_request, argv);
}

// MGET, MSET, DEL, EXISTS: each shard gets the request with its own keys.
After Router::split(const CommandSpec& spec, Args argv, std::string& direct) {
    if (spec.first_key == 0) return everywhere(spec, argv);
    auto step = static_cast<std::size_t>(spec.key_step);
    // MSET's odd argument count: its error needs no shard.
    if ((argv.size() - 1) % step != 0) return run_here(&spec, argv, direct);
    key_shards_.clear();
    for (std::size_t i = 1; i < argv.size(); i += step)
        key_shards_.push_back(static_cast<std::uint32_t>(cluster_.owner(argv[i])));
    std::uint32_t first = key_shards_[0];
    if (std::all_of(key_shards_.begin(), key_shards_.end(), [&](auto s) { return s == first; })) {
        if (first == home_.index) return run_here(&spec, argv, direct);
        forward(first, argv);
        return After::keep_open;
    }
    std::uint64_t seq = 0;
    Slot& slot = open_slot(seq);
    slot.gather = spec.gather;
    slot.parts.resize(cluster_.size());
    slot.key_shards = key_shards_;
    for (std::size_t s = 0; s < cluster_.size(); ++s) {
        part_args_.assign(1, argv[0]);
        for (std::size_t k = 0; k < key_shards_.size(); ++k) {
            if (key_shards_[k] != s) continue;
            for (std::size_t j = 0; j < step; ++j)
                part_args_.push_back(argv[1 + k * step + j]);
        }
        if (part_args_.size() > 1) run_part(slot, seq, s, part_args_);
    }
    return After::keep_open;
}

// KEYS, DBSIZE, FLUSHDB, FLUSHALL: every shard runs the request.
After Router::everywhere(const CommandSpec& spec, Args argv) {
    std::uint64_t seq = 0;
    Slot& slot = open_slot(seq);
    slot.gather = spec.gather;
    slot.parts.resize(cluster_.size());
    for (std::size_t s = 0; s < cluster_.size(); ++s)
        run_part(slot, seq, s, argv);
    return After::keep_open;
}

// The home shard's part runs now, in order with this connection's other
// requests on it; the others are queued for their shards.
void Router::run_part(Slot& slot, std::uint64_t seq, std::size_t shard, Args argv) {
    if (shard == home_.index) {
        (void)home_.commands.execute(argv, slot.parts[shard]);
    } else {
        ++slot.parts_left;
        outbox_[shard].add(seq, static_cast<std::uint32_t>(shard), argv);
    }
}

void Router::send() {
    for (std::size_t s = 0; s < outbox_.size(); ++s) {
        if (outbox_[s].empty()) continue;
        Shard& target = cluster_.shard(s);
        Shard& home = home_;
        target.map.post([&target, &home, link = link_, batch = std::move(outbox_[s])] {
            home.map.post([link, replies = serve_batch(target, batch)] {
                if (link->channel) link->channel->replies_arrived(replies);
            });
        });
        outbox_[s] = RequestBatch();
    }
}

void Router::deliver(const ReplyBatch& replies) {
    std::size_t start = 0;
    for (const ReplyBatch::Item& item : replies.items) {
        std::string_view reply(replies.bytes.data() + start, item.end - start);
        start = item.end;
        Slot& slot = slots_[item.seq - front_seq_];
        if (item.part == whole_request) {
            slot.reply.assign(reply);
            slot.ready = true;
            continue;
        }
        slot.parts[item.part].assign(reply);
        if (--slot.parts_left == 0) {
            slot.reply = combine(slot.gather, slot.parts, slot.key_shards);
            slot.ready = true;
        }
    }
}

void Router::drain(std::string& direct) {
    while (!slots_.empty() && slots_.front().ready) {
        direct.append(slots_.front().reply);
        slots_.pop_front();
        ++front_seq_;
    }
}

}  // namespace resp
