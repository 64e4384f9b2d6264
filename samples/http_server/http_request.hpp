// The request head of http_server: its request line and the headers the
// server acts on, parsed from the bytes before the blank line.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace http {

struct Request {
    std::string method, target, version;
    bool keep_alive = true;
    std::size_t content_length = 0;
};

/// Parses a request head (without its final blank line): the request line,
/// then header lines, each ended by CRLF. nullopt if malformed. An accepted
/// request's target starts with '/' and its version is HTTP/1.0 or
/// HTTP/1.1; header names are matched without regard to case. Refused as
/// well, so that no proxy in front frames the request otherwise: control
/// bytes (a bare CR or LF), a request line of more than three parts, a
/// header name that is not a token, a Content-Length that is not digits or
/// that another contradicts, and any Transfer-Encoding.
std::optional<Request> parse_request_head(std::string_view head);

}  // namespace http
