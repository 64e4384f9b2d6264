// echo_client: drives an echo server with N concurrent connections, each
// sending M messages of S bytes one after another, and checks every byte
// that comes back.
//
//   echo_client [--host 127.0.0.1] --port P [--conns N] [--messages M] [--size S]
//               [--timeout SECONDS]
//
// Prints the message rate; exits 1 on any mismatch, early close, connection
// error or timeout.

#include <asyncore/asyncore.hpp>

#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "../common/command_line.hpp"

namespace {

struct Options {
    std::string host = "127.0.0.1";
    unsigned port = 0;
    long conns = 10;
    long messages = 100;
    long size = 1024;
    double timeout = 60;
};

struct Totals {
    long done = 0;      ///< connections that finished every message
    long failures = 0;  ///< connections that saw a mismatch or an error
};

// Byte `i` of message `m` on connection `c`: varies with all three, so a
// byte delivered to the wrong connection or message is caught.
char expected_byte(long c, long m, long i) {
    return static_cast<char>((c * 131 + m * 31 + i * 7 + i / 256) & 0xff);
}

class EchoClient : public asyncore::DispatcherWithSend {
  public:
    EchoClient(long id, const Options& opt, Totals& totals, asyncore::ChannelMap& map)
        : DispatcherWithSend(map), id_(id), opt_(opt), totals_(totals), message_(opt.size, '\0') {}

    void handle_connect() override { send_next(); }
    void handle_read() override {
        char buf[65536];
        std::size_t n = recv_into(buf);
        for (std::size_t i = 0; i < n && fileno() >= 0; ++i)
            check(buf[i]);
    }
    void handle_close() override { fail("connection closed by the server"); }
    void handle_error(std::exception_ptr e) override {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            fail(ex.what());
        }
    }

  private:
    void send_next() {
        for (long i = 0; i < opt_.size; ++i)
            message_[i] = expected_byte(id_, sent_, i);
        ++sent_;
        got_ = 0;
        send(message_);
    }
    void check(char byte) {
        if (byte != expected_byte(id_, sent_ - 1, got_)) {
            fail("mismatch in message " + std::to_string(sent_ - 1) + " at byte " +
                 std::to_string(got_));
            return;
        }
        if (++got_ < opt_.size) return;
        if (sent_ < opt_.messages) {
            send_next();
        } else {
            ++totals_.done;
            close();
        }
    }
    void fail(const std::string& why) {
        std::fprintf(stderr, "echo_client: connection %ld: %s\n", id_, why.c_str());
        ++totals_.failures;
        close();
    }

    long id_;
    const Options& opt_;
    Totals& totals_;
    std::string message_;
    long sent_ = 0;
    long got_ = 0;
};

Options parse(int argc, char** argv) {
    sample::CommandLine cl(argc, argv,
                           "usage: echo_client [--host ADDR] --port N [--conns N] [--messages M] "
                           "[--size S] [--timeout SECONDS]",
                           {"host", "port", "conns", "messages", "size", "timeout"});
    Options o;
    o.host = cl.get("host", o.host);
    o.port = static_cast<unsigned>(cl.number("port", 0));
    o.conns = cl.number("conns", o.conns);
    o.messages = cl.number("messages", o.messages);
    o.size = cl.number("size", o.size);
    o.timeout = cl.real("timeout", o.timeout);
    if (o.port == 0 || o.port > 65535 || o.conns < 1 || o.messages < 1 || o.size < 1) cl.usage();
    return o;
}

}  // namespace

int main(int argc, char** argv) try {
    Options opt = parse(argc, argv);
    auto addr = asyncore::Address::ip(opt.host, static_cast<std::uint16_t>(opt.port));
    asyncore::ChannelMap& map = asyncore::socket_map();
    Totals totals;
    std::vector<std::unique_ptr<EchoClient>> clients;
    auto t0 = std::chrono::steady_clock::now();
    for (long c = 0; c < opt.conns; ++c) {
        clients.push_back(std::make_unique<EchoClient>(c, opt, totals, map));
        clients.back()->create_socket(addr.family(), SOCK_STREAM);
        clients.back()->connect(addr);
    }
    bool timed_out = false;
    auto watchdog = map.call_later(asyncore::Duration(opt.timeout), [&] {
        timed_out = true;
        asyncore::close_all(map, true);
    });
    while (map.size() > 0)
        map.run_pass(asyncore::Duration(1.0));
    if (!timed_out) watchdog.cancel();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double total = static_cast<double>(totals.done) * static_cast<double>(opt.messages);
    std::printf(
        "%ld/%ld connections x %ld messages of %ld bytes in %.3f s: %.0f messages/s, "
        "every byte verified\n",
        totals.done, opt.conns, opt.messages, opt.size, secs, total / secs);
    if (timed_out) std::fprintf(stderr, "echo_client: timed out after %.1f s\n", opt.timeout);
    return totals.done == opt.conns && totals.failures == 0 && !timed_out ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "echo_client: %s\n", e.what());
    return 1;
}
