// http_server's request head parser, after RFC 9112. It is strict wherever
// leniency would let the server frame a request differently from a proxy in
// front of it (request smuggling): such a head is refused (400), not
// guessed at.

#include "http_request.hpp"

#include <limits>
#include <string_view>

namespace http {
namespace {

bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_tchar(c)) return false;
    return true;
}

// A control byte other than HTAB: a bare CR or LF above all, which some
// servers and proxies take for the end of a line and others do not.
bool has_control(std::string_view line) {
    for (char c : line) {
        auto b = static_cast<unsigned char>(c);
        if ((b < 0x20 && c != '\t') || b == 0x7f) return true;
    }
    return false;
}

char ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view lower) {
    if (a.size() != lower.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != lower[i]) return false;
    return true;
}

// A field value without the optional whitespace around it.
std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

// Content-Length = 1*DIGIT: no sign, no base prefix, no overflow.
std::optional<std::size_t> parse_length(std::string_view digits) {
    if (digits.empty()) return std::nullopt;
    std::size_t n = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return std::nullopt;
        auto d = static_cast<std::size_t>(c - '0');
        if (n > (std::numeric_limits<std::size_t>::max() - d) / 10) return std::nullopt;
        n = n * 10 + d;
    }
    return n;
}

}  // namespace

std::optional<Request> parse_request_head(std::string_view head) {
    Request r;
    std::size_t eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    if (has_control(line)) return std::nullopt;
    // method SP request-target SP HTTP-version, and nothing else.
    std::size_t sp1 = line.find(' ');
    std::size_t sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1) return std::nullopt;
    r.method = line.substr(0, sp1);
    r.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    r.version = line.substr(sp2 + 1);
    if (!is_token(r.method) || r.target.find_first_of(" \t") != std::string::npos) {
        return std::nullopt;
    }
    if (r.version != "HTTP/1.1" && r.version != "HTTP/1.0") return std::nullopt;
    if (r.target.empty() || r.target[0] != '/') return std::nullopt;
    r.keep_alive = r.version == "HTTP/1.1";
    std::optional<std::size_t> content_length;
    while (eol != std::string_view::npos) {
        head.remove_prefix(eol + 2);
        eol = head.find("\r\n");
        std::string_view h = head.substr(0, eol);
        if (has_control(h)) return std::nullopt;
        // A name that is not a token covers whitespace before the colon
        // and obsolete line folding, both of which RFC 9112 makes a 400.
        std::size_t colon = h.find(':');
        if (colon == std::string_view::npos || !is_token(h.substr(0, colon))) return std::nullopt;
        std::string_view name = h.substr(0, colon);
        std::string_view value = trim_ows(h.substr(colon + 1));
        if (iequals(name, "connection")) {
            if (iequals(value, "close")) r.keep_alive = false;
            if (iequals(value, "keep-alive")) r.keep_alive = true;
        } else if (iequals(name, "content-length")) {
            std::optional<std::size_t> n = parse_length(value);
            if (!n || (content_length && *content_length != *n)) return std::nullopt;
            content_length = n;
        } else if (iequals(name, "transfer-encoding")) {
            // The body would be framed by a coding this server does not decode.
            return std::nullopt;
        }
    }
    r.content_length = content_length.value_or(0);
    return r;
}

}  // namespace http
