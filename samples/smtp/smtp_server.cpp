// smtp_server: Python's smtpd on asyncore-cpp, delivering into an mbox file.
//
//   smtp_server [--host HOST] [--port PORT] [--mbox PATH]
//               [--data-size-limit BYTES] [--smtputf8] [--cert FILE --key FILE]
//               [--timeout-scale F]
//
// With --cert and --key the server offers STARTTLS (RFC 3207) with that
// certificate chain and key; see smtp_session.hpp for the replies.
// A client silent for 5 minutes while the server awaits a command, or for 3
// minutes in the middle of a message, gets "421 4.4.2 HOST Error: timeout
// exceeded" and is disconnected (RFC 5321 4.5.3.2); --timeout-scale
// multiplies both times by F, and 0 turns them off.
// Messages are appended to the mbox with a journal in PATH.journal that makes
// each append all-or-nothing (mbox.hpp): started after a crash, the server
// cuts off an entry whose append was interrupted and says so in one line,
// "info: mbox PATH: cut ...", before it listens.
// Prints "listening on HOST:PORT" once ready. SIGINT and SIGTERM shut it
// down gracefully (every reply already queued is written, for at most 5 s)
// and it exits 0; SIGUSR1 prints the loop's counters on stderr.
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include <asyncore/file_dispatcher.hpp>
#include <asyncore/loop.hpp>

#include "smtp_channel.hpp"

#include "../common/command_line.hpp"

namespace {

struct Config {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8025;
    std::string mbox = "smtp_server.mbox";
    smtp::SessionOptions session;
    std::string cert, key;
};

// The largest --timeout-scale: RFC 5321's 5 minutes become 3.5 days.
constexpr double max_timeout_scale = 1000;

const char* const usage =
    "usage: smtp_server [--host HOST] [--port PORT] [--mbox PATH]\n"
    "                   [--data-size-limit BYTES] [--smtputf8] [--cert FILE --key FILE]\n"
    "                   [--timeout-scale F]\n"
    "  --host HOST             address to listen on (default 127.0.0.1)\n"
    "  --port PORT             port, 0 picks a free one (default 8025)\n"
    "  --mbox PATH             mbox file messages are appended to, with a journal in\n"
    "                          PATH.journal (default smtp_server.mbox)\n"
    "  --data-size-limit N     largest message in bytes, 0 for none (default 33554432)\n"
    "  --smtputf8              enable the SMTPUTF8 extension\n"
    "  --cert FILE             offer STARTTLS with this certificate chain (PEM)...\n"
    "  --key FILE              ...and its private key (PEM)\n"
    "  --timeout-scale F       multiply RFC 5321's timeouts (5 min awaiting a command,\n"
    "                          3 min within a message) by F, up to 1000; 0 turns them\n"
    "                          off (default 1)";

[[noreturn]] void die(const std::string& message, int code = 2) {
    std::cerr << "smtp_server: " << message << "\n";
    std::exit(code);
}

// An RFC 5321 timeout times `scale`, rounded up to a whole millisecond so
// that no positive scale turns it off.
std::chrono::milliseconds scaled(std::chrono::milliseconds timeout, double scale) {
    return std::chrono::ceil<std::chrono::milliseconds>(timeout * scale);
}

Config parse_args(int argc, char** argv) {
    sample::CommandLine cl(
        argc, argv, usage,
        {"host", "port", "mbox", "data-size-limit", "cert", "key", "timeout-scale"},
        {"smtputf8", "help"});
    Config config;
    config.host = cl.get("host", config.host);
    config.port = static_cast<std::uint16_t>(cl.number("port", config.port, 0, 65535));
    config.mbox = cl.get("mbox", config.mbox);
    auto limit = static_cast<long>(config.session.data_size_limit);
    config.session.data_size_limit =
        static_cast<std::size_t>(cl.number("data-size-limit", limit, 0, LONG_MAX));
    config.session.enable_smtputf8 = cl.flag("smtputf8");
    double scale = cl.real("timeout-scale", 1, 0, max_timeout_scale);
    config.session.command_timeout = scaled(smtp::command_timeout_default, scale);
    config.session.data_timeout = scaled(smtp::data_timeout_default, scale);
    config.cert = cl.get("cert");
    config.key = cl.get("key");
    if (config.cert.empty() != config.key.empty())
        cl.usage("smtp_server: --cert and --key go together");
    return config;
}

// An IP literal, or the first address the resolver gives for a name.
asyncore::Address resolve(const std::string& host, std::uint16_t port) {
    try {
        return asyncore::Address::ip(host, port);
    } catch (const std::invalid_argument&) {
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0)
            die("cannot resolve " + host);
        auto addr = asyncore::Address::from_native(res->ai_addr, res->ai_addrlen);
        ::freeaddrinfo(res);
        return addr;
    }
}

}  // namespace

int main(int argc, char** argv) {
    Config config = parse_args(argc, argv);
    std::signal(SIGPIPE, SIG_IGN);
    config.session.fqdn = smtp::local_fqdn();
    try {
        asyncore::ChannelMap map;
        smtp::Mailbox mailbox(config.mbox);
        // In the log_info format the channels use: one line saying what a
        // start-up after a crash cut off the mbox.
        if (!mailbox.recovery_report().empty())
            std::cout << "info: " << mailbox.recovery_report() << std::endl;
        // SIGINT/SIGTERM: the listener closes at once, every session once its
        // replies are written (at most 5 s later); then loop() returns.
        auto stop = [&](int) { asyncore::close_all_when_done(map, std::chrono::seconds(5)); };
        asyncore::SignalWatch on_int = map.on_signal(SIGINT, stop);
        asyncore::SignalWatch on_term = map.on_signal(SIGTERM, stop);
        asyncore::SignalWatch on_usr1 = map.on_signal(SIGUSR1, [&](int) {
            std::cerr << "stats: channels=" << map.size() << " passes=" << map.stats().passes
                      << std::endl;
        });
        std::optional<asyncore::TlsContext> tls;
        if (!config.cert.empty()) tls = asyncore::TlsContext::server(config.cert, config.key);
        smtp::SmtpServer server(resolve(config.host, config.port), config.session, mailbox, map,
                                std::move(tls));
        std::cout << "listening on " << server.local_address().to_string() << std::endl;
        asyncore::loop(std::chrono::seconds(30), map);
    } catch (const std::exception& e) {
        die(e.what(), 1);
    }
    return 0;
}
