// http_server's request head parser (samples/http_server/http_request.hpp):
// what it reads from a head, and the heads it must refuse because a proxy in
// front of the server could frame them otherwise (request smuggling).
#include "http_request.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <string>

namespace {

std::optional<http::Request> parse(const std::string& head) {
    return http::parse_request_head(head);
}

}  // namespace

TEST_SUITE("http_request") {
    TEST_CASE("a request line and headers, names in any case") {
        auto r = parse(
            "GET /index.html HTTP/1.1\r\nhOsT: a\r\nCONTENT-length: 12\r\n"
            "connection: Close");
        REQUIRE(r);
        CHECK(r->method == "GET");
        CHECK(r->target == "/index.html");
        CHECK(r->version == "HTTP/1.1");
        CHECK(r->content_length == 12);
        CHECK(!r->keep_alive);
        auto old = parse("HEAD / HTTP/1.0");
        REQUIRE(old);
        CHECK(!old->keep_alive);
        CHECK(parse("GET / HTTP/1.0\r\nConnection: keep-alive")->keep_alive);
    }

    TEST_CASE("the request line has exactly three parts and a target from /") {
        CHECK(!parse("GET / HTTP/2.0"));
        CHECK(!parse("GET index.html HTTP/1.1"));
        CHECK(!parse("GET /a b HTTP/1.1"));
        CHECK(!parse("GET  / HTTP/1.1"));
        CHECK(!parse(" / HTTP/1.1"));
        CHECK(!parse("G(T / HTTP/1.1"));
    }

    TEST_CASE("a bare CR or LF, or another control byte, is refused anywhere in the head") {
        CHECK(!parse("GET /\n HTTP/1.1"));
        CHECK(!parse("GET / HTTP/1.1\r\nHost: a\nContent-Length: 5"));
        CHECK(!parse("GET / HTTP/1.1\r\nHost: a\rb"));
        CHECK(!parse("GET / HTTP/1.1\r\nHost: a\x01"));
        CHECK(parse("GET / HTTP/1.1\r\nHost:\ta\t"));
    }

    TEST_CASE("a header name is a token: no whitespace before the colon, no folding") {
        CHECK(!parse("GET / HTTP/1.1\r\nContent-Length : 5"));
        CHECK(!parse("GET / HTTP/1.1\r\nHost: a\r\n continued"));
        CHECK(!parse("GET / HTTP/1.1\r\n: empty name"));
        CHECK(!parse("GET / HTTP/1.1\r\nno colon"));
    }

    TEST_CASE("Content-Length is digits only, within optional whitespace") {
        CHECK(parse("GET / HTTP/1.1\r\nContent-Length: \t7 \t")->content_length == 7);
        CHECK(parse("GET / HTTP/1.1\r\nContent-Length:0")->content_length == 0);
        for (const char* bad :
             {"+5", "-0", "-1", "0x5", "5 5", "", "5;", "\v5", "99999999999999999999999"}) {
            CAPTURE(bad);
            CHECK(!parse(std::string("GET / HTTP/1.1\r\nContent-Length: ") + bad));
        }
    }

    TEST_CASE("two Content-Length headers must agree") {
        CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3")->content_length ==
              3);
        CHECK(!parse("GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4"));
    }

    TEST_CASE("a Transfer-Encoding is refused: the server decodes none") {
        CHECK(!parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked"));
        CHECK(!parse("POST / HTTP/1.1\r\nContent-Length: 4\r\ntransfer-encoding: identity"));
    }

    TEST_CASE("Connection's value may end in whitespace") {
        CHECK(!parse("GET / HTTP/1.1\r\nConnection: close \t")->keep_alive);
    }
}
