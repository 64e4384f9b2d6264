// Properties of the smtp sample's protocol (samples/smtp), run as
// SmtpChannel runs it: a Session under AsyncChat's record scanning, here fed
// without a socket.
//
// - Every reply the session sends is one well-formed SMTP reply: lines of a
//   3-digit code (2xx to 5xx, the same on every line), '-' on every line but
//   the last and ' ' on the last, text without CR or LF, each line ended by
//   CRLF.
// - The command stream gives the same conversation (replies, messages
//   delivered, QUIT's close, STARTTLS) whether it arrives in one read, byte
//   by byte or in pseudo-random pieces. After STARTTLS the host stops
//   feeding, as SmtpChannel discards plaintext that follows it.
// - An address get_address() accepts, written again with its local part
//   re-quoted by quote_string() and the quoted pairs of a domain literal
//   escaped again (the normalised address has them unescaped, as Python's
//   has), parses to the same address. Not for an argument with the ASCII
//   controls that Python's str.split() takes for whitespace (LF, VT, FF,
//   CR, 0x1c-0x1f): the parser reads them as atext, as Python's does, but
//   Domain.domain drops them, so that "a@b.\r" normalises to "a@b.", which
//   no longer parses. smtpd does the same.

#include <asyncore/async_chat.hpp>
#include <asyncore/loop.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/split.hpp"
#include "smtp_address.hpp"
#include "smtp_session.hpp"

namespace {

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "smtp_parser: %s\n", what.c_str());
    std::abort();
}

std::string printable(std::string_view s) {
    std::string out;
    for (char c : s) {
        auto b = static_cast<unsigned char>(c);
        if (b >= 0x20 && b < 0x7f && c != '\\') {
            out += c;
        } else {
            static const char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[b >> 4];
            out += hex[b & 15];
        }
    }
    return out;
}

// -- Replies ----------------------------------------------------------------------

void check_reply(std::string_view reply) {
    if (reply.empty()) fail("an empty reply");
    std::string_view code;
    while (!reply.empty()) {
        std::size_t end = reply.find("\r\n");
        if (end == std::string_view::npos) fail("a reply line without CRLF: " + printable(reply));
        std::string_view line = reply.substr(0, end);
        reply.remove_prefix(end + 2);
        bool ok = line.size() >= 4 && line[0] >= '2' && line[0] <= '5';
        for (std::size_t i = 1; ok && i < 3; ++i)
            ok = line[i] >= '0' && line[i] <= '9';
        ok = ok && line.find_first_of("\r\n") == std::string_view::npos;
        ok = ok && (line[3] == (reply.empty() ? ' ' : '-'));
        ok = ok && (code.empty() || line.substr(0, 3) == code);
        if (!ok) fail("a malformed reply line: " + printable(line));
        code = line.substr(0, 3);
    }
}

// -- The session, as SmtpChannel runs it ------------------------------------------------

class Conversation : public asyncore::AsyncChat, private smtp::SessionHost {
  public:
    Conversation(asyncore::ChannelMap& map, smtp::SessionOptions options)
        : AsyncChat(map), session_(std::move(options), "192.0.2.1", *this) {
        set_max_input_buffer(0);
        session_.start();
    }

    void collect_incoming_data(std::string_view data) override {
        if (!tls_) session_.collect_incoming_data(data);
    }
    void found_terminator() override {
        if (!tls_) session_.found_terminator();
    }

    /// Replies and events, in order.
    std::string transcript;

  private:
    void send_replies(std::string bytes) override {
        check_reply(bytes);
        transcript += bytes;
    }
    void switch_terminator(std::string_view terminator) override { set_terminator(terminator); }
    // No time passes here: the bytes arrive all at once, so no timeout fires.
    void set_input_timeout(std::chrono::milliseconds) override {}
    void close_after_replies() override { transcript += "[close]\n"; }
    void start_tls_after_replies() override {
        tls_ = true;
        transcript += "[tls]\n";
    }
    std::string process_message(const smtp::Envelope& envelope, std::string& data) override {
        transcript += "[message from " + envelope.mailfrom + " to";
        for (const std::string& r : envelope.rcpttos)
            transcript += " " + r;
        transcript += ": " + data + "]\n";
        return {};
    }

