#include "protocol.hpp"

namespace resp {

void ArgBuffer::views(std::vector<std::string_view>& out) const {
    out.clear();
    std::size_t start = 0;
    for (std::size_t end : ends) {
        out.emplace_back(bytes.data() + start, end - start);
        start = end;
    }
}

namespace {

bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char unescape(char c) {
    switch (c) {
        case 'n':
            return '\n';
        case 'r':
            return '\r';
        case 't':
            return '\t';
        case 'b':
            return '\b';
        case 'a':
            return '\a';
        default:
            return c;
    }
}

// A closing quote at `i` must end the line or be followed by a blank.
bool closes_cleanly(std::string_view s, std::size_t i) {
    return i + 1 == s.size() || is_blank(s[i + 1]);
}

// Reads a "double quoted" token body from s[i] (just after the quote);
// leaves `i` on the closing quote.
bool read_double_quoted(std::string_view s, std::size_t& i, std::string& out) {
    for (; i < s.size(); ++i) {
        char c = s[i];
        if (c == '\\' && i + 3 < s.size() && s[i + 1] == 'x' && hex_value(s[i + 2]) >= 0 &&
            hex_value(s[i + 3]) >= 0) {
            out.push_back(static_cast<char>(hex_value(s[i + 2]) * 16 + hex_value(s[i + 3])));
            i += 3;
        } else if (c == '\\' && i + 1 < s.size()) {
            out.push_back(unescape(s[++i]));
        } else if (c == '"') {
            return closes_cleanly(s, i);
        } else {
            out.push_back(c);
        }
    }
    return false;
}

bool read_single_quoted(std::string_view s, std::size_t& i, std::string& out) {
    for (; i < s.size(); ++i) {
        char c = s[i];
        if (c == '\\' && i + 1 < s.size() && s[i + 1] == '\'') {
            out.push_back('\'');
            ++i;
        } else if (c == '\'') {
            return closes_cleanly(s, i);
        } else {
            out.push_back(c);
        }
    }
    return false;
}

// Reads one token starting at s[i] (not a blank); leaves `i` past it.
bool read_token(std::string_view s, std::size_t& i, std::string& out) {
    for (; i < s.size(); ++i) {
        char c = s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') break;
        if (c == '"' || c == '\'') {
            ++i;
            bool ok = c == '"' ? read_double_quoted(s, i, out) : read_single_quoted(s, i, out);
            if (!ok) return false;
            ++i;  // past the closing quote, which ends the token
            break;
        }
        out.push_back(c);
    }
    return true;
}

}  // namespace

bool split_inline(std::string_view line, ArgBuffer& args) {
    std::size_t i = 0;
    while (true) {
        while (i < line.size() && is_blank(line[i]))
            ++i;
        if (i == line.size()) return true;
        if (!read_token(line, i, args.bytes)) return false;
        args.end_arg();
    }
}

}  // namespace resp
