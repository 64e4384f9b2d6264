// smtpd.SMTPChannel, method by method (Python 3.11's Lib/smtpd.py). The
// reply texts are copied from it; the comments note where this port departs
// from it and why (see also smtp_session.hpp).
#include "smtp_session.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>

#include "smtp_address.hpp"

namespace smtp {
namespace {

// str.strip()/str.split() whitespace, restricted to ASCII.
constexpr std::string_view py_space = " \t\n\r\v\f\x1c\x1d\x1e\x1f";

std::string_view strip(std::string_view s) {
    auto begin = s.find_first_not_of(py_space);
    if (begin == std::string_view::npos) return {};
    auto end = s.find_last_not_of(py_space);
    return s.substr(begin, end - begin + 1);
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return out;
}

std::vector<std::string> split(std::string_view s) {
    std::vector<std::string> words;
    while (true) {
        auto begin = s.find_first_not_of(py_space);
        if (begin == std::string_view::npos) return words;
        s.remove_prefix(begin);
        auto end = std::min(s.find_first_of(py_space), s.size());
        words.emplace_back(s.substr(0, end));
        s.remove_prefix(end);
    }
}

bool is_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// str.isalnum() on an upper-cased parameter name; bytes of UTF-8 sequences
// count as letters, as most of the characters they encode do in Python.
bool is_alnum(std::string_view s) {
    auto alnum = [](char c) {
        auto u = static_cast<unsigned char>(c);
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || u >= 0x80;
    };
    return !s.empty() && std::all_of(s.begin(), s.end(), alnum);
}

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = c < 0x80           ? 1
                          : (c >> 5) == 0x6  ? 2
                          : (c >> 4) == 0xe  ? 3
                          : (c >> 3) == 0x1e ? 4
                                             : 0;
        if (len == 0 || i + len > s.size()) return false;
        for (std::size_t k = 1; k < len; ++k)
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
        i += len;
    }
    return true;
}

// A value greater than any limit, for SIZE values too long for size_t.
std::size_t parse_size(std::string_view digits) {
    std::size_t n = 0;
    for (char c : digits) {
        std::size_t d = static_cast<std::size_t>(c - '0');
        if (n > (SIZE_MAX - d) / 10) return SIZE_MAX;
        n = n * 10 + d;
    }
    return n;
}

// _getparams: NAME or NAME=VALUE words; nullopt when one is malformed. An
// absent value (Python's True) is nullopt.
using Params = std::map<std::string, std::optional<std::string>, std::less<>>;
std::optional<Params> get_params(const std::vector<std::string>& words) {
    Params result;
    for (const auto& word : words) {
        auto eq = word.find('=');
        std::string name = word.substr(0, eq);
        if (!is_alnum(name)) return std::nullopt;
        if (eq == std::string::npos) {
            result[name] = std::nullopt;
        } else if (eq + 1 == word.size()) {
            return std::nullopt;
        } else {
            result[name] = word.substr(eq + 1);
        }
    }
    return result;
}

// _strip_command_keyword: the argument after "FROM:" or "TO:", or "".
std::string strip_keyword(std::string_view keyword, std::string_view arg) {
    if (upper(arg.substr(0, keyword.size())) != keyword) return {};
    return std::string(strip(arg.substr(std::min(keyword.size(), arg.size()))));
}

// _getaddr, with the parser's exceptions turned into "no address".
ParsedAddress get_addr(std::string_view arg) {
    try {
        return get_address(arg);
    } catch (const AddressError&) {
        return {};
    }
}

const char* const helo_syntax = "Syntax: HELO hostname";
const char* const ehlo_syntax = "Syntax: EHLO hostname";
const char* const supported = "Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY";

}  // namespace

const Session::Command Session::commands[] = {
    {"HELO", &Session::smtp_helo}, {"EHLO", &Session::smtp_ehlo},
    {"NOOP", &Session::smtp_noop}, {"QUIT", &Session::smtp_quit},
    {"HELP", &Session::smtp_help}, {"VRFY", &Session::smtp_vrfy},
    {"MAIL", &Session::smtp_mail}, {"RCPT", &Session::smtp_rcpt},
    {"RSET", &Session::smtp_rset}, {"DATA", &Session::smtp_data},
    {"EXPN", &Session::smtp_expn}, {"STARTTLS", &Session::smtp_starttls},
};

