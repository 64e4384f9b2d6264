// The private TLS seam: one OpenSSL connection over a non-blocking
// descriptor, driven step by step by whoever watches the descriptor (the
// Dispatcher today, AsyncSocket on the task layer).
//
// Every operation makes one attempt and says what it needs next: done (with
// a byte count for read/write), want_read or want_write (wait for that
// readiness, then call the same operation again), closed (the peer sent
// close_notify), eof (the peer closed the transport without close_notify)
// or error (error() tells which). eof and error are final: every later
// operation returns the same status, so a caller may deliver the bytes it
// already has and meet the failure on its next call. No
// operation blocks, allocates per record beyond OpenSSL's own buffers, or
// leaves anything on OpenSSL's thread-local error queue.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <openssl/ssl.h>

#include <asyncore/tls.hpp>

namespace asyncore {

/// What a TlsContext handle shares: the OpenSSL context and the settings
/// OpenSSL does not keep in a form we can read back.
struct TlsContext::Impl {
    SSL_CTX* ctx = nullptr;
    bool server = false;
    Verify verify = Verify::peer;
    std::vector<std::string> alpn;
    std::vector<unsigned char> alpn_wire;  ///< length-prefixed, as OpenSSL takes it
    Impl() = default;
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;
    ~Impl();
};

}  // namespace asyncore

namespace asyncore::detail {

enum class TlsStatus {
    done,        ///< the operation completed; `bytes` says how much for read/write
    want_read,   ///< retry the same operation once the descriptor is readable
    want_write,  ///< retry the same operation once the descriptor is writable
    closed,      ///< the peer sent close_notify: a clean end of the stream
    eof,         ///< the transport ended without close_notify (possible truncation)
    error,       ///< a protocol, verification or socket failure; see error()
};

struct TlsResult {
    TlsStatus status = TlsStatus::done;
    std::size_t bytes = 0;
};

class TlsSession {
  public:
    /// Sets up (without any I/O) a connection over `fd`, which the session
    /// uses but does not own. A client sends `server_hostname` as SNI (unless
    /// it is an IP literal) and, when its context verifies, checks the
    /// certificate against it. Throws std::invalid_argument when a verifying
    /// client gets no name, TlsError if OpenSSL cannot set the session up.
    TlsSession(const TlsContext& ctx, int fd, bool server_side, const std::string& server_hostname);
    ~TlsSession();
    TlsSession(const TlsSession&) = delete;
    TlsSession& operator=(const TlsSession&) = delete;

    /// One handshake step. done once the handshake (and, for a client, the
    /// server's certificate check) completed.
    TlsResult handshake();
    /// Decrypted bytes into `buffer`; done with bytes > 0, never done with 0
    /// for a non-empty buffer.
    TlsResult read(std::span<char> buffer);
    /// Like read() of one byte, leaving it in place: done means plaintext is
    /// ready for read().
    TlsResult peek();
    /// Encrypts and sends a prefix of `data` (partial writes are on). After
    /// want_read/want_write, the retry must pass the same bytes first (more
    /// may follow); the buffer may move.
    TlsResult write(std::span<const char> data);
    /// Sends close_notify; does not wait for the peer's. done also when there
    /// is nothing to do (no handshake finished, or the session failed).
    TlsResult shutdown();

    bool established() const noexcept { return established_; }
    bool server_side() const noexcept { return server_; }
    /// Decrypted bytes held inside OpenSSL, readable without the kernel.
    std::size_t pending() const noexcept { return static_cast<std::size_t>(SSL_pending(ssl_)); }
    /// Any input inside OpenSSL, decrypted or not (read-ahead keeps whole
    /// records the kernel already delivered).
    bool has_buffered_input() const noexcept { return SSL_has_pending(ssl_) == 1; }

    /// The error of the last `error` status. Socket failures carry their
    /// errno in sys_errno() and its text.
    TlsError error() const { return TlsError(error_code_, error_text_); }
    /// The errno of a socket failure behind the last `error`, else 0.
    int sys_errno() const noexcept { return sys_errno_; }
    /// The protocol ALPN selected, empty when none.
    std::string alpn_protocol() const;
    /// "TLSv1.3", "TLSv1.2".
    std::string protocol_version() const;

  private:
    TlsResult classify(int ret, int saved_errno);
    TlsResult fail(errc code, std::string text, int sys_errno = 0);

    std::shared_ptr<TlsContext::Impl> ctx_;
    SSL* ssl_ = nullptr;
    bool server_;
    bool established_ = false;
    /// eof or error once either happened: every later operation returns it
    /// again, and no close_notify may follow.
    TlsStatus failure_ = TlsStatus::done;
    int sys_errno_ = 0;
    errc error_code_ = errc::tls_error;
    std::string error_text_;
};

/// OpenSSL's reason text for the newest error on the queue ("unknown error"
/// when empty); empties the queue.
std::string take_openssl_error();

}  // namespace asyncore::detail
