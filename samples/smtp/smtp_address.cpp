// A port of the RFC 5322 address grammar of Python's
// email/_header_value_parser.py, limited to what smtpd reaches. Each get_*
// function mirrors its Python namesake: it parses a prefix of `v` into a
// token tree and advances `v` past it, or throws AddressError and leaves `v`
// as it was (the Python functions return the unparsed rest and are pure).
// The tree is kept, not just the text, because the normalised address
// (LocalPart.local_part, Domain.domain, AddrSpec.addr_spec) depends on where
// comments and folding whitespace sat in it.
#include "smtp_address.hpp"

#include <deque>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace smtp {
namespace {

constexpr std::string_view wsp = " \t";
constexpr std::string_view cfws_leader = " \t(";
constexpr std::string_view specials = "()<>@,:;.\\\"[]";
constexpr std::string_view atom_ends = "()<>@,:;.\\\"[] \t";
constexpr std::string_view dot_atom_ends = "()<>@,:;\\\"[] \t";
constexpr std::string_view phrase_ends = ")<>@,:;\\[]";
// str.lstrip()/str.split() whitespace, restricted to ASCII.
constexpr std::string_view py_space = " \t\n\r\v\f\x1c\x1d\x1e\x1f";

bool in(std::string_view set, char c) {
    return set.find(c) != std::string_view::npos;
}
bool starts_in(std::string_view v, std::string_view set) {
    return !v.empty() && in(set, v[0]);
}

[[noreturn]] void fail(const char* what) {
    throw AddressError(what);
}

// A node of the parse tree: a ValueTerminal, a WhiteSpaceTerminal or a
// TokenList, with its Python token_type.
struct Tok {
    enum class Kind { value, space, list };
    Kind kind = Kind::list;
    std::string type;
    std::string text;
    std::vector<Tok> kids;

