// Router: one connection's side of sharding (resp_server --threads N > 1).
// It runs each request on the shard that owns its keys and keeps the
// connection's replies in request order however the shards interleave.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "command_table.hpp"
#include "commands.hpp"
#include "shard.hpp"

namespace resp {

class RespChannel;

/// What a reply posted back from another shard finds: the channel, or
/// nullptr once it is gone. Read and written only on the connection's thread.
struct ReplyLink {
    RespChannel* channel;
};

/// Routes the requests of one connection on shard `home`.
///
/// A request whose keys `home` owns (or that names no key) runs at once, as
/// with one thread. A request for another shard's key is queued for that
/// shard, and the queues are posted once per read (send()). MGET, MSET, DEL
/// and EXISTS over keys of several shards are split per shard; KEYS, DBSIZE,
/// FLUSHDB and FLUSHALL run on every shard; the parts' replies combine into
/// redis' reply (see Gather).
///
/// Ordering: each reply has a slot in request order; replies from other
/// shards fill their slots as they arrive and are released only in order.
/// Per key, requests run in the order the connection sent them, because a
/// key has one owner and the posts to one shard run in order.
///
/// Atomicity: a request on one shard is atomic, as in redis. A request split
/// over shards is atomic per shard only: another connection may see MSET's
/// keys on one shard set before those on another, or MGET may read one shard
/// before and another after a concurrent MSET. The reply is sent once every
/// shard has done its part.
class Router {
  public:
    Router(Cluster& cluster, Shard& home, RespChannel& channel);
    /// Tells replies still in flight that the channel is gone.
    ~Router();
    Router(const Router&) = delete;
    Router& operator=(const Router&) = delete;

    /// Runs or forwards one request. Replies produced here go to `direct`
    /// while no earlier reply is outstanding, else to the slot queue.
    After run(Args argv, std::string& direct);
    /// The buffer the next reply produced on this thread belongs in.
    std::string& reply_buffer(std::string& direct);
    /// Posts the requests queued for other shards.
    void send();
    /// Moves the replies that are complete and next in order to `direct`.
    void drain(std::string& direct);
    /// Stores replies that came back from a shard.
    void deliver(const ReplyBatch& replies);
    /// Replies not yet released (outstanding, or waiting behind one).
    std::size_t pending() const noexcept { return slots_.size(); }

  private:
    struct Slot {
        std::string reply;
        bool ready = false;
        Gather gather = Gather::none;
        std::size_t parts_left = 0;
        std::vector<std::string> parts;         ///< one per shard
        std::vector<std::uint32_t> key_shards;  ///< MGET: each key's shard
    };

    After run_here(const CommandSpec* spec, Args argv, std::string& direct);
    After split(const CommandSpec& spec, Args argv, std::string& direct);
    After everywhere(const CommandSpec& spec, Args argv);
    void forward(std::size_t shard, Args argv);
    Slot& open_slot(std::uint64_t& seq);
    void run_part(Slot& slot, std::uint64_t seq, std::size_t shard, Args argv);

    Cluster& cluster_;
    Shard& home_;
    std::shared_ptr<ReplyLink> link_;
    std::deque<Slot> slots_;
    std::uint64_t front_seq_ = 0;       ///< the sequence number of slots_.front()
    std::vector<RequestBatch> outbox_;  ///< per shard, until send()
    std::vector<std::uint32_t> key_shards_;
    std::vector<std::string_view> part_args_;
};

}  // namespace resp
