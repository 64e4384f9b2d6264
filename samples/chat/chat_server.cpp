// chat_server: a line chat on AsyncChat.
//
//   chat_server [--host HOST] [--port PORT]
//
// Every client gets a name (guest1, guest2, ...). A line is relayed to every
// other client as "<name>: <line>". "/nick NAME" renames, "/quit" leaves.
// Joins, leaves and renames are announced as "* ..." lines. Lines end with
// "\n" ("\r\n" is accepted); a line over 4 KiB, or a client that stops
// reading while 1 MiB of chat is queued for it, is disconnected.

#include <asyncore/asyncore.hpp>

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <set>
#include <string>
#include <string_view>

#include "signals.hpp"

namespace {

constexpr std::size_t max_line = 4096;
constexpr std::size_t max_name = 32;

class ChatServer;

class Session : public asyncore::AsyncChat {
  public:
    Session(asyncore::Socket sock, ChatServer& server);

    void found_record(std::string_view line) override;
    void close() override;
    // A client that does not read what others say is dropped, rather than
    // letting its queue grow without bound.
    void on_output_high() override;

    const std::string& name() const noexcept { return name_; }
    /// Queues one line for this client.
    void say(std::string_view line) { push(std::string(line) + "\n"); }

  private:
    void command(std::string_view line);
    void rename(std::string_view name);

    ChatServer& server_;
    std::string name_;
    bool left_ = false;
};

class ChatServer : public asyncore::Dispatcher {
  public:
    using Dispatcher::Dispatcher;

    void handle_accepted(asyncore::Socket sock, const asyncore::Address&) override {
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
    void shut_down() {
        shutting_down_ = true;
        close();
        for (Session* s : std::set<Session*>(sessions_))
            s->close();
    }

  private:
    std::set<Session*> sessions_;
    unsigned guests_ = 0;
    bool shutting_down_ = false;
};

Session::Session(asyncore::Socket sock, ChatServer& server)
    : AsyncChat(std::move(sock), server.map()), server_(server), name_(server.next_guest_name()) {
    set_terminator("\n");
    set_max_input_buffer(max_line);
    set_output_watermarks(64 * 1024, 1024 * 1024);
    server_.join(*this);
    say("* welcome, you are " + name_ + " (/nick NAME to rename, /quit to leave)");
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

void Session::close() {
    if (!left_) {
        left_ = true;
        server_.leave(*this);
    }
    AsyncChat::close();
}

void Session::on_output_high() {
    log_info(name_ + " does not read its messages; disconnecting", "info");
    discard_buffers();
    close();
}

struct Options {
    std::string host = "127.0.0.1";
    int port = 0;
};

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--host" && i + 1 < argc) {
            o.host = argv[++i];
        } else if (a == "--port" && i + 1 < argc) {
            o.port = std::atoi(argv[++i]);
        } else {
            std::fprintf(stderr, "usage: %s [--host HOST] [--port PORT]\n", argv[0]);
            std::exit(2);
        }
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
        ChatServer server(map);
        server.create_socket(addr.family(), SOCK_STREAM);
        server.set_reuse_addr();
        server.bind(addr);
        server.listen(128);
        chat_sample::SignalWatcher signals([&] { server.shut_down(); }, map);
        std::printf("listening on %s\n", server.local_address().to_string().c_str());
        std::fflush(stdout);
        asyncore::loop(std::chrono::seconds(30), map);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "chat_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
