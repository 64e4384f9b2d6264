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
    : AsyncChat(std::move(sock), home.map), commands_(home.commands) {
    if (cluster.size() > 1) router_ = std::make_unique<Router>(cluster, home, *this);
    set_terminator("\n");
    // Line lengths are checked after each read, as redis does, so that the
    // client gets redis' own error text rather than AsyncChat's limit error.
    set_max_input_buffer(0);
}

void RespChannel::collect_incoming_data(std::string_view data) {
    if (closing_) return;
    if (holding_) {
        held_input_.append(data);
    } else if (state_ == State::bulk) {
        args_.bytes.append(data);
    } else if (state_ == State::stalled) {
        waiting_bytes_ += data.size();
    } else {
        AsyncChat::collect_incoming_data(data);
    }
}

void RespChannel::found_terminator() {
    if (closing_) return;
    if (state_ == State::bulk) {
        end_bulk();
    } else {
        AsyncChat::found_terminator();
    }
}

void RespChannel::found_record(std::string_view line) {
    switch (state_) {
        case State::request:
            return start_request(line);
        case State::bulk_length:
            return header_line(Line::bulk_count, line);
        case State::awaiting_cr:
            return continue_header(line);
        case State::bulk:
        case State::stalled:
            return;  // not line states: their data never reaches found_record
    }
}

