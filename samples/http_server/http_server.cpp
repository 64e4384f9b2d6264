// HTTP/1.1 on Tasks + AsyncSocket: keep-alive, pipelining, GET /hello, files
// under --root, 400/404/405/408/431, 503 when a file cannot be opened for
// want of descriptors, and a request-size limit. A request the server
// cannot parse with certainty (http_request.hpp: parse_request_head(), which
// also refuses any Transfer-Encoding) gets 400 and the connection closes.
//
//   http_server [--host H] [--port P] [--root DIR] [--max-request BYTES]
//               [--header-timeout SECONDS] [--keepalive-timeout SECONDS]
//
// Timeouts, on by default with nginx's values (0 turns one off):
// - --header-timeout (60 s, nginx's client_header_timeout): a request head
//   must arrive whole within it, counted from its first byte (from the
//   connection's start for the first request). A client that sends part of
//   a head and then dribbles (slowloris) gets 408 and is closed; one that
//   sends nothing is closed silently. The same bound applies to each read
//   of a request body and each 1 MiB piece of a response sent, so a client
//   that stops reading is dropped too.
// - --keepalive-timeout (75 s, nginx's keepalive_timeout): how long an idle
//   keep-alive connection waits for its next request.

#include <asyncore/async_socket.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "../common/task_server.hpp"
#include "http_request.hpp"

using asyncore::AsyncSocket;
using asyncore::Task;
using http::parse_request_head;
using http::Request;

namespace {

struct Config {
    std::string root;
    std::size_t max_request = 8192;
    asyncore::Timeout header_timeout = std::chrono::seconds(60);
    asyncore::Timeout keepalive_timeout = std::chrono::seconds(75);
};

using Clock = std::chrono::steady_clock;
using Deadline = std::optional<Clock::time_point>;

Deadline deadline_after(asyncore::Timeout t) {
    if (!t) return std::nullopt;
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(*t);
}

std::string_view content_type(std::string_view path) {
    static const std::pair<std::string_view, std::string_view> types[] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".txt", "text/plain; charset=utf-8"},
        {".css", "text/css"},
        {".js", "text/javascript"},
        {".json", "application/json"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},
        {".svg", "image/svg+xml"}};
    for (auto& [ext, type] : types)
        if (path.size() >= ext.size() && path.substr(path.size() - ext.size()) == ext) return type;
    return "application/octet-stream";
}

std::string head_for(int status, std::string_view reason, std::string_view type, std::size_t length,
                     bool keep_alive) {
    std::string h = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
    h += "Content-Type: " + std::string(type) + "\r\n";
    h += "Content-Length: " + std::to_string(length) + "\r\n";
    h += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    return h;
}

Task<void> send_simple(AsyncSocket& conn, int status, std::string_view reason, std::string body,
                       bool keep_alive, bool head_only) {
    std::string out =
        head_for(status, reason, "text/plain; charset=utf-8", body.size(), keep_alive);
    if (!head_only) out += body;
    co_await conn.sendall(out);
}

// A path is served only if no segment is "..": nothing outside --root.
bool safe_path(std::string_view p) {
    if (p.find('\0') != std::string_view::npos) return false;
    std::size_t pos = 0;
    while (pos <= p.size()) {
        std::size_t next = p.find('/', pos);
        if (next == std::string_view::npos) next = p.size();
        if (p.substr(pos, next - pos) == "..") return false;
        pos = next + 1;
    }
    return true;
}

enum class FileResult { sent, not_found, unavailable };

