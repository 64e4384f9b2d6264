// chat_client: a terminal for chat_server.
//
//   chat_client [--host HOST] --port PORT [--tls [--cafile FILE]]
//
// Sends each line read from stdin to the server and prints each line that
// arrives. Exits 0 when the server closes the connection, on SIGINT/SIGTERM,
// or once stdin ends and everything typed has been sent; 1 if it could not
// connect or TLS failed.
//
// With --tls the connection runs TLS, verifying the server's certificate
// against HOST (a name or an IP address) and the CAs in --cafile, or the
// system's CA store without it. Lines typed before the handshake completes
// are sent once it has.

#include <asyncore/asyncore.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "../common/command_line.hpp"

namespace {

class Connection : public asyncore::AsyncChat {
  public:
    using AsyncChat::AsyncChat;

    void found_record(std::string_view line) override {
        if (line.ends_with('\r')) line.remove_suffix(1);
        std::fwrite(line.data(), 1, line.size(), stdout);
        std::fputc('\n', stdout);
        std::fflush(stdout);
    }
    void handle_connect() override { was_connected = true; }
    void handle_close() override {
        std::fprintf(stderr, "* connection closed\n");
        shut();
    }
    // A failed connection or TLS handshake (e.g. "certificate verify failed:
    // self-signed certificate").
    void handle_error(std::exception_ptr error) override {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "chat_client: %s\n", e.what());
        }
        failed = true;
        shut();
    }

    std::function<void()> on_closed;
    bool was_connected = false;
    bool failed = false;

  private:
    void shut() {
        close();
        if (on_closed) on_closed();
    }
};

// Forwards stdin to the connection as it arrives.
class Keyboard : public asyncore::FileDispatcher {
  public:
    Keyboard(Connection& conn, asyncore::ChannelMap& map)
        : FileDispatcher(STDIN_FILENO, map), conn_(conn) {}

    void handle_read() override {
        std::string data = recv(4096);
        if (!data.empty()) conn_.push(std::move(data));
    }
    // End of input: leave once what was typed is sent.
    void handle_close() override {
        close();
        if (conn_.fileno() >= 0) conn_.close_when_done();
    }
    bool writable() override { return false; }

  private:
    Connection& conn_;
};

struct Options {
    std::string host = "127.0.0.1";
    int port = 0;
    bool tls = false;
    std::string cafile;
};

Options parse(int argc, char** argv) {
    sample::CommandLine cl(argc, argv,
                           "usage: chat_client [--host HOST] --port PORT [--tls [--cafile FILE]]",
                           {"host", "port", "cafile"}, {"tls"});
    Options o;
    o.host = cl.get("host", o.host);
    o.port = static_cast<int>(cl.number("port", 0));
    o.tls = cl.flag("tls");
    o.cafile = cl.get("cafile");
    if (o.port <= 0) cl.usage("chat_client: --port is required");
    if (!o.cafile.empty() && !o.tls) cl.usage("chat_client: --cafile needs --tls");
    return o;
}

// epoll cannot watch a regular file: read such a stdin at once instead.
bool stdin_is_regular_file() {
    struct stat st {};
    return ::fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode);
}

std::string read_all_stdin() {
    std::string all;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(STDIN_FILENO, buf, sizeof buf)) > 0)
        all.append(buf, static_cast<std::size_t>(n));
    return all;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt = parse(argc, argv);
    try {
        asyncore::ChannelMap& map = asyncore::socket_map();
        asyncore::Address addr =
            asyncore::Address::ip(opt.host, static_cast<std::uint16_t>(opt.port));
        Connection conn(map);
        conn.set_terminator("\n");
        conn.set_max_input_buffer(0);
        conn.create_socket(addr.family(), SOCK_STREAM);
        conn.connect(addr);
        if (opt.tls) {
            auto ctx = opt.cafile.empty() ? asyncore::TlsContext::client()
                                          : asyncore::TlsContext::client(opt.cafile);
            conn.start_tls(ctx, false, opt.host);
        }
        std::unique_ptr<Keyboard> keyboard;
        if (stdin_is_regular_file()) {
            conn.push(read_all_stdin());
            conn.close_when_done();
        } else {
            keyboard = std::make_unique<Keyboard>(conn, map);
        }
        // SIGINT/SIGTERM end the session; the watches end with the connection
        // so that loop() can return.
        auto stop = [&](int) {
            conn.close();
            if (keyboard) keyboard->close();
        };
        asyncore::SignalWatch on_int = map.on_signal(SIGINT, stop);
        asyncore::SignalWatch on_term = map.on_signal(SIGTERM, stop);
        conn.on_closed = [&] {
            if (keyboard) keyboard->close();
            on_int.cancel();
            on_term.cancel();
        };
        asyncore::loop(std::chrono::seconds(30), map);
        return conn.was_connected && !conn.failed ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "chat_client: %s\n", e.what());
        return 1;
    }
}
