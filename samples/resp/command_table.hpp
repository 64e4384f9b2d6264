// Internal to resp_server: the command table and the handlers it points to.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "commands.hpp"
#include "keyspace.hpp"
#include "server_config.hpp"

namespace resp {

/// One command being executed: its arguments, the keyspace, the server's
/// settings, the reply buffer.
struct Call {
    Keyspace& db;
    ServerConfig& config;
    Args argv;
    std::string& out;
    std::string_view full_name;  ///< "get", "config|get": used in error texts
    After after = After::keep_open;
};

using Handler = void (*)(Call&);

/// How a command's replies from several keyspace shards (resp_server
/// --threads N) combine into the one reply redis would give. Commands whose
/// keys always live in one shard (or that touch no key) have none.
enum class Gather {
    none,          ///< one shard runs the whole command
    in_key_order,  ///< MGET: each shard's values, put back in the keys' order
    sum,           ///< DEL, EXISTS, DBSIZE: the shards' integers added
    same,          ///< MSET, FLUSHDB, FLUSHALL: every shard replies alike; one reply kept
    concat,        ///< KEYS: the shards' arrays joined
};

/// A command's entry, with what COMMAND INFO and COMMAND DOCS report.
struct CommandSpec {
    std::string_view name;   ///< lowercase; a subcommand's is "container|sub"
    int arity;               ///< redis' convention: N exactly, -N at least N
    Handler handler;         ///< null for a container (CONFIG, COMMAND)
    std::string_view flags;  ///< space-separated, e.g. "readonly fast"
    int first_key, last_key, key_step;
    std::string_view categories;  ///< space-separated, e.g. "@read @string @fast"
    std::string_view summary, since, group, complexity;
    std::span<const CommandSpec> subcommands = {};
    /// With first_key 0, a Gather command runs on every shard; otherwise on
    /// the shards owning its keys (every key_step-th argument from first_key).
    Gather gather = Gather::none;
};

/// Every top-level command, in the order COMMAND lists them.
std::span<const CommandSpec> command_table();

/// Whether `argc` arguments (the name included) suit the command's arity.
bool arity_ok(const CommandSpec& s, std::size_t argc);

/// redis' string2ll: a strict decimal int64 (no spaces, no '+', no leading
/// zeros, "-0" rejected). True on success.
bool parse_int64(std::string_view text, std::int64_t& value);
/// Case-insensitive equality against a lowercase ASCII word.
bool equals_lower(std::string_view text, std::string_view lower);

// Shared error replies.
void reply_not_integer(Call& c);
void reply_syntax_error(Call& c);
void reply_wrong_arity(Call& c);

// Handlers (string_commands.cpp and key_commands.cpp).
void cmd_get(Call& c);
void cmd_set(Call& c);
void cmd_getset(Call& c);
void cmd_incr(Call& c);
void cmd_incrby(Call& c);
void cmd_decr(Call& c);
void cmd_decrby(Call& c);
void cmd_append(Call& c);
void cmd_strlen(Call& c);
void cmd_mget(Call& c);
void cmd_mset(Call& c);
void cmd_del(Call& c);
void cmd_exists(Call& c);
void cmd_expire(Call& c);
void cmd_pexpire(Call& c);
void cmd_ttl(Call& c);
void cmd_pttl(Call& c);
void cmd_persist(Call& c);
void cmd_keys(Call& c);
void cmd_dbsize(Call& c);
void cmd_flushdb(Call& c);

}  // namespace resp
