// Redis' glob dialect differs from fnmatch(3) in small ways that clients can
// see (`[]` is an empty set, a trailing `\` is literal, an open `[` runs to
// the end), so it is implemented here rather than borrowed from libc.

#include "glob.hpp"

#include <cstddef>
#include <utility>

namespace resp {
namespace {

// Redis gives up on patterns whose stars nest deeper than this, to bound
// the work a hostile pattern can cause.
constexpr int max_star_nesting = 1000;

struct Matcher {
    std::string_view pat;
    std::string_view str;
    // Set once a star failed to match the rest of the text at any length:
    // every enclosing star would fail too, so they all stop trying.
    bool give_up = false;

    bool match(std::size_t p, std::size_t s, int nesting);
    bool match_star(std::size_t p, std::size_t s, int nesting);
    bool match_set(std::size_t& p, char c) const;
};

// Matches one character class starting just after '['; leaves `p` on its
// closing ']' (or on the last pattern byte when the set is unterminated).
bool Matcher::match_set(std::size_t& p, char c) const {
    bool negate = p < pat.size() && pat[p] == '^';
    if (negate) ++p;
    bool found = false;
    for (;; ++p) {
        std::size_t left = pat.size() - p;
        if (left >= 2 && pat[p] == '\\') {
            ++p;
            found = found || pat[p] == c;
        } else if (left > 0 && pat[p] == ']') {
            break;
        } else if (left == 0) {
            --p;
            break;
        } else if (left >= 3 && pat[p + 1] == '-') {
            auto lo = static_cast<unsigned char>(pat[p]);
            auto hi = static_cast<unsigned char>(pat[p + 2]);
            if (lo > hi) std::swap(lo, hi);
            auto uc = static_cast<unsigned char>(c);
            found = found || (uc >= lo && uc <= hi);
            p += 2;
        } else {
            found = found || pat[p] == c;
        }
    }
    return negate ? !found : found;
}

bool Matcher::match_star(std::size_t p, std::size_t s, int nesting) {
    while (p + 1 < pat.size() && pat[p + 1] == '*')
        ++p;
    if (p + 1 == pat.size()) return true;
    for (; s < str.size(); ++s) {
        if (match(p + 1, s, nesting + 1)) return true;
        if (give_up) return false;
    }
    give_up = true;
    return false;
}

bool Matcher::match(std::size_t p, std::size_t s, int nesting) {
    if (nesting > max_star_nesting) return false;
    while (p < pat.size() && s < str.size()) {
        switch (pat[p]) {
            case '*':
                return match_star(p, s, nesting);
            case '?':
                ++s;
                break;
            case '[':
                ++p;
                if (!match_set(p, str[s])) return false;
                ++s;
                break;
            case '\\':
                if (pat.size() - p >= 2) ++p;
                [[fallthrough]];
            default:
                if (pat[p] != str[s]) return false;
                ++s;
        }
        ++p;
        if (s == str.size()) {
            while (p < pat.size() && pat[p] == '*')
                ++p;
            break;
        }
    }
    return p == pat.size() && s == str.size();
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view text) {
    Matcher m{pattern, text};
    return m.match(0, 0, 0);
}

}  // namespace resp