// Files are sent in 1 MiB pieces so a large one never sits whole in memory.
// A file that cannot be opened for want of descriptors (or memory) is the
// server's trouble for a while, not the client's: unavailable (503), not a
// 404 saying the file is not there.
Task<FileResult> send_file(AsyncSocket& conn, const Config& cfg, const Request& req,
                           bool head_only) {
    std::string path = req.target.substr(0, req.target.find('?'));
    if (cfg.root.empty() || !safe_path(path)) co_return FileResult::not_found;
    std::string full = cfg.root + path;
    int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        if (err != EMFILE && err != ENFILE && err != ENOMEM) co_return FileResult::not_found;
        std::fprintf(stderr, "open %s: %s\n", full.c_str(), std::strerror(err));
        co_return FileResult::unavailable;
    }
    asyncore::Socket owner(fd);
    struct stat st {};
    if (::fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) co_return FileResult::not_found;
    auto size = static_cast<std::size_t>(st.st_size);
    co_await conn.sendall(head_for(200, "OK", content_type(path), size, req.keep_alive));
    if (head_only) co_return FileResult::sent;
    std::string piece;
    for (std::size_t off = 0; off < size;) {
        piece.resize(std::min<std::size_t>(1 << 20, size - off));
        ssize_t n = ::pread(fd, piece.data(), piece.size(), static_cast<off_t>(off));
        if (n <= 0) throw std::runtime_error("read failed: " + full);
        piece.resize(static_cast<std::size_t>(n));
        co_await conn.sendall(piece);
        off += static_cast<std::size_t>(n);
    }
    co_return FileResult::sent;
}

Task<void> respond(AsyncSocket& conn, const Config& cfg, const Request& req) {
    bool head_only = req.method == "HEAD";
    if (req.method != "GET" && !head_only) {
        co_await send_simple(conn, 405, "Method Not Allowed", "method not allowed\n",
                             req.keep_alive, false);
    } else if (req.target == "/hello") {
        co_await send_simple(conn, 200, "OK", "Hello, world!", req.keep_alive, head_only);
    } else {
        FileResult r = co_await send_file(conn, cfg, req, head_only);
        if (r == FileResult::not_found) {
            co_await send_simple(conn, 404, "Not Found", "not found\n", req.keep_alive, head_only);
        } else if (r == FileResult::unavailable) {
            co_await send_simple(conn, 503, "Service Unavailable", "out of resources; try again\n",
                                 req.keep_alive, head_only);
        }
    }
}

enum class Read { data, eof, timeout };

// One recv() appended to `buf`, bounded by `deadline`.
Task<Read> read_more(AsyncSocket& conn, std::string& buf, Deadline deadline) {
    if (deadline) {
        auto left = *deadline - Clock::now();
        if (left <= Clock::duration::zero()) co_return Read::timeout;
        conn.settimeout(std::chrono::duration_cast<asyncore::Duration>(left));
    } else {
        conn.settimeout(std::nullopt);
    }
    try {
        std::string chunk = co_await conn.recv(65536);
        if (chunk.empty()) co_return Read::eof;
        buf += chunk;
        co_return Read::data;
    } catch (const asyncore::TimeoutError&) {
        co_return Read::timeout;
    }
}

// Answers an error and ends the connection; the send has the same bound as
// every response's (the last read may have left a spent timeout set).
Task<void> refuse(AsyncSocket& conn, const Config& cfg, int status, std::string_view reason,
                  std::string body) {
    conn.settimeout(cfg.header_timeout);
    co_await send_simple(conn, status, reason, std::move(body), false, false);
}

