// Properties of http_server's request head parser (samples/http_server,
// parse_request_head), for any bytes:
//
// - A request it accepts satisfies what the server relies on: the target
//   starts with '/', the version is HTTP/1.0 or HTTP/1.1.
// - A reference parser, written here from RFC 9112 in plain loops, accepts
//   and rejects the same heads and reads the same request from them. It
//   rejects what would let the server frame a request differently from a
//   proxy in front of it: control bytes (a bare CR or LF) in the head, a
//   request line that is not exactly three parts, a header name that is not
//   a token (whitespace before the colon, obsolete line folding), a
//   Content-Length that is not 1*DIGIT (within its optional whitespace) or
//   that a second one contradicts, and any Transfer-Encoding (the server
//   decodes none).
// - Header names are case-insensitive: the head with the letters of its
//   header names flipped gives the same result.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http_request.hpp"

namespace {

[[noreturn]] void fail(const std::string& what, std::string_view head) {
    std::string shown;
    for (char c : head) {
        auto b = static_cast<unsigned char>(c);
        if (b >= 0x20 && b < 0x7f) {
            shown += c;
        } else {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", b);
            shown += hex;
        }
    }
    std::fprintf(stderr, "http_parser: %s\n  head: %s\n", what.c_str(), shown.c_str());
    std::abort();
}

// -- The reference ----------------------------------------------------------------------

bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    for (char t : std::string_view("!#$%&'*+-.^_`|~"))
        if (c == t) return true;
    return false;
}

bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_tchar(c)) return false;
    return true;
}

bool is_control(char c) {
    auto b = static_cast<unsigned char>(c);
    return b < 0x20 || b == 0x7f;
}

char ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

std::optional<std::size_t> parse_digits(std::string_view s) {
    if (s.empty()) return std::nullopt;
    std::size_t n = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        std::size_t d = static_cast<std::size_t>(c - '0');
        if (n > (std::numeric_limits<std::size_t>::max() - d) / 10) return std::nullopt;
        n = n * 10 + d;
    }
    return n;
}

std::vector<std::string_view> split_lines(std::string_view head) {
    std::vector<std::string_view> lines;
    std::size_t start = 0;
    for (std::size_t i = 0; i + 1 < head.size(); ++i) {
        if (head[i] == '\r' && head[i + 1] == '\n') {
            lines.push_back(head.substr(start, i - start));
            start = i + 2;
            ++i;
        }
    }
    lines.push_back(head.substr(start));
    return lines;
}

std::optional<http::Request> reference(std::string_view head) {
    std::vector<std::string_view> lines = split_lines(head);
    for (std::string_view line : lines) {
        for (char c : line)
            if (is_control(c) && c != '\t') return std::nullopt;
    }
    // request-line = method SP request-target SP HTTP-version
    std::vector<std::string_view> parts;
    std::string_view request_line = lines[0];
    std::size_t start = 0;
    for (std::size_t i = 0; i <= request_line.size(); ++i) {
        if (i == request_line.size() || request_line[i] == ' ') {
            parts.push_back(request_line.substr(start, i - start));
            start = i + 1;
        }
    }
    if (parts.size() != 3 || !is_token(parts[0])) return std::nullopt;
    http::Request r;
    r.method = parts[0];
    r.target = parts[1];
    r.version = parts[2];
    if (r.target.empty() || r.target[0] != '/') return std::nullopt;
    for (char c : r.target)
        if (c == '\t') return std::nullopt;
    if (r.version != "HTTP/1.0" && r.version != "HTTP/1.1") return std::nullopt;
    r.keep_alive = r.version == "HTTP/1.1";
    std::optional<std::size_t> content_length;
    for (std::size_t i = 1; i < lines.size(); ++i) {
        std::string_view line = lines[i];
        std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) return std::nullopt;
        std::string_view name = line.substr(0, colon);
        std::string_view value = trim_ows(line.substr(colon + 1));
        if (!is_token(name)) return std::nullopt;
        if (iequals(name, "connection")) {
            if (iequals(value, "close")) r.keep_alive = false;
            if (iequals(value, "keep-alive")) r.keep_alive = true;
        } else if (iequals(name, "content-length")) {
            std::optional<std::size_t> n = parse_digits(value);
            if (!n || (content_length && *content_length != *n)) return std::nullopt;
            content_length = n;
        } else if (iequals(name, "transfer-encoding")) {
            return std::nullopt;
        }
    }
    r.content_length = content_length.value_or(0);
    return r;
}

// -- Checks ---------------------------------------------------------------------------

bool same(const std::optional<http::Request>& a, const std::optional<http::Request>& b) {
    if (!a || !b) return !a && !b;
    return a->method == b->method && a->target == b->target && a->version == b->version &&
           a->keep_alive == b->keep_alive && a->content_length == b->content_length;
}

std::string describe(const std::optional<http::Request>& r) {
    if (!r) return "rejected";
    return "accepted: method '" + r->method + "', target '" + r->target + "', " + r->version +
           ", keep-alive " + (r->keep_alive ? "yes" : "no") + ", Content-Length " +
           std::to_string(r->content_length);
}

// The head with the case of the letters in header names flipped where
// `flips` (cycled) has a 1 bit.
std::string flip_name_case(std::string_view head, std::string_view flips) {
    std::string out(head);
    if (flips.empty()) return out;
    std::size_t bit = 0;
    bool in_name = false;
    for (std::size_t i = 0; i < out.size(); ++i) {
        if (i >= 2 && out[i - 2] == '\r' && out[i - 1] == '\n') in_name = true;
        if (out[i] == ':' || out[i] == '\r') in_name = false;
        char& c = out[i];
        if (!in_name || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) continue;
        auto mask = static_cast<unsigned char>(flips[(bit / 8) % flips.size()]);
        if (mask >> (bit % 8) & 1) c = static_cast<char>(c ^ 0x20);
        ++bit;
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    const std::string flips = in.ConsumeBytesAsString(2);
    const std::string head = in.ConsumeRemainingBytesAsString();

    const std::optional<http::Request> got = http::parse_request_head(head);
    if (got) {
        if (got->target.empty() || got->target[0] != '/') fail("a target without '/'", head);
        if (got->version != "HTTP/1.0" && got->version != "HTTP/1.1")
            fail("a version other than HTTP/1.0 and HTTP/1.1", head);
    }
    const std::optional<http::Request> want = reference(head);
    if (!same(got, want)) {
        fail("the parser and the reference disagree\n  parser:    " + describe(got) +
                 "\n  reference: " + describe(want),
             head);
    }
    const std::string flipped = flip_name_case(head, flips);
    if (!same(got, http::parse_request_head(flipped))) {
        fail("flipping the case of header names changes the result", flipped);
    }
    return 0;
}
