// RespChannel: one Redis-protocol client connection: the requests a
// RequestParser reads run on this shard's Commands (or, in a cluster, where
// a Router sends them), and their replies go back in request order.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <asyncore/async_chat.hpp>

#include "commands.hpp"
#include "request_parser.hpp"
#include "router.hpp"
#include "shard.hpp"

namespace resp {

/// Runs the requests of one connection and queues the replies. All replies
/// produced by one read are sent with one push. A protocol error gets
/// redis' error reply, and the connection closes once it is sent; requests
/// after it are ignored, as redis does. After QUIT likewise.
///
/// In a cluster of several shards (resp_server --threads N) a Router sends
/// requests for other shards' keys to them; replies still go out in request
/// order, and a closing connection closes once every reply is sent.
///
/// With the server's "timeout" setting on, a connection that neither sends
/// nor takes any bytes for that many seconds is closed without a reply, as
/// redis closes an idle client. redis spares clients in pub/sub mode and
/// clients blocked in a command such as BLPOP; this server has neither.
class RespChannel : public RequestParser {
  public:
    /// Serves the connection on `home`'s thread, its map and its keys; with
    /// more than one shard in `cluster`, requests for other shards' keys go there.
    RespChannel(asyncore::Socket sock, Cluster& cluster, Shard& home);

    void handle_read() override;
    /// Not while closing, nor while the peer leaves its replies unread
    /// (output above the high watermark): memory per client stays bounded.
    bool readable() override;
    /// Replies from other shards (on this channel's thread): sends those now
    /// next in order.
    void replies_arrived(const ReplyBatch& replies);
    /// Gives every RespChannel in `map` the idle timeout `seconds` (redis'
    /// "timeout"; 0: none). Each one's countdown starts again from now.
    static void set_timeout_of_all(asyncore::ChannelMap& map, std::int64_t seconds);

  private:
    void on_request(std::span<const std::string_view> argv) override;
    void on_protocol_error(std::string_view message) override;
    void flush();
    std::string& reply_buffer();
    void set_timeout(std::int64_t seconds);

    Commands& commands_;
    std::unique_ptr<Router> router_;  ///< null with one shard: every key is local
    std::string out_;                 ///< replies of the current read, pushed once at its end
    bool close_queued_ = false;
};

}  // namespace resp
