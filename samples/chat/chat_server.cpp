// chat_server: a line chat on AsyncChat.
//
//   chat_server [--host HOST] [--port PORT] [--tls --cert FILE --key FILE]
//               [--idle-timeout SECONDS]
//
// Every client gets a name (guest1, guest2, ...). A line is relayed to every
// other client as "<name>: <line>". "/nick NAME" renames, "/quit" leaves.
// Joins, leaves and renames are announced as "* ..." lines. Lines end with
// "\n" ("\r\n" is accepted); a line over 4 KiB, or a client that stops
// reading while 1 MiB of chat is queued for it, is disconnected. So is a
// client that says nothing for --idle-timeout seconds (300 by default, 0 for
// never; a TLS client that never completes its handshake included): it is
// told so, and the others see it leave.
//
// With --tls every connection runs TLS (the certificate chain in --cert, its
// key in --key); a client joins the chat once its handshake completes, so
// one that fails it is never announced and never sees a line.

#include <asyncore/asyncore.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "../common/command_line.hpp"

namespace {

constexpr std::size_t max_line = 4096;
constexpr std::size_t max_name = 32;

class ChatServer;

class Session : public asyncore::AsyncChat {
  public:
    Session(asyncore::Socket sock, ChatServer& server);

    void found_record(std::string_view line) override;
    void handle_tls_established() override { enter(); }
    void handle_idle_timeout() override;
    void handle_close() override;
    void close() override;
    // A client that does not read what others say is dropped, rather than
    // letting its queue grow without bound.
    void on_output_high() override;

    const std::string& name() const noexcept { return name_; }
    /// Queues one line for this client.
    void say(std::string_view line) { push(std::string(line) + "\n"); }

  private:
    void enter();
    void command(std::string_view line);
    void rename(std::string_view name);

    ChatServer& server_;
    std::string name_;
    bool joined_ = false;
    bool left_ = false;
    bool told_idle_ = false;
};

class ChatServer : public asyncore::Dispatcher {
  public:
    ChatServer(asyncore::ChannelMap& map, std::optional<asyncore::TlsContext> tls,
               asyncore::Timeout idle_timeout)
        : Dispatcher(map), tls_(std::move(tls)), idle_timeout_(idle_timeout) {}

    /// The context every connection runs TLS with, or null for plaintext.
    const asyncore::TlsContext* tls() const noexcept { return tls_ ? &*tls_ : nullptr; }
    asyncore::Timeout idle_timeout() const noexcept { return idle_timeout_; }

