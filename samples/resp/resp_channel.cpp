#include "resp_channel.hpp"

#include "command_table.hpp"
#include "reply.hpp"

namespace resp {
namespace {

// Buffers grown past this by one large request are released afterwards,
// so an idle connection does not keep a big request's memory.
constexpr std::size_t keep_capacity = 1024 * 1024;
// Replies a connection may have outstanding on other shards before it stops
// reading: a deep pipeline waits rather than queueing without bound.
constexpr std::size_t max_pending = 4096;

}  // namespace

RespChannel::RespChannel(asyncore::Socket sock, Cluster& cluster, Shard& home)
    : RequestParser(std::move(sock), home.map), commands_(home.commands) {
    if (cluster.size() > 1) router_ = std::make_unique<Router>(cluster, home, *this);
    // A CONFIG SET on another thread that stores a new value after this
    // read also posts set_timeout_of_all() to this thread, and that runs
    // after this constructor: no connection misses a change.
    set_timeout(cluster.config().timeout);
}

// The library's idle countdown counts read and write events, as redis'
// last-interaction time counts reads and writes; its default
// handle_idle_timeout() closes the connection and sends nothing.
void RespChannel::set_timeout(std::int64_t seconds) {
    if (seconds <= 0) return set_idle_timeout(std::nullopt);
    set_idle_timeout(asyncore::Duration(static_cast<double>(seconds)));
}

void RespChannel::set_timeout_of_all(asyncore::ChannelMap& map, std::int64_t seconds) {
    for (asyncore::Dispatcher* d : map.channels()) {
        if (auto* channel = dynamic_cast<RespChannel*>(d)) channel->set_timeout(seconds);
    }
}

void RespChannel::on_request(std::span<const std::string_view> argv) {
    After after = router_ ? router_->run(argv, out_) : commands_.execute(argv, out_);
    if (after == After::close) return stop_parsing();
    // Once the replies of this read and those still queued pass the high
    // watermark, the rest of the read waits unparsed, and readable() stays
    // false until run_held(): a peer pipelining GETs of a large value
    // without reading costs one queue's worth.
    if (out_.size() + output_queued() >= output_high_watermark()) hold_input();
}

// Runs the requests held back while the output stays below the high
// watermark (each batch may hold back its rest again). Not re-entered from
// the pushes it makes.
void RespChannel::run_held() {
    if (running_held_) return;
    running_held_ = true;
    while (holding_input() && !output_paused() && fileno() >= 0) {
        release_held_input();
        flush();
    }
    running_held_ = false;
    if (fileno() >= 0) rearm();
}

std::string& RespChannel::reply_buffer() {
    return router_ ? router_->reply_buffer(out_) : out_;
}

void RespChannel::on_protocol_error(std::string_view message) {
    add_error(reply_buffer(), message);
}

void RespChannel::handle_read() {
    AsyncChat::handle_read();
    if (fileno() < 0 || input_ended_) return;  // the peer closed
    check_line_limit();
    flush();
    if (holding_input()) run_held();  // unless the output is already high
}

void RespChannel::handle_close() {
    if (fileno() < 0 || input_ended_) return close();
    bool replies_owed = router_ && router_->pending() > 0;
    if (!holding_input() && output_items() == 0 && !replies_owed) return close();
    input_ended_ = true;
    flush();
}

void RespChannel::on_output_drained() {
    if (holding_input()) run_held();
}

void RespChannel::flush() {
    if (router_) {
        router_->send();
        router_->drain(out_);
    }
    if (!out_.empty()) {
        push(std::string_view(out_));
        out_.clear();
    }
    bool replies_owed = router_ && router_->pending() > 0;
    bool done = stopped() || (input_ended_ && !holding_input());
    if (done && !close_queued_ && !replies_owed && fileno() >= 0) {
        close_queued_ = true;
        close_when_done();
    }
    if (out_.capacity() > keep_capacity) std::string().swap(out_);
    trim_buffers(keep_capacity);
}

bool RespChannel::readable() {
    if (router_ && router_->pending() >= max_pending) return false;
    return !stopped() && !input_ended_ && !holding_input() && !output_paused();
}

void RespChannel::replies_arrived(const ReplyBatch& replies) {
    router_->deliver(replies);
    if (fileno() < 0) return;
    flush();
    rearm();  // readable() may have changed with the pending count
}

}  // namespace resp
