// The floor for a line echo server on libevent: the raw_libevent_echo shape
// (one persistent EV_READ event per connection, write interest only while
// output is left over) with libevent's own line splitting. Each read's bytes
// are appended to an input evbuffer; evbuffer_readln(EVBUFFER_EOL_LF) takes
// every complete line out of it, and each goes back with its "\n" into an
// output evbuffer, written with one evbuffer_write() per read. A partial
// line stays in the input buffer for the next read.
//
// The read is a plain recv() into one shared buffer, then evbuffer_add():
// evbuffer_read() would ask the kernel for the readable byte count with an
// ioctl(FIONREAD) before every readv(), a third syscall per message.
//
// chat_line_echo (an AsyncChat with a "\n" terminator) is measured against
// this program, so it stays what a libevent programmer would write first.
// evbuffer_readln() returns each line in a fresh malloc'd string: that is
// libevent's line API, so its cost is part of the floor.

#include <event2/buffer.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <unordered_map>

#include "server_cli.hpp"

namespace {

struct Connection {
    int fd = -1;
    event* read_ev = nullptr;
    event* write_ev = nullptr;
    evbuffer* in = nullptr;
    evbuffer* out = nullptr;
};

struct Server {
    event_base* base = nullptr;
    std::unordered_map<int, std::unique_ptr<Connection>> conns;
};

Server g_server;

// One receive buffer for every connection, as in raw_libevent_echo.
char g_buf[64 * 1024];

void close_connection(Connection* c) {
    event_free(c->read_ev);
    event_free(c->write_ev);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    close(c->fd);
    g_server.conns.erase(c->fd);  // destroys c
}

// Writes what it can of the output buffer; while some is left, waits for
// writability instead of reading more (back-pressure on a slow reader).
void flush(Connection* c) {
    if (evbuffer_write(c->out, c->fd) < 0 && errno != EAGAIN && errno != EINTR)
        return close_connection(c);
    if (evbuffer_get_length(c->out) == 0) return;
    event_del(c->read_ev);
    event_add(c->write_ev, nullptr);
}

void on_read(evutil_socket_t, short, void* arg) {
    auto* c = static_cast<Connection*>(arg);
    ssize_t n = recv(c->fd, g_buf, sizeof g_buf, 0);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) close_connection(c);
        return;
    }
    evbuffer_add(c->in, g_buf, static_cast<size_t>(n));
    size_t len = 0;
    while (char* line = evbuffer_readln(c->in, &len, EVBUFFER_EOL_LF)) {
        evbuffer_add(c->out, line, len);
        evbuffer_add(c->out, "\n", 1);
        std::free(line);
    }
    flush(c);
}

void on_write(evutil_socket_t, short, void* arg) {
    auto* c = static_cast<Connection*>(arg);
    if (evbuffer_write(c->out, c->fd) < 0 && errno != EAGAIN && errno != EINTR)
        return close_connection(c);
    if (evbuffer_get_length(c->out) > 0) return;
    event_del(c->write_ev);
    event_add(c->read_ev, nullptr);
}

void add_connection(int fd) {
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->read_ev = event_new(g_server.base, fd, EV_READ | EV_PERSIST, on_read, c.get());
    c->write_ev = event_new(g_server.base, fd, EV_WRITE | EV_PERSIST, on_write, c.get());
    event_add(c->read_ev, nullptr);
    g_server.conns[fd] = std::move(c);
}

// As raw_libevent_echo: a bounded batch of accepts per wake-up.
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
