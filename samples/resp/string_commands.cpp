// String commands: GET, SET and friends, INCR family, APPEND, STRLEN, MGET, MSET.

#include <charconv>
#include <cstdint>
#include <limits>

#include "command_table.hpp"
#include "reply.hpp"

namespace resp {
namespace {

constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t int64_min = std::numeric_limits<std::int64_t>::min();
// redis' proto-max-bulk-len: the largest string a command may build.
constexpr std::size_t max_string_size = 512ull * 1024 * 1024;

void add_value_or_null(std::string& out, const Entry* e) {
    if (e) {
        add_bulk(out, e->value);
    } else {
        add_null(out);
    }
}

void store_int(Entry& e, std::int64_t n) {
    char buf[24];
    auto res = std::to_chars(buf, buf + sizeof buf, n);
    e.value.assign(buf, res.ptr);
}

// SET's options as redis' parseExtendedStringArgumentsOrReply accepts them:
// NX/XX exclude each other, at most one kind of expiry, KEEPTTL excludes
// any expiry; repeating an option is allowed and the last value wins.
struct SetOptions {
    enum Expiry { none, ex, px, exat, pxat };
    bool nx = false, xx = false, get = false, keepttl = false;
    Expiry expiry = none;
    std::string_view expire_arg;
};

bool take_expiry(SetOptions& o, SetOptions::Expiry kind, Call& c, std::size_t& j) {
    bool other = o.expiry != SetOptions::none && o.expiry != kind;
    if (o.keepttl || other || j + 1 >= c.argv.size()) return false;
    o.expiry = kind;
    o.expire_arg = c.argv[++j];
    return true;
}

bool take_set_option(SetOptions& o, Call& c, std::size_t& j) {
    std::string_view opt = c.argv[j];
    if (equals_lower(opt, "nx") && !o.xx) return o.nx = true;
    if (equals_lower(opt, "xx") && !o.nx) return o.xx = true;
    if (equals_lower(opt, "get")) return o.get = true;
    if (equals_lower(opt, "keepttl") && o.expiry == SetOptions::none) return o.keepttl = true;
    if (equals_lower(opt, "ex")) return take_expiry(o, SetOptions::ex, c, j);
    if (equals_lower(opt, "px")) return take_expiry(o, SetOptions::px, c, j);
    if (equals_lower(opt, "exat")) return take_expiry(o, SetOptions::exat, c, j);
    if (equals_lower(opt, "pxat")) return take_expiry(o, SetOptions::pxat, c, j);
    return false;
}

bool parse_set_options(Call& c, SetOptions& o) {
    for (std::size_t j = 3; j < c.argv.size(); ++j) {
        if (!take_set_option(o, c, j)) {
            reply_syntax_error(c);
            return false;
        }
    }
    return true;
}

void reply_invalid_expire(Call& c) {
    std::string msg = "ERR invalid expire time in '";
    msg.append(c.full_name).append("' command");
    add_error(c.out, msg);
}

// The absolute expiry time in ms for SET's option, as redis'
// getExpireMillisecondsOrReply computes it (the relative sum may wrap, and
// a non-positive result is rejected).
bool set_expire_time(Call& c, const SetOptions& o, std::int64_t& at) {
    if (!parse_int64(o.expire_arg, at)) {
        reply_not_integer(c);
        return false;
    }
    bool seconds = o.expiry == SetOptions::ex || o.expiry == SetOptions::exat;
    if (at <= 0 || (seconds && at > int64_max / 1000)) {
        reply_invalid_expire(c);
        return false;
    }
    if (seconds) at *= 1000;
    if (o.expiry == SetOptions::ex || o.expiry == SetOptions::px) {
        at = static_cast<std::int64_t>(static_cast<std::uint64_t>(at) +
                                       static_cast<std::uint64_t>(now_ms()));
    }
    if (at <= 0) {
        reply_invalid_expire(c);
        return false;
    }
    return true;
}

// Stores `value` under `key`; `e` is the key's live entry if it has one
// (saves a second lookup on the hot SET path).
void set_value(Call& c, Entry* e, std::string_view key, std::string_view value,
               std::int64_t expire_at, bool keepttl) {
    Entry& target = e ? *e : c.db.create(key);
    target.value.assign(value);
    if (!keepttl) c.db.set_expiry(key, target, expire_at);
}

void incr_by(Call& c, std::int64_t delta) {
    Entry* e = c.db.get(c.argv[1]);
    std::int64_t value = 0;
    if (e && !parse_int64(e->value, value)) return reply_not_integer(c);
    if ((delta < 0 && value < 0 && delta < int64_min - value) ||
        (delta > 0 && value > 0 && delta > int64_max - value)) {
        return add_error(c.out, "ERR increment or decrement would overflow");
    }
    value += delta;
    store_int(e ? *e : c.db.create(c.argv[1]), value);  // keeps any expiry, as redis
    add_int(c.out, value);
}

bool parse_delta(Call& c, std::int64_t& delta) {
    if (parse_int64(c.argv[2], delta)) return true;
    reply_not_integer(c);
    return false;
}

}  // namespace

void cmd_get(Call& c) {
    add_value_or_null(c.out, c.db.get(c.argv[1]));
}

void cmd_set(Call& c) {
    SetOptions o;
    if (!parse_set_options(c, o)) return;
    std::int64_t expire_at = Entry::no_expiry;
    if (o.expiry != SetOptions::none && !set_expire_time(c, o, expire_at)) return;
    if (o.get) add_value_or_null(c.out, c.db.get(c.argv[1]));
    Entry* e = c.db.get(c.argv[1]);
    if ((o.nx && e) || (o.xx && !e)) {
        if (!o.get) add_null(c.out);
        return;
    }
    set_value(c, e, c.argv[1], c.argv[2], expire_at, o.keepttl);
    if (!o.get) add_ok(c.out);
}

void cmd_getset(Call& c) {
    Entry* e = c.db.get(c.argv[1]);
    add_value_or_null(c.out, e);
    set_value(c, e, c.argv[1], c.argv[2], Entry::no_expiry, false);
}

void cmd_incr(Call& c) {
    incr_by(c, 1);
}

void cmd_decr(Call& c) {
    incr_by(c, -1);
}

void cmd_incrby(Call& c) {
    std::int64_t delta = 0;
    if (parse_delta(c, delta)) incr_by(c, delta);
}

void cmd_decrby(Call& c) {
    std::int64_t delta = 0;
    if (!parse_delta(c, delta)) return;
    if (delta == int64_min) return add_error(c.out, "ERR decrement would overflow");
    incr_by(c, -delta);
}

void cmd_append(Call& c) {
    Entry* e = c.db.get(c.argv[1]);
    if (e && e->value.size() + c.argv[2].size() > max_string_size) {
        return add_error(c.out, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    Entry& target = e ? *e : c.db.create(c.argv[1]);
    target.value.append(c.argv[2]);
    add_int(c.out, static_cast<std::int64_t>(target.value.size()));
}

void cmd_strlen(Call& c) {
    const Entry* e = c.db.get(c.argv[1]);
    add_int(c.out, e ? static_cast<std::int64_t>(e->value.size()) : 0);
}

void cmd_mget(Call& c) {
    add_array(c.out, c.argv.size() - 1);
    for (std::size_t i = 1; i < c.argv.size(); ++i)
        add_value_or_null(c.out, c.db.get(c.argv[i]));
}

void cmd_mset(Call& c) {
    if (c.argv.size() % 2 == 0) return reply_wrong_arity(c);
    for (std::size_t i = 1; i < c.argv.size(); i += 2) {
        set_value(c, c.db.get(c.argv[i]), c.argv[i], c.argv[i + 1], Entry::no_expiry, false);
    }
    add_ok(c.out);
}

}  // namespace resp
