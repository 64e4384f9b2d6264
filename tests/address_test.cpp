// Address: IPv4, IPv6 and Unix domain addresses as values.

#include <asyncore/address.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

using asyncore::Address;

TEST_SUITE("address") {
    TEST_CASE("a default address is empty") {
        Address a;
        CHECK(a.empty());
        CHECK(a.family() == 0);
        CHECK(a.host().empty());
        CHECK(a.port() == 0);
        CHECK(a.to_string().empty());
    }

    TEST_CASE("IPv4 addresses print as asyncore's HOST:PORT") {
        Address a = Address::ipv4("127.0.0.1", 8080);
        CHECK(a.family() == AF_INET);
        CHECK(a.host() == "127.0.0.1");
        CHECK(a.port() == 8080);
        CHECK(a.to_string() == "127.0.0.1:8080");
        CHECK(a.native_size() == sizeof(sockaddr_in));
        CHECK(Address::ipv4("", 1).host() == "0.0.0.0");
    }

    TEST_CASE("IPv6 addresses print in brackets and accept them") {
        Address a = Address::ipv6("::1", 443);
        CHECK(a.family() == AF_INET6);
        CHECK(a.host() == "::1");
        CHECK(a.port() == 443);
        CHECK(a.to_string() == "[::1]:443");
        CHECK(Address::ipv6("[::1]", 443) == a);
        CHECK(Address::ipv6("", 1).host() == "::");
    }

    TEST_CASE("ip() picks the family from the literal") {
        CHECK(Address::ip("10.1.2.3", 1).family() == AF_INET);
        CHECK(Address::ip("fe80::1", 1).family() == AF_INET6);
        CHECK(Address::ip("[::1]", 7) == Address::ipv6("::1", 7));
    }

    TEST_CASE("text that is not an address literal is rejected") {
        CHECK_THROWS_AS(Address::ipv4("localhost", 1), std::invalid_argument);
        CHECK_THROWS_AS(Address::ipv4("::1", 1), std::invalid_argument);
        CHECK_THROWS_AS(Address::ipv4("256.0.0.1", 1), std::invalid_argument);
        CHECK_THROWS_AS(Address::ipv6("127.0.0.1", 1), std::invalid_argument);
        CHECK_THROWS_AS(Address::ip("example.com", 1), std::invalid_argument);
    }

    TEST_CASE("Unix paths round-trip, abstract ones keep their leading NUL") {
        Address a = Address::unix_path("/tmp/some.sock");
        CHECK(a.family() == AF_UNIX);
        CHECK(a.host() == "/tmp/some.sock");
        CHECK(a.port() == 0);
        CHECK(a.to_string() == "/tmp/some.sock");
        std::string abstract("\0name", 5);
        Address b = Address::unix_path(abstract);
        CHECK(b.host() == abstract);
        CHECK_FALSE(a == b);
    }

    TEST_CASE("a Unix path that does not fit sockaddr_un is rejected") {
        CHECK_THROWS_AS(Address::unix_path(""), std::invalid_argument);
        CHECK_THROWS_AS(Address::unix_path(std::string(sizeof(sockaddr_un{}.sun_path), 'x')),
                        std::invalid_argument);
        CHECK_NOTHROW(Address::unix_path(std::string(sizeof(sockaddr_un{}.sun_path) - 1, 'x')));
    }

    TEST_CASE("from_native copies an address filled in by the system") {
        Address a = Address::ipv6("::1", 9);
        Address b = Address::from_native(a.native(), a.native_size());
        CHECK(b == a);
        CHECK(b.to_string() == "[::1]:9");
    }

    TEST_CASE("addresses compare by value") {
        CHECK(Address::ipv4("127.0.0.1", 1) == Address::ipv4("127.0.0.1", 1));
        CHECK_FALSE(Address::ipv4("127.0.0.1", 1) == Address::ipv4("127.0.0.1", 2));
        CHECK_FALSE(Address::ipv4("127.0.0.1", 1) == Address::ipv4("127.0.0.2", 1));
        Address copy = Address::ipv4("127.0.0.1", 1);
        Address other = copy;
        CHECK(other == copy);
    }

}  // TEST_SUITE