    bool is_list() const { return kind == Kind::list; }
};

Tok value_terminal(std::string text, std::string type) {
    return {Tok::Kind::value, std::move(type), std::move(text), {}};
}
Tok space_terminal(std::string text, std::string type) {
    return {Tok::Kind::space, std::move(type), std::move(text), {}};
}
Tok token_list(std::string type) {
    return {Tok::Kind::list, std::move(type), {}, {}};
}
Tok dot() {
    return value_terminal(".", "dot");
}

std::string str(const Tok& t);
std::string value(const Tok& t);

std::string comment_quote(const Tok& t) {
    if (t.type == "comment") return str(t);
    std::string out;
    for (char c : str(t)) {
        if (c == '\\' || c == '(' || c == ')') out += '\\';
        out += c;
    }
    return out;
}

std::string join_str(const Tok& t) {
    std::string out;
    for (const Tok& k : t.kids)
        out += str(k);
    return out;
}

// Python's str(token): the source text, re-quoted where it was unquoted.
std::string str(const Tok& t) {
    if (!t.is_list()) return t.text;
    if (t.type == "bare-quoted-string") return quote_string(join_str(t));
    if (t.type == "comment") {
        std::string out = "(";
        for (const Tok& k : t.kids)
            out += comment_quote(k);
        return out + ")";
    }
    return join_str(t);
}

std::string quoted_value(const Tok& quoted_string) {
    std::string out;
    for (const Tok& k : quoted_string.kids)
        out += k.type == "bare-quoted-string" ? str(k) : value(k);
    return out;
}

std::string_view rstrip(std::string_view s) {
    auto end = s.find_last_not_of(py_space);
    return end == std::string_view::npos ? std::string_view{} : s.substr(0, end + 1);
}
std::string_view lstrip(std::string_view s) {
    auto begin = s.find_first_not_of(py_space);
    return begin == std::string_view::npos ? std::string_view{} : s.substr(begin);
}

// Python's token.value: the semantic text, comments and folding as one space.
std::string value(const Tok& t) {
    if (t.kind == Tok::Kind::value) return t.text;
    if (t.kind == Tok::Kind::space || t.type == "cfws" || t.type == "comment") return " ";
    if (t.type == "bare-quoted-string") return join_str(t);
    if (t.type == "local-part") {
        const Tok& k = t.kids.at(0);
        return k.type == "quoted-string" ? quoted_value(k) : value(k);
    }
    if (t.type == "addr-spec" && t.kids.size() >= 3) {
        return std::string(rstrip(value(t.kids[0]))) + value(t.kids[1]) +
               std::string(lstrip(value(t.kids[2])));
    }
    if (t.type == "addr-spec") return value(t.kids.at(0));
    std::string out;
    for (const Tok& k : t.kids)
        out += value(k);
    return out;
}

// Domain.domain: ''.join(value.split()).
std::string domain_text(const Tok& domain) {
    std::string out;
    for (char c : value(domain))
        if (!in(py_space, c)) out += c;
    return out;
}

// LocalPart.local_part: the value with whitespace stripped from the ends and
// around dots.
std::string local_part_text(const Tok& local_part) {
    std::vector<Tok> res{dot()};
    std::vector<Tok> toks = local_part.kids.at(0).kids;
    toks.push_back(dot());
    bool last_is_tl = false;
    for (const Tok& tok : toks) {
        if (tok.type == "cfws") continue;
        const Tok& last = res.back();
        if (last_is_tl && tok.type == "dot" && last.kids.at(last.kids.size() - 1).type == "cfws") {
            Tok trimmed = token_list("");
            trimmed.kids.assign(last.kids.begin(), last.kids.end() - 1);
            res.back() = std::move(trimmed);
        }
        bool is_tl = tok.is_list();
        if (is_tl && res.back().type == "dot" && tok.kids.at(0).type == "cfws") {
            Tok trimmed = token_list("");
            trimmed.kids.assign(tok.kids.begin() + 1, tok.kids.end());
            res.push_back(std::move(trimmed));
        } else {
            res.push_back(tok);
        }
        last_is_tl = is_tl;
    }
    std::string out;
    for (std::size_t i = 1; i + 1 < res.size(); ++i)
        out += value(res[i]);
    return out;
}

std::string addr_spec_text(const Tok& addr_spec) {
    std::string lp = local_part_text(addr_spec.kids.at(0));
    bool needs_quotes = lp.find_first_of(dot_atom_ends) != std::string::npos;
    if (needs_quotes) lp = quote_string(lp);
    if (addr_spec.kids.size() < 3) return lp;
    return lp + "@" + domain_text(addr_spec.kids.back());
}

std::string angle_addr_text(const Tok& angle_addr) {
    for (const Tok& k : angle_addr.kids) {
        if (k.type != "addr-spec") continue;
        std::string lp = local_part_text(k.kids.at(0));
        return lp.empty() ? quote_string(lp) + addr_spec_text(k) : addr_spec_text(k);
    }
    return "<>";
}

class Parser {
  public:
    ParsedAddress parse(std::string_view arg);

  private:
    // _get_ptext_to_endchars: the run of text up to an unescaped end char or
    // whitespace, with quoted pairs decoded.
    std::string ptext_to_endchars(std::string_view& v, std::string_view endchars) {
        auto ws = v.find_first_of(wsp);
        std::string_view fragment = v.substr(0, ws);
        if (fragment.empty()) fail("empty text");
        std::string chars;
        bool escape = false;
        std::size_t pos = 0;
        for (; pos < fragment.size(); ++pos) {
            char c = fragment[pos];
            if (c == '\\' && !escape) {
                escape = true;
                continue;
            }
            if (c == '\\') escape = false;
            if (escape) {
                escape = false;
            } else if (in(endchars, c)) {
                break;
            }
            chars += c;
        }
        v.remove_prefix(pos);
        return chars;
    }

    Tok get_fws(std::string_view& v) {
        auto rest = lstrip(v);
        Tok t = space_terminal(std::string(v.substr(0, v.size() - rest.size())), "fws");
        v = rest;
        return t;
    }

    Tok get_atext(std::string_view& v) {
        auto end = v.find_first_of(atom_ends);
        if (end == 0 || v.empty()) fail("expected atext");
        Tok t = value_terminal(std::string(v.substr(0, end)), "atext");
        v.remove_prefix(t.text.size());
        return t;
    }

