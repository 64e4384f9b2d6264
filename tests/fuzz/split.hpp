// Ways to split a byte stream into reads, for the fuzz targets whose property
// is "the same result whatever the split".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace fuzz {

/// One byte per piece.
inline std::vector<std::string_view> split_bytes(std::string_view s) {
    std::vector<std::string_view> pieces;
    for (std::size_t i = 0; i < s.size(); ++i)
        pieces.push_back(s.substr(i, 1));
    return pieces;
}

/// Pieces of pseudo-random sizes drawn from `seed`: mostly short (0 to 3
/// bytes, empty pieces included) so that terminators and headers get cut
/// everywhere, sometimes up to 64 bytes.
inline std::vector<std::string_view> split_random(std::string_view s, std::uint32_t seed) {
    std::uint32_t x = seed | 1;
    auto next = [&x] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return x;
    };
    std::vector<std::string_view> pieces;
    std::size_t pos = 0;
    while (pos < s.size()) {
        std::uint32_t r = next();
        std::size_t n = (r & 3) != 0 ? (r >> 2) % 4 : (r >> 2) % 65;
        if (n > s.size() - pos) n = s.size() - pos;
        pieces.push_back(s.substr(pos, n));
        pos += n;
    }
    return pieces;
}

}  // namespace fuzz
