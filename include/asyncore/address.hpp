// Socket addresses: IPv4, IPv6 and Unix domain, as one value type.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

struct sockaddr;  // from <sys/socket.h>; kept out of this header

namespace asyncore {

/// A socket address of any family the library supports. A default-constructed
/// Address is empty (family() == 0). Addresses are plain values: cheap to copy,
/// comparable, printable.
class Address {
  public:
    Address() noexcept;

    /// An IPv4 address from dotted-quad text ("127.0.0.1"); "" means INADDR_ANY.
    /// Throws std::invalid_argument if `host` is not an IPv4 literal.
    static Address ipv4(std::string_view host, std::uint16_t port);
    /// An IPv6 address from text ("::1"); "" means in6addr_any.
    /// Throws std::invalid_argument if `host` is not an IPv6 literal.
    static Address ipv6(std::string_view host, std::uint16_t port);
    /// An IPv4 or IPv6 literal, whichever `host` parses as ("[::1]" accepted).
    /// Throws std::invalid_argument otherwise. Host names are not resolved here.
    static Address ip(std::string_view host, std::uint16_t port);
    /// A Unix domain socket path. A leading '\0' makes an abstract address.
    /// Throws std::invalid_argument if the path does not fit sockaddr_un.
    static Address unix_path(std::string_view path);
    /// Copies a native address of `len` bytes (as filled in by accept()).
    static Address from_native(const ::sockaddr* sa, unsigned len);

    int family() const noexcept;  ///< AF_INET, AF_INET6, AF_UNIX or 0 when empty
    bool empty() const noexcept { return family() == 0; }
    /// The host part: "127.0.0.1", "::1", or the Unix path. Empty when empty().
    std::string host() const;
    /// The port; 0 for Unix addresses.
    std::uint16_t port() const noexcept;
    /// "127.0.0.1:8080", "[::1]:8080" or the Unix path (asyncore's '%s:%d').
    std::string to_string() const;

    const ::sockaddr* native() const noexcept;
    ::sockaddr* native() noexcept;
    unsigned native_size() const noexcept { return size_; }
    /// Sets the length after the native storage was filled by a system call.
    void set_native_size(unsigned size) noexcept { size_ = size; }
    static constexpr unsigned capacity = 128;  ///< sizeof(sockaddr_storage)

    friend bool operator==(const Address& a, const Address& b) noexcept;

  private:
    alignas(8) unsigned char storage_[capacity];
    unsigned size_ = 0;
};

}  // namespace asyncore
