// Command dispatch (lookup, arity, redis' rejection texts), the command
// table, and the server commands: PING, ECHO, SELECT, QUIT, CONFIG, COMMAND.

#include "commands.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include "command_table.hpp"
#include "glob.hpp"
#include "reply.hpp"

namespace resp {

bool parse_int64(std::string_view s, std::int64_t& value) {
    // 20 characters hold "-9223372036854775808"; redis rejects anything longer.
    if (s.empty() || s.size() > 20) return false;
    if (s == "0") {
        value = 0;
        return true;
    }
    bool negative = s[0] == '-';
    std::size_t i = negative ? 1 : 0;
    if (i == s.size() || s[i] < '1' || s[i] > '9') return false;
    std::uint64_t v = 0;
    for (; i < s.size(); ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        auto digit = static_cast<std::uint64_t>(s[i] - '0');
        if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return false;
        v = v * 10 + digit;
    }
    constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (v > max + (negative ? 1 : 0)) return false;
    value = negative ? static_cast<std::int64_t>(0 - v) : static_cast<std::int64_t>(v);
    return true;
}

bool equals_lower(std::string_view text, std::string_view lower) {
    if (text.size() != lower.size()) return false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(text[i])) != lower[i]) return false;
    }
    return true;
}

void reply_not_integer(Call& c) {
    add_error(c.out, "ERR value is not an integer or out of range");
}

void reply_syntax_error(Call& c) {
    add_error(c.out, "ERR syntax error");
}

void reply_wrong_arity(Call& c) {
    std::string msg = "ERR wrong number of arguments for '";
    add_error(c.out, msg.append(c.full_name).append("' command"));
}

