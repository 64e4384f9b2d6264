// The private state of an AsyncSocket, and the seam between its plain
// steps (lib/async_socket.cpp) and its TLS steps (lib/async_socket_tls.cpp).
#pragma once

#include <asyncore/async_socket.hpp>
#include <asyncore/tls.hpp>

#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "idle_timers.hpp"
#include "io_wait.hpp"
#include "tls_session.hpp"

namespace asyncore::detail {

// What only a TLS socket needs, allocated by set_tls()/start_tls() (or
// set_handshake_timeout()), so that a plaintext socket pays one pointer
// and its SocketState fits a 128-byte allocation.
struct TlsFields {
    // The context from set_tls()/start_tls(), the names a client verifies
    // (given to set_tls(), or the host of connect(host, port)), and the
    // session once a handshake has started.
    std::optional<TlsContext> ctx;
    std::string host;
    std::string connect_host;
    std::unique_ptr<TlsSession> session;
    Timeout handshake_timeout = default_handshake_timeout;
    // A listener's accept() in its handshake: it waits on the accepted
    // connection's watch, where close() would not find it.
    SocketOp* accepting = nullptr;

    static constexpr std::chrono::seconds default_handshake_timeout{60};
};

struct SocketState;
struct MapCore;

/// A socket's idle countdown (AsyncSocket::set_idle_timeout), on the map it
/// was set from. Allocated on first use: a socket without one pays a pointer.
struct SocketIdle : IdleEntry {
    SocketIdle(SocketState& s, MapCore& c) noexcept : state(&s), core(&c) {}
    ~SocketIdle();
    SocketIdle(const SocketIdle&) = delete;
    SocketIdle& operator=(const SocketIdle&) = delete;
    SocketState* state;
    MapCore* core;
    bool fired = false;  ///< it closed the socket: operations fail with TimeoutError
};

/// Ends `op`'s hold on its socket before the task resumes: its directions
/// are released now and it never touches the socket state again, which may
/// be closed and destroyed before the task unwinds (terminate() and a
/// close() queue the resumption).
inline void orphan(SocketOp& op) noexcept {
    if (op.claimed) op.release();
    op.state = nullptr;
}

struct SocketState {
    Socket sock;  // first: destroyed last, after everything using the descriptor
    bool reading : 1 = false;
    bool writing : 1 = false;
    // A stream socket whose last read came back short had nothing more to
    // read then: the next read waits for readiness before trying recv(),
    // instead of a recv() that fails with EAGAIN on every message. The wait
    // is level-triggered, so data that did arrive meanwhile ends it at once.
    // Over TLS the kernel is not the only source: records OpenSSL already
    // holds are readable without any readiness, so they rule the wait out.
    bool read_drained : 1 = false;
    /// recv_msg met a length over max_message: the stream cannot be
    /// resynchronised, so every later recv_msg fails the same way. (Both
    /// are bit-fields: SocketState stays within 120 bytes.)
    bool framing_lost : 1 = false;
    std::int8_t stream = -1;  ///< SOCK_STREAM? -1 until first needed
    /// Operations finished at once, without a wait, since the socket last
    /// waited (see SocketOp::begin: a task whose peer keeps it busy yields
    /// to the others every fair_streak operations).
    std::uint8_t streak = 0;
    IoWatch read_watch;
    IoWatch write_watch;
    /// settimeout() in seconds, negative for none (a double, not a Timeout:
    /// it keeps SocketState within its 128-byte allocation).
    double timeout_s = -1;
    std::size_t max_message = std::size_t{64} << 20;
    std::unique_ptr<TlsFields> tls_fields;  ///< null until TLS is asked for
    std::unique_ptr<SocketIdle> idle;       ///< null until set_idle_timeout()

    // recv_msg reads up to `ahead_size` bytes at once, so that a small
    // message and its header cost one recv(), not two. Bytes past the
    // message wait here, and every later read takes from here first.
    static constexpr std::size_t ahead_size = 4096;
    std::unique_ptr<char[]> ahead;
    std::uint32_t ahead_begin = 0;  // 32 bits: keeps SocketState small
    std::uint32_t ahead_end = 0;

    std::size_t ahead_len() const noexcept { return ahead_end - ahead_begin; }
    std::size_t take_ahead(char* dst, std::size_t n) noexcept {
        std::size_t k = std::min(n, ahead_len());
        if (k == 0) return 0;
        std::memcpy(dst, ahead.get() + ahead_begin, k);
        ahead_begin += static_cast<std::uint32_t>(k);
        if (ahead_begin == ahead_end) ahead_begin = ahead_end = 0;
        return k;
    }

    Timeout timeout() const noexcept {
        if (timeout_s < 0) return std::nullopt;
        return Duration(timeout_s);
    }
    void set_timeout(Timeout t) noexcept { timeout_s = t ? std::max(t->count(), 0.0) : -1; }

