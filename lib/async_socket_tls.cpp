// AsyncSocket over TLS: the handshake steps of accept, connect and
// start_tls, framing through TLS records, close_notify, and the mapping of
// TlsSession's results onto an operation. The recipe is the plain one:
// call OpenSSL first, wait only for the readiness it asks for, then retry
// the same call with the same leading bytes.

#include <asyncore/async_socket.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <new>
#include <stdexcept>

#include "detail/socket_state.hpp"

namespace asyncore {
namespace detail {

namespace {

constexpr std::size_t header_size = 4;

void take_tls_error(SocketOp& op, const TlsSession& tls) noexcept {
    // A socket failure under TLS is the same errno a plain socket reports.
    if (tls.sys_errno() != 0) {
        op.error = tls.sys_errno();
        return;
    }
    TlsError e = tls.error();
    op.lib_error = static_cast<errc>(e.code().value());
    op.rare_part().reason = e.reason();
}

bool fail_tls(SocketOp& op, errc code, const char* reason) noexcept {
    op.lib_error = code;
    op.rare_part().reason = reason;
    return true;
}

// The name a client checks the server's certificate against when it was
// given none: the IP address it reached.
std::string ip_of(const Address& a) {
    return a.family() == AF_INET || a.family() == AF_INET6 ? a.host() : std::string();
}

}  // namespace

Io tls_io(SocketOp& op, const TlsSession& tls, TlsResult r, std::size_t& moved) noexcept {
    switch (r.status) {
        case TlsStatus::done:
            moved = r.bytes;
            return Io::progress;
        case TlsStatus::want_read:
            op.wait_write = false;
            return Io::again;
        case TlsStatus::want_write:
            op.wait_write = true;
            return Io::again;
        case TlsStatus::closed:
            return Io::eof;
        case TlsStatus::eof:
            fail_tls(op, errc::truncated,
                     "the peer closed the connection without a TLS close_notify");
            return Io::failed;
        case TlsStatus::error:
            take_tls_error(op, tls);
            return Io::failed;
    }
    return Io::failed;
}

bool step_handshake(SocketOp& op) noexcept {
    TlsSession* tls = op.io_state()->tls();
    if (tls == nullptr) {
        op.error = EBADF;
        return true;
    }
    std::size_t unused = 0;
    switch (tls_io(op, *tls, tls->handshake(), unused)) {
        case Io::progress:
            op.handshaking = false;
            return true;
        case Io::again:
            return false;
        case Io::eof:
            return fail_tls(op, errc::tls_error,
                            "the peer closed the connection during the TLS handshake");
        case Io::failed:
            if (op.lib_error == errc::truncated) {
                op.lib_error = errc::tls_error;
                op.rare_part().reason = "the peer closed the connection during the TLS handshake";
            }
            return true;
    }
    return true;
}

bool start_accept_handshake(SocketOp& op, int fd) noexcept {
    try {
        auto conn = std::make_unique<SocketState>();
        conn->sock = Socket(fd);
        conn->bind_watches();
        TlsFields& f = conn->tls_state();
        f.ctx = *op.state->tls_ctx();
        f.handshake_timeout = op.state->handshake_timeout();
        f.session = std::make_unique<TlsSession>(*f.ctx, fd, true, std::string());
        op.rare_part().conn.reset(conn.release());
        op.state->tls_fields->accepting = &op;
    } catch (const TlsError& e) {
        return fail_tls(op, static_cast<errc>(e.code().value()), e.reason().c_str());
    } catch (const std::bad_alloc&) {
        op.error = ENOMEM;
        return true;
    }
    op.handshaking = true;
    return step_handshake(op);
}

bool start_connect_handshake(SocketOp& op) noexcept {
    SocketState& s = *op.state;
    try {
        TlsFields& f = *s.tls_fields;
        std::string name = !f.host.empty()           ? f.host
                           : !f.connect_host.empty() ? f.connect_host
                                                     : ip_of(*op.addr);
        f.session = std::make_unique<TlsSession>(*f.ctx, s.sock.fd(), false, name);
    } catch (const TlsError& e) {
        return fail_tls(op, static_cast<errc>(e.code().value()), e.reason().c_str());
    } catch (const std::exception& e) {
        // No name to verify (e.g. a Unix socket without set_tls's name).
        return fail_tls(op, errc::tls_error, e.what());
    }
    op.handshaking = true;
    return step_handshake(op);
}

// The header and the start of the payload go out as one record (one
// write, as the plain path's sendmsg). A retry rebuilds the same first
// record from op.done, which moves only on progress: the same leading
// bytes OpenSSL requires after want_read/want_write.
bool step_send_msg_tls(SocketOp& op, TlsSession& tls) noexcept {
    std::size_t total = header_size + op.out.size();
    while (op.done < total) {
        std::size_t put = 0;
        Io io;
        if (op.done < header_size) {
            char first[16384];
            std::size_t head = header_size - op.done;
            std::size_t body = std::min(op.out.size(), sizeof first - head);
            std::memcpy(first, op.header + op.done, head);
            std::memcpy(first + head, op.out.data(), body);
            io = tls_io(op, tls, tls.write({first, head + body}), put);
        } else {
            std::size_t off = op.done - header_size;
            io = tls_io(op, tls, tls.write({op.out.data() + off, op.out.size() - off}), put);
        }
        if (io == Io::again) return false;
        if (io != Io::progress) return true;
        op.done += put;
    }
    return true;
}

bool step_tls_shutdown(SocketOp& op) noexcept {
    TlsSession* tls = op.state->tls();
    if (tls == nullptr) return true;
    std::size_t unused = 0;
    return tls_io(op, *tls, tls->shutdown(), unused) != Io::again;
}

}  // namespace detail

using detail::SocketOp;

AsyncSocket::AsyncSocket(int family, int type, TlsContext ctx, std::string server_hostname)
    : AsyncSocket(family, type) {
    set_tls(std::move(ctx), std::move(server_hostname));
}

void AsyncSocket::set_tls(TlsContext ctx, std::string server_hostname) {
    if (!s_ || !s_->sock) throw_errno(EBADF, "set_tls");
    if (s_->tls_ctx() != nullptr)
        throw std::logic_error("AsyncSocket::set_tls: TLS is already set");
    detail::TlsFields& f = s_->tls_state();
    f.ctx = std::move(ctx);
    f.host = std::move(server_hostname);
}

SocketAwaitable<void> AsyncSocket::start_tls(TlsContext ctx, std::string server_hostname) {
    if (!s_ || !s_->sock) throw_errno(EBADF, "start_tls");
    if (s_->tls() != nullptr)
        throw std::logic_error("AsyncSocket::start_tls: TLS is already started");
    if (s_->reading || s_->writing) {
        throw std::system_error(make_error_code(errc::busy), "start_tls while I/O is pending");
    }
    bool server = ctx.server_side();
    std::string name = server_hostname;
    if (name.empty() && !server) name = detail::ip_of(peer_address());
    detail::TlsFields& f = s_->tls_state();
    f.session = std::make_unique<detail::TlsSession>(ctx, s_->sock.fd(), server, name);
    f.ctx = std::move(ctx);
    f.host = std::move(server_hostname);
    s_->ahead_begin = s_->ahead_end = 0;
    s_->read_drained = false;
    return SocketAwaitable<void>(s_.get(), SocketOp::Code::handshake);
}

SocketAwaitable<void> AsyncSocket::shutdown_tls() {
    return SocketAwaitable<void>(s_.get(), SocketOp::Code::tls_shutdown);
}

void AsyncSocket::set_handshake_timeout(Timeout timeout) {
    if (s_) s_->tls_state().handshake_timeout = timeout;
}

Timeout AsyncSocket::handshake_timeout() const noexcept {
    return s_ ? s_->handshake_timeout() : std::nullopt;
}

bool AsyncSocket::tls_established() const noexcept {
    return s_ && s_->tls() != nullptr && s_->tls()->established();
}

std::string AsyncSocket::tls_version() const {
    return tls_established() ? s_->tls()->protocol_version() : std::string();
}

std::string AsyncSocket::alpn_protocol() const {
    return tls_established() ? s_->tls()->alpn_protocol() : std::string();
}

}  // namespace asyncore
