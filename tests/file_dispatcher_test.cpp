// FileWrapper and FileDispatcher: test_asyncore's FileWrapperTest, the
// dispatcher test on a pipe, and regular files (always ready, as select()
// and poll() report them).

#include <asyncore/file_dispatcher.hpp>

#include <asyncore/loop.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cerrno>
#include <cstdlib>
#include <ostream>
#include <string>
#include <system_error>

#include "support/fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::ChannelMap;
using asyncore::FileDispatcher;
using asyncore::FileWrapper;

namespace {

const std::string sample = "It's not dead, it's sleeping!";

// A temporary file holding `sample`, removed when the test ends.
struct TempFile {
    std::string path;
    TempFile() {
        char tmpl[] = "/tmp/asyncore-file-XXXXXX";
        int fd = ::mkstemp(tmpl);
        REQUIRE(fd >= 0);
        path = tmpl;
        REQUIRE(::write(fd, sample.data(), sample.size()) == static_cast<ssize_t>(sample.size()));
        ::close(fd);
    }
    ~TempFile() { ::unlink(path.c_str()); }
    std::string contents() const {
        int fd = ::open(path.c_str(), O_RDONLY);
        std::string s = test::read_to_eof(fd);
        ::close(fd);
        return s;
    }
};

struct Pipe {
    int r = -1, w = -1;
    Pipe() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        r = fds[0];
        w = fds[1];
    }
    ~Pipe() {
        close_read();
        close_write();
    }
    void close_read() {
        if (r >= 0) ::close(std::exchange(r, -1));
    }
    void close_write() {
        if (w >= 0) ::close(std::exchange(w, -1));
    }
};

struct Collector : FileDispatcher {
    using FileDispatcher::FileDispatcher;
    std::string data;
    int closes = 0;
    bool writable() override { return false; }
    void handle_read() override { data += recv(29); }
    void handle_close() override {
        ++closes;
        close();
    }
};

}  // namespace

TEST_SUITE("file_dispatcher") {
    TEST_CASE("FileWrapper reads from a duplicate of the descriptor") {
        TempFile f;
        int fd = ::open(f.path.c_str(), O_RDONLY);
        FileWrapper w(fd);
        ::close(fd);
        CHECK(w.fileno() != fd);
        CHECK(w.fileno() >= 0);
        CHECK(w.recv(13) == "It's not dead");
        CHECK(w.read(6) == ", it's");
        w.close();
        CHECK(w.fileno() == -1);
        CHECK_THROWS_AS(w.read(1), std::system_error);
    }

    TEST_CASE("FileWrapper writes through a duplicate of the descriptor") {
        TempFile f;
        int fd = ::open(f.path.c_str(), O_WRONLY | O_APPEND);
        FileWrapper w(fd);
        ::close(fd);
        CHECK(w.write("Come again?") == 11);
        CHECK(w.send("I want to buy some cheese.") == 26);
        w.close();
        CHECK(f.contents() == sample + "Come again?I want to buy some cheese.");
    }

    TEST_CASE("FileWrapper close reports a descriptor closed behind its back, and twice is safe") {
        TempFile f;
        int fd = ::open(f.path.c_str(), O_RDONLY);
        FileWrapper w(fd);
        ::close(fd);
        ::close(w.fileno());
        try {
            w.close();
            FAIL("closing an already closed descriptor succeeded");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::bad_file_descriptor);
        }
        CHECK(w.fileno() == -1);
        CHECK_NOTHROW(w.close());
    }

    TEST_CASE("FileWrapper rejects a descriptor that is not open") {
        CHECK_THROWS_AS(FileWrapper(-1), std::system_error);
    }

    TEST_CASE("FileWrapper release and move hand over the descriptor without closing it") {
        TempFile f;
        int fd = ::open(f.path.c_str(), O_RDONLY);
        FileWrapper a(fd);
        ::close(fd);
        int dup = a.fileno();
        FileWrapper b(std::move(a));
        CHECK(a.fileno() == -1);
        CHECK(b.fileno() == dup);
        int mine = b.release();
        CHECK(b.fileno() == -1);
        CHECK(::fcntl(mine, F_GETFD) >= 0);
        ::close(mine);
    }

    TEST_CASE("FileDispatcher reads what arrives on a pipe") {
        ChannelMap map;
        Pipe p;
        test::write_all(p.w, sample);
        Collector c(p.r, map);
        p.close_read();  // the dispatcher has its own duplicate
        CHECK(c.connected());
        CHECK((::fcntl(c.fileno(), F_GETFL) & O_NONBLOCK) != 0);
        asyncore::loop(10ms, map, 2);
        CHECK(c.data == sample);
    }

    TEST_CASE("FileDispatcher sees the end of a pipe as handle_close") {
        ChannelMap map;
        Pipe p;
        Collector c(p.r, map);
        test::write_all(p.w, "bye");
        p.close_write();
        asyncore::loop(1s, map);
        CHECK(c.data == "bye");
        CHECK(c.closes == 1);
    }

    TEST_CASE("FileDispatcher writes to a pipe with send()") {
        ChannelMap map;
        Pipe p;
        FileDispatcher d(p.w, map);
        CHECK(d.send("through the pipe") == 16);
        CHECK(test::read_exactly(p.r, 16) == "through the pipe");
    }

    TEST_CASE("set_file replaces the watched descriptor") {
        ChannelMap map;
        Pipe first, second;
        Collector c(first.r, map);
        int old = c.fileno();
        c.set_file(second.r);
        CHECK(c.fileno() != old);
        CHECK(map.size() == 1);
        test::write_all(second.w, "second");
        REQUIRE(test::run_until(map, [&] { return c.data == "second"; }));
    }

    TEST_CASE("FileDispatcher over a regular file reads it to its end, as asyncore does") {
        // select() and poll() report a regular file always ready and asyncore
        // reads it; epoll refuses regular files, so the loop treats them as
        // always ready itself, on every backend.
        struct Slurp : FileDispatcher {
            using FileDispatcher::FileDispatcher;
            std::string data;
            int closes = 0;
            bool writable() override { return false; }
            void handle_read() override { data += recv(4096); }
            void handle_close() override {
                ++closes;
                close();
            }
        };
        ChannelMap map;
        char tmpl[] = "/tmp/asyncore-big-XXXXXX";
        int wfd = ::mkstemp(tmpl);
        REQUIRE(wfd >= 0);
        std::string content;
        for (int i = 0; content.size() < 300000; ++i)
            content += "line " + std::to_string(i) + "\n";
        test::write_all(wfd, content);
        ::close(wfd);
        int fd = ::open(tmpl, O_RDONLY | O_CLOEXEC);
        ::unlink(tmpl);
        REQUIRE(fd >= 0);
        Slurp d(fd, map);
        ::close(fd);
        asyncore::loop(1s, map);  // returns once EOF closed the channel
        CHECK(d.data == content);
        CHECK(d.closes == 1);
        CHECK(map.empty());
    }

    TEST_CASE("a regular file that is not wanted costs no busy loop") {
        struct Paused : FileDispatcher {
            using FileDispatcher::FileDispatcher;
            bool readable() override { return false; }
            bool writable() override { return false; }
        };
        ChannelMap map;
        TempFile f;
        int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
        Paused d(fd, map);
        ::close(fd);
        auto before = map.stats().passes;
        map.call_later(100ms, [&] { d.close(); });
        asyncore::loop(30s, map);
        CHECK(map.stats().passes - before < 10);
    }

}  // TEST_SUITE
