// Properties of resp_server's RequestParser (samples/resp), fed without a
// socket as RespChannel is: feed() per read, then check_line_limit().
//
// Raw mode: any bytes, small limits. However the input is split into reads,
// the requests and protocol errors are those of the same bytes in one read,
// up to the read after which parsing stopped (redis checks the line limit
// after each read, so where a long line is cut decides whether it is too
// long: that read is where the comparison ends). After a protocol error
// nothing more is parsed, and no second error comes. The line limit holds:
// a read that ends with more than the limit in an unfinished first line
// (no LF yet, or an inline line with a NUL, which redis never ends) stops
// parsing with an error.
//
// Encoded mode: the input is a list of requests, each written as a multibulk
// request or as an inline line (arguments in double quotes with \xHH escapes
// where they need it). In any split the parser must return exactly those
// requests, or stop with "invalid multibulk length" / "invalid bulk length"
// at the first request whose count or argument length is above the limit.

#include <asyncore/loop.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/split.hpp"
#include "request_parser.hpp"

namespace {

// A request's arguments, or a protocol error's text.
struct Event {
    bool error = false;
    std::vector<std::string> args;
    std::string message;
    bool operator==(const Event&) const = default;
};

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "resp_parser: %s\n", what.c_str());
    std::abort();
}

class Recorder : public resp::RequestParser {
  public:
    Recorder(asyncore::ChannelMap& map, resp::RequestLimits limits) : RequestParser(map, limits) {}

    std::vector<Event> events;

  private:
    void on_request(std::span<const std::string_view> argv) override {
        if (errored_) fail("a request was parsed after a protocol error");
        if (argv.empty()) fail("an empty request was passed on");
        events.push_back({false, std::vector<std::string>(argv.begin(), argv.end()), {}});
    }
    void on_protocol_error(std::string_view message) override {
        if (errored_) fail("a second protocol error");
        errored_ = true;
        events.push_back({true, {}, std::string(message)});
    }
    bool errored_ = false;
};

asyncore::ChannelMap& fuzz_map() {
    static asyncore::ChannelMap map;
    return map;
}

// The events of `pieces` read one by one; `reads` is how many reads it took
// until parsing stopped (all of them when it never did).
std::vector<Event> parse(const std::vector<std::string_view>& pieces,
                         const resp::RequestLimits& limits, std::size_t& reads) {
    Recorder parser(fuzz_map(), limits);
    reads = pieces.size();
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        parser.feed(pieces[i]);
        parser.check_line_limit();
        if (parser.stopped() && reads == pieces.size()) reads = i + 1;
    }
    return parser.events;
}

std::string describe(const std::vector<Event>& events) {
    std::string d;
    for (const Event& e : events) {
        if (e.error) {
            d += " error(" + e.message + ")";
        } else {
            d += " request(" + std::to_string(e.args.size()) + " args)";
        }
    }
    return d.empty() ? " nothing" : d;
}

void expect(const std::vector<Event>& want, const std::vector<Event>& got, const char* what) {
    if (want == got) return;
    fail(std::string(what) + "\n  want:" + describe(want) + "\n  got: " + describe(got));
}

// -- Raw mode -------------------------------------------------------------------------

// Whether the first `n` bytes end in an unfinished first line: no LF yet,
// or an inline first line with a NUL before its LF.
bool first_line_unfinished(std::string_view stream, std::size_t n) {
    const std::size_t lf = stream.find('\n');
    if (lf >= n) return true;
    return stream[0] != '*' && stream.substr(0, lf).find('\0') != std::string_view::npos;
}