void RespChannel::start_request(std::string_view line) {
    if (!line.empty() && line[0] == '*') return header_line(Line::multibulk_count, line);
    if (line.find('\0') != std::string_view::npos)
        return stall(Line::inline_request, line.size() + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    args_.clear();
    if (!split_inline(line, args_)) {
        return protocol_error("ERR Protocol error: unbalanced quotes in request");
    }
    if (args_.count() > 0) run();
}

// A "*N" or "$N" line: its number is what precedes the first CR, and a line
// with no CR keeps redis waiting for one. (redis also skips the byte after
// that CR unchecked; here the line runs to its LF, so a stray byte between
// CR and LF takes the rest of that line with it.)
void RespChannel::header_line(Line kind, std::string_view line) {
    std::size_t cr = line.find('\r');
    if (line.find('\0') < cr) return stall(kind, line.size() + 1);
    if (cr == std::string_view::npos) {
        state_ = State::awaiting_cr;
        waiting_ = kind;
        header_first_ = line.empty() ? '\n' : line[0];
        waiting_bytes_ = line.size() + 1;
        return;
    }
    if (kind == Line::multibulk_count) return multibulk_count(line.substr(1, cr - 1));
    bulk_count(line[0], line.substr(1, cr - 1));
}

// More of a header line that had no CR: its number now spans a newline, so
// it is invalid once the CR arrives (redis' string2ll fails on it).
void RespChannel::continue_header(std::string_view line) {
    std::size_t cr = line.find('\r');
    if (line.find('\0') < cr) return stall(waiting_, waiting_bytes_ + line.size() + 1);
    waiting_bytes_ += line.size() + 1;
    if (cr == std::string_view::npos) return;
    if (waiting_ == Line::multibulk_count) return multibulk_count("\n");
    bulk_count(header_first_, "\n");
}

// redis searches for the end of a line with strchr(), which stops at a NUL
// byte: a request line with a NUL before its end never completes, and the
// connection waits until the line limit turns it into a protocol error.
void RespChannel::stall(Line kind, std::size_t bytes) {
    state_ = State::stalled;
    waiting_ = kind;
    waiting_bytes_ = bytes;
    set_terminator(std::nullopt);
}

void RespChannel::multibulk_count(std::string_view digits) {
    state_ = State::request;
    std::int64_t n = 0;
    if (!parse_int64(digits, n) || n > max_multibulk) {
        return protocol_error("ERR Protocol error: invalid multibulk length");
    }
    if (n <= 0) return;  // an empty request: no reply, as redis
    args_.clear();
    args_left_ = n;
    state_ = State::bulk_length;
}

void RespChannel::bulk_count(char type, std::string_view digits) {
    state_ = State::bulk_length;
    if (type != '$') {
        std::string msg = "ERR Protocol error: expected '$', got '";
        msg.push_back(type);
        return protocol_error(msg.append("'"));
    }
    std::int64_t n = 0;
    if (!parse_int64(digits, n) || n < 0 || n > max_bulk) {
        return protocol_error("ERR Protocol error: invalid bulk length");
    }
    // The argument and its CRLF; redis skips those two bytes unchecked.
    set_terminator(n + 2);
    state_ = State::bulk;
}

void RespChannel::end_bulk() {
    args_.bytes.resize(args_.bytes.size() - 2);
    args_.end_arg();
    set_terminator("\n");
    if (--args_left_ > 0) {
        state_ = State::bulk_length;
        return;
    }
    state_ = State::request;
    run();
}

void RespChannel::run() {
    args_.views(argv_);
    After after = router_ ? router_->run(argv_, out_) : commands_.execute(argv_, out_);
    if (after == After::close) closing_ = true;
    args_.clear();
    hold_back_if_flooded();
}

// After a request: once the replies of this read and those still queued
// pass the high watermark, the rest of the read is held back unparsed (the
// terminator becomes none, so it arrives whole in collect_incoming_data()),
// and readable() stays false until run_held() takes it up again. A peer
// pipelining GETs of a large value without reading costs one queue's worth.
void RespChannel::hold_back_if_flooded() {
    if (closing_ || holding_ || out_.size() + output_queued() < output_high_watermark()) return;
    holding_ = true;
    set_terminator(std::nullopt);
}

// Runs the requests held back, as long as the output stays below the high
// watermark (each batch may hold back the rest again). Not re-entered from
// the pushes it makes.
void RespChannel::run_held() {
    if (running_held_) return;
    struct Running {
        bool& flag;
        explicit Running(bool& f) : flag(f) { flag = true; }
        ~Running() { flag = false; }
    } running(running_held_);
    while (holding_ && !output_paused() && fileno() >= 0) {
        holding_ = false;
        set_terminator("\n");  // held back at a request boundary
        std::string input = std::move(held_input_);
        held_input_.clear();
        feed(input);
        flush();
    }
    if (!holding_ && held_input_.capacity() > keep_capacity) std::string().swap(held_input_);
    if (fileno() >= 0) rearm();
}

std::string& RespChannel::reply_buffer() {
    return router_ ? router_->reply_buffer(out_) : out_;
}

void RespChannel::protocol_error(std::string_view message) {
    add_error(reply_buffer(), message);
    closing_ = true;
}

// The bytes of an unfinished request line, and which kind of line it is.
std::size_t RespChannel::unfinished_line(Line& kind) {
    switch (state_) {
        case State::request:
            kind = !incoming().empty() && incoming()[0] == '*' ? Line::multibulk_count
                                                               : Line::inline_request;
            return incoming().size();
        case State::bulk_length:
            kind = Line::bulk_count;
            return incoming().size();
        case State::awaiting_cr:
            kind = waiting_;
            return waiting_bytes_ + incoming().size();
        case State::stalled:
            kind = waiting_;
            return waiting_bytes_;
        case State::bulk:
            break;
    }
    return 0;
}

void RespChannel::handle_read() {
    AsyncChat::handle_read();
    if (fileno() < 0 || input_ended_) return;  // the peer closed
    // redis checks the line limit after each read, on what is still unparsed.
    Line kind = Line::inline_request;
    if (!closing_ && unfinished_line(kind) > max_line) {
        protocol_error(kind == Line::bulk_count ? "ERR Protocol error: too big bulk count string"
                       : kind == Line::multibulk_count
                           ? "ERR Protocol error: too big mbulk count string"
                           : "ERR Protocol error: too big inline request");
    }
    flush();
    if (holding_) run_held();  // unless the output is already high
}

void RespChannel::handle_close() {
    if (fileno() < 0 || input_ended_) return close();
    bool replies_owed = router_ && router_->pending() > 0;
    if (!holding_ && output_items() == 0 && !replies_owed) return close();
    input_ended_ = true;
    flush();
}

void RespChannel::on_output_drained() {
    if (holding_) run_held();
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
    bool done = closing_ || (input_ended_ && !holding_);
    if (done && !close_queued_ && !replies_owed && fileno() >= 0) {
        close_queued_ = true;
        close_when_done();
    }
    trim_buffers();
}

void RespChannel::trim_buffers() {
    if (out_.capacity() > keep_capacity) std::string().swap(out_);
    if (args_.bytes.capacity() > keep_capacity && state_ == State::request) {
        std::string().swap(args_.bytes);
    }
}

bool RespChannel::readable() {
    if (router_ && router_->pending() >= max_pending) return false;
    return !closing_ && !input_ended_ && !holding_ && !output_paused();
}

void RespChannel::replies_arrived(const ReplyBatch& replies) {
    router_->deliver(replies);
    if (fileno() < 0) return;
    flush();
    rearm();  // readable() may have changed with the pending count
}

}  // namespace resp