Session::Session(SessionOptions options, std::string peer, SessionHost& host)
    : options_(std::move(options)), host_(host) {
    envelope_.peer = std::move(peer);
}

void Session::start() {
    set_rset_state();
    reply("220 " + options_.fqdn + " " + options_.version);
    flush();
}

// Some replies echo the client's text (an unknown command, VRFY's argument),
// in which a bare CR or LF would end the line early and forge a reply line
// of the client's making: they become spaces, as redis does in its errors.
void Session::reply(std::string_view line) {
    const std::size_t start = out_.size();
    out_.append(line);
    for (std::size_t i = start; i < out_.size(); ++i) {
        if (out_[i] == '\r' || out_[i] == '\n') out_[i] = ' ';
    }
    out_.append("\r\n");
}

// Every reply to one input record goes out in one push (EHLO's five lines
// in one send), then QUIT's close.
void Session::flush() {
    if (!out_.empty()) host_.send_replies(std::exchange(out_, {}));
    if (quitting_) host_.close_after_replies();
    if (std::exchange(starting_tls_, false)) host_.start_tls_after_replies();
}

std::size_t Session::max_command_size() const noexcept {
    return extended_smtp_ ? std::max(mail_size_limit_, command_size_limit) : command_size_limit;
}

// smtpd stops keeping input at the read that crosses the limit, so what it
// keeps of a long line depends on how the line was split into reads; here it
// is always the first `limit` + 1 bytes, which is enough to tell the line
// (or message) is too long.
void Session::collect_incoming_data(std::string_view data) {
    std::size_t limit = state_ == State::command ? max_command_size() : options_.data_size_limit;
    if (limit != 0) {
        num_bytes_ += data.size();
        const std::size_t keep = limit == SIZE_MAX ? limit : limit + 1;
        data = data.substr(0, keep - std::min(received_.size(), keep));
    }
    received_.append(data);
}

void Session::found_terminator() {
    std::string record = std::exchange(received_, {});
    if (quitting_) return;
    if (state_ == State::command) {
        handle_command(std::move(record), std::exchange(num_bytes_, 0));
    } else {
        handle_message(std::move(record));
    }
    flush();
}

void Session::handle_command(std::string line, std::size_t size) {
    // Too long for any command: the line was cut short on collection, so
    // neither its UTF-8 nor its command word can be judged.
    if (size > max_command_size()) return reply("500 Error: line too long");
    if (line.empty() || !valid_utf8(line)) return reply("500 Error: bad syntax");
    auto space = line.find(' ');
    std::string command = upper(std::string_view(line).substr(0, space));
    bool has_arg = space != std::string::npos;
    std::string arg = has_arg ? std::string(strip(std::string_view(line).substr(space + 1))) : "";
    std::size_t max_size = command == "MAIL" ? max_command_size() : command_size_limit;
    if (size > max_size) return reply("500 Error: line too long");
    for (const Command& c : commands) {
        if (c.name == command) return (this->*c.handler)(arg, has_arg);
    }
    reply("500 Error: command \"" + command + "\" not recognized");
}

void Session::handle_message(std::string data) {
    if (options_.data_size_limit != 0 && num_bytes_ > options_.data_size_limit) {
        reply("552 Error: Too much mail data");
        // smtpd stays in DATA state here and takes the client's next commands
        // for message text; every client expects command state.
        set_post_data_state();
        return;
    }
    remove_dot_stuffing(data);
    std::string status = host_.process_message(envelope_, data);
    set_post_data_state();
    reply(status.empty() ? "250 OK" : status);
}

void Session::set_post_data_state() {
    envelope_.mailfrom.clear();
    envelope_.rcpttos.clear();
    num_bytes_ = 0;
    enter(State::command);
}

// Each state has its terminator and its timeout. The host restarts the
// countdown, which moves nothing: this runs as the connection starts or
// right after input arrived.
void Session::enter(State state) {
    state_ = state;
    host_.switch_terminator(state == State::command ? "\r\n" : "\r\n.\r\n");
    host_.set_input_timeout(input_timeout());
}

