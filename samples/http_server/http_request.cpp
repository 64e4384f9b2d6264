// http_server's request head parser.

#include "http_request.hpp"

#include <cctype>
#include <cstdlib>

namespace http {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

}  // namespace

std::optional<Request> parse_request_head(std::string_view head) {
    Request r;
    std::size_t eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    std::size_t sp1 = line.find(' ');
    std::size_t sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1) return std::nullopt;
    r.method = line.substr(0, sp1);
    r.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    r.version = line.substr(sp2 + 1);
    if (r.version != "HTTP/1.1" && r.version != "HTTP/1.0") return std::nullopt;
    if (r.target.empty() || r.target[0] != '/') return std::nullopt;
    r.keep_alive = r.version == "HTTP/1.1";
    while (eol != std::string_view::npos) {
        head.remove_prefix(eol + 2);
        eol = head.find("\r\n");
        std::string_view h = head.substr(0, eol);
        std::size_t colon = h.find(':');
        if (colon == std::string_view::npos || colon == 0) return std::nullopt;
        std::string name = lower(h.substr(0, colon));
        std::string_view value = h.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
            value.remove_prefix(1);
        if (name == "connection") {
            std::string v = lower(value);
            if (v == "close") r.keep_alive = false;
            if (v == "keep-alive") r.keep_alive = true;
        } else if (name == "content-length") {
            char* end = nullptr;
            std::string v(value);
            r.content_length = std::strtoul(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0') return std::nullopt;
        }
    }
    return r;
}

}  // namespace http