    Tok get_comment(std::string_view& v) {
        if (v.empty() || v[0] != '(') fail("expected '('");
        Tok comment = token_list("comment");
        v.remove_prefix(1);
        while (!v.empty() && v[0] != ')') {
            if (in(wsp, v[0])) {
                comment.kids.push_back(get_fws(v));
            } else if (v[0] == '(') {
                comment.kids.push_back(get_comment(v));
            } else {
                comment.kids.push_back(space_terminal(ptext_to_endchars(v, "()"), "ptext"));
            }
        }
        if (!v.empty()) v.remove_prefix(1);
        return comment;
    }

    Tok get_cfws(std::string_view& v) {
        Tok cfws = token_list("cfws");
        while (starts_in(v, cfws_leader))
            cfws.kids.push_back(in(wsp, v[0]) ? get_fws(v) : get_comment(v));
        return cfws;
    }

    Tok get_bare_quoted_string(std::string_view& v) {
        if (v.empty() || v[0] != '"') fail("expected '\"'");
        Tok bqs = token_list("bare-quoted-string");
        v.remove_prefix(1);
        if (!v.empty() && v[0] == '"')
            bqs.kids.push_back(value_terminal(ptext_to_endchars(v, "\""), "ptext"));
        while (!v.empty() && v[0] != '"') {
            if (in(wsp, v[0])) {
                bqs.kids.push_back(get_fws(v));
            } else {
                bqs.kids.push_back(value_terminal(ptext_to_endchars(v, "\""), "ptext"));
            }
        }
        if (!v.empty()) v.remove_prefix(1);
        return bqs;
    }

    Tok get_quoted_string(std::string_view& v) {
        Tok qs = token_list("quoted-string");
        if (starts_in(v, cfws_leader)) qs.kids.push_back(get_cfws(v));
        qs.kids.push_back(get_bare_quoted_string(v));
        if (starts_in(v, cfws_leader)) qs.kids.push_back(get_cfws(v));
        return qs;
    }

    Tok get_atom(std::string_view& v) {
        Tok atom = token_list("atom");
        if (starts_in(v, cfws_leader)) atom.kids.push_back(get_cfws(v));
        if (starts_in(v, atom_ends)) fail("expected atom");
        atom.kids.push_back(get_atext(v));
        if (starts_in(v, cfws_leader)) atom.kids.push_back(get_cfws(v));
        return atom;
    }

    Tok get_dot_atom_text(std::string_view& v) {
        if (v.empty() || in(atom_ends, v[0])) fail("expected dot-atom-text");
        Tok text = token_list("dot-atom-text");
        while (!v.empty() && !in(atom_ends, v[0])) {
            text.kids.push_back(get_atext(v));
            if (!v.empty() && v[0] == '.') {
                text.kids.push_back(dot());
                v.remove_prefix(1);
            }
        }
        if (text.kids.back().type == "dot") fail("expected atom at end of dot-atom-text");
        return text;
    }

    Tok get_dot_atom(std::string_view& v) {
        if (v.empty()) fail("expected dot-atom");
        Tok da = token_list("dot-atom");
        if (in(cfws_leader, v[0])) da.kids.push_back(get_cfws(v));
        da.kids.push_back(get_dot_atom_text(v));
        if (starts_in(v, cfws_leader)) da.kids.push_back(get_cfws(v));
        return da;
    }

    Tok get_word(std::string_view& v) {
        if (v.empty()) fail("expected word");
        std::optional<Tok> leader;
        if (in(cfws_leader, v[0])) leader = get_cfws(v);
        if (v.empty()) fail("expected 'atom' or 'quoted-string'");
        Tok token;
        if (v[0] == '"') {
            token = get_quoted_string(v);
        } else if (in(specials, v[0])) {
            fail("expected 'atom' or 'quoted-string'");
        } else {
            token = get_atom(v);
        }
        if (leader) token.kids.insert(token.kids.begin(), std::move(*leader));
        return token;
    }

