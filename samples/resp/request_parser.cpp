#include "request_parser.hpp"

#include "command_table.hpp"

namespace resp {

RequestParser::RequestParser(asyncore::ChannelMap& map, RequestLimits limits)
    : AsyncChat(map), limits_(limits) {
    read_lines();
}

RequestParser::RequestParser(asyncore::Socket sock, asyncore::ChannelMap& map, RequestLimits limits)
    : AsyncChat(std::move(sock), map), limits_(limits) {
    read_lines();
}

void RequestParser::read_lines() {
    set_terminator("\n");
    // Line lengths are checked after each read, as redis does, so that the
    // client gets redis' own error text rather than AsyncChat's limit error.
    set_max_input_buffer(0);
}

void RequestParser::collect_incoming_data(std::string_view data) {
    if (stopped_) return;
    if (holding_) {
        held_.append(data);
    } else if (state_ == State::bulk) {
        args_.bytes.append(data);
    } else if (state_ == State::stalled) {
        waiting_bytes_ += data.size();
    } else {
        AsyncChat::collect_incoming_data(data);
    }
}

void RequestParser::found_terminator() {
    if (stopped_) return;
    if (state_ == State::bulk) {
        end_bulk();
    } else {
        AsyncChat::found_terminator();
    }
}

void RequestParser::found_record(std::string_view line) {
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

void RequestParser::start_request(std::string_view line) {
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
void RequestParser::header_line(Line kind, std::string_view line) {
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
void RequestParser::continue_header(std::string_view line) {
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
void RequestParser::stall(Line kind, std::size_t bytes) {
    state_ = State::stalled;
    waiting_ = kind;
    waiting_bytes_ = bytes;
    set_terminator(std::nullopt);
}

void RequestParser::multibulk_count(std::string_view digits) {
    state_ = State::request;
    std::int64_t n = 0;
    if (!parse_int64(digits, n) || n > limits_.multibulk) {
        return protocol_error("ERR Protocol error: invalid multibulk length");
    }
    if (n <= 0) return;  // an empty request: no reply, as redis
    args_.clear();
    args_left_ = n;
    state_ = State::bulk_length;
}

void RequestParser::bulk_count(char type, std::string_view digits) {
    state_ = State::bulk_length;
    if (type != '$') {
        std::string msg = "ERR Protocol error: expected '$', got '";
        msg.push_back(type);
        return protocol_error(msg.append("'"));
    }
    std::int64_t n = 0;
    if (!parse_int64(digits, n) || n < 0 || n > limits_.bulk) {
        return protocol_error("ERR Protocol error: invalid bulk length");
    }
    // The argument and its CRLF; redis skips those two bytes unchecked.
    set_terminator(n + 2);
    state_ = State::bulk;
}

void RequestParser::end_bulk() {
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

void RequestParser::run() {
    args_.views(argv_);
    on_request(argv_);
    args_.clear();
}

void RequestParser::protocol_error(std::string_view message) {
    on_protocol_error(message);
    stopped_ = true;
}

// The bytes of an unfinished request line, and which kind of line it is.
std::size_t RequestParser::unfinished_line(Line& kind) {
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

// redis checks the line limit after each read, on what is still unparsed.
void RequestParser::check_line_limit() {
    Line kind = Line::inline_request;
    if (!stopped_ && unfinished_line(kind) > limits_.line) {
        protocol_error(kind == Line::bulk_count ? "ERR Protocol error: too big bulk count string"
                       : kind == Line::multibulk_count
                           ? "ERR Protocol error: too big mbulk count string"
                           : "ERR Protocol error: too big inline request");
    }
}

void RequestParser::trim_buffers(std::size_t keep_capacity) {
    if (args_.bytes.capacity() > keep_capacity && state_ == State::request) {
        std::string().swap(args_.bytes);
    }
    if (!holding_ && held_.capacity() > keep_capacity) std::string().swap(held_);
}

// With no terminator the scanner hands every later byte, unparsed, to
// collect_incoming_data(), which keeps it in held_.
void RequestParser::hold_input() {
    if (holding_ || stopped_) return;
    holding_ = true;
    set_terminator(std::nullopt);
}

void RequestParser::release_held_input() {
    if (!holding_) return;
    holding_ = false;
    set_terminator("\n");  // held at a request boundary: a request line is next
    std::string input = std::move(held_);
    held_.clear();
    feed(input);
}

}  // namespace resp
