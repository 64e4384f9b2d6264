// Socket: the owner of one descriptor.

#include <asyncore/socket.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <system_error>
#include <utility>

namespace {

bool is_open(int fd) {
    return ::fcntl(fd, F_GETFD) >= 0;
}

}  // namespace

TEST_SUITE("socket") {
    TEST_CASE("create makes a non-blocking, close-on-exec socket") {
        auto s = asyncore::Socket::create(AF_INET, SOCK_STREAM);
        REQUIRE(s);
        CHECK((::fcntl(s.fd(), F_GETFL) & O_NONBLOCK) != 0);
        CHECK((::fcntl(s.fd(), F_GETFD) & FD_CLOEXEC) != 0);
    }

    TEST_CASE("create reports failure as std::system_error") {
        CHECK_THROWS_AS(asyncore::Socket::create(-1, SOCK_STREAM), std::system_error);
    }

    TEST_CASE("the destructor closes the descriptor, release gives it up") {
        int fd;
        {
            auto s = asyncore::Socket::create(AF_UNIX, SOCK_STREAM);
            fd = s.fd();
            CHECK(is_open(fd));
        }
        CHECK_FALSE(is_open(fd));
        auto s = asyncore::Socket::create(AF_UNIX, SOCK_STREAM);
        fd = s.release();
        CHECK_FALSE(s);
        CHECK(s.fd() == -1);
        CHECK(is_open(fd));
        ::close(fd);
    }

    TEST_CASE("moving a socket transfers ownership exactly once") {
        auto a = asyncore::Socket::create(AF_UNIX, SOCK_STREAM);
        int fd = a.fd();
        asyncore::Socket b(std::move(a));
        CHECK(a.fd() == -1);
        CHECK(b.fd() == fd);
        auto c = asyncore::Socket::create(AF_UNIX, SOCK_STREAM);
        int other = c.fd();
        c = std::move(b);
        CHECK(c.fd() == fd);
        CHECK_FALSE(is_open(other));  // the socket c held before was closed
        CHECK(is_open(fd));
    }

    TEST_CASE("reset closes the old descriptor and takes the new one") {
        auto s = asyncore::Socket::create(AF_UNIX, SOCK_STREAM);
        int old = s.fd();
        int fresh = ::dup(0);
        s.reset(fresh);
        CHECK_FALSE(is_open(old));
        CHECK(s.fd() == fresh);
        s.reset();
        CHECK_FALSE(is_open(fresh));
    }

    TEST_CASE("set_nonblocking switches the mode both ways") {
        auto s = asyncore::Socket::create(AF_INET, SOCK_STREAM);
        s.set_nonblocking(false);
        CHECK((::fcntl(s.fd(), F_GETFL) & O_NONBLOCK) == 0);
        s.set_nonblocking();
        CHECK((::fcntl(s.fd(), F_GETFL) & O_NONBLOCK) != 0);
        asyncore::Socket none;
        CHECK_THROWS_AS(none.set_nonblocking(), std::system_error);
    }

}  // TEST_SUITE
