#include <asyncore/asyncore.hpp>
#include <sys/socket.h>

using namespace asyncore;

struct EchoHandler : DispatcherWithSend {
    using DispatcherWithSend::DispatcherWithSend;
    void handle_read() override {
        char buf[8192];
        if (std::size_t n = recv_into(buf)) send({buf, n});
    }
    void handle_close() override { close(); }
};

struct EchoServer : Dispatcher {
    explicit EchoServer(const Address& addr) {
        create_socket(addr.family(), SOCK_STREAM);
        set_reuse_addr();
        bind(addr);
        listen(128);
    }
    void handle_accepted(Socket sock, const Address&) override {
        make<EchoHandler>(std::move(sock));  // the map owns it until it closes
    }
};

int main() {
    EchoServer server(Address::ipv4("127.0.0.1", 8080));
    loop();
}
