// The textbook libevent echo server: an evconnlistener and one bufferevent per
// connection, input moved to output with evbuffer_add_buffer. It is here for
// the record, to show what the design's choice of raw events over bufferevents
// is worth: a bufferevent re-arms its events and drains its buffers through
// extra calls (five syscalls per echoed message instead of two on this
// machine), which shows up directly in CPU per message.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <unistd.h>

#include <csignal>
#include <unordered_set>

#include "server_cli.hpp"

namespace {

event_base* g_base = nullptr;
std::unordered_set<bufferevent*> g_conns;  // so shutdown can free them all

void on_read(bufferevent* bev, void*) {
    evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

void on_event(bufferevent* bev, short what, void*) {
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) == 0) return;
    g_conns.erase(bev);
    bufferevent_free(bev);
}

void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void*) {
    bufferevent* bev = bufferevent_socket_new(g_base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == nullptr) {
        close(fd);
        return;
    }
    bufferevent_setcb(bev, on_read, nullptr, on_event, nullptr);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    g_conns.insert(bev);
}

void on_signal(evutil_socket_t, short, void*) {
    event_base_loopbreak(g_base);
}

}  // namespace

int main(int argc, char** argv) {
    auto args = bench::parse_server_args(argc, argv);
    int fd = bench::open_listener(args);
    g_base = event_base_new();
    if (g_base == nullptr) bench::die("event_base_new");
    // Backlog 0 tells libevent the socket is already listening.
    evconnlistener* listener =
        evconnlistener_new(g_base, on_accept, nullptr, LEV_OPT_CLOSE_ON_FREE, 0, fd);
    if (listener == nullptr) bench::die("evconnlistener_new");
    event* sigint_ev = evsignal_new(g_base, SIGINT, on_signal, nullptr);
    event* sigterm_ev = evsignal_new(g_base, SIGTERM, on_signal, nullptr);
    event_add(sigint_ev, nullptr);
    event_add(sigterm_ev, nullptr);
    bench::announce(args.host, bench::local_port(fd));
    event_base_dispatch(g_base);

    for (bufferevent* bev : g_conns)
        bufferevent_free(bev);
    evconnlistener_free(listener);
    event_free(sigint_ev);
    event_free(sigterm_ev);
    event_base_free(g_base);
    return 0;
}