// RFC 5321 4.5.3.2 sets one timeout for the server: at least 5 minutes
// while it awaits the next command (4.5.3.2.7). The others are the client's
// waits for the server's replies, which this server sends as soon as the
// input asking for them is complete. In DATA state the server awaits message
// text rather than a command. A client sends that text in blocks and gives
// up on the message when one block takes more than 3 minutes to go out
// (the data block timeout, 4.5.3.2.5), so a client silent for longer in the
// middle of a message has exceeded its own limit: the server waits as long
// and no longer.
std::chrono::milliseconds Session::input_timeout() const noexcept {
    return state_ == State::command ? options_.command_timeout : options_.data_timeout;
}

// Postfix's reply. Its enhanced status code is RFC 3463's X.4.2, "bad
// connection": a transaction that could not complete, a time-out among the
// causes named.
void Session::timeout_expired() {
    if (quitting_) return;
    received_.clear();
    reply("421 4.4.2 " + options_.fqdn + " Error: timeout exceeded");
    quitting_ = true;
    flush();
}

void Session::set_rset_state() {
    set_post_data_state();
    received_.clear();
}

std::string Session::syntax_error(std::string_view base) const {
    std::string msg(base);
    if (extended_smtp_) msg += " [SP <mail-parameters>]";
    return msg;
}

void Session::smtp_helo(const std::string& arg, bool) {
    if (arg.empty()) return reply(std::string("501 ") + helo_syntax);
    if (!seen_greeting_.empty()) return reply("503 Duplicate HELO/EHLO");
    set_rset_state();
    seen_greeting_ = arg;
    reply("250 " + options_.fqdn);
}

void Session::smtp_ehlo(const std::string& arg, bool) {
    if (arg.empty()) return reply(std::string("501 ") + ehlo_syntax);
    if (!seen_greeting_.empty()) return reply("503 Duplicate HELO/EHLO");
    set_rset_state();
    seen_greeting_ = arg;
    extended_smtp_ = true;
    reply("250-" + options_.fqdn);
    if (options_.data_size_limit != 0) {
        reply("250-SIZE " + std::to_string(options_.data_size_limit));
        mail_size_limit_ += 26;
    }
    reply("250-8BITMIME");
    if (options_.enable_smtputf8) {
        reply("250-SMTPUTF8");
        mail_size_limit_ += 10;
    }
    if (options_.starttls && !tls_) reply("250-STARTTLS");
    reply("250 HELP");
}

void Session::smtp_noop(const std::string& arg, bool) {
    reply(arg.empty() ? "250 OK" : "501 Syntax: NOOP");
}

void Session::smtp_quit(const std::string&, bool) {
    reply("221 Bye");
    quitting_ = true;
}

void Session::smtp_help(const std::string& arg, bool) {
    if (arg.empty()) return reply(std::string("250 ") + supported);
    static const std::map<std::string, std::string, std::less<>> syntax = {
        {"EHLO", ehlo_syntax},
        {"HELO", helo_syntax},
        {"MAIL", "Syntax: MAIL FROM: <address>"},
        {"RCPT", "Syntax: RCPT TO: <address>"},
        {"DATA", "Syntax: DATA"},
        {"RSET", "Syntax: RSET"},
        {"NOOP", "Syntax: NOOP"},
        {"QUIT", "Syntax: QUIT"},
        {"VRFY", "Syntax: VRFY <address>"},
    };
    std::string key = upper(arg);
    auto it = syntax.find(key);
    if (it == syntax.end()) return reply(std::string("501 ") + supported);
    std::string msg = "250 " + it->second;
    if (extended_smtp_ && (key == "MAIL" || key == "RCPT")) msg += " [SP <mail-parameters>]";
    reply(msg);
}

void Session::smtp_vrfy(const std::string& arg, bool) {
    if (arg.empty()) return reply("501 Syntax: VRFY <address>");
    if (get_addr(arg).address.empty()) return reply("502 Could not VRFY " + arg);
    reply("252 Cannot VRFY user, but will accept message and attempt delivery");
}

void Session::smtp_mail(const std::string& arg, bool has_arg) {
    if (seen_greeting_.empty()) return reply("503 Error: send HELO first");
    std::string syntaxerr = syntax_error("501 Syntax: MAIL FROM: <address>");
    if (!has_arg) return reply(syntaxerr);
    auto [address, params] = get_addr(strip_keyword("FROM:", arg));
    if (address.empty()) return reply(syntaxerr);
    if (!extended_smtp_ && !params.empty()) return reply(syntaxerr);
    if (!envelope_.mailfrom.empty()) return reply("503 Error: nested MAIL command");
    envelope_.mail_options = split(upper(params));
    if (!check_mail_params(envelope_.mail_options, syntaxerr)) return;
    envelope_.mailfrom = std::move(address);
    reply("250 OK");
}

