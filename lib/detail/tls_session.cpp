// TlsSession: one OpenSSL connection over a non-blocking descriptor.

#include "tls_session.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdint>
#include <stdexcept>

namespace asyncore::detail {

namespace {

// The transport BIO. OpenSSL's socket BIO writes with write(), which raises
// SIGPIPE when the peer has gone; this one sends with MSG_NOSIGNAL, so TLS
// reports EPIPE like every other write and the library needs no change to
// the process's SIGPIPE disposition. The descriptor is the BIO's data; the
// session does not own it.
int bio_fd(BIO* b) noexcept {
    return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(b)));
}

bool retryable(int err) noexcept {
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

int bio_write(BIO* b, const char* data, int size) {
    ssize_t n = ::send(bio_fd(b), data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
    BIO_clear_retry_flags(b);
    if (n < 0 && retryable(errno)) BIO_set_retry_write(b);
    return static_cast<int>(n);
}

int bio_read(BIO* b, char* out, int size) {
    ssize_t n = ::recv(bio_fd(b), out, static_cast<std::size_t>(size), 0);
    BIO_clear_retry_flags(b);
    if (n < 0 && retryable(errno)) BIO_set_retry_read(b);
    return static_cast<int>(n);
}

long bio_ctrl(BIO* b, int cmd, long, void* ptr) {
    switch (cmd) {
        case BIO_CTRL_FLUSH:
            return 1;  // nothing is buffered here
        case BIO_C_GET_FD:
            if (ptr != nullptr) *static_cast<int*>(ptr) = bio_fd(b);
            return bio_fd(b);
        default:
            return 0;
    }
}

int bio_create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
}

const BIO_METHOD* socket_method() {
    static BIO_METHOD* method = [] {
        BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "asyncore socket");
        if (m == nullptr || BIO_meth_set_write(m, bio_write) != 1 ||
            BIO_meth_set_read(m, bio_read) != 1 || BIO_meth_set_ctrl(m, bio_ctrl) != 1 ||
            BIO_meth_set_create(m, bio_create) != 1) {
            return static_cast<BIO_METHOD*>(nullptr);
        }
        return m;
    }();
    return method;
}

// A BIO over `fd` for both directions, or null.
BIO* socket_bio(int fd) {
    const BIO_METHOD* method = socket_method();
    BIO* b = method != nullptr ? BIO_new(method) : nullptr;
    if (b != nullptr) BIO_set_data(b, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)));
    return b;
}

bool is_ip_literal(const std::string& host) {
    unsigned char buf[16];
    return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
           ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string strip_brackets(const std::string& host) {
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        return host.substr(1, host.size() - 2);
    }
    return host;
}

// SNI carries host names only (RFC 6066 forbids IP literals); the name check
// takes either, and a wildcard must cover a whole label, as in Python's ssl.
void set_peer_name(SSL* ssl, const std::string& server_hostname, bool verify) {
    std::string host = strip_brackets(server_hostname);
    bool ip = is_ip_literal(host);
    if (!host.empty() && !ip && SSL_set_tlsext_host_name(ssl, host.c_str()) != 1) {
        throw TlsError(errc::tls_error, "cannot send SNI: " + take_openssl_error());
    }
    if (!verify) return;
    if (host.empty()) {
        throw std::invalid_argument(
            "TLS client: the server's host name or IP address is needed to verify it");
    }
    int ok = 0;
    if (ip) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
    } else {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set1_host(ssl, host.c_str());
    }
    if (ok != 1) throw TlsError(errc::tls_error, "invalid server name: " + server_hostname);
}

}  // namespace

std::string take_openssl_error() {
    unsigned long e = ERR_peek_last_error();
    const char* reason = e != 0 ? ERR_reason_error_string(e) : nullptr;
    ERR_clear_error();
    return reason != nullptr ? reason : "unknown error";
}

