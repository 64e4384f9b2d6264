// The AsyncChat contender: a line echo server written as asynchat's
// documentation suggests, one AsyncChat per connection with a "\n" terminator
// that pushes back every line it finds. raw_line_echo (libevent's
// evbuffer_readln) is its reference; run.py's lines section and cost.py
// measure both under the same line-delimited load (loadgen --lines 1).
//
//   chat_line_echo [--host HOST] [--port PORT]
//
// keep_terminator is on, so found_record() sees each line with its "\n" and
// pushes it as it is: no copy and no allocation per line. A line that arrived
// whole in one read points straight into the channel's receive buffer.
// SIGINT or SIGTERM close every channel at once and the program exits 0.

#include <asyncore/async_chat.hpp>
#include <asyncore/asyncore.hpp>

#include <sys/socket.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

namespace {

class LineEcho : public asyncore::AsyncChat {
  public:
    LineEcho(asyncore::Socket sock, asyncore::ChannelMap& map) : AsyncChat(std::move(sock), map) {
        set_terminator("\n");
        set_keep_terminator(true);
    }
    void found_record(std::string_view line) override { push(line); }
};

class Listener : public asyncore::Dispatcher {
  public:
    Listener(const asyncore::Address& addr, asyncore::ChannelMap& map) : Dispatcher(map) {
        create_socket(addr.family(), SOCK_STREAM);
        set_reuse_addr();
        bind(addr);
        listen(4096);
    }
    void handle_accepted(asyncore::Socket sock, const asyncore::Address&) override {
        asyncore::make<LineEcho>(std::move(sock), map());
    }
};

[[noreturn]] void usage(const char* prog) {
    std::fprintf(stderr, "usage: %s [--host HOST] [--port PORT]\n", prog);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) try {
    std::string host = "127.0.0.1";
    unsigned long port = 0;
    for (int i = 1; i < argc; i += 2) {
        std::string_view opt = argv[i];
        if (i + 1 >= argc) usage(argv[0]);
        if (opt == "--host") {
            host = argv[i + 1];
        } else if (opt == "--port") {
            port = std::strtoul(argv[i + 1], nullptr, 10);
        } else {
            usage(argv[0]);
        }
    }
    if (port > 65535) usage(argv[0]);
    asyncore::ChannelMap& map = asyncore::socket_map();
    Listener listener(asyncore::Address::ip(host, static_cast<std::uint16_t>(port)), map);
    auto stop = [&map](int) { asyncore::close_all(map, true); };
    asyncore::SignalWatch on_int = map.on_signal(SIGINT, stop);
    asyncore::SignalWatch on_term = map.on_signal(SIGTERM, stop);
    std::printf("listening on %s\n", listener.local_address().to_string().c_str());
    std::fflush(stdout);
    asyncore::loop();
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "chat_line_echo: %s\n", e.what());
    return 1;
}
