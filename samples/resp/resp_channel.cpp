#include "resp_channel.hpp"

#include "command_table.hpp"
#include "reply.hpp"

namespace resp {
namespace {

// Buffers grown past this by one large request are released afterwards,
// so an idle connection does not keep a big request's memory.
constexpr std::size_t keep_capacity = 1024 * 1024;

// The number in a "*N" or "$N" header line: what lies between the type byte
// and the first CR (redis reads up to the '\r').
std::string_view header_digits(std::string_view line) {
    std::string_view rest = line.substr(1);
    return rest.substr(0, rest.find('\r'));
}

}  // namespace

RespChannel::RespChannel(asyncore::Socket sock, Commands& commands, asyncore::ChannelMap& map)
    : AsyncChat(std::move(sock), map), commands_(commands) {
    set_terminator("\n");
    // Line lengths are checked after each read, as redis does, so that the
    // client gets redis' own error text rather than AsyncChat's limit error.
    set_max_input_buffer(0);
}

void RespChannel::collect_incoming_data(std::string_view data) {
    if (closing_) return;
    if (state_ == State::bulk) {
        args_.bytes.append(data);
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
    if (state_ == State::request) {
        start_request(line);
    } else {
        bulk_length(line);
    }
}

void RespChannel::start_request(std::string_view line) {
    if (!line.empty() && line[0] == '*') return multibulk_header(line);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    args_.clear();
    if (!split_inline(line, args_)) {
        return protocol_error("ERR Protocol error: unbalanced quotes in request");
    }
    if (args_.count() > 0) run();
}

void RespChannel::multibulk_header(std::string_view line) {
    std::int64_t n = 0;
    if (!parse_int64(header_digits(line), n) || n > max_multibulk) {
        return protocol_error("ERR Protocol error: invalid multibulk length");
    }
    if (n <= 0) return;  // an empty request: no reply, as redis
    args_.clear();
    args_left_ = n;
    state_ = State::bulk_length;
}

void RespChannel::bulk_length(std::string_view line) {
    if (line.empty() || line[0] != '$') {
        std::string msg = "ERR Protocol error: expected '$', got '";
        msg.push_back(line.empty() ? '\n' : line[0]);
        return protocol_error(msg.append("'"));
    }
    std::int64_t n = 0;
    if (!parse_int64(header_digits(line), n) || n < 0 || n > max_bulk) {
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
    if (commands_.execute(argv_, out_) == After::close) closing_ = true;
    args_.clear();
}

void RespChannel::protocol_error(std::string_view message) {
    add_error(out_, message);
    closing_ = true;
}

void RespChannel::handle_read() {
    AsyncChat::handle_read();
    if (fileno() < 0) return;  // the peer closed
    // redis' limit on a line still without its newline after a read.
    if (!closing_ && state_ != State::bulk && incoming().size() > max_line) {
        protocol_error(state_ == State::bulk_length
                           ? "ERR Protocol error: too big bulk count string"
                       : !incoming().empty() && incoming()[0] == '*'
                           ? "ERR Protocol error: too big mbulk count string"
                           : "ERR Protocol error: too big inline request");
    }
    flush();
}

void RespChannel::flush() {
    if (!out_.empty()) {
        push(std::string_view(out_));
        out_.clear();
    }
    if (closing_ && !close_queued_ && fileno() >= 0) {
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
    return !closing_ && !output_paused();
}

}  // namespace resp
