// TLS test fixtures: a throwaway PKI generated at test time with OpenSSL's
// API (no key is committed, no openssl CLI needed), written as PEM files
// into a private temporary directory that is removed when the tests exit.
#pragma once

#include <asyncore/tls.hpp>

#include <cstddef>
#include <string>

namespace test {

/// Paths of the generated PEM files. Every certificate uses a fresh P-256
/// key; "issued" means signed by the CA in `ca_cert`.
struct TlsFiles {
    std::string dir;
    std::string ca_cert;  ///< the test CA (self-signed, CA:TRUE)
    /// Issued, for localhost, 127.0.0.1 and ::1 (subjectAltName), serverAuth.
    std::string server_cert, server_key;
    /// Issued, for localhost and 127.0.0.1, but expired yesterday.
    std::string expired_cert, expired_key;
    /// Issued, valid, but only for wrong.example.com.
    std::string wrong_host_cert, wrong_host_key;
    /// For localhost and 127.0.0.1, valid, but self-signed (not issued).
    std::string self_signed_cert, self_signed_key;
    /// Issued, CN=test-client, clientAuth.
    std::string client_cert, client_key;
};

/// The files, generated on first use (a few milliseconds) and shared by all
/// tests of the run. Throws std::runtime_error if OpenSSL fails.
const TlsFiles& tls_files();

/// A server context with the test CA's certificate for localhost/127.0.0.1.
inline asyncore::TlsContext server_ctx() {
    return asyncore::TlsContext::server(tls_files().server_cert, tls_files().server_key);
}

/// A client context that trusts only the test CA.
inline asyncore::TlsContext client_ctx() {
    return asyncore::TlsContext::client(tls_files().ca_cert);
}

/// `n` pseudo-random bytes (a linear congruential generator from `seed`):
/// binary data with no repeating pattern a framing bug could hide behind.
inline std::string random_bytes(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    unsigned x = seed;
    for (char& c : s) {
        x = x * 1103515245u + 12345u;
        c = static_cast<char>(x >> 16);
    }
    return s;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

}  // namespace test
