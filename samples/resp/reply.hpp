// RESP2 reply encoding: helpers that append one reply to an output buffer.
// Every reply of a read is appended to the same buffer and sent with one
// push, so encoding must not allocate beyond the buffer's own growth.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace resp {

inline void add_raw(std::string& out, std::string_view text) {
    out.append(text);
}

inline void add_ok(std::string& out) {
    out.append("+OK\r\n");
}

inline void add_null(std::string& out) {
    out.append("$-1\r\n");
}

inline void add_status(std::string& out, std::string_view status) {
    out.push_back('+');
    out.append(status);
    out.append("\r\n");
}

/// Appends a prefix byte, a decimal integer and CRLF (":42", "*3", "$5").
inline void add_prefixed_int(std::string& out, char prefix, std::int64_t n) {
    char buf[24];
    buf[0] = prefix;
    auto res = std::to_chars(buf + 1, buf + sizeof buf - 2, n);
    res.ptr[0] = '\r';
    res.ptr[1] = '\n';
    out.append(buf, static_cast<std::size_t>(res.ptr + 2 - buf));
}

inline void add_int(std::string& out, std::int64_t n) {
    add_prefixed_int(out, ':', n);
}

inline void add_array(std::string& out, std::size_t n) {
    add_prefixed_int(out, '*', static_cast<std::int64_t>(n));
}

inline void add_bulk(std::string& out, std::string_view data) {
    add_prefixed_int(out, '$', static_cast<std::int64_t>(data.size()));
    out.append(data);
    out.append("\r\n");
}

/// An error reply. `message` carries its own code ("ERR ...", "WRONGTYPE
/// ..."); CR and LF inside it become spaces so that the reply stays one line,
/// as redis does for errors that quote client input.
void add_error(std::string& out, std::string_view message);

}  // namespace resp