    void handle_accepted(asyncore::Socket sock, const asyncore::Address&) override {
        // Chat lines are small and each is written whole: Nagle would hold
        // one back until the previous one is acknowledged, which a client
        // that only listens delays by 40 ms (delayed ACK).
        int on = 1;
        ::setsockopt(sock.fd(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        asyncore::make<Session>(std::move(sock), *this);
    }

    std::string next_guest_name() { return "guest" + std::to_string(++guests_); }
    bool name_taken(std::string_view name) const {
        for (const Session* s : sessions_) {
            if (s->name() == name) return true;
        }
        return false;
    }
    void join(Session& s) {
        sessions_.insert(&s);
        broadcast("* " + s.name() + " has joined", &s);
    }
    void leave(Session& s) {
        sessions_.erase(&s);
        if (!shutting_down_) broadcast("* " + s.name() + " has left", nullptr);
    }
    /// Sends `line` to every client but `except`.
    void broadcast(const std::string& line, const Session* except) {
        const std::string wire = line + "\n";
        for (Session* s : std::set<Session*>(sessions_)) {
            if (s != except && s->fileno() >= 0) s->push(std::string_view(wire));
        }
    }
    /// Closes the listener at once and every connection once what it was
    /// sent is written (at most `grace` later), handshaking ones included.
    void shut_down(asyncore::Duration grace) {
        shutting_down_ = true;
        asyncore::close_all_when_done(map(), grace);
    }

  private:
    std::optional<asyncore::TlsContext> tls_;
    asyncore::Timeout idle_timeout_;
    std::set<Session*> sessions_;
    unsigned guests_ = 0;
    bool shutting_down_ = false;
};

Session::Session(asyncore::Socket sock, ChatServer& server)
    : AsyncChat(std::move(sock), server.map()), server_(server), name_(server.next_guest_name()) {
    set_terminator("\n");
    set_max_input_buffer(max_line);
    set_output_watermarks(64 * 1024, 1024 * 1024);
    set_idle_timeout(server_.idle_timeout());
    if (server_.tls()) {
        start_tls(*server_.tls(), true);
    } else {
        enter();
    }
}

// The welcome goes first: announcing the newcomer may make another client's
// connection fail, and its "has left" line must not come before it.
void Session::enter() {
    say("* welcome, you are " + name_ + " (/nick NAME to rename, /quit to leave)");
    // A client gone already fails that send, and the session closes inside
    // say(): it must not join (the server would keep a pointer to a session
    // about to be destroyed), nor be announced.
    if (fileno() < 0) return;
    joined_ = true;
    server_.join(*this);
}

void Session::found_record(std::string_view line) {
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.starts_with('/')) {
        command(line);
        return;
    }
    server_.broadcast(name_ + ": " + std::string(line), this);
}

void Session::command(std::string_view line) {
    std::string_view verb = line.substr(0, line.find(' '));
    std::string_view arg = verb.size() < line.size() ? line.substr(verb.size() + 1) : "";
    if (verb == "/quit") {
        say("* bye");
        close_when_done();
    } else if (verb == "/nick") {
        rename(arg);
    } else {
        say("* unknown command " + std::string(verb) + " (try /nick NAME or /quit)");
    }
}

void Session::rename(std::string_view name) {
    if (name.empty() || name.size() > max_name ||
        name.find_first_of(" \t:*/") != std::string_view::npos) {
        say("* usage: /nick NAME (1 to 32 characters, no spaces, ':', '*' or '/')");
    } else if (server_.name_taken(name)) {
        say("* the name " + std::string(name) + " is taken");
    } else {
        std::string old = std::exchange(name_, std::string(name));
        server_.broadcast("* " + old + " is now known as " + name_, nullptr);
    }
}

// Said nothing for the idle timeout: told so, then closed once that line is
// out. If it does not take even that line within another timeout, it is
// closed without it.
void Session::handle_idle_timeout() {
    if (!joined_ || told_idle_) {
        close();
        return;
    }
    told_idle_ = true;
    say("* you have been idle for too long; bye");
    close_when_done();
}

void Session::close() {
    if (joined_ && !left_) {
        left_ = true;
        server_.leave(*this);
    }
    AsyncChat::close();
}

// The client's EOF ends what it says, not what it is sent: a client that
// half-closes still reads, so the lines queued for it go out first, then the
// close (asynchat would drop them). A client that is gone fails the next
// send, which comes back here with reading stopped, and closes at once; so
// does one that was gone before it was accepted (not connected: asyncore's
// getpeername() rule), whose queue can never be written.
void Session::handle_close() {
    if (fileno() >= 0 && connected() && !reading_stopped() && output_queued() > 0) {
        stop_reading();
        close_when_done();
        return;
    }
    close();
}

void Session::on_output_high() {
    log_info(name_ + " does not read its messages; disconnecting", "info");
    discard_buffers();
    close();
}

struct Options {
    std::string host = "127.0.0.1";
    int port = 0;
    bool tls = false;
    std::string cert, key;
    asyncore::Timeout idle_timeout = std::chrono::seconds(300);
};

Options parse(int argc, char** argv) {
    sample::CommandLine cl(argc, argv,
                           "usage: chat_server [--host HOST] [--port PORT] "
                           "[--tls --cert FILE --key FILE] [--idle-timeout SECONDS]",
                           {"host", "port", "cert", "key", "idle-timeout"}, {"tls"});
    Options o;
    o.host = cl.get("host", o.host);
    o.port = static_cast<int>(cl.number("port", 0));
    o.tls = cl.flag("tls");
    o.cert = cl.get("cert");
    o.key = cl.get("key");
    if (cl.has("idle-timeout")) {
        double seconds = cl.real("idle-timeout", 0);
        if (seconds < 0 || seconds > 86400) cl.usage();
        o.idle_timeout =
            seconds > 0 ? asyncore::Timeout(asyncore::Duration(seconds)) : std::nullopt;
    }
    if (o.tls != !o.cert.empty() || o.cert.empty() != o.key.empty()) {
        cl.usage("chat_server: --tls needs --cert and --key (and they need --tls)");
    }
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt = parse(argc, argv);
    try {
        asyncore::ChannelMap& map = asyncore::socket_map();
        asyncore::Address addr =
            asyncore::Address::ip(opt.host, static_cast<std::uint16_t>(opt.port));
        std::optional<asyncore::TlsContext> tls;
        if (opt.tls) tls = asyncore::TlsContext::server(opt.cert, opt.key);
        ChatServer server(map, std::move(tls), opt.idle_timeout);
        server.create_socket(addr.family(), SOCK_STREAM);
        server.set_reuse_addr();
        server.bind(addr);
        server.listen(128);
        // SIGINT/SIGTERM: a graceful shutdown; SIGUSR1: the loop's counters.
        auto stop = [&](int) { server.shut_down(std::chrono::seconds(5)); };
        asyncore::SignalWatch on_int = map.on_signal(SIGINT, stop);
        asyncore::SignalWatch on_term = map.on_signal(SIGTERM, stop);
        asyncore::SignalWatch on_usr1 = map.on_signal(SIGUSR1, [&](int) {
            std::fprintf(stderr, "stats: channels=%zu passes=%llu\n", map.size(),
                         static_cast<unsigned long long>(map.stats().passes));
        });
        std::printf("listening on %s\n", server.local_address().to_string().c_str());
        std::fflush(stdout);
        asyncore::loop(std::chrono::seconds(30), map);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "chat_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
