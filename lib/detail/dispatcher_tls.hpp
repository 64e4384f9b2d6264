// The Dispatcher's TLS paths, kept out of the core files: the core calls
// these only when Dispatcher::tls_ is set, so plaintext channels pay one
// null-pointer test per operation and nothing else. No OpenSSL types here.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace asyncore {
class Dispatcher;
}

namespace asyncore::detail {

struct DispatcherTls {
    /// Dispatcher::send() on a TLS channel.
    static std::size_t send(Dispatcher& d, std::string_view data);
    /// Dispatcher::recv_into() on a TLS channel.
    static std::size_t recv_into(Dispatcher& d, std::span<char> buffer);
    /// Read and write readiness: the handshake step, or the user's handlers.
    static void read_event(Dispatcher& d);
    static void write_event(Dispatcher& d);
    /// The registration the channel needs (the handshake's wants, or the
    /// user's readable()/writable() plus what OpenSSL waits for). Returns
    /// true when the read handler must run without waiting for the kernel
    /// because plaintext (or whole records) already sit inside OpenSSL.
    static bool interest(Dispatcher& d, bool& want_read, bool& want_write);
    /// Sends close_notify if the socket takes it now, then drops the session.
    static void close(Dispatcher& d) noexcept;
};

}  // namespace asyncore::detail
