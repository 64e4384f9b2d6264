// tls_echo_server: an echo server over TLS, on the Dispatcher layer.
//
//   tls_echo_server --cert FILE --key FILE [--host HOST] [--port PORT]
//
// Every connection runs a TLS handshake (Dispatcher::start_tls) and then
// gets back every byte it sends. A failed handshake is logged as one line
// and closes that connection only. SIGINT/SIGTERM close everything and exit 0.

#include <asyncore/asyncore.hpp>

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

namespace {

// Stop reading from a client that does not read its echo: its queue is
// bounded by what one read adds past this mark.
constexpr std::size_t output_high = 1 << 20;

class EchoHandler : public asyncore::DispatcherWithSend {
  public:
    EchoHandler(asyncore::Socket sock, const asyncore::TlsContext& ctx)
        : DispatcherWithSend(std::move(sock)) {
        start_tls(ctx, true);
    }

    void handle_read() override {
        char buf[16384];
        std::size_t n = recv_into(buf);
        if (n > 0) send(std::string_view(buf, n));
    }
    bool readable() override { return pending() < output_high; }
    void handle_close() override { close(); }
    void handle_error(std::exception_ptr error) override {
        std::string why = "unknown error";
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            why = e.what();
        } catch (...) {
        }
        log_info("closing " + addr().to_string() + ": " + why, "error");
        close();
    }
};

class Server : public asyncore::Dispatcher {
  public:
    Server(const asyncore::Address& at, asyncore::TlsContext ctx) : ctx_(std::move(ctx)) {
        create_socket(at.family(), SOCK_STREAM);
        set_reuse_addr();
        bind(at);
        listen(128);
    }
    void handle_accepted(asyncore::Socket sock, const asyncore::Address&) override {
        asyncore::make<EchoHandler>(std::move(sock), ctx_);
    }

  private:
    asyncore::TlsContext ctx_;
};

// SIGINT and SIGTERM arrive through a signalfd the loop watches, so the
// shutdown runs in-loop like any other event.
class SignalWatcher : public asyncore::FileDispatcher {
  public:
    explicit SignalWatcher(int fd) : FileDispatcher(fd) {}
    void handle_read() override {
        signalfd_siginfo info;
        if (recv(sizeof info).empty()) return;
        asyncore::close_all();
    }
    bool writable() override { return false; }
};

int make_signalfd() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0) asyncore::throw_errno(errno, "sigprocmask");
    int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) asyncore::throw_errno(errno, "signalfd");
    return fd;
}

struct Options {
    std::string host = "127.0.0.1";
    int port = 0;
    std::string cert, key;
};

bool parse(int argc, char** argv, Options& o) {
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string_view flag = argv[i];
        std::string value = argv[i + 1];
        if (flag == "--host") {
            o.host = value;
        } else if (flag == "--port") {
            o.port = std::atoi(value.c_str());
        } else if (flag == "--cert") {
            o.cert = value;
        } else if (flag == "--key") {
            o.key = value;
        } else {
            return false;
        }
    }
    return argc % 2 == 1 && !o.cert.empty() && !o.key.empty() && o.port >= 0 && o.port < 65536;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    if (!parse(argc, argv, opt)) {
        std::fprintf(stderr,
                     "usage: tls_echo_server --cert FILE --key FILE [--host HOST] [--port PORT]\n");
        return 2;
    }
    try {
        auto ctx = asyncore::TlsContext::server(opt.cert, opt.key);
        Server server(asyncore::Address::ip(opt.host, static_cast<std::uint16_t>(opt.port)), ctx);
        int sfd = make_signalfd();
        SignalWatcher signals(sfd);
        ::close(sfd);  // the watcher keeps its own duplicate
        std::printf("listening on %s\n", server.local_address().to_string().c_str());
        std::fflush(stdout);
        asyncore::loop();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tls_echo_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
