// TLS over OpenSSL 3: TlsContext (the configuration shared by connections)
// and TlsError (what a failed handshake, verification or record reports).
//
// Secure by default: TLS 1.2 is the minimum version, OpenSSL's default
// cipher lists apply, and clients verify the server's certificate chain and
// its name (or IP address). Turning verification off takes a call whose name
// says it is insecure.
//
// A context is used by Dispatcher::start_tls() (and, on the task layer, by
// AsyncSocket). Example, a client over the system CA store:
//
//     auto ctx = asyncore::TlsContext::client();
//     conn.connect(asyncore::Address::ipv4("127.0.0.1", 443));
//     conn.start_tls(ctx, false, "example.org");  // SNI + name check
//
// and a server:
//
//     auto ctx = asyncore::TlsContext::server("cert.pem", "key.pem");
//     // in handle_accepted(): make<Handler>(std::move(sock)).start_tls(ctx, true);
#pragma once

#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <asyncore/error.hpp>

namespace asyncore {

namespace detail {
class TlsSession;
}

/// A TLS failure. code() is errc::tls_verification_failed when a
/// certificate was rejected (by this side's checks or missing when
/// required), errc::truncated when the peer closed the connection without a
/// close_notify alert after the handshake, errc::tls_error otherwise. what()
/// and reason() carry OpenSSL's reason text, e.g. "certificate verify
/// failed: self-signed certificate" or "tlsv13 alert certificate required".
class TlsError : public std::system_error {
  public:
    TlsError(errc code, const std::string& reason)
        : std::system_error(make_error_code(code), reason), reason_(reason) {}
    /// The reason text alone, without the category's message.
    const std::string& reason() const noexcept { return reason_; }

  private:
    std::string reason_;
};

/// The configuration of TLS connections: role, certificates, trust anchors,
/// verification and ALPN. A copyable handle: copies share one underlying
/// OpenSSL context, which stays alive while any copy or any connection using
/// it does. Setters change every copy and apply to connections started
/// afterwards. A configured context may be used by several threads' loops;
/// configure it before sharing it.
class TlsContext {
  public:
    /// How the peer's certificate is checked.
    enum class Verify {
        /// Clients: the server's chain must lead to a trusted CA and match the
        /// expected host name or IP address. Servers: clients must present a
        /// certificate that leads to a trusted CA.
        peer,
        /// No check at all: anyone in the middle can read and change the
        /// traffic. For tests and diagnostics only.
        none_insecure,
    };

    /// A server presenting `certfile` (PEM, the certificate then any
    /// intermediates) with the private key in `keyfile` (PEM; empty: read it
    /// from `certfile`). Clients are not asked for a certificate.
    /// Throws TlsError (errc::tls_error) if a file cannot be loaded or the key
    /// does not match the certificate.
    static TlsContext server(const std::string& certfile, const std::string& keyfile);
    /// As above, and every client must present a certificate issued by a CA
    /// in `client_ca_file` (PEM); a client without one fails the handshake.
    static TlsContext server(const std::string& certfile, const std::string& keyfile,
                             const std::string& client_ca_file);
    /// A client trusting the system's CA store.
    static TlsContext client();
    /// A client trusting only the CAs in `cafile` (PEM), as pycos' certfile
    /// argument: the file is the client's trust anchor. Throws TlsError if it
    /// cannot be loaded.
    static TlsContext client(const std::string& cafile);
    /// A client that accepts any certificate and any name. Insecure: see
    /// Verify::none_insecure.
    static TlsContext client_insecure_no_verify();

    /// Presents `certfile`/`keyfile` to the peer (for a client: its client
    /// certificate). Throws TlsError if they cannot be loaded or do not match.
    TlsContext& use_certificate(const std::string& certfile, const std::string& keyfile);
    /// Adds the CAs in `cafile` (PEM) to the trusted ones. Throws TlsError.
    TlsContext& trust_ca_file(const std::string& cafile);
    /// Changes how the peer is checked (see Verify).
    TlsContext& set_verify(Verify mode);
    /// The ALPN protocols, most preferred first (e.g. {"h2", "http/1.1"}). A
    /// client offers them; a server picks its first one the client offers and
    /// fails the handshake (no_application_protocol) when there is none in
    /// common. Empty (the default): no ALPN. Throws std::invalid_argument for
    /// an empty name or one longer than 255 bytes.
    TlsContext& set_alpn_protocols(std::vector<std::string> protocols);

    bool server_side() const noexcept;
    Verify verify() const noexcept;
    const std::vector<std::string>& alpn_protocols() const noexcept;

  private:
    struct Impl;
    explicit TlsContext(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
    static TlsContext make(bool server);

    std::shared_ptr<Impl> impl_;
    friend class detail::TlsSession;
};

}  // namespace asyncore
