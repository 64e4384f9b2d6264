// The library's error category and small error helpers.

#include <asyncore/error.hpp>

#include <cxxabi.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <typeinfo>

#include "detail/map_core.hpp"

namespace asyncore {

namespace {

class Category : public std::error_category {
  public:
    const char* name() const noexcept override { return "asyncore"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
            case errc::limit_exceeded:
                return "limit exceeded";
            case errc::message_too_large:
                return "message too large";
            case errc::timed_out:
                return "timed out";
            case errc::cancelled:
                return "cancelled";
            case errc::tls_verification_failed:
                return "TLS certificate verification failed";
            case errc::tls_error:
                return "TLS error";
            case errc::truncated:
                return "connection closed in the middle of a message";
            case errc::busy:
                return "another operation of this kind is pending";
        }
        return "unknown asyncore error " + std::to_string(value);
    }
};

}  // namespace

const std::error_category& error_category() noexcept {
    static const Category category;
    return category;
}

void throw_errno(int err, const char* what) {
    throw std::system_error(err, std::generic_category(), what);
}

bool is_disconnect_errno(int err) noexcept {
    return err == ECONNRESET || err == ENOTCONN || err == ESHUTDOWN || err == ECONNABORTED ||
           err == EPIPE || err == EBADF;
}

std::string strerror_text(int err) {
    char buf[256];
    // GNU strerror_r returns the message, which may or may not be `buf`.
    const char* msg = ::strerror_r(err, buf, sizeof buf);
    return msg != nullptr ? std::string(msg) : "Unknown error " + std::to_string(err);
}

namespace detail {

std::string type_name(const std::type_info& t) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> name(
        abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), std::free);
    return status == 0 && name ? std::string(name.get()) : std::string(t.name());
}

std::string describe_exception(std::exception_ptr e) {
    if (!e) return "no exception";
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        return type_name(typeid(ex)) + ": " + ex.what();
    } catch (...) {
        const std::type_info* t = abi::__cxa_current_exception_type();
        return t != nullptr ? type_name(*t) + ": (not a std::exception)" : "unknown exception";
    }
}

}  // namespace detail
}  // namespace asyncore
