// RESP2 request framing details that redis-server 7.0 defines: limits,
// protocol error texts, and the inline-command tokenizer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace resp {

/// A request line (inline command, "*N" or "$N" header) may not exceed this
/// without its newline (redis' PROTO_INLINE_MAX_SIZE).
constexpr std::size_t max_line = 64 * 1024;
/// The largest bulk argument accepted (redis' proto-max-bulk-len default).
constexpr std::int64_t max_bulk = 512ll * 1024 * 1024;
/// The largest multibulk count accepted (redis 7.0: INT_MAX).
constexpr std::int64_t max_multibulk = 2147483647;

/// Arguments stored back to back in one buffer: no allocation per argument
/// once the buffers have grown to the connection's usual request size.
struct ArgBuffer {
    std::string bytes;
    std::vector<std::size_t> ends;  ///< one past each argument's last byte

    void clear() noexcept {
        bytes.clear();
        ends.clear();
    }
    void end_arg() { ends.push_back(bytes.size()); }
    std::size_t count() const noexcept { return ends.size(); }
    /// Views of the arguments, valid until the buffer changes.
    void views(std::vector<std::string_view>& out) const;
};

/// Splits an inline command line into arguments as redis' sdssplitargs
/// does: blanks separate arguments; "double quotes" understand \n \r \t \b
/// \a \xHH and \<any>; 'single quotes' understand \'; a closing quote must
/// be followed by a blank or the end. Appends the arguments to `args`.
/// Returns false on unbalanced quotes.
bool split_inline(std::string_view line, ArgBuffer& args);

}  // namespace resp
