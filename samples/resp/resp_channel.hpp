// RespChannel: one Redis-protocol client connection, an AsyncChat that
// switches between a line terminator (request lines, "$N" headers) and a
// byte count (bulk arguments).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <asyncore/async_chat.hpp>

#include "commands.hpp"
#include "protocol.hpp"
#include "router.hpp"
#include "shard.hpp"

namespace resp {

/// Parses RESP2 requests (inline and multibulk, pipelined), runs them with
/// `commands` and queues the replies. All replies produced by one read are
/// sent with one push. A protocol error gets redis' error reply, and the
/// connection closes once it is sent; requests after it are ignored, as
/// redis does. After QUIT likewise.
///
/// In a cluster of several shards (resp_server --threads N) a Router sends
/// requests for other shards' keys to them; replies still go out in request
/// order, and a closing connection closes once every reply is sent.
///
/// Memory per client stays bounded by the output high watermark plus one
/// read, however much a peer that does not read asks for: once the replies
/// queued for it pass the high watermark, the rest of its pipelined
/// requests are held unparsed (and reading stops) until the queue drains
/// below the low watermark. A peer's EOF ends its requests, not its
/// replies: what it sent is answered, and only then the connection closes.
class RespChannel : public asyncore::AsyncChat {
  public:
    /// Serves the connection on `home`'s thread, its map and its keys; with
    /// more than one shard in `cluster`, requests for other shards' keys go there.
    RespChannel(asyncore::Socket sock, Cluster& cluster, Shard& home);

    void collect_incoming_data(std::string_view data) override;
    void found_terminator() override;
    void found_record(std::string_view line) override;
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

  private:
    enum class State {
        request,      ///< at a request's first line (inline or "*N")
        bulk_length,  ///< at a "$N" line
        bulk,         ///< in a bulk argument (a byte-count terminator)
        awaiting_cr,  ///< a "*N" or "$N" line ended without CR: redis waits for one
        stalled,      ///< a NUL inside a request line: only the line limit ends it
    };
    enum class Line { inline_request, multibulk_count, bulk_count };

    void start_request(std::string_view line);
    void header_line(Line kind, std::string_view line);
    void continue_header(std::string_view line);
    void stall(Line kind, std::size_t bytes);
    void multibulk_count(std::string_view digits);
    void bulk_count(char type, std::string_view digits);
    std::size_t unfinished_line(Line& kind);
    void end_bulk();
    void run();
    void hold_back_if_flooded();
    void run_held();
    void protocol_error(std::string_view message);
    void flush();
    void trim_buffers();
    std::string& reply_buffer();

    Commands& commands_;
    std::unique_ptr<Router> router_;  ///< null with one shard: every key is local
    State state_ = State::request;
    std::int64_t args_left_ = 0;           ///< bulk arguments still expected
    Line waiting_ = Line::inline_request;  ///< the unfinished line's kind (awaiting_cr, stalled)
    char header_first_ = 0;                ///< its first byte
    std::size_t waiting_bytes_ = 0;        ///< its bytes consumed so far
    ArgBuffer args_;
    std::vector<std::string_view> argv_;
    std::string out_;         ///< replies of the current read, pushed once at its end
    std::string held_input_;  ///< requests not parsed yet while the output is backed up
    bool holding_ = false;    ///< input goes to held_input_ (the terminator is none)
    bool running_held_ = false;
    bool input_ended_ = false;  ///< the peer's EOF was read
    bool closing_ = false;
    bool close_queued_ = false;
};

}  // namespace resp
