#include "reply.hpp"

namespace resp {

void add_error(std::string& out, std::string_view message) {
    out.push_back('-');
    std::size_t start = out.size();
    out.append(message);
    for (std::size_t i = start; i < out.size(); ++i) {
        if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
    }
    out.append("\r\n");
}

}  // namespace resp