TlsSession::TlsSession(const TlsContext& ctx, int fd, bool server_side,
                       const std::string& server_hostname)
    : ctx_(ctx.impl_), server_(server_side) {
    ERR_clear_error();
    ssl_ = SSL_new(ctx_->ctx);
    BIO* transport = ssl_ != nullptr ? socket_bio(fd) : nullptr;
    if (transport == nullptr) {
        std::string why = take_openssl_error();
        SSL_free(ssl_);
        throw TlsError(errc::tls_error, "cannot create a TLS session: " + why);
    }
    SSL_set_bio(ssl_, transport, transport);  // one reference, owned by the session
    try {
        if (server_side) {
            SSL_set_accept_state(ssl_);
        } else {
            SSL_set_connect_state(ssl_);
            set_peer_name(ssl_, server_hostname, ctx_->verify == TlsContext::Verify::peer);
        }
    } catch (...) {
        SSL_free(ssl_);
        throw;
    }
}

TlsSession::~TlsSession() {
    SSL_free(ssl_);
}

// OpenSSL's contract: the thread's error queue must be empty before an I/O
// call for SSL_get_error() to be right, and errno is only meaningful if it
// was cleared first (a plain EOF leaves it untouched).
TlsResult TlsSession::handshake() {
    if (established_) return {};
    if (failure_ != TlsStatus::done) return {failure_};
    ERR_clear_error();
    errno = 0;
    int ret = SSL_do_handshake(ssl_);
    if (ret == 1) {
        established_ = true;
        return {};
    }
    return classify(ret, errno);
}

TlsResult TlsSession::read(std::span<char> buffer) {
    if (failure_ != TlsStatus::done) return {failure_};
    ERR_clear_error();
    errno = 0;
    std::size_t n = 0;
    if (SSL_read_ex(ssl_, buffer.data(), buffer.size(), &n) == 1) return {TlsStatus::done, n};
    return classify(0, errno);
}

TlsResult TlsSession::peek() {
    if (failure_ != TlsStatus::done) return {failure_};
    ERR_clear_error();
    errno = 0;
    char byte;
    std::size_t n = 0;
    if (SSL_peek_ex(ssl_, &byte, 1, &n) == 1) return {TlsStatus::done, n};
    return classify(0, errno);
}

TlsResult TlsSession::write(std::span<const char> data) {
    if (failure_ != TlsStatus::done) return {failure_};
    ERR_clear_error();
    errno = 0;
    std::size_t n = 0;
    if (SSL_write_ex(ssl_, data.data(), data.size(), &n) == 1) return {TlsStatus::done, n};
    return classify(0, errno);
}

TlsResult TlsSession::shutdown() {
    if (!established_ || failure_ != TlsStatus::done) return {};
    ERR_clear_error();
    errno = 0;
    int ret = SSL_shutdown(ssl_);
    if (ret >= 0) return {};
    return classify(ret, errno);
}

TlsResult TlsSession::classify(int ret, int saved_errno) {
    switch (SSL_get_error(ssl_, ret)) {
        case SSL_ERROR_WANT_READ:
            return {TlsStatus::want_read};
        case SSL_ERROR_WANT_WRITE:
            return {TlsStatus::want_write};
        case SSL_ERROR_ZERO_RETURN:
            return {TlsStatus::closed};
        case SSL_ERROR_SYSCALL:
            if (saved_errno != 0) {
                ERR_clear_error();
                return fail(errc::tls_error, strerror_text(saved_errno), saved_errno);
            }
            if (ERR_peek_error() != 0) break;
            failure_ = TlsStatus::eof;
            return {TlsStatus::eof};
        default:
            break;
    }
    unsigned long e = ERR_peek_last_error();
    int reason = ERR_GET_REASON(e);
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        failure_ = TlsStatus::eof;
        return {TlsStatus::eof};
    }
    std::string text = take_openssl_error();
    errc code = errc::tls_error;
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        code = errc::tls_verification_failed;
        text += ": ";
        text += X509_verify_cert_error_string(SSL_get_verify_result(ssl_));
    } else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        code = errc::tls_verification_failed;
    }
    return fail(code, std::move(text));
}

TlsResult TlsSession::fail(errc code, std::string text, int sys_errno) {
    failure_ = TlsStatus::error;
    error_code_ = code;
    error_text_ = std::move(text);
    sys_errno_ = sys_errno;
    return {TlsStatus::error};
}

std::string TlsSession::alpn_protocol() const {
    const unsigned char* data = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl_, &data, &len);
    if (len == 0) return {};
    return std::string(reinterpret_cast<const char*>(data), len);
}

std::string TlsSession::protocol_version() const {
    return SSL_get_version(ssl_);
}

}  // namespace asyncore::detail
