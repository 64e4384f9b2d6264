// Redis-style glob matching, as KEYS and CONFIG GET use it.
#pragma once

#include <string_view>

namespace resp {

/// True if `text` matches `pattern` with redis' glob rules: `*` any run of
/// bytes, `?` one byte, `[abc]` a set, `[^abc]` its complement, `[a-z]` a
/// range (either order), `\x` the byte x literally. An unterminated set ends
/// at the end of the pattern, as in redis. Binary-safe; case-sensitive.
bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace resp