namespace {

// redis formats these texts with printf's %s, so an argument ends at its
// first NUL byte, and %.Ns keeps at most N bytes of it.
std::string_view c_string(std::string_view arg, std::size_t max) {
    arg = arg.substr(0, arg.find('\0'));
    return arg.substr(0, max);
}

std::string upper(std::string_view s) {
    std::string u(s);
    for (char& ch : u)
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return u;
}

void reply_unknown_command(Call& c) {
    std::string args;
    for (std::size_t i = 1; i < c.argv.size() && args.size() < 128; ++i) {
        std::size_t room = 128 - args.size();
        args.append("'").append(c_string(c.argv[i], room)).append("' ");
    }
    std::string msg = "ERR unknown command '";
    msg.append(c_string(c.argv[0], 128)).append("', with args beginning with: ").append(args);
    add_error(c.out, msg);
}

void reply_unknown_subcommand(Call& c) {
    std::string msg = "ERR unknown subcommand '";
    msg.append(c_string(c.argv[1], 128)).append("'. Try ").append(upper(c.argv[0]));
    add_error(c.out, msg.append(" HELP."));
}

// -- PING, ECHO, SELECT, QUIT

void cmd_ping(Call& c) {
    if (c.argv.size() > 2) return reply_wrong_arity(c);
    if (c.argv.size() == 1) return add_raw(c.out, "+PONG\r\n");
    add_bulk(c.out, c.argv[1]);
}

void cmd_echo(Call& c) {
    add_bulk(c.out, c.argv[1]);
}

void cmd_select(Call& c) {
    std::int64_t id = 0;
    if (!parse_int64(c.argv[1], id)) return reply_not_integer(c);
    if (id < std::numeric_limits<int>::min() || id > std::numeric_limits<int>::max()) {
        return add_error(c.out,
                         "ERR value is out of range, value must between -2147483648 and "
                         "2147483647");
    }
    // One database only, as redis-server started with --databases 1.
    if (id != 0) return add_error(c.out, "ERR DB index is out of range");
    add_ok(c.out);
}

void cmd_quit(Call& c) {
    add_ok(c.out);
    c.after = After::close;
}

// -- CONFIG

// A parameter CONFIG GET reports. Most are fixed by how this server works
// (one database, no persistence, redis' default limits), and CONFIG SET
// refuses them as redis refuses an immutable parameter. A settable one is
// an integer in ServerConfig, with the bounds redis gives it.
struct ConfigParam {
    std::string_view name;
    std::string_view fixed_value = {};
    std::atomic<std::int64_t> ServerConfig::*setting = nullptr;
    std::int64_t min = 0, max = 0;
};

constexpr std::array<ConfigParam, 6> config_params{{
    {.name = "save", .fixed_value = ""},
    {.name = "appendonly", .fixed_value = "no"},
    {.name = "databases", .fixed_value = "1"},
    {.name = "maxmemory", .fixed_value = "0"},
    {.name = "proto-max-bulk-len", .fixed_value = "536870912"},
    {.name = "timeout",
     .setting = &ServerConfig::timeout,
     .min = 0,
     .max = std::numeric_limits<int>::max()},
}};

std::string config_value(const ConfigParam& p, const ServerConfig& config) {
    if (!p.setting) return std::string(p.fixed_value);
    return std::to_string((config.*p.setting).load());
}

// One parameter CONFIG GET reports, under the name the reply gives it.
struct ConfigMatch {
    std::string_view shown_name;
    const ConfigParam* param;
};

// A name without glob characters is looked up (case-insensitively) and
// echoed as the client typed it; a pattern reports the matching names. A
// parameter several arguments match is reported once.
void config_get_one(std::string_view arg, std::vector<ConfigMatch>& found) {
    std::string pattern(arg);
    for (char& ch : pattern)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    bool glob = pattern.find_first_of("[*?") != std::string::npos;
    for (const ConfigParam& p : config_params) {
        if (glob ? !glob_match(pattern, p.name) : pattern != p.name) continue;
        bool seen = std::any_of(found.begin(), found.end(),
                                [&](const ConfigMatch& f) { return f.param == &p; });
        if (!seen) found.push_back({glob ? p.name : arg, &p});
    }
}

void cmd_config_get(Call& c) {
    std::vector<ConfigMatch> found;
    for (std::size_t i = 2; i < c.argv.size(); ++i)
        config_get_one(c.argv[i], found);
    add_array(c.out, found.size() * 2);
    for (const ConfigMatch& m : found) {
        add_bulk(c.out, m.shown_name);
        add_bulk(c.out, config_value(*m.param, c.config));
    }
}

const ConfigParam* find_config_param(std::string_view name) {
    for (const ConfigParam& p : config_params) {
        if (equals_lower(name, p.name)) return &p;
    }
    return nullptr;
}

void reply_config_unknown(Call& c, std::string_view name) {
    std::string msg = "ERR Unknown option or number of arguments for CONFIG SET - '";
    add_error(c.out, msg.append(c_string(name, std::string_view::npos)).append("'"));
}

void reply_config_failed(Call& c, std::string_view name, std::string_view why) {
    std::string msg = "ERR CONFIG SET failed (possibly related to argument '";
    msg.append(c_string(name, std::string_view::npos)).append("') - ").append(why);
    add_error(c.out, msg);
}

// redis reads an integer parameter with string2ll, then checks its bounds.
// On failure `why` says what is wrong, in redis' words.
bool parse_config_value(const ConfigParam& p, std::string_view text, std::int64_t& value,
                        std::string& why) {
    if (!parse_int64(text, value)) {
        why = "argument couldn't be parsed into an integer";
        return false;
    }
    if (value < p.min || value > p.max) {
        why = "argument must be between " + std::to_string(p.min) + " and " +
              std::to_string(p.max) + " inclusive";
        return false;
    }
    return true;
}

// The parameters CONFIG SET names, or an error reply and false. As in
// redis, every name is checked before any value, and the first unknown,
// immutable or repeated name is the error.
bool config_set_params(Call& c, std::vector<const ConfigParam*>& params) {
    for (std::size_t i = 2; i < c.argv.size(); i += 2) {
        std::string_view name = c.argv[i];
        const ConfigParam* p = find_config_param(name);
        if (!p) {
            reply_config_unknown(c, name);
            return false;
        }
        if (!p->setting || std::find(params.begin(), params.end(), p) != params.end()) {
            reply_config_failed(c, name,
                                p->setting ? "duplicate parameter" : "can't set immutable config");
            return false;
        }
        params.push_back(p);
    }
    return true;
}

// CONFIG SET name value [name value ...]: all of them or, on any error,
// none. The settings hook runs only when a value actually changed, so that
// setting the current timeout again does not restart idle countdowns.
void cmd_config_set(Call& c) {
    if (c.argv.size() % 2 != 0) return reply_syntax_error(c);
    std::vector<const ConfigParam*> params;
    if (!config_set_params(c, params)) return;
    std::vector<std::int64_t> values(params.size());
    for (std::size_t k = 0; k < params.size(); ++k) {
        std::string why;
        if (!parse_config_value(*params[k], c.argv[3 + 2 * k], values[k], why)) {
            return reply_config_failed(c, params[k]->name, why);
        }
    }
    bool changed = false;
    for (std::size_t k = 0; k < params.size(); ++k) {
        if ((c.config.*params[k]->setting).exchange(values[k]) != values[k]) changed = true;
    }
    if (changed && c.config.changed) c.config.changed();
    add_ok(c.out);
}

void add_help(Call& c, std::initializer_list<std::string_view> lines) {
    add_array(c.out, lines.size());
    for (std::string_view line : lines)
        add_status(c.out, line);
}

void cmd_config_help(Call& c) {
    add_help(c, {"CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:", "GET <pattern>",
                 "    Return parameters matching the glob-like <pattern> and their", "    values.",
                 "SET <directive> <value>", "    Set the configuration <directive> to <value>.",
                 "HELP", "    Print this help."});
}

// -- COMMAND

void add_words(std::string& out, std::string_view words, char prefix) {
    std::vector<std::string_view> list;
    while (!words.empty()) {
        std::size_t sp = words.find(' ');
        list.push_back(words.substr(0, sp));
        words.remove_prefix(sp == std::string_view::npos ? words.size() : sp + 1);
    }
    add_array(out, list.size());
    for (std::string_view w : list) {
        out.push_back('+');
        if (prefix) out.push_back(prefix);
        out.append(w).append("\r\n");
    }
}

// COMMAND INFO's ten fields (redis 7.0 layout); no key specs or tips.
void add_command_info(std::string& out, const CommandSpec& s) {
    add_array(out, 10);
    add_bulk(out, s.name);
    add_int(out, s.arity);
    add_words(out, s.flags, 0);
    add_int(out, s.first_key);
    add_int(out, s.last_key);
    add_int(out, s.key_step);
    add_words(out, s.categories, 0);
    add_array(out, 0);
    add_array(out, 0);
    add_array(out, s.subcommands.size());
    for (const CommandSpec& sub : s.subcommands)
        add_command_info(out, sub);
}

// COMMAND DOCS's map (a flat array in RESP2), the fields redis-cli reads.
void add_command_docs(std::string& out, const CommandSpec& s) {
    add_bulk(out, s.name);
    add_array(out, 8);
    add_bulk(out, "summary");
    add_bulk(out, s.summary);
    add_bulk(out, "since");
    add_bulk(out, s.since);
    add_bulk(out, "group");
    add_bulk(out, s.group);
    add_bulk(out, "complexity");
    add_bulk(out, s.complexity);
}

const CommandSpec* find_command(std::string_view name);

// COMMAND INFO / DOCS: every command with no names, else those named (INFO
// gives a null for an unknown name, DOCS skips it).
void command_report(Call& c, bool docs) {
    std::vector<const CommandSpec*> specs;
    if (c.argv.size() == 2) {
        for (const CommandSpec& s : command_table())
            specs.push_back(&s);
    }
    for (std::size_t i = 2; i < c.argv.size(); ++i) {
        const CommandSpec* s = find_command(c.argv[i]);
        if (s || !docs) specs.push_back(s);
    }
    add_array(c.out, specs.size() * (docs ? 2 : 1));
    for (const CommandSpec* s : specs) {
        if (!s) {
            add_raw(c.out, "*-1\r\n");
        } else if (docs) {
            add_command_docs(c.out, *s);
        } else {
            add_command_info(c.out, *s);
        }
    }
}

void cmd_command(Call& c) {
    add_array(c.out, command_table().size());
    for (const CommandSpec& s : command_table())
        add_command_info(c.out, s);
}

void cmd_command_count(Call& c) {
    add_int(c.out, static_cast<std::int64_t>(command_table().size()));
}

void cmd_command_info(Call& c) {
    command_report(c, false);
}

void cmd_command_docs(Call& c) {
    command_report(c, true);
}

void cmd_command_list(Call& c) {
    if (c.argv.size() > 2) return reply_syntax_error(c);
    add_array(c.out, command_table().size());
    for (const CommandSpec& s : command_table())
        add_bulk(c.out, s.name);
}

void cmd_command_help(Call& c) {
    add_help(c, {"COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                 "(no subcommand)", "    Return details about all commands.", "COUNT",
                 "    Return the total number of commands in this server.", "LIST",
                 "    Return a list of all commands in this server.", "INFO [<command-name> ...]",
                 "    Return details about multiple commands.", "DOCS [<command-name> ...]",
                 "    Return documentation details about multiple commands.", "HELP",
                 "    Print this help."});
}

// -- The table

constexpr CommandSpec config_subcommands[] = {
    {"config|get", -3, cmd_config_get, "admin noscript loading stale", 0, 0, 0,
     "@admin @slow @dangerous", "Get the values of configuration parameters", "2.0.0", "server",
     "O(N) when N is the number of configuration parameters provided"},
    {"config|help", 2, cmd_config_help, "loading stale", 0, 0, 0, "@slow", "Show helpful text",
     "5.0.0", "server", "O(1)"},
    {"config|set", -4, cmd_config_set, "admin noscript loading stale", 0, 0, 0,
     "@admin @slow @dangerous", "Set configuration parameters to the given values", "2.0.0",
     "server", "O(N) when N is the number of configuration parameters provided"},
};

constexpr CommandSpec command_subcommands[] = {
    {"command|count", 2, cmd_command_count, "loading stale", 0, 0, 0, "@slow @connection",
     "Get total number of Redis commands", "2.8.13", "server", "O(1)"},
    {"command|docs", -2, cmd_command_docs, "loading stale", 0, 0, 0, "@slow @connection",
     "Get array of specific Redis command documentation", "7.0.0", "server",
     "O(N) where N is the number of commands to look up"},
    {"command|help", 2, cmd_command_help, "loading stale", 0, 0, 0, "@slow @connection",
     "Show helpful text", "5.0.0", "server", "O(1)"},
    {"command|info", -2, cmd_command_info, "loading stale", 0, 0, 0, "@slow @connection",
     "Get array of specific Redis command details, or all when no argument is given.", "2.8.13",
     "server", "O(N) where N is the number of commands to look up"},
    {"command|list", -2, cmd_command_list, "loading stale", 0, 0, 0, "@slow @connection",
     "Get an array of Redis command names", "7.0.0", "server", "O(N)"},
};

constexpr CommandSpec commands[] = {
    {"append", 3, cmd_append, "write denyoom fast", 1, 1, 1, "@write @string @fast",
     "Append a value to a key", "2.0.0", "string", "O(1)"},
    {"command", -1, cmd_command, "loading stale", 0, 0, 0, "@slow @connection",
     "Get array of Redis command details", "2.8.13", "server", "O(N)", command_subcommands},
    {"config", -2, nullptr, "", 0, 0, 0, "@slow", "A container for server configuration commands",
     "2.0.0", "server", "Depends on subcommand.", config_subcommands},
    {"dbsize",
     1,
     cmd_dbsize,
     "readonly fast",
     0,
     0,
     0,
     "@keyspace @read @fast",
     "Return the number of keys in the selected database",
     "1.0.0",
     "server",
     "O(1)",
     {},
     Gather::sum},
    {"decr", 2, cmd_decr, "write denyoom fast", 1, 1, 1, "@write @string @fast",
     "Decrement the integer value of a key by one", "1.0.0", "string", "O(1)"},
    {"decrby", 3, cmd_decrby, "write denyoom fast", 1, 1, 1, "@write @string @fast",
     "Decrement the integer value of a key by the given number", "1.0.0", "string", "O(1)"},
    {"del",
     -2,
     cmd_del,
     "write",
     1,
     -1,
     1,
     "@keyspace @write @slow",
     "Delete a key",
     "1.0.0",
     "generic",
     "O(N) where N is the number of keys that will be removed.",
     {},
     Gather::sum},
    {"echo", 2, cmd_echo, "loading stale fast", 0, 0, 0, "@fast @connection",
     "Echo the given string", "1.0.0", "connection", "O(1)"},
    {"exists",
     -2,
     cmd_exists,
     "readonly fast",
     1,
     -1,
     1,
     "@keyspace @read @fast",
     "Determine if a key exists",
     "1.0.0",
     "generic",
     "O(N) where N is the number of keys",
     {},
     Gather::sum},
    {"expire", -3, cmd_expire, "write fast", 1, 1, 1, "@keyspace @write @fast",
     "Set a key's time to live in seconds", "1.0.0", "generic", "O(1)"},
    {"flushall",
     -1,
     cmd_flushdb,
     "write",
     0,
     0,
     0,
     "@keyspace @write @slow @dangerous",
     "Remove all keys from all databases",
     "1.0.0",
     "server",
     "O(N) where N is the total number of keys in all databases",
     {},
     Gather::same},
    {"flushdb",
     -1,
     cmd_flushdb,
     "write",
     0,
     0,
     0,
     "@keyspace @write @slow @dangerous",
     "Remove all keys from the current database",
     "1.0.0",
     "server",
     "O(N) where N is the number of keys in the selected database",
     {},
     Gather::same},
    {"get", 2, cmd_get, "readonly fast", 1, 1, 1, "@read @string @fast", "Get the value of a key",
     "1.0.0", "string", "O(1)"},
    {"getset", 3, cmd_getset, "write denyoom fast", 1, 1, 1, "@write @string @fast",
     "Set the string value of a key and return its old value", "1.0.0", "string", "O(1)"},
    {"incr", 2, cmd_incr, "write denyoom fast", 1, 1, 1, "@write @string @fast",
     "Increment the integer value of a key by one", "1.0.0", "string", "O(1)"},
    {"incrby", 3, cmd_incrby, "write denyoom fast", 1, 1, 1, "@write @string @fast",
     "Increment the integer value of a key by the given amount", "1.0.0", "string", "O(1)"},
    {"keys",
     2,
     cmd_keys,
     "readonly",
     0,
     0,
     0,
     "@keyspace @read @slow @dangerous",
     "Find all keys matching the given pattern",
     "1.0.0",
     "generic",
     "O(N) with N being the number of keys in the database",
     {},
     Gather::concat},
    {"mget",
     -2,
     cmd_mget,
     "readonly fast",
     1,
     -1,
     1,
     "@read @string @fast",
     "Get the values of all the given keys",
     "1.0.0",
     "string",
     "O(N) where N is the number of keys to retrieve.",
     {},
     Gather::in_key_order},
    {"mset",
     -3,
     cmd_mset,
     "write denyoom",
     1,
     -1,
     2,
     "@write @string @slow",
     "Set multiple keys to multiple values",
     "1.0.1",
     "string",
     "O(N) where N is the number of keys to set.",
     {},
     Gather::same},
    {"persist", 2, cmd_persist, "write fast", 1, 1, 1, "@keyspace @write @fast",
     "Remove the expiration from a key", "2.2.0", "generic", "O(1)"},
    {"pexpire", -3, cmd_pexpire, "write fast", 1, 1, 1, "@keyspace @write @fast",
     "Set a key's time to live in milliseconds", "2.6.0", "generic", "O(1)"},
    {"ping", -1, cmd_ping, "fast", 0, 0, 0, "@fast @connection", "Ping the server", "1.0.0",
     "connection", "O(1)"},
    {"pttl", 2, cmd_pttl, "readonly fast", 1, 1, 1, "@keyspace @read @fast",
     "Get the time to live for a key in milliseconds", "2.6.0", "generic", "O(1)"},
    {"quit", -1, cmd_quit, "allow_busy noscript loading stale fast no_auth", 0, 0, 0,
     "@fast @connection", "Close the connection", "1.0.0", "connection", "O(1)"},
    {"select", 2, cmd_select, "loading stale fast", 0, 0, 0, "@fast @connection",
     "Change the selected database for the current connection", "1.0.0", "connection", "O(1)"},
    {"set", -3, cmd_set, "write denyoom", 1, 1, 1, "@write @string @slow",
     "Set the string value of a key", "1.0.0", "string", "O(1)"},
    {"strlen", 2, cmd_strlen, "readonly fast", 1, 1, 1, "@read @string @fast",
     "Get the length of the value stored in a key", "2.2.0", "string", "O(1)"},
    {"ttl", 2, cmd_ttl, "readonly fast", 1, 1, 1, "@keyspace @read @fast",
     "Get the time to live for a key in seconds", "1.0.0", "generic", "O(1)"},
};

// Room for the longest "container|subcommand" name; longer requests cannot
// name a command.
constexpr std::size_t max_name = 32;

// Every command and subcommand by lowercase full name ("get", "config|get").
const std::unordered_map<std::string_view, const CommandSpec*>& command_index() {
    static const auto index = [] {
        std::unordered_map<std::string_view, const CommandSpec*> idx;
        for (const CommandSpec& s : commands) {
            idx.emplace(s.name, &s);
            for (const CommandSpec& sub : s.subcommands)
                idx.emplace(sub.name, &sub);
        }
        return idx;
    }();
    return index;
}

// Looks `name` up after `prefix`, lowercased into a stack buffer so that
// the hot path does not allocate.
const CommandSpec* lookup(std::string_view prefix, std::string_view name) {
    if (prefix.size() + name.size() > max_name) return nullptr;
    char buf[max_name];
    std::copy(prefix.begin(), prefix.end(), buf);
    for (std::size_t i = 0; i < name.size(); ++i) {
        buf[prefix.size() + i] =
            static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
    }
    const auto& idx = command_index();
    auto it = idx.find(std::string_view(buf, prefix.size() + name.size()));
    return it == idx.end() ? nullptr : it->second;
}

const CommandSpec* find_command(std::string_view name) {
    // "config|get" names a subcommand internally but is no command name.
    if (name.find('|') != std::string_view::npos) return nullptr;
    return lookup({}, name);
}

const CommandSpec* find_subcommand(const CommandSpec& container, std::string_view name) {
    if (name.find('|') != std::string_view::npos) return nullptr;
    char prefix[max_name];
    std::size_t n = container.name.copy(prefix, max_name - 1);
    prefix[n] = '|';
    return lookup(std::string_view(prefix, n + 1), name);
}

// The error for a request that names no command: an unknown command, or an
// unknown subcommand of a container.
void reply_unknown(Call& c) {
    const CommandSpec* spec = find_command(c.argv[0]);
    if (spec && !spec->subcommands.empty() && c.argv.size() >= 2) {
        reply_unknown_subcommand(c);
    } else {
        reply_unknown_command(c);
    }
}

}  // namespace

bool arity_ok(const CommandSpec& s, std::size_t argc) {
    auto n = static_cast<int>(std::min<std::size_t>(argc, 1 << 30));
    return s.arity > 0 ? n == s.arity : n >= -s.arity;
}

std::span<const CommandSpec> command_table() {
    return commands;
}

const CommandSpec* Commands::resolve(Args argv) {
    const CommandSpec* spec = find_command(argv[0]);
    // A container with a subcommand runs the subcommand (redis' lookup).
    if (spec && !spec->subcommands.empty() && argv.size() >= 2) {
        return find_subcommand(*spec, argv[1]);
    }
    return spec;
}

After Commands::execute(Args argv, std::string& out) {
    return execute(resolve(argv), argv, out);
}

After Commands::execute(const CommandSpec* spec, Args argv, std::string& out) {
    Call c{db_, config_, argv, out, {}};
    if (!spec) {
        reply_unknown(c);
        return c.after;
    }
    c.full_name = spec->name;
    if (!arity_ok(*spec, argv.size()) || !spec->handler) {
        reply_wrong_arity(c);
        return c.after;
    }
    spec->handler(c);
    return c.after;
}

}  // namespace resp