// MAIL's parameters: BODY, SMTPUTF8 (when enabled) and SIZE. Replies with
// the error and returns false when one is refused.
bool Session::check_mail_params(std::vector<std::string> words, const std::string& syntaxerr) {
    auto params = get_params(words);
    if (!params) return reply(syntaxerr), false;
    auto body = params->extract("BODY");
    if (body && (!body.mapped() || (*body.mapped() != "7BIT" && *body.mapped() != "8BITMIME")))
        return reply("501 Error: BODY can only be one of 7BIT, 8BITMIME"), false;
    if (options_.enable_smtputf8) {
        auto smtputf8 = params->extract("SMTPUTF8");
        if (smtputf8 && smtputf8.mapped())
            return reply("501 Error: SMTPUTF8 takes no arguments"), false;
    }
    if (auto size = params->extract("SIZE")) {
        // smtpd raises on a SIZE without a value; it is a syntax error here.
        if (!size.mapped() || !is_digits(*size.mapped())) return reply(syntaxerr), false;
        std::size_t limit = options_.data_size_limit;
        if (limit != 0 && parse_size(*size.mapped()) > limit)
            return reply("552 Error: message size exceeds fixed maximum message size"), false;
    }
    if (!params->empty())
        return reply("555 MAIL FROM parameters not recognized or not implemented"), false;
    return true;
}

void Session::smtp_rcpt(const std::string& arg, bool has_arg) {
    if (seen_greeting_.empty()) return reply("503 Error: send HELO first");
    if (envelope_.mailfrom.empty()) return reply("503 Error: need MAIL command");
    std::string syntaxerr = syntax_error("501 Syntax: RCPT TO: <address>");
    if (!has_arg) return reply(syntaxerr);
    auto [address, params] = get_addr(strip_keyword("TO:", arg));
    if (address.empty()) return reply(syntaxerr);
    if (!extended_smtp_ && !params.empty()) return reply(syntaxerr);
    envelope_.rcpt_options = split(upper(params));
    auto parsed = get_params(envelope_.rcpt_options);
    if (!parsed) return reply(syntaxerr);
    if (!parsed->empty()) return reply("555 RCPT TO parameters not recognized or not implemented");
    envelope_.rcpttos.push_back(std::move(address));
    reply("250 OK");
}

void Session::smtp_rset(const std::string& arg, bool) {
    if (!arg.empty()) return reply("501 Syntax: RSET");
    set_rset_state();
    reply("250 OK");
}

void Session::smtp_data(const std::string& arg, bool) {
    if (seen_greeting_.empty()) return reply("503 Error: send HELO first");
    if (envelope_.rcpttos.empty()) return reply("503 Error: need RCPT command");
    if (!arg.empty()) return reply("501 Syntax: DATA");
    enter(State::data);
    reply("354 End data with <CR><LF>.<CR><LF>");
}

void Session::smtp_expn(const std::string&, bool) {
    reply("502 EXPN not implemented");
}

// RFC 3207 4.2: after the handshake the server "MUST discard any knowledge
// obtained from the client", the EHLO argument included; the client must
// EHLO again. The host discards what the client pipelined after this line.
void Session::smtp_starttls(const std::string& arg, bool) {
    if (!options_.starttls) return reply("500 Error: command \"STARTTLS\" not recognized");
    if (tls_) return reply("503 Error: TLS already active");
    if (!arg.empty()) return reply("501 Syntax error (no parameters allowed)");
    reply("220 Ready to start TLS");
    set_rset_state();
    seen_greeting_.clear();
    extended_smtp_ = false;
    mail_size_limit_ = command_size_limit;
    tls_ = true;
    starting_tls_ = true;
}

void remove_dot_stuffing(std::string& data) {
    std::size_t w = 0;
    bool line_start = true;
    for (std::size_t r = 0; r < data.size();) {
        if (std::exchange(line_start, false) && data[r] == '.') {
            ++r;
            continue;
        }
        if (data[r] == '\r' && r + 1 < data.size() && data[r + 1] == '\n') {
            data[w++] = '\n';
            r += 2;
            line_start = true;
        } else {
            data[w++] = data[r++];
        }
    }
    data.resize(w);
}

}  // namespace smtp
