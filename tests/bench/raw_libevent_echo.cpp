// The floor for any echo server built on libevent: one persistent EV_READ
// event per connection, recv() and send() called straight from the callback,
// write interest registered only after a short write. That is two syscalls per
// echoed message plus the shared epoll_wait, and no epoll_ctl in the steady
// state. The library's Dispatcher is measured against this program, so it must
// stay minimal: anything added here raises the bar's floor for everyone.

#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <unordered_map>

#include "server_cli.hpp"

namespace {

struct Connection {
    int fd = -1;
    event* read_ev = nullptr;
    event* write_ev = nullptr;
    std::string pending;  // bytes a short write left behind
    size_t pending_off = 0;
};

struct Server {
    event_base* base = nullptr;
    std::unordered_map<int, std::unique_ptr<Connection>> conns;
};

Server g_server;

// One receive buffer for every connection: the loop is single-threaded and a
// callback never yields with data still in it.
char g_buf[64 * 1024];

void close_connection(Connection* c) {
    event_free(c->read_ev);
    event_free(c->write_ev);
    close(c->fd);
    g_server.conns.erase(c->fd);  // destroys c
}

// Sends what it can; on a short write keeps the rest and swaps read interest
// for write interest, so a slow reader applies back-pressure instead of
// growing our buffer without bound.
void send_or_queue(Connection* c, const char* data, size_t len) {
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(len)) return;
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) return close_connection(c);
        n = 0;
    }
    c->pending.assign(data + n, len - static_cast<size_t>(n));
    c->pending_off = 0;
    event_del(c->read_ev);
    event_add(c->write_ev, nullptr);
}

void on_read(evutil_socket_t, short, void* arg) {
    auto* c = static_cast<Connection*>(arg);
    ssize_t n = recv(c->fd, g_buf, sizeof g_buf, 0);
    if (n > 0) return send_or_queue(c, g_buf, static_cast<size_t>(n));
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) close_connection(c);
}

void on_write(evutil_socket_t, short, void* arg) {
    auto* c = static_cast<Connection*>(arg);
    const char* data = c->pending.data() + c->pending_off;
    size_t left = c->pending.size() - c->pending_off;
    ssize_t n = send(c->fd, data, left, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) close_connection(c);
        return;
    }
    c->pending_off += static_cast<size_t>(n);
    if (c->pending_off < c->pending.size()) return;
    c->pending.clear();
    event_del(c->write_ev);
    event_add(c->read_ev, nullptr);
}

void add_connection(int fd) {
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    c->read_ev = event_new(g_server.base, fd, EV_READ | EV_PERSIST, on_read, c.get());
    c->write_ev = event_new(g_server.base, fd, EV_WRITE | EV_PERSIST, on_write, c.get());
    event_add(c->read_ev, nullptr);
    g_server.conns[fd] = std::move(c);
}

// Accepts a bounded batch per wake-up: enough to drain a connection burst in
// few passes, few enough that a burst cannot starve the active connections.
void on_accept(evutil_socket_t listener, short, void*) {
    for (int i = 0; i < 64; ++i) {
        int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            add_connection(fd);
            continue;
        }
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) std::perror("accept4");
        return;
    }
}

void on_signal(evutil_socket_t, short, void*) {
    event_base_loopbreak(g_server.base);
}

}  // namespace

int main(int argc, char** argv) {
    auto args = bench::parse_server_args(argc, argv);
    int listener = bench::open_listener(args);
    g_server.base = event_base_new();
    if (g_server.base == nullptr) bench::die("event_base_new");
    event* accept_ev = event_new(g_server.base, listener, EV_READ | EV_PERSIST, on_accept, nullptr);
    event* sigint_ev = evsignal_new(g_server.base, SIGINT, on_signal, nullptr);
    event* sigterm_ev = evsignal_new(g_server.base, SIGTERM, on_signal, nullptr);
    event_add(accept_ev, nullptr);
    event_add(sigint_ev, nullptr);
    event_add(sigterm_ev, nullptr);
    bench::announce(args.host, bench::local_port(listener));
    event_base_dispatch(g_server.base);

    while (!g_server.conns.empty())
        close_connection(g_server.conns.begin()->second.get());
    event_free(accept_ev);
    event_free(sigint_ev);
    event_free(sigterm_ev);
    close(listener);
    event_base_free(g_server.base);
    return 0;
}