void check_raw(std::string_view stream, const resp::RequestLimits& limits, std::uint32_t seed) {
    for (std::uint32_t i = 0; i < 3; ++i) {
        std::vector<std::string_view> pieces =
            i == 0 ? fuzz::split_bytes(stream) : fuzz::split_random(stream, seed + i);
        std::size_t reads = 0;
        std::vector<Event> split = parse(pieces, limits, reads);
        std::size_t prefix = 0;
        for (std::size_t k = 0; k < reads; ++k) {
            prefix += pieces[k].size();
            if (k + 1 < reads && prefix > limits.line && first_line_unfinished(stream, prefix)) {
                fail("a read ended " + std::to_string(prefix) +
                     " bytes into an unfinished first line and parsing went on");
            }
        }
        if (prefix > limits.line && first_line_unfinished(stream, prefix) &&
            (split.empty() || !split.back().error)) {
            fail("a first line over the limit is no error:" + describe(split));
        }
        std::size_t one_read = 0;
        expect(parse({stream.substr(0, prefix)}, limits, one_read), split,
               "a split read differs from the same bytes in one read");
    }
}

// -- Encoded mode ---------------------------------------------------------------------

bool plain(std::string_view arg) {
    if (arg.empty()) return false;
    for (char c : arg) {
        if (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' || c == '"' ||
            c == '\'' || c == '\0')
            return false;
    }
    return true;
}

std::string multibulk(const std::vector<std::string>& args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const std::string& a : args)
        out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    return out;
}

// An inline request line: plain arguments as they are, the others in
// double quotes with every byte escaped. A first argument starting with '*'
// would read as a multibulk header, so it is quoted too.
std::string inline_line(const std::vector<std::string>& args, bool lf_only) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (i > 0) out += ' ';
        if (plain(a) && !(i == 0 && a[0] == '*')) {
            out += a;
            continue;
        }
        out += '"';
        for (char c : a) {
            auto b = static_cast<unsigned char>(c);
            out += "\\x";
            out += hex[b >> 4];
            out += hex[b & 15];
        }
        out += '"';
    }
    return out + (lf_only ? "\n" : "\r\n");
}

void check_encoded(FuzzedDataProvider& in, const resp::RequestLimits& limits, std::uint32_t seed) {
    std::string stream;
    std::vector<Event> want;
    bool stopped = false;
    while (in.remaining_bytes() > 0) {
        const bool as_multibulk = in.ConsumeBool();
        const bool lf_only = in.ConsumeBool();
        std::vector<std::string> args(in.ConsumeIntegralInRange<std::size_t>(1, 4));
        for (std::string& a : args)
            a = in.ConsumeRandomLengthString(24);
        if (as_multibulk) {
            stream += multibulk(args);
        } else {
            stream += inline_line(args, lf_only);
        }
        if (stopped) continue;
        if (as_multibulk && static_cast<std::int64_t>(args.size()) > limits.multibulk) {
            want.push_back({true, {}, "ERR Protocol error: invalid multibulk length"});
            stopped = true;
            continue;
        }
        bool too_long = false;
        for (const std::string& a : args)
            too_long = too_long || static_cast<std::int64_t>(a.size()) > limits.bulk;
        if (as_multibulk && too_long) {
            want.push_back({true, {}, "ERR Protocol error: invalid bulk length"});
            stopped = true;
            continue;
        }
        want.push_back({false, args, {}});
    }
    for (std::uint32_t i = 0; i < 3; ++i) {
        std::vector<std::string_view> pieces =
            i == 0 ? std::vector<std::string_view>{stream} : fuzz::split_random(stream, seed + i);
        std::size_t reads = 0;
        expect(want, parse(pieces, limits, reads), "encoded requests parsed differently");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    const bool encoded = in.ConsumeBool();
    resp::RequestLimits limits;
    limits.bulk = in.ConsumeIntegralInRange<std::int64_t>(0, 32);
    limits.multibulk = in.ConsumeIntegralInRange<std::int64_t>(0, 6);
    const std::uint32_t seed = in.ConsumeIntegral<std::uint32_t>();
    if (encoded) {
        // Lines complete within the input never meet redis' 64 KiB line limit.
        check_encoded(in, limits, seed);
    } else {
        limits.line = in.ConsumeIntegralInRange<std::size_t>(0, 48);
        check_raw(in.ConsumeRemainingBytesAsString(), limits, seed);
    }
    return 0;
}
