// Errors: strerror_text (test_asyncore's test_strerror), the disconnect
// errnos, the library's error category and ExitNow.

#include <asyncore/error.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <ostream>
#include <string>
#include <system_error>

TEST_SUITE("error") {
    TEST_CASE("strerror_text gives the system's message and never fails") {
        CHECK(asyncore::strerror_text(EPERM) == std::strerror(EPERM));
        CHECK_FALSE(asyncore::strerror_text(-1).empty());
        CHECK_FALSE(asyncore::strerror_text(123456).empty());
    }

    TEST_CASE("exactly asyncore's disconnect errnos count as the peer going away") {
        for (int err : {ECONNRESET, ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE, EBADF})
            CHECK(asyncore::is_disconnect_errno(err));
        for (int err : {0, EAGAIN, EINTR, ECONNREFUSED, ETIMEDOUT, EMFILE})
            CHECK_FALSE(asyncore::is_disconnect_errno(err));
    }

    TEST_CASE("throw_errno throws std::system_error in the generic category") {
        try {
            asyncore::throw_errno(ECONNREFUSED, "connect");
            FAIL("throw_errno returned");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::connection_refused);
            CHECK(e.code().category() == std::generic_category());
            CHECK(std::string(e.what()).find("connect") != std::string::npos);
        }
    }

    TEST_CASE("asyncore::errc values are error codes of the 'asyncore' category") {
        std::error_code ec = asyncore::errc::timed_out;
        CHECK(ec.category() == asyncore::error_category());
        CHECK(std::string(ec.category().name()) == "asyncore");
        CHECK(ec.message() == "timed out");
        CHECK(std::error_code(asyncore::errc::message_too_large).message() == "message too large");
        CHECK(ec != std::error_code(ETIMEDOUT, std::generic_category()));
    }

    TEST_CASE("ExitNow is a std::exception that names itself") {
        asyncore::ExitNow e;
        const std::exception& base = e;
        CHECK(std::string(base.what()) == "asyncore::ExitNow");
    }

}  // TEST_SUITE