    /// The TLS session, once a handshake has started.
    TlsSession* tls() const noexcept { return tls_fields ? tls_fields->session.get() : nullptr; }
    /// The context from set_tls()/start_tls(): this socket speaks TLS.
    const TlsContext* tls_ctx() const noexcept {
        return tls_fields && tls_fields->ctx ? &*tls_fields->ctx : nullptr;
    }
    /// The TLS fields, allocated on first use.
    TlsFields& tls_state() {
        if (!tls_fields) tls_fields = std::make_unique<TlsFields>();
        return *tls_fields;
    }
    Timeout handshake_timeout() const noexcept {
        return tls_fields ? tls_fields->handshake_timeout : TlsFields::default_handshake_timeout;
    }

    void note_read(ssize_t r, std::size_t asked) noexcept {
        read_drained = r >= 0 && static_cast<std::size_t>(r) < asked && is_stream();
    }
    void note_tls_read(bool short_read) noexcept {
        read_drained = short_read && !tls()->has_buffered_input();
    }
    bool is_stream() noexcept {
        if (stream < 0) {
            int type = 0;
            socklen_t len = sizeof type;
            bool ok = ::getsockopt(sock.fd(), SOL_SOCKET, SO_TYPE, &type, &len) == 0;
            stream = ok && type == SOCK_STREAM ? 1 : 0;
        }
        return stream == 1;
    }
    /// Whether a stream read may wait for readiness without trying first:
    /// the last read drained the socket and nothing is buffered here or,
    /// over TLS, inside OpenSSL. A socket given a context but not through
    /// its handshake never waits: its reads fail at once (ENOTCONN).
    bool read_drained_now() const noexcept { return read_drained && input_only_in_kernel(); }
    /// Whether a wait for read readiness cannot miss input: nothing is in
    /// the read-ahead buffer or inside OpenSSL, and a TLS socket is through
    /// its handshake (before it, reads fail at once).
    bool input_only_in_kernel() const noexcept {
        const TlsSession* session = tls();
        return ahead_len() == 0 &&
               (tls_ctx() == nullptr || (session != nullptr && !session->has_buffered_input()));
    }
    /// Whether a wait for write readiness is how a write goes on (not so
    /// for a TLS socket before its handshake: its writes fail at once).
    bool writes_wait_on_kernel() const noexcept { return tls_ctx() == nullptr || tls() != nullptr; }

    void bind_watches() noexcept {
        read_watch.bind(sock.fd(), watch_read);
        write_watch.bind(sock.fd(), watch_write);
    }

    // Ends a wait on this socket with EBADF, or TimeoutError when the idle
    // timeout closed it; `op` lets go of this state at once, as it may be
    // destroyed before the task resumes.
    void wake_closed(SocketOp& op) const noexcept {
        const bool idle_closed = idle_fired();
        if (!idle_closed) op.error = EBADF;
        orphan(op);
        op.task->complete(op, idle_closed ? errc::timed_out : errc{});
    }
    bool idle_fired() const noexcept { return idle && idle->fired; }
    /// Progress on the socket (bytes moved, a connection accepted or made)
    /// by an operation awaited in a task: activity for the idle timeout.
    void note_progress(const SocketOp& op) noexcept;

    // A task still waiting on the socket is woken with EBADF rather than
    // left waiting on a descriptor that no longer exists; `self` is an
    // operation closing its own socket, which completes on its own.
    void close(IoWaiter* self = nullptr) noexcept {
        for (IoWatch* w : {&read_watch, &write_watch}) {
            IoWaiter* waiter = w->waiter();
            w->close();
            if (waiter == nullptr || waiter == self) continue;
            wake_closed(static_cast<SocketOp&>(*waiter));
        }
        // The accept() takes its half-open connection down as it unwinds.
        if (SocketOp* op = tls_fields ? tls_fields->accepting : nullptr) {
            if (op->detach_fn != nullptr) {
                IoWatch::detach(*op);
                wake_closed(*op);
            }
        }
        stop_idle();
        if (TlsSession* session = tls()) {
            session->shutdown();  // one attempt at close_notify; never waits
            tls_fields->session.reset();
        }
        sock.reset();
        read_drained = false;
    }
    void stop_idle() noexcept;
};

// The outcome of one read or write: bytes moved, would block (the op's
// wait_write says which readiness to wait for), clean EOF, or failed (the
// op holds the error).
enum class Io { progress, again, eof, failed };

/// Maps one TlsSession result onto `op`: the readiness to wait for, a
/// clean EOF (close_notify) or the op's error.
Io tls_io(SocketOp& op, const TlsSession& tls, TlsResult r, std::size_t& moved) noexcept;
/// One handshake step on op.io_state()'s session.
bool step_handshake(SocketOp& op) noexcept;
/// accept() over TLS, once the listener gave `fd`: sets up op.rare->conn and
/// starts its server-side handshake.
bool start_accept_handshake(SocketOp& op, int fd) noexcept;
/// connect() over TLS, once the TCP connection is up.
bool start_connect_handshake(SocketOp& op) noexcept;
bool step_send_msg_tls(SocketOp& op, TlsSession& tls) noexcept;
bool step_tls_shutdown(SocketOp& op) noexcept;

}  // namespace asyncore::detail