// One connection: requests are taken from `buf` in order (pipelining);
// reading resumes only when no complete request is buffered. Every wait is
// bounded by the timeouts above; a client that runs into one is closed.
Task<void> serve(AsyncSocket conn, const Config& cfg) {
    // A response's head and body leave in two sends: with Nagle's algorithm
    // the body would wait for the client's delayed ACK (40 ms). nginx sets
    // TCP_NODELAY on keep-alive connections too.
    conn.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
    std::string buf;
    // The first request has the header timeout from the start: a client
    // that connects and says nothing is no idle keep-alive connection.
    Deadline wait_for_request = deadline_after(cfg.header_timeout);
    for (;;) {
        while (buf.empty()) {
            if (co_await read_more(conn, buf, wait_for_request) != Read::data) co_return;
        }
        Deadline head_deadline = deadline_after(cfg.header_timeout);
        std::size_t end;
        while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
            if (buf.size() > cfg.max_request) {
                co_await refuse(conn, cfg, 431, "Request Header Fields Too Large",
                                "request too large\n");
                co_return;
            }
            Read r = co_await read_more(conn, buf, head_deadline);
            if (r == Read::eof) co_return;
            if (r == Read::timeout) {
                co_await refuse(conn, cfg, 408, "Request Timeout", "request timeout\n");
                co_return;
            }
        }
        if (end + 4 > cfg.max_request) {
            co_await refuse(conn, cfg, 431, "Request Header Fields Too Large",
                            "request too large\n");
            co_return;
        }
        std::optional<Request> req = parse_request_head(std::string_view(buf).substr(0, end));
        if (!req || req->content_length > cfg.max_request) {
            co_await refuse(conn, cfg, 400, "Bad Request", "bad request\n");
            co_return;
        }
        std::size_t total = end + 4 + req->content_length;
        while (buf.size() < total) {
            // As nginx's client_body_timeout: a bound on each read of the body.
            Read r = co_await read_more(conn, buf, deadline_after(cfg.header_timeout));
            if (r == Read::eof) co_return;
            if (r == Read::timeout) {
                co_await refuse(conn, cfg, 408, "Request Timeout", "request timeout\n");
                co_return;
            }
        }
        buf.erase(0, total);
        // As nginx's send_timeout: a bound on each piece sent.
        conn.settimeout(cfg.header_timeout);
        co_await respond(conn, cfg, *req);
        if (!req->keep_alive) co_return;
        wait_for_request = deadline_after(cfg.keepalive_timeout);
    }
}

Task<void> serve_logged(AsyncSocket conn, const Config& cfg) {
    try {
        co_await serve(std::move(conn), cfg);
    } catch (const asyncore::Cancelled&) {
        throw;
    } catch (const asyncore::TimeoutError&) {
        // A client that stopped reading a response: dropped, as nginx does.
    } catch (const std::exception& e) {
        std::fprintf(stderr, "connection: %s\n", e.what());
    }
}

// A timeout option in seconds (fractions allowed); 0 turns it off.
asyncore::Timeout timeout_option(const sample::CommandLine& opts, std::string_view name,
                                 asyncore::Timeout fallback) {
    if (!opts.has(name)) return fallback;
    double seconds = opts.real(name, 0);
    if (seconds < 0 || seconds > 86400) opts.usage();
    if (seconds == 0) return std::nullopt;
    return asyncore::Duration(seconds);
}

}  // namespace

int main(int argc, char** argv) {
    sample::CommandLine opts(
        argc, argv,
        "usage: http_server [--host H] [--port P] [--root DIR] "
        "[--max-request BYTES]\n"
        "                   [--header-timeout SECONDS] "
        "[--keepalive-timeout SECONDS]   (0: no timeout)",
        {"host", "port", "root", "max-request", "header-timeout", "keepalive-timeout"});
    Config cfg;
    cfg.root = opts.get("root", "");
    cfg.max_request = static_cast<std::size_t>(opts.number("max-request", 8192));
    cfg.header_timeout = timeout_option(opts, "header-timeout", cfg.header_timeout);
    cfg.keepalive_timeout = timeout_option(opts, "keepalive-timeout", cfg.keepalive_timeout);
    AsyncSocket listener = sample::listen_from(opts);
    sample::Server server(listener);
    asyncore::spawn(server.stop_on_signal());
    auto handler = [&cfg](AsyncSocket conn, const asyncore::Address&) {
        return serve_logged(std::move(conn), cfg);
    };
    asyncore::spawn(sample::accept_loop(listener, server, handler));
    asyncore::loop();
    return 0;
}
