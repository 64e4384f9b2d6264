// Address: sockaddr_storage as a value type.

#include <asyncore/address.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

namespace asyncore {

static_assert(sizeof(sockaddr_storage) <= Address::capacity);

Address::Address() noexcept : storage_{} {}

const ::sockaddr* Address::native() const noexcept {
    return reinterpret_cast<const ::sockaddr*>(storage_);
}

::sockaddr* Address::native() noexcept {
    return reinterpret_cast<::sockaddr*>(storage_);
}

int Address::family() const noexcept {
    return size_ == 0 ? 0 : native()->sa_family;
}

Address Address::ipv4(std::string_view host, std::uint16_t port) {
    Address a;
    auto* sin = reinterpret_cast<sockaddr_in*>(a.storage_);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::string h(host);
    if (h.empty()) {
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (::inet_pton(AF_INET, h.c_str(), &sin->sin_addr) != 1) {
        throw std::invalid_argument("not an IPv4 address: " + h);
    }
    a.size_ = sizeof(sockaddr_in);
    return a;
}

Address Address::ipv6(std::string_view host, std::uint16_t port) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    Address a;
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(a.storage_);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    std::string h(host);
    if (h.empty()) {
        sin6->sin6_addr = in6addr_any;
    } else if (::inet_pton(AF_INET6, h.c_str(), &sin6->sin6_addr) != 1) {
        throw std::invalid_argument("not an IPv6 address: " + h);
    }
    a.size_ = sizeof(sockaddr_in6);
    return a;
}

Address Address::ip(std::string_view host, std::uint16_t port) {
    if (host.find(':') != std::string_view::npos) return ipv6(host, port);
    return ipv4(host, port);
}

Address Address::unix_path(std::string_view path) {
    Address a;
    auto* sun = reinterpret_cast<sockaddr_un*>(a.storage_);
    if (path.empty() || path.size() >= sizeof(sun->sun_path)) {
        throw std::invalid_argument("bad Unix socket path: '" + std::string(path) + "'");
    }
    sun->sun_family = AF_UNIX;
    std::memcpy(sun->sun_path, path.data(), path.size());
    // An abstract address's length counts exactly its bytes; a path's, its NUL too.
    a.size_ = static_cast<unsigned>(offsetof(sockaddr_un, sun_path) + path.size() +
                                    (path.front() == '\0' ? 0 : 1));
    return a;
}

Address Address::from_native(const ::sockaddr* sa, unsigned len) {
    Address a;
    if (len > capacity) len = capacity;
    std::memcpy(a.storage_, sa, len);
    a.size_ = len;
    return a;
}

std::string Address::host() const {
    char buf[INET6_ADDRSTRLEN] = {};
    switch (family()) {
        case AF_INET:
            ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(storage_)->sin_addr, buf,
                        sizeof buf);
            return buf;
        case AF_INET6:
            ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(storage_)->sin6_addr, buf,
                        sizeof buf);
            return buf;
        case AF_UNIX: {
            const auto* sun = reinterpret_cast<const sockaddr_un*>(storage_);
            std::size_t n = size_ > offsetof(sockaddr_un, sun_path)
                                ? size_ - offsetof(sockaddr_un, sun_path)
                                : 0;
            std::string path(sun->sun_path, n);
            if (!path.empty() && path.front() != '\0') path = path.c_str();  // drop the NUL
            return path;
        }
        default:
            return {};
    }
}

std::uint16_t Address::port() const noexcept {
    switch (family()) {
        case AF_INET:
            return ntohs(reinterpret_cast<const sockaddr_in*>(storage_)->sin_port);
        case AF_INET6:
            return ntohs(reinterpret_cast<const sockaddr_in6*>(storage_)->sin6_port);
        default:
            return 0;
    }
}

std::string Address::to_string() const {
    switch (family()) {
        case AF_INET:
            return host() + ":" + std::to_string(port());
        case AF_INET6:
            return "[" + host() + "]:" + std::to_string(port());
        case AF_UNIX:
            return host();
        default:
            return {};
    }
}

bool operator==(const Address& a, const Address& b) noexcept {
    return a.size_ == b.size_ && std::memcmp(a.storage_, b.storage_, a.size_) == 0;
}

}  // namespace asyncore
