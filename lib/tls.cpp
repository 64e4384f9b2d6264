// TlsContext: the shared OpenSSL configuration, secure by default.

#include <asyncore/tls.hpp>

#include <openssl/err.h>

#include <stdexcept>
#include <utility>

#include "detail/tls_session.hpp"

namespace asyncore {

namespace {

using detail::take_openssl_error;

[[noreturn]] void throw_load_error(const std::string& what, const std::string& file) {
    throw TlsError(errc::tls_error,
                   "cannot load " + what + " from " + file + ": " + take_openssl_error());
}

// A server picks its own most preferred protocol among the client's
// (RFC 7301); with none in common the handshake fails with
// no_application_protocol rather than continuing with an unexpected one.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned inlen, void* arg) {
    const auto& wire = *static_cast<const std::vector<unsigned char>*>(arg);
    if (wire.empty()) return SSL_TLSEXT_ERR_NOACK;
    unsigned char* chosen = nullptr;
    if (SSL_select_next_proto(&chosen, outlen, wire.data(), static_cast<unsigned>(wire.size()), in,
                              inlen) != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

void apply_verify(SSL_CTX* ctx, bool server, TlsContext::Verify verify) {
    int mode = SSL_VERIFY_NONE;
    if (verify == TlsContext::Verify::peer) {
        mode = server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER;
    }
    SSL_CTX_set_verify(ctx, mode, nullptr);
}

}  // namespace

TlsContext::Impl::~Impl() {
    SSL_CTX_free(ctx);
}

// Read-ahead lets one recv() bring in every record the kernel holds instead
// of two calls per record (header, then body); the records it buffers are
// why a channel must be run again while SSL_has_pending() (see the
// Dispatcher's TLS interest). Renegotiation is refused: it would let a
// write wait for a read, and TLS 1.3 dropped it.
TlsContext TlsContext::make(bool server) {
    ERR_clear_error();
    auto impl = std::make_shared<Impl>();
    impl->server = server;
    impl->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (impl->ctx == nullptr) {
        throw TlsError(errc::tls_error, "cannot create a TLS context: " + take_openssl_error());
    }
    SSL_CTX_set_min_proto_version(impl->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(impl->ctx, SSL_OP_NO_RENEGOTIATION);
    // RELEASE_BUFFERS (as nginx sets it): a connection with nothing in
    // flight gives back its 16 KiB+ record buffers, so thousands of idle TLS
    // connections, or a burst of them, do not hold ~34 KiB each.
    SSL_CTX_set_mode(impl->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(impl->ctx, 1);
    impl->verify = server ? Verify::none_insecure : Verify::peer;
    apply_verify(impl->ctx, server, impl->verify);
    if (server) SSL_CTX_set_alpn_select_cb(impl->ctx, select_alpn, &impl->alpn_wire);
    return TlsContext(std::move(impl));
}

TlsContext TlsContext::server(const std::string& certfile, const std::string& keyfile) {
    TlsContext c = make(true);
    c.use_certificate(certfile, keyfile);
    return c;
}

TlsContext TlsContext::server(const std::string& certfile, const std::string& keyfile,
                              const std::string& client_ca_file) {
    TlsContext c = server(certfile, keyfile);
    c.trust_ca_file(client_ca_file);
    // Tell clients which CAs are acceptable, so one holding several
    // certificates can pick the right one.
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(client_ca_file.c_str());
    if (names == nullptr) throw_load_error("client CA names", client_ca_file);
    SSL_CTX_set_client_CA_list(c.impl_->ctx, names);
    c.set_verify(Verify::peer);
    return c;
}

TlsContext TlsContext::client() {
    TlsContext c = make(false);
    if (SSL_CTX_set_default_verify_paths(c.impl_->ctx) != 1) {
        throw TlsError(errc::tls_error, "cannot load the system CA store: " + take_openssl_error());
    }
    return c;
}

TlsContext TlsContext::client(const std::string& cafile) {
    TlsContext c = make(false);
    c.trust_ca_file(cafile);
    return c;
}

TlsContext TlsContext::client_insecure_no_verify() {
    TlsContext c = make(false);
    c.set_verify(Verify::none_insecure);
    return c;
}

TlsContext& TlsContext::use_certificate(const std::string& certfile, const std::string& keyfile) {
    const std::string& key = keyfile.empty() ? certfile : keyfile;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(impl_->ctx, certfile.c_str()) != 1) {
        throw_load_error("certificate chain", certfile);
    }
    if (SSL_CTX_use_PrivateKey_file(impl_->ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
        throw_load_error("private key", key);
    }
    if (SSL_CTX_check_private_key(impl_->ctx) != 1) {
        throw TlsError(errc::tls_error, "private key " + key + " does not match certificate " +
                                            certfile + ": " + take_openssl_error());
    }
    return *this;
}

TlsContext& TlsContext::trust_ca_file(const std::string& cafile) {
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(impl_->ctx, cafile.c_str(), nullptr) != 1) {
        throw_load_error("CA certificates", cafile);
    }
    return *this;
}

TlsContext& TlsContext::set_verify(Verify mode) {
    impl_->verify = mode;
    apply_verify(impl_->ctx, impl_->server, mode);
    return *this;
}

TlsContext& TlsContext::set_alpn_protocols(std::vector<std::string> protocols) {
    std::vector<unsigned char> wire;
    for (const std::string& p : protocols) {
        if (p.empty() || p.size() > 255) {
            throw std::invalid_argument("ALPN protocol names must be 1 to 255 bytes long");
        }
        wire.push_back(static_cast<unsigned char>(p.size()));
        wire.insert(wire.end(), p.begin(), p.end());
    }
    // SSL_CTX_set_alpn_protos returns 0 on success, unlike most of OpenSSL.
    if (!impl_->server &&
        SSL_CTX_set_alpn_protos(impl_->ctx, wire.data(), static_cast<unsigned>(wire.size())) != 0) {
        throw TlsError(errc::tls_error, "cannot set ALPN protocols: " + take_openssl_error());
    }
    impl_->alpn = std::move(protocols);
    impl_->alpn_wire = std::move(wire);
    return *this;
}

bool TlsContext::server_side() const noexcept {
    return impl_->server;
}

TlsContext::Verify TlsContext::verify() const noexcept {
    return impl_->verify;
}

const std::vector<std::string>& TlsContext::alpn_protocols() const noexcept {
    return impl_->alpn;
}

}  // namespace asyncore
