// Errors raised by asyncore-cpp.
//
// Socket and system failures are std::system_error carrying the errno in
// std::generic_category(), so `e.code() == std::errc::connection_refused`
// works as expected. The library's own failures (a limit exceeded, a message
// too large, a timeout, a cancellation, a TLS verification failure) carry an
// asyncore::errc in asyncore::error_category().
#pragma once

#include <exception>
#include <string>
#include <system_error>

namespace asyncore {

/// The library's own error conditions.
enum class errc {
    limit_exceeded = 1,       ///< a configured bound (buffer, line length...) was exceeded
    message_too_large,        ///< a framed message announced a length above the maximum
    timed_out,                ///< an operation's timeout expired
    cancelled,                ///< the waiting task was terminated
    tls_verification_failed,  ///< the peer's certificate was rejected
    tls_error,                ///< any other TLS failure (handshake, protocol)
    truncated,                ///< the peer closed in the middle of a framed message
    busy,                     ///< another operation of the same kind is already pending
};

/// The category of asyncore::errc values; its name() is "asyncore".
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

/// Thrown from a handler to leave loop() at once. It is the only exception
/// that is not routed to Dispatcher::handle_error(): it propagates out of
/// loop() to the caller (asyncore's ExitNow).
class ExitNow : public std::exception {
  public:
    const char* what() const noexcept override { return "asyncore::ExitNow"; }
};

/// Thrown by an awaitable whose timeout expired (errc::timed_out).
class TimeoutError : public std::system_error {
  public:
    explicit TimeoutError(const char* what = "timed out")
        : std::system_error(make_error_code(errc::timed_out), what) {}
};

/// Thrown at a task's suspension point by TaskRef::terminate() (errc::cancelled).
class Cancelled : public std::system_error {
  public:
    explicit Cancelled(const char* what = "task terminated")
        : std::system_error(make_error_code(errc::cancelled), what) {}
};

/// Throws std::system_error(err, std::generic_category(), what).
[[noreturn]] void throw_errno(int err, const char* what);

/// True for the errnos asyncore treats as "the peer went away": ECONNRESET,
/// ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE and EBADF. Operations that see
/// one of them call handle_close() instead of raising.
bool is_disconnect_errno(int err) noexcept;

/// strerror() that never fails: unknown values give "Unknown error N".
std::string strerror_text(int err);

}  // namespace asyncore

template <>
struct std::is_error_code_enum<asyncore::errc> : std::true_type {};
