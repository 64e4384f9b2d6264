// Keyspace commands: DEL, EXISTS, EXPIRE/PEXPIRE, TTL/PTTL, PERSIST, KEYS,
// DBSIZE, FLUSHDB/FLUSHALL.

#include <cstdint>
#include <limits>
#include <vector>

#include "command_table.hpp"
#include "glob.hpp"
#include "reply.hpp"

namespace resp {
namespace {

constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t int64_min = std::numeric_limits<std::int64_t>::min();

// EXPIRE's NX/XX/GT/LT options (redis 7.0).
struct ExpireFlags {
    bool nx = false, xx = false, gt = false, lt = false;
};

bool parse_expire_flags(Call& c, ExpireFlags& f) {
    for (std::size_t j = 3; j < c.argv.size(); ++j) {
        std::string_view opt = c.argv[j];
        if (equals_lower(opt, "nx")) {
            f.nx = true;
        } else if (equals_lower(opt, "xx")) {
            f.xx = true;
        } else if (equals_lower(opt, "gt")) {
            f.gt = true;
        } else if (equals_lower(opt, "lt")) {
            f.lt = true;
        } else {
            std::string msg = "ERR Unsupported option ";
            add_error(c.out, msg.append(opt));
            return false;
        }
    }
    if (f.nx && (f.xx || f.gt || f.lt)) {
        add_error(c.out, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return false;
    }
    if (f.gt && f.lt) {
        add_error(c.out, "ERR GT and LT options at the same time are not compatible");
        return false;
    }
    return true;
}

// The absolute time in ms, rejecting what would overflow as redis does.
bool expire_time(Call& c, bool seconds, std::int64_t& when) {
    if (!parse_int64(c.argv[2], when)) {
        reply_not_integer(c);
        return false;
    }
    std::int64_t now = now_ms();
    bool overflow = seconds && (when > int64_max / 1000 || when < int64_min / 1000);
    if (!overflow && seconds) when *= 1000;
    if (overflow || when > int64_max - now) {
        std::string msg = "ERR invalid expire time in '";
        add_error(c.out, msg.append(c.full_name).append("' command"));
        return false;
    }
    when += now;
    return true;
}

// Whether the flags let a key with expiry `current` take expiry `when`
// (a persistent key counts as an infinite TTL for GT and LT).
bool flags_allow(const ExpireFlags& f, std::int64_t current, std::int64_t when) {
    bool persistent = current == Entry::no_expiry;
    if (f.nx && !persistent) return false;
    if (f.xx && persistent) return false;
    if (f.gt && (persistent || when <= current)) return false;
    if (f.lt && !persistent && when >= current) return false;
    return true;
}

void expire_generic(Call& c, bool seconds) {
    ExpireFlags f;
    std::int64_t when = 0;
    if (!parse_expire_flags(c, f) || !expire_time(c, seconds, when)) return;
    Entry* e = c.db.get(c.argv[1]);
    if (!e || !flags_allow(f, e->expire_at, when)) return add_int(c.out, 0);
    if (when <= now_ms()) {
        c.db.erase(c.argv[1]);
    } else {
        c.db.set_expiry(c.argv[1], *e, when);
    }
    add_int(c.out, 1);
}

void ttl_generic(Call& c, bool millis) {
    const Entry* e = c.db.get(c.argv[1]);
    if (!e) return add_int(c.out, -2);
    if (e->expire_at == Entry::no_expiry) return add_int(c.out, -1);
    std::int64_t ttl = e->expire_at - now_ms();
    if (ttl < 0) ttl = 0;
    add_int(c.out, millis ? ttl : (ttl + 500) / 1000);
}

}  // namespace

void cmd_del(Call& c) {
    std::int64_t n = 0;
    for (std::size_t i = 1; i < c.argv.size(); ++i)
        n += c.db.erase(c.argv[i]) ? 1 : 0;
    add_int(c.out, n);
}

void cmd_exists(Call& c) {
    std::int64_t n = 0;
    for (std::size_t i = 1; i < c.argv.size(); ++i)
        n += c.db.get(c.argv[i]) ? 1 : 0;
    add_int(c.out, n);
}

void cmd_expire(Call& c) {
    expire_generic(c, true);
}

void cmd_pexpire(Call& c) {
    expire_generic(c, false);
}

void cmd_ttl(Call& c) {
    ttl_generic(c, false);
}

void cmd_pttl(Call& c) {
    ttl_generic(c, true);
}

void cmd_persist(Call& c) {
    Entry* e = c.db.get(c.argv[1]);
    if (!e || e->expire_at == Entry::no_expiry) return add_int(c.out, 0);
    c.db.set_expiry(c.argv[1], *e, Entry::no_expiry);
    add_int(c.out, 1);
}

void cmd_keys(Call& c) {
    std::string_view pattern = c.argv[1];
    bool all = pattern == "*";
    std::vector<const std::string*> found;
    c.db.for_each_live_key([&](const std::string& key) {
        if (all || glob_match(pattern, key)) found.push_back(&key);
    });
    add_array(c.out, found.size());
    for (const std::string* key : found)
        add_bulk(c.out, *key);
}

void cmd_dbsize(Call& c) {
    add_int(c.out, static_cast<std::int64_t>(c.db.size()));
}

// FLUSHDB and FLUSHALL: an optional ASYNC or SYNC, both meaning "now" here.
void cmd_flushdb(Call& c) {
    if (c.argv.size() > 2 || (c.argv.size() == 2 && !equals_lower(c.argv[1], "async") &&
                              !equals_lower(c.argv[1], "sync"))) {
        return reply_syntax_error(c);
    }
    c.db.clear();
    add_ok(c.out);
}

}  // namespace resp