    // Runs `get` on a copy of `v`, committing only on success (the Python
    // functions return the rest instead of consuming).
    template <class Get>
    std::optional<Tok> attempt(std::string_view& v, Get get) {
        auto copy = v;
        try {
            Tok t = (this->*get)(copy);
            v = copy;
            return t;
        } catch (const AddressError&) {
            return std::nullopt;
        }
    }

    Tok get_local_part(std::string_view& v) {
        if (v.empty()) fail("expected local-part");
        std::optional<Tok> leader;
        if (in(cfws_leader, v[0])) leader = get_cfws(v);
        if (v.empty()) fail("expected local-part");
        auto token = attempt(v, &Parser::get_dot_atom);
        if (!token) token = attempt(v, &Parser::get_word);
        if (!token) {
            if (v[0] != '\\' && in(phrase_ends, v[0])) fail("expected local-part");
            token = token_list("");
        }
        if (leader) token->kids.insert(token->kids.begin(), std::move(*leader));
        Tok local_part = token_list("local-part");
        local_part.kids.push_back(std::move(*token));
        if (!v.empty() && (v[0] == '\\' || !in(phrase_ends, v[0]))) {
            arena_.push_back(str(local_part) + std::string(v));
            std::string_view joined = arena_.back();
            local_part.kids[0] = get_obs_local_part(joined);
            v = joined;
        }
        return local_part;
    }

    Tok get_obs_local_part(std::string_view& v) {
        Tok obs = token_list("obs-local-part");
        while (!v.empty() && (v[0] == '\\' || !in(phrase_ends, v[0]))) {
            if (v[0] == '.' || v[0] == '\\') {
                obs.kids.push_back(value_terminal(std::string(1, v[0]),
                                                  v[0] == '.' ? "dot" : "misplaced-special"));
                v.remove_prefix(1);
                continue;
            }
            auto word = attempt(v, &Parser::get_word);
            if (!word) {
                if (!in(cfws_leader, v[0])) fail("expected word");
                word = get_cfws(v);
            }
            obs.kids.push_back(std::move(*word));
        }
        if (obs.kids.empty()) fail("empty obs-local-part");
        return obs;
    }

    Tok get_domain_literal(std::string_view& v) {
        Tok dl = token_list("domain-literal");
        if (starts_in(v, cfws_leader)) dl.kids.push_back(get_cfws(v));
        if (v.empty() || v[0] != '[') fail("expected domain-literal");
        v.remove_prefix(1);
        if (v.empty()) return end_literal(dl);
        dl.kids.push_back(value_terminal("[", "domain-literal-start"));
        if (in(wsp, v[0])) dl.kids.push_back(get_fws(v));
        dl.kids.push_back(value_terminal(ptext_to_endchars(v, "[]"), "ptext"));
        if (v.empty()) return end_literal(dl);
        if (in(wsp, v[0])) dl.kids.push_back(get_fws(v));
        if (v.empty()) return end_literal(dl);
        if (v[0] != ']') fail("expected ']' at end of domain-literal");
        dl.kids.push_back(value_terminal("]", "domain-literal-end"));
        v.remove_prefix(1);
        if (starts_in(v, cfws_leader)) dl.kids.push_back(get_cfws(v));
        return dl;
    }

    // Python's _check_for_early_dl_end puts a defect object into the token
    // list, which then breaks every use of the address: an error.
    [[noreturn]] static Tok end_literal(const Tok&) { fail("end of input inside domain-literal"); }

