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
///
/// Memory per client stays bounded by the output high watermark plus one
/// read, however much a peer that does not read asks for: once the replies
/// queued for it pass the high watermark, the rest of its pipelined
/// requests are held unparsed (and reading stops) until the queue drains
/// below the low watermark. A peer's EOF ends its requests, not its
/// replies: what it sent is answered, and only then the connection closes.
class RespChannel : public RequestParser {
  public:
    /// Serves the connection on `home`'s thread, its map and its keys; with
    /// more than one shard in `cluster`, requests for other shards' keys go there.
    RespChannel(asyncore::Socket sock, Cluster& cluster, Shard& home);

    void handle_read() override;
    /// The peer's EOF (or a failed write): closes once the requests received
    /// are answered and the replies sent.
    void handle_close() override;
    /// Not while closing, nor while the peer leaves its replies unread
    /// (output above the high watermark, or requests held back).
    bool readable() override;
    /// The queued replies fell to the low watermark: runs the held requests.
    void on_output_drained() override;
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
    void run_held();
    std::string& reply_buffer();
    void set_timeout(std::int64_t seconds);

    Commands& commands_;
    std::unique_ptr<Router> router_;  ///< null with one shard: every key is local
    std::string out_;                 ///< replies of the current read, pushed once at its end
    bool close_queued_ = false;
    bool running_held_ = false;
    bool input_ended_ = false;  ///< the peer's EOF was read
};

}  // namespace resp
