// RequestParser: RESP2 request framing as redis-server 7.0 reads it, on an
// AsyncChat that switches between a line terminator (request lines, "$N"
// headers) and a byte count (bulk arguments). It knows nothing of commands:
// RespChannel runs what it parses, and the fuzz target checks it alone.
#pragma once

#include <asyncore/async_chat.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocol.hpp"

namespace resp {

/// The bounds redis puts on a request; the defaults are redis'.
struct RequestLimits {
    std::size_t line = max_line;             ///< an unfinished request line
    std::int64_t bulk = max_bulk;            ///< a bulk argument's length
    std::int64_t multibulk = max_multibulk;  ///< a multibulk request's count
};

/// Parses RESP2 requests, inline and multibulk, pipelined. Each complete
/// request goes to on_request(); a protocol error goes to on_protocol_error()
/// with redis' error text, after which nothing more is parsed (redis closes
/// the connection), nor after stop_parsing().
class RequestParser : public asyncore::AsyncChat {
  public:
    /// Without a socket: input arrives through feed().
    explicit RequestParser(asyncore::ChannelMap& map, RequestLimits limits = {});
    RequestParser(asyncore::Socket sock, asyncore::ChannelMap& map, RequestLimits limits = {});

    void collect_incoming_data(std::string_view data) override;
    void found_terminator() override;
    void found_record(std::string_view line) override;

    /// redis' check after each read: a request line still unfinished and
    /// longer than the line limit is a protocol error. Call it once the
    /// records of a read (or a feed()) are handled.
    void check_line_limit();
    /// True after a protocol error or stop_parsing(): input is ignored.
    bool stopped() const noexcept { return stopped_; }

  protected:
    /// One request: argv[0] is the command name; the views are valid
    /// during the call only.
    virtual void on_request(std::span<const std::string_view> argv) = 0;
    /// A protocol error, with redis' text (without the leading '-').
    virtual void on_protocol_error(std::string_view message) = 0;
    /// Ignores all further input (after QUIT).
    void stop_parsing() noexcept { stopped_ = true; }
    /// Releases the argument buffer after a large request, between requests.
    void trim_buffers(std::size_t keep_capacity);
    /// Called from on_request(): the rest of the input (of this read and of
    /// later ones) is kept unparsed, at the request boundary, until
    /// release_held_input(). For a peer that pipelines faster than it reads
    /// its replies.
    void hold_input();
    bool holding_input() const noexcept { return holding_; }
    /// Parses what was held back (which may hold back its rest again).
    void release_held_input();

  private:
    enum class State {
        request,      ///< at a request's first line (inline or "*N")
        bulk_length,  ///< at a "$N" line
        bulk,         ///< in a bulk argument (a byte-count terminator)
        awaiting_cr,  ///< a "*N" or "$N" line ended without CR: redis waits for one
        stalled,      ///< a NUL inside a request line: only the line limit ends it
    };
    enum class Line { inline_request, multibulk_count, bulk_count };

    void read_lines();
    void start_request(std::string_view line);
    void header_line(Line kind, std::string_view line);
    void continue_header(std::string_view line);
    void stall(Line kind, std::size_t bytes);
    void multibulk_count(std::string_view digits);
    void bulk_count(char type, std::string_view digits);
    std::size_t unfinished_line(Line& kind);
    void end_bulk();
    void run();
    void protocol_error(std::string_view message);

    RequestLimits limits_;
    State state_ = State::request;
    std::int64_t args_left_ = 0;           ///< bulk arguments still expected
    Line waiting_ = Line::inline_request;  ///< the unfinished line's kind (awaiting_cr, stalled)
    char header_first_ = 0;                ///< its first byte
    std::size_t waiting_bytes_ = 0;        ///< its bytes consumed so far
    ArgBuffer args_;
    std::vector<std::string_view> argv_;
    std::string held_;      ///< input not parsed yet (hold_input())
    bool holding_ = false;  ///< input goes to held_ (the terminator is none)
    bool stopped_ = false;
};

}  // namespace resp
