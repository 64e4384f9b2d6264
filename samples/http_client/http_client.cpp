// http_client: asyncore's documented HTTP client example as a Dispatcher.
// GETs one URL with HTTP/1.0 and prints the whole response (status line,
// headers and body) to stdout.
//
//   http_client http://HOST[:PORT]/PATH
//
// HOST is an IPv4 or IPv6 literal ("127.0.0.1", "[::1]"). Exits 0 once the
// server closed the connection after a response, 1 on any error.

#include <asyncore/asyncore.hpp>

#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include "../common/command_line.hpp"

namespace {

struct Url {
    std::string host;
    std::uint16_t port = 80;
    std::string path = "/";
};

Url parse_url(std::string_view url) {
    constexpr std::string_view scheme = "http://";
    if (url.substr(0, scheme.size()) != scheme) throw std::invalid_argument("not an http:// URL");
    url.remove_prefix(scheme.size());
    Url u;
    std::size_t slash = url.find('/');
    std::string_view authority = url.substr(0, slash);
    if (slash != std::string_view::npos) u.path = std::string(url.substr(slash));
    std::size_t colon = authority.rfind(':');
    bool has_port = colon != std::string_view::npos &&
                    (authority.front() != '[' || authority.find(']') < colon);
    u.host = std::string(has_port ? authority.substr(0, colon) : authority);
    if (has_port) {
        unsigned long port =
            std::strtoul(std::string(authority.substr(colon + 1)).c_str(), nullptr, 10);
        if (port == 0 || port > 65535) throw std::invalid_argument("bad port in URL");
        u.port = static_cast<std::uint16_t>(port);
    }
    if (u.host.empty()) throw std::invalid_argument("no host in URL");
    return u;
}

// asyncore's HTTPClient, line for line: the request is a buffer that
// handle_write() drains; writable() is true while it is not empty.
class HttpClient : public asyncore::Dispatcher {
  public:
    HttpClient(const Url& url, asyncore::ChannelMap& map) : Dispatcher(map) {
        auto addr = asyncore::Address::ip(url.host, url.port);
        create_socket(addr.family(), SOCK_STREAM);
        connect(addr);
        buffer_ = "GET " + url.path + " HTTP/1.0\r\nHost: " + url.host + "\r\n\r\n";
    }

    bool failed() const { return failed_; }
    bool got_response() const { return received_ > 0; }

    void handle_connect() override {}
    void handle_close() override { close(); }
    void handle_read() override {
        std::string data = recv(8192);
        received_ += data.size();
        std::fwrite(data.data(), 1, data.size(), stdout);
    }
    bool writable() override { return !buffer_.empty(); }
    void handle_write() override { buffer_.erase(0, send(buffer_)); }
    void handle_error(std::exception_ptr e) override {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            std::fprintf(stderr, "http_client: %s\n", ex.what());
        }
        failed_ = true;
        close();
    }

  private:
    std::string buffer_;
    std::size_t received_ = 0;
    bool failed_ = false;
};

}  // namespace

int main(int argc, char** argv) try {
    sample::CommandLine cl(argc, argv, "usage: http_client http://HOST[:PORT]/PATH", {}, {},
                           /*positionals=*/1);
    HttpClient client(parse_url(cl.positional(0)), asyncore::socket_map());
    asyncore::loop();
    std::fflush(stdout);
    return client.failed() || !client.got_response() ? 1 : 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "http_client: %s\n", e.what());
    return 1;
}