    smtp::Session session_;
    bool tls_ = false;
};

std::string converse(const smtp::SessionOptions& options,
                     const std::vector<std::string_view>& pieces) {
    static asyncore::ChannelMap map;
    Conversation c(map, options);
    for (std::string_view piece : pieces)
        c.feed(piece);
    return c.transcript;
}

void check_session(const smtp::SessionOptions& options, std::string_view stream,
                   std::uint32_t seed) {
    const std::string whole = converse(options, {stream});
    const std::vector<std::string_view> splits[] = {fuzz::split_bytes(stream),
                                                    fuzz::split_random(stream, seed)};
    for (const auto& pieces : splits) {
        std::string split = converse(options, pieces);
        if (split == whole) continue;
        std::size_t at = 0;
        while (at < split.size() && at < whole.size() && split[at] == whole[at])
            ++at;
        fail("a split stream gives another conversation, from byte " + std::to_string(at) +
             "\n  one read: " + printable(whole.substr(at, 120)) +
             "\n  split:    " + printable(split.substr(at, 120)));
    }
}

// -- Addresses --------------------------------------------------------------------------

// The local part of a normalised address, unquoted, and the rest ("@domain",
// or nothing).
void split_address(std::string_view address, std::string& local, std::string_view& rest) {
    local.clear();
    if (!address.starts_with('"')) {
        std::size_t at = std::min(address.find('@'), address.size());
        local = address.substr(0, at);
        rest = address.substr(at);
        return;
    }
    std::size_t i = 1;
    for (; i < address.size() && address[i] != '"'; ++i) {
        if (address[i] == '\\' && i + 1 < address.size()) ++i;
        local += address[i];
    }
    rest = address.substr(std::min(i + 1, address.size()));
}

// "@[literal]" with the quoted pairs of the literal written again.
std::string requote_domain(std::string_view rest) {
    if (!rest.starts_with("@[") || !rest.ends_with(']')) return std::string(rest);
    std::string out = "@[";
    for (char c : rest.substr(2, rest.size() - 3)) {
        if (c == '\\' || c == '[' || c == ']') out += '\\';
        out += c;
    }
    return out + "]";
}

void check_address(std::string_view arg) {
    if (arg.find_first_of("\n\v\f\r\x1c\x1d\x1e\x1f") != std::string_view::npos) return;
    smtp::ParsedAddress parsed;
    try {
        parsed = smtp::get_address(arg);
    } catch (const smtp::AddressError&) {
        return;
    }
    if (parsed.address.empty() || parsed.address == "<>") return;
    std::string local;
    std::string_view rest;
    split_address(parsed.address, local, rest);
    // In the argument's form: smtpd normalises an empty local part to ""
    // inside angle brackets and to nothing without them.
    std::string again = smtp::quote_string(local) + requote_domain(rest);
    if (arg.find_first_not_of(" \t") != std::string_view::npos &&
        arg[arg.find_first_not_of(" \t")] == '<')
        again = "<" + again + ">";
    std::string reparsed;
    try {
        reparsed = smtp::get_address(again).address;
    } catch (const smtp::AddressError& e) {
        reparsed = std::string("AddressError: ") + e.what();
    }
    if (reparsed != parsed.address) {
        fail("a re-quoted address parses differently\n  argument:  " + printable(arg) +
             "\n  address:   " + printable(parsed.address) + "\n  re-quoted: " + printable(again) +
             "\n  parsed as: " + printable(reparsed));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    smtp::SessionOptions options;
    options.data_size_limit = in.ConsumeBool() ? 0 : in.ConsumeIntegralInRange<std::size_t>(1, 64);
    options.enable_smtputf8 = in.ConsumeBool();
    options.starttls = in.ConsumeBool();
    const std::uint32_t seed = in.ConsumeIntegral<std::uint32_t>();
    check_address(in.ConsumeRandomLengthString(128));
    check_session(options, in.ConsumeRemainingBytesAsString(), seed);
    return 0;
}
