// The command-line contract shared by the C++ reference echo servers, so that
// run.py starts them exactly like the library's samples: `--host` (default
// 127.0.0.1), `--port` (0 picks a free one), one `listening on HOST:PORT` line
// on stdout once the listener is bound, flushed before the first accept.
//
// Header-only and free of any library code: the reference servers must not
// share a single line with what they are compared against.
#pragma once

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace bench {

struct ServerArgs {
    std::string host = "127.0.0.1";
    std::string port = "0";
};

[[noreturn]] inline void usage_error(const char* prog, std::string_view what) {
    std::fprintf(stderr, "%s: %.*s\nusage: %s [--host HOST] [--port PORT]\n", prog,
                 static_cast<int>(what.size()), what.data(), prog);
    std::exit(2);
}

inline ServerArgs parse_server_args(int argc, char** argv) {
    ServerArgs args;
    for (int i = 1; i < argc; ++i) {
        std::string_view opt = argv[i];
        if (i + 1 >= argc) usage_error(argv[0], "missing value after an option");
        if (opt == "--host") {
            args.host = argv[++i];
        } else if (opt == "--port") {
            args.port = argv[++i];
        } else {
            usage_error(argv[0], "unknown option");
        }
    }
    return args;
}

[[noreturn]] inline void die(const char* what) {
    std::perror(what);
    std::exit(1);
}

// Returns a non-blocking listening socket bound to host:port. The backlog is
// large because the idle-connection load opens thousands of connections in a
// burst; a short queue would turn that into SYN retransmits, not a benchmark.
inline int open_listener(const ServerArgs& args, int backlog = 4096) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (int rc = getaddrinfo(args.host.c_str(), args.port.c_str(), &hints, &res); rc != 0) {
        std::fprintf(stderr, "bad address %s:%s: %s\n", args.host.c_str(), args.port.c_str(),
                     gai_strerror(rc));
        std::exit(2);
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) die("bind");
    freeaddrinfo(res);
    if (listen(fd, backlog) < 0) die("listen");
    return fd;
}

inline unsigned local_port(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) die("getsockname");
    if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

inline void announce(const std::string& host, unsigned port) {
    std::printf("listening on %s:%u\n", host.c_str(), port);
    std::fflush(stdout);
}

}  // namespace bench
