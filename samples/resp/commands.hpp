// The commands resp_server implements, with redis 7.0's replies.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "keyspace.hpp"
#include "server_config.hpp"

namespace resp {

/// One request: argv[0] is the command name (any case), the rest its arguments.
using Args = std::span<const std::string_view>;

struct CommandSpec;

/// What the connection does once the reply is sent.
enum class After { keep_open, close };

/// Executes requests against one keyspace, with the server's settings for
/// CONFIG. Replies, error texts included, are byte-identical to
/// redis-server 7.0's for the commands implemented; any other command gets
/// redis' "unknown command" error.
class Commands {
  public:
    Commands(Keyspace& db, ServerConfig& config) : db_(db), config_(config) {}
    /// Runs `argv` (non-empty) and appends exactly one RESP2 reply to `out`.
    After execute(Args argv, std::string& out);
    /// execute() for a request already resolved: `spec` is resolve(argv).
    After execute(const CommandSpec* spec, Args argv, std::string& out);
    /// The command `argv` (non-empty) names: the subcommand for a container
    /// given one, nullptr for an unknown command or subcommand.
    static const CommandSpec* resolve(Args argv);
    Keyspace& keyspace() noexcept { return db_; }

  private:
    Keyspace& db_;
    ServerConfig& config_;
};

}  // namespace resp