    Tok get_domain(std::string_view& v) {
        if (v.empty()) fail("expected domain");
        Tok domain = token_list("domain");
        std::optional<Tok> leader;
        if (in(cfws_leader, v[0])) leader = get_cfws(v);
        if (v.empty()) fail("expected domain");
        if (v[0] == '[') {
            Tok dl = get_domain_literal(v);
            if (leader) dl.kids.insert(dl.kids.begin(), std::move(*leader));
            domain.kids.push_back(std::move(dl));
            return domain;
        }
        auto token = attempt(v, &Parser::get_dot_atom);
        if (!token) token = get_atom(v);
        if (!v.empty() && v[0] == '@') fail("Invalid Domain");
        if (leader) token->kids.insert(token->kids.begin(), std::move(*leader));
        domain.kids.push_back(std::move(*token));
        if (!v.empty() && v[0] == '.') {
            if (domain.kids[0].type == "dot-atom")
                domain.kids = std::vector<Tok>(domain.kids[0].kids);
            while (!v.empty() && v[0] == '.') {
                domain.kids.push_back(dot());
                v.remove_prefix(1);
                domain.kids.push_back(get_atom(v));
            }
        }
        return domain;
    }

    Tok get_addr_spec(std::string_view& v) {
        Tok addr_spec = token_list("addr-spec");
        addr_spec.kids.push_back(get_local_part(v));
        if (v.empty() || v[0] != '@') return addr_spec;
        addr_spec.kids.push_back(value_terminal("@", "address-at-symbol"));
        v.remove_prefix(1);
        addr_spec.kids.push_back(get_domain(v));
        return addr_spec;
    }

    // obs-route = obs-domain-list ":"; only its extent matters here.
    void skip_obs_route(std::string_view& v) {
        while (!v.empty() && (v[0] == ',' || in(cfws_leader, v[0]))) {
            if (v[0] == ',') {
                v.remove_prefix(1);
            } else {
                get_cfws(v);
            }
        }
        if (v.empty() || v[0] != '@') fail("expected obs-route domain");
        v.remove_prefix(1);
        get_domain(v);
        while (!v.empty() && v[0] == ',') {
            v.remove_prefix(1);
            if (v.empty()) break;
            if (in(cfws_leader, v[0])) get_cfws(v);
            if (!v.empty() && v[0] == '@') {
                v.remove_prefix(1);
                get_domain(v);
            }
        }
        if (v.empty() || v[0] != ':') fail("expected ':' marking end of obs-route");
        v.remove_prefix(1);
    }

    Tok get_angle_addr(std::string_view& v) {
        Tok angle = token_list("angle-addr");
        if (starts_in(v, cfws_leader)) angle.kids.push_back(get_cfws(v));
        if (v.empty() || v[0] != '<') fail("expected angle-addr");
        angle.kids.push_back(value_terminal("<", "angle-addr-start"));
        v.remove_prefix(1);
        if (v.empty()) fail("expected addr-spec");
        if (v[0] == '>') {
            angle.kids.push_back(value_terminal(">", "angle-addr-end"));
            v.remove_prefix(1);
            return angle;
        }
        auto spec = attempt(v, &Parser::get_addr_spec);
        if (!spec) {
            skip_obs_route(v);
            spec = get_addr_spec(v);
        }
        angle.kids.push_back(std::move(*spec));
        if (!v.empty() && v[0] == '>') v.remove_prefix(1);
        angle.kids.push_back(value_terminal(">", "angle-addr-end"));
        if (starts_in(v, cfws_leader)) angle.kids.push_back(get_cfws(v));
        return angle;
    }

    std::deque<std::string> arena_;  // texts re-parsed by get_obs_local_part
};

ParsedAddress Parser::parse(std::string_view arg) {
    if (arg.empty()) return {};
    std::string_view v = arg;
    if (!lstrip(arg).empty() && lstrip(arg)[0] == '<') {
        Tok angle = get_angle_addr(v);
        return {angle_addr_text(angle), std::string(v)};
    }
    Tok spec = get_addr_spec(v);
    return {addr_spec_text(spec), std::string(v)};
}

}  // namespace

std::string quote_string(std::string_view value) {
    std::string out = "\"";
    for (char c : value) {
        if (c == '\\' || c == '"') out += '\\';
        out += c;
    }
    return out + "\"";
}

ParsedAddress get_address(std::string_view arg) {
    try {
        return Parser().parse(arg);
    } catch (const std::out_of_range&) {
        // Where the Python code indexes past the end of a token list
        // (IndexError), which smtpd lets escape too.
        throw AddressError("malformed address");
    }
}

}  // namespace smtp
