// Standalone asio with C++20 coroutines, written the way asio's own examples
// write an echo server (co_spawn, awaitable, use_awaitable), on one thread with
// a concurrency hint of 1 so it pays for no locking the others do not pay for.
// It is the bar the Task layer is compared against: a mature coroutine
// networking library, not a hand-tuned loop.

#ifndef ASIO_STANDALONE
#define ASIO_STANDALONE
#endif

#include <array>
#include <asio.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "server_cli.hpp"

namespace {

using asio::ip::tcp;

// A 4 KiB buffer in each coroutine frame, as in asio's examples; it is most
// of what an idle connection costs this server in the memory row.
asio::awaitable<void> echo(tcp::socket socket) {
    std::array<char, 4096> buf;
    try {
        for (;;) {
            size_t n = co_await socket.async_read_some(asio::buffer(buf), asio::use_awaitable);
            co_await asio::async_write(socket, asio::buffer(buf.data(), n), asio::use_awaitable);
        }
    } catch (const std::system_error&) {
        // EOF and resets end the session; the socket closes with the frame.
    }
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor) {
    for (;;) {
        tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
        asio::co_spawn(acceptor.get_executor(), echo(std::move(socket)), asio::detached);
    }
}

}  // namespace

int main(int argc, char** argv) {
    auto args = bench::parse_server_args(argc, argv);
    try {
        asio::io_context ctx(1);
        auto port = static_cast<unsigned short>(std::strtoul(args.port.c_str(), nullptr, 10));
        tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::make_address(args.host), port));
        asio::signal_set signals(ctx, SIGINT, SIGTERM);
        signals.async_wait([&](const std::error_code&, int) { ctx.stop(); });
        asio::co_spawn(ctx, accept_loop(acceptor), asio::detached);
        bench::announce(args.host, acceptor.local_endpoint().port());
        ctx.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "asio_echo: %s\n", e.what());
        return 1;
    }
    return 0;
}
