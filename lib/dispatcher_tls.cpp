// Dispatcher::start_tls() and the TLS paths the core switches to once it
// ran: the handshake driven by readiness events, plaintext send/recv through
// the session, and OpenSSL's wants mapped onto the channel's interest.

#include <asyncore/dispatcher.hpp>
#include <asyncore/error.hpp>
#include <asyncore/tls.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <stdexcept>

#include "detail/dispatcher_tls.hpp"
#include "detail/tls_session.hpp"

namespace asyncore {
namespace detail {

/// A Dispatcher's TLS state: the session and what each side of it waits for.
struct TlsChannel {
    TlsChannel(const TlsContext& ctx, int fd, bool server_side, const std::string& host)
        : session(ctx, fd, server_side, host), handshake_wants_read(server_side) {}

    TlsSession session;
    bool handshake_wants_read;      ///< else it wants write
    bool user_read = false;         ///< readable() at the last interest check
    bool user_write = false;        ///< writable() at the last interest check
    bool read_wants_write = false;  ///< the last read needs writability to go on
    bool write_wants_read = false;  ///< the last write needs readability to go on
    /// The last read delivered bytes, so whole records may still wait in
    /// OpenSSL's read-ahead buffer; cleared when a read needs the kernel.
    bool read_progress = true;
};

void TlsChannelDeleter::operator()(TlsChannel* t) const noexcept {
    delete t;
}

namespace {

TlsError truncation_error() {
    return TlsError(errc::truncated,
                    "unexpected eof: the peer closed the connection without "
                    "a TLS close_notify (the data may be truncated)");
}

// A session error: the disconnect errnos are a close, as on plain sockets;
// anything else is thrown for handle_error().
void raise_session_error(Dispatcher& d, const TlsSession& s) {
    if (s.sys_errno() != 0 && is_disconnect_errno(s.sys_errno())) {
        d.handle_close();
        return;
    }
    throw s.error();
}

// What recv_into() does when a read brought nothing.
std::size_t read_failure(Dispatcher& d, TlsChannel& t, TlsStatus status) {
    switch (status) {
        case TlsStatus::closed:
            d.handle_close();
            return 0;
        case TlsStatus::eof:
            throw truncation_error();
        case TlsStatus::error:
            raise_session_error(d, t.session);
            return 0;
        case TlsStatus::want_read:
        case TlsStatus::want_write:
        case TlsStatus::done:
            break;
    }
    throw_errno(EAGAIN, "recv");
}

}  // namespace

// With partial writes on, SSL_write stops after each record (16 KiB); keep
// writing until the socket is full so a large send costs no extra passes.
// The bytes of a record left pending on want_write are the first of what
// the caller passes again, since we report them unsent.
std::size_t DispatcherTls::send(Dispatcher& d, std::string_view data) {
    TlsChannel& t = *d.tls_;
    if (!t.session.established()) return 0;
    std::size_t sent = 0;
    while (sent < data.size()) {
        TlsResult r =
            t.session.write(std::span<const char>(data.data() + sent, data.size() - sent));
        switch (r.status) {
            case TlsStatus::done:
                sent += r.bytes;
                continue;
            case TlsStatus::want_write:
                return sent;
            case TlsStatus::want_read:
                t.write_wants_read = true;
                return sent;
            case TlsStatus::closed:
            case TlsStatus::eof:
                d.handle_close();
                return 0;
            case TlsStatus::error:
                raise_session_error(d, t.session);
                return 0;
        }
    }
    return sent;
}

std::size_t DispatcherTls::recv_into(Dispatcher& d, std::span<char> buffer) {
    TlsChannel& t = *d.tls_;
    if (buffer.empty()) return 0;
    if (!t.session.established()) throw_errno(EAGAIN, "recv");
    std::size_t got = 0;
    // SSL_read stops at a record's end: go on while whole records may sit in
    // OpenSSL's read-ahead buffer. A status met after some bytes is returned
    // by the next call (wants are retried, failures are sticky).
    for (;;) {
        TlsResult r = t.session.read(buffer.subspan(got));
        if (r.status == TlsStatus::done) {
            t.read_progress = true;
            got += r.bytes;
            if (got < buffer.size() && t.session.has_buffered_input()) continue;
            return got;
        }
        if (r.status == TlsStatus::want_read) t.read_progress = false;
        if (r.status == TlsStatus::want_write) {
            t.read_wants_write = true;
            d.rearm();
        }
        if (got > 0) return got;
        return read_failure(d, t, r.status);
    }
}

namespace {

// One handshake step. Every way it can end other than success is an error:
// a peer that hangs up mid-handshake must not look like a clean close.
void handshake_step(Dispatcher& d, TlsChannel& t) {
    TlsResult r = t.session.handshake();
    switch (r.status) {
        case TlsStatus::done:
            t.read_progress = true;
            d.rearm();
            d.handle_tls_established();
            return;
        case TlsStatus::want_read:
        case TlsStatus::want_write:
            t.handshake_wants_read = r.status == TlsStatus::want_read;
            d.rearm();
            return;
        case TlsStatus::closed:
        case TlsStatus::eof:
            throw TlsError(errc::tls_error,
                           "the peer closed the connection during the TLS handshake");
        case TlsStatus::error:
            throw t.session.error();
    }
}

// Runs handle_read() only when plaintext is there: readiness often brings
// just part of a record or a post-handshake message (a TLS 1.3 session
// ticket), and a handler whose recv() found nothing would see EAGAIN as an
// error. The peek decrypts into OpenSSL's buffer; recv() then copies out.
void deliver_read(Dispatcher& d, TlsChannel& t) {
    TlsResult r = t.session.peek();
    switch (r.status) {
        case TlsStatus::done:
            d.handle_read();
            return;
        case TlsStatus::want_read:
            t.read_progress = false;
            return;
        case TlsStatus::want_write:
            t.read_wants_write = true;
            d.rearm();
            return;
        case TlsStatus::closed:
            d.handle_close();
            return;
        case TlsStatus::eof:
            throw truncation_error();
        case TlsStatus::error:
            raise_session_error(d, t.session);
            return;
    }
}

}  // namespace

void DispatcherTls::read_event(Dispatcher& d) {
    TlsChannel* t = d.tls_.get();
    if (!d.connected_ && d.connecting_) {
        d.handle_connect_event();
        if (d.tls_.get() != t) return;  // closed by handle_connect()
    }
    if (!t->session.established()) return handshake_step(d, *t);
    if (t->write_wants_read) {
        t->write_wants_read = false;
        if (t->user_write) d.handle_write();
        if (d.tls_.get() != t) return;
    }
    if (t->user_read) deliver_read(d, *t);
}

void DispatcherTls::write_event(Dispatcher& d) {
    TlsChannel* t = d.tls_.get();
    if (!d.connected_ && d.connecting_) {
        d.handle_connect_event();
        if (d.tls_.get() != t) return;
    }
    if (!t->session.established()) return handshake_step(d, *t);
    if (t->read_wants_write) {
        t->read_wants_write = false;
        if (t->user_read) deliver_read(d, *t);
        if (d.tls_.get() != t) return;
    }
    if (t->user_write) d.handle_write();
}

// While connecting, only the connect's writability matters; during the
// handshake, only what OpenSSL asked for. Afterwards the user's interest,
// plus whatever a read or write that could not finish is waiting for.
bool DispatcherTls::interest(Dispatcher& d, bool& want_read, bool& want_write) {
    TlsChannel& t = *d.tls_;
    if (d.connecting_) {
        want_read = false;
        want_write = true;
        return false;
    }
    if (!t.session.established()) {
        want_read = t.handshake_wants_read;
        want_write = !t.handshake_wants_read;
        return false;
    }
    t.user_read = !d.reads_off_ && d.readable();
    t.user_write = d.writable();
    want_read = t.user_read || t.write_wants_read;
    want_write = t.user_write || t.read_wants_write;
    return t.user_read &&
           (t.session.pending() > 0 || (t.read_progress && t.session.has_buffered_input()));
}

void DispatcherTls::close(Dispatcher& d) noexcept {
    auto t = std::move(d.tls_);
    (void)t->session.shutdown();
}

}  // namespace detail

void Dispatcher::start_tls(const TlsContext& ctx, bool server_side, std::string server_hostname) {
    if (fd_ < 0 || accepting_ || !(connected_ || connecting_)) {
        throw std::logic_error("start_tls: the channel has no connected socket");
    }
    if (tls_) throw std::logic_error("start_tls: TLS already runs on this channel");
    if (ctx.server_side() != server_side) {
        throw std::invalid_argument(server_side ? "start_tls: a server needs a server TlsContext"
                                                : "start_tls: a client needs a client TlsContext");
    }
    int family = addr_.family();
    if (!server_side && server_hostname.empty() && (family == AF_INET || family == AF_INET6)) {
        server_hostname = addr_.host();
    }
    tls_.reset(new detail::TlsChannel(ctx, fd_, server_side, server_hostname));
    rearm();
}

bool Dispatcher::tls_established() const noexcept {
    return tls_ && tls_->session.established();
}

std::string Dispatcher::tls_alpn_protocol() const {
    return tls_ ? tls_->session.alpn_protocol() : std::string();
}

std::string Dispatcher::tls_version() const {
    return tls_ ? tls_->session.protocol_version() : std::string();
}

void Dispatcher::handle_tls_established() {}

}  // namespace asyncore
