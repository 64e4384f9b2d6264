// A throwaway PKI for the TLS tests; see tls_fixtures.hpp.

#include "support/tls_fixtures.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>

namespace test {

namespace {

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

constexpr long day = 24 * 60 * 60;

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("tls fixtures: ") + what + " failed");
}

Key new_key() {
    Key k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), EVP_PKEY_free);
    check(k != nullptr, "EC key generation");
    return k;
}

struct Spec {
    const char* cn;
    const char* san = nullptr;  ///< subjectAltName value, e.g. "DNS:localhost"
    const char* eku = nullptr;  ///< extendedKeyUsage value
    bool ca = false;
    long from_days = -1;  ///< notBefore, relative to now
    long to_days = 30;    ///< notAfter, relative to now
};

void add_ext(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value);
    check(ext != nullptr && X509_add_ext(cert, ext, -1) == 1, "adding an extension");
    X509_EXTENSION_free(ext);
}

void add_extensions(X509* cert, X509* issuer, const Spec& spec) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert, cert, nullptr, nullptr, 0);
    add_ext(cert, &ctx, NID_basic_constraints, spec.ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_ext(cert, &ctx, NID_key_usage,
            spec.ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    add_ext(cert, &ctx, NID_subject_key_identifier, "hash");
    add_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always");
    if (spec.san != nullptr) add_ext(cert, &ctx, NID_subject_alt_name, spec.san);
    if (spec.eku != nullptr) add_ext(cert, &ctx, NID_ext_key_usage, spec.eku);
}

// Signed by `issuer`/`issuer_key`, or self-signed when they are null.
Cert make_cert(EVP_PKEY* key, const Spec& spec, X509* issuer, EVP_PKEY* issuer_key) {
    static long serial = 1000;
    Cert cert(X509_new(), X509_free);
    check(cert != nullptr, "X509_new");
    X509* x = cert.get();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), ++serial);
    X509_gmtime_adj(X509_getm_notBefore(x), spec.from_days * day);
    X509_gmtime_adj(X509_getm_notAfter(x), spec.to_days * day);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("asyncore-cpp tests"), -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(spec.cn), -1, -1, 0);
    X509_set_issuer_name(x, issuer != nullptr ? X509_get_subject_name(issuer) : name);
    add_extensions(x, issuer, spec);
    check(X509_sign(x, issuer_key != nullptr ? issuer_key : key, EVP_sha256()) > 0, "X509_sign");
    return cert;
}

void write_pem(const std::string& path, X509* cert, EVP_PKEY* key) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    check(f != nullptr, "opening a PEM file");
    bool ok = cert != nullptr
                  ? PEM_write_X509(f, cert) == 1
                  : PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
    ok = std::fclose(f) == 0 && ok;
    check(ok, "writing a PEM file");
}

struct Pki {
    TlsFiles files;

    Pki() {
        char tmpl[] = "/tmp/asyncore-tls-XXXXXX";
        check(::mkdtemp(tmpl) != nullptr, "mkdtemp");
        files.dir = tmpl;
        Key ca_key = new_key();
        Cert ca =
            make_cert(ca_key.get(), {.cn = "asyncore-cpp test CA", .ca = true}, nullptr, nullptr);
        files.ca_cert = save("ca", ca.get(), nullptr);
        auto issue = [&](const char* name, const Spec& spec, std::string& cert_path,
                         std::string& key_path, bool self_signed = false) {
            Key key = new_key();
            Cert cert = self_signed ? make_cert(key.get(), spec, nullptr, nullptr)
                                    : make_cert(key.get(), spec, ca.get(), ca_key.get());
            cert_path = save(name, cert.get(), nullptr);
            key_path = save(std::string(name) + "-key", nullptr, key.get());
        };
        const char* localhost = "DNS:localhost,IP:127.0.0.1,IP:::1";
        issue("server", {.cn = "localhost", .san = localhost, .eku = "serverAuth"},
              files.server_cert, files.server_key);
        issue("expired",
              {.cn = "localhost",
               .san = localhost,
               .eku = "serverAuth",
               .from_days = -30,
               .to_days = -1},
              files.expired_cert, files.expired_key);
        issue("wrong-host", {.cn = "wrong.example.com", .san = "DNS:wrong.example.com"},
              files.wrong_host_cert, files.wrong_host_key);
        issue("self-signed", {.cn = "localhost", .san = localhost}, files.self_signed_cert,
              files.self_signed_key, true);
        issue("client", {.cn = "test-client", .eku = "clientAuth"}, files.client_cert,
              files.client_key);
    }

    ~Pki() {
        std::error_code ignored;
        std::filesystem::remove_all(files.dir, ignored);
    }

    std::string save(const std::string& name, X509* cert, EVP_PKEY* key) const {
        std::string path = files.dir + "/" + name + ".pem";
        write_pem(path, cert, key);
        return path;
    }
};

}  // namespace

const TlsFiles& tls_files() {
    static const Pki pki;
    return pki.files;
}

}  // namespace test
