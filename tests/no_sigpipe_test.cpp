// The library changes no process-wide signal disposition, and none of its
// writes to a peer that has gone raises SIGPIPE: each case runs in a child
// process whose SIGPIPE is at its default action (death), and must exit
// normally with the error reported the library's way (handle_close() for
// the dispatchers, an exception for AsyncSocket and AsyncFile).

#include <asyncore/async_chat.hpp>
#include <asyncore/async_file.hpp>
#include <asyncore/async_socket.hpp>
#include <asyncore/dispatcher.hpp>
#include <asyncore/dispatcher_with_send.hpp>
#include <asyncore/file_dispatcher.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>
#include <asyncore/tls.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <string>
#include <system_error>

#include "support/fixtures.hpp"
#include "support/tls_fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::ChannelMap;
using asyncore::Task;

namespace {

bool sigpipe_is_default() {
    struct sigaction sa {};
    ::sigaction(SIGPIPE, nullptr, &sa);
    return sa.sa_handler == SIG_DFL;
}

// How a child ended: its exit code, or the signal that killed it.
struct Ending {
    bool exited = false;
    int code = -1;
    int signal = 0;
};

// Runs `body` in a child process with SIGPIPE at its default disposition
// and a 20 s alarm; `body` returns the child's exit code.
Ending in_child(const std::function<int()>& body) {
    pid_t pid = ::fork();
    if (pid == 0) {
        std::signal(SIGPIPE, SIG_DFL);
        ::alarm(20);
        int rc = 99;
        try {
            rc = body();
        } catch (...) {
            rc = 98;
        }
        ::_exit(rc);
    }
    Ending e;
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return e;
    e.exited = WIFEXITED(status);
    e.code = e.exited ? WEXITSTATUS(status) : -1;
    e.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return e;
}

void check_clean(const Ending& e) {
    CHECK(e.signal != SIGPIPE);
    CHECK(e.exited);
    CHECK(e.code == 0);
}

// A writer that never reads and notes the handle_close() its failing write
// must bring (each class below only says how it writes).
template <class Base>
struct ClosingWriter : Base {
    using Base::Base;
    bool closed = false;
    bool readable() override { return false; }
    void handle_close() override {
        closed = true;
        this->close();
    }
};

// A Dispatcher over `fd` that writes until the write fails or handle_close().
struct Writer : ClosingWriter<asyncore::Dispatcher> {
    using ClosingWriter::ClosingWriter;
    void handle_write() override { send(std::string(65536, 'w')); }
};

// A DispatcherWithSend that keeps queueing more than the socket takes.
struct BufferedWriter : ClosingWriter<asyncore::DispatcherWithSend> {
    using ClosingWriter::ClosingWriter;
    bool writable() override { return true; }
    void handle_write() override { send(std::string(65536, 'b')); }
};

// An AsyncChat (sendmsg, or writev for a pipe) that keeps pushing.
struct ChatWriter : ClosingWriter<asyncore::AsyncChat> {
    using ClosingWriter::ClosingWriter;
    /// Over a pipe's write end (writev, not sendmsg).
    ChatWriter(ChannelMap& m, int pipe_fd) : ClosingWriter(m) {
        set_file(asyncore::Socket(pipe_fd));
        set_connected(true);
    }
    bool writable() override { return true; }
    void handle_write() override {
        push(std::string(65536, 'c'));
        push(std::string(100, 'd'));
        AsyncChat::handle_write();
    }
};

struct FileWriter : ClosingWriter<asyncore::FileDispatcher> {
    using ClosingWriter::ClosingWriter;
    void handle_write() override { send(std::string(65536, 'w')); }
};

}  // namespace

TEST_SUITE("signals") {
    TEST_CASE("maps, TLS contexts and TLS sockets leave SIGPIPE's disposition alone") {
        std::signal(SIGPIPE, SIG_DFL);
        {
            ChannelMap map;
            asyncore::AsyncSocket tls(AF_INET, SOCK_STREAM, test::client_ctx());
            (void)test::server_ctx();
            CHECK(sigpipe_is_default());
        }
        CHECK(sigpipe_is_default());
    }

    TEST_CASE("a Dispatcher writing to a peer that has gone gets handle_close, not SIGPIPE") {
        check_clean(in_child([] {
            ChannelMap map;
            auto [a, b] = test::connected_pair(AF_UNIX);
            Writer w(std::move(a), map);
            b.reset();
            test::run_until(map, [&] { return w.closed; });
            return w.closed ? 0 : 1;
        }));
    }

    TEST_CASE("a DispatcherWithSend and an AsyncChat writing to a peer that has gone close") {
        check_clean(in_child([] {
            ChannelMap map;
            auto [a, b] = test::connected_pair(AF_INET);
            auto [c, d] = test::connected_pair(AF_UNIX);
            BufferedWriter w(std::move(a), map);
            ChatWriter chat(std::move(c), map);
            b.reset();
            d.reset();
            test::run_until(map, [&] { return w.closed && chat.closed; });
            return w.closed && chat.closed ? 0 : 1;
        }));
    }

    TEST_CASE("an AsyncChat writing to a pipe without a reader gets handle_close") {
        check_clean(in_child([] {
            ChannelMap map;
            int fds[2];
            if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return 2;
            ::close(fds[0]);
            ChatWriter chat(map, fds[1]);
            test::run_until(map, [&] { return chat.closed; });
            return chat.closed ? 0 : 1;
        }));
    }

    TEST_CASE(
        "AsyncSocket sendall and send_msg to a peer that has gone throw, in tasks and blocking") {
        check_clean(in_child([] {
            ChannelMap map;
            auto [a, b] = test::connected_pair(AF_INET);
            auto [c, d] = test::connected_pair(AF_UNIX);
            asyncore::AsyncSocket to_gone(std::move(a));
            asyncore::AsyncSocket msg_to_gone(std::move(c));
            b.reset();
            d.reset();
            int codes = 0;
            auto send = [&]() -> Task<void> {
                try {
                    for (int i = 0; i < 1000; ++i)
                        co_await to_gone.sendall(std::string(65536, 's'));
                } catch (const std::system_error&) {
                    ++codes;
                }
            };
            auto send_msgs = [&]() -> Task<void> {
                try {
                    for (int i = 0; i < 1000; ++i)
                        co_await msg_to_gone.send_msg(std::string(65536, 'm'));
                } catch (const std::system_error&) {
                    ++codes;
                }
            };
            auto t1 = asyncore::spawn(send(), map);
            auto t2 = asyncore::spawn(send_msgs(), map);
            test::run_until(map, [&] { return t1.done() && t2.done(); });
            // Blocking mode, from a plain thread's point of view.
            auto [e, f] = test::connected_pair(AF_INET);
            asyncore::AsyncSocket blocking(std::move(e));
            f.reset();
            try {
                for (int i = 0; i < 1000; ++i)
                    blocking.sendall(std::string(65536, 'w')).wait();
            } catch (const std::system_error&) {
                ++codes;
            }
            return codes == 3 ? 0 : 1;
        }));
    }

    TEST_CASE("a FileDispatcher writing to a pipe without a reader gets handle_close") {
        check_clean(in_child([] {
            ChannelMap map;
            int fds[2];
            if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return 2;
            FileWriter w(fds[1], map);  // keeps a duplicate
            ::close(fds[1]);
            ::close(fds[0]);
            test::run_until(map, [&] { return w.closed; });
            return w.closed ? 0 : 1;
        }));
    }

    TEST_CASE("an AsyncFile write to a pipe without a reader throws EPIPE") {
        check_clean(in_child([] {
            ChannelMap map;
            int fds[2];
            if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return 2;
            ::close(fds[0]);
            asyncore::AsyncFile out(fds[1]);
            int code = 0;
            auto body = [&]() -> Task<void> {
                try {
                    co_await out.write("lost");
                } catch (const std::system_error& e) {
                    code = e.code().value();
                }
            };
            auto t = asyncore::spawn(body(), map);
            test::run_until(map, [&] { return t.done(); });
            return code == EPIPE ? 0 : 1;
        }));
    }

    TEST_CASE("a TLS socket writing to a peer that has gone gets an error, not SIGPIPE") {
        (void)test::tls_files();  // generated before the fork, shared with the child
        check_clean(in_child([] {
            ChannelMap map;
            auto [a, b] = test::connected_pair(AF_UNIX);
            asyncore::AsyncSocket server(std::move(a));
            asyncore::AsyncSocket client(std::move(b));
            bool failed = false;
            auto serve = [&]() -> Task<void> { co_await server.start_tls(test::server_ctx()); };
            Task<void> s;
            auto talk = [&]() -> Task<void> {
                co_await client.start_tls(test::client_ctx(), "localhost");
                co_await s;  // both ends through the handshake
                server.close();
                try {
                    for (int i = 0; i < 1000; ++i)
                        co_await client.sendall(std::string(65536, 't'));
                } catch (const std::system_error&) {
                    failed = true;
                }
            };
            s = asyncore::spawn(serve(), map);
            auto c = asyncore::spawn(talk(), map);
            test::run_until(map, [&] { return s.done() && c.done(); });
            return failed ? 0 : 1;
        }));
    }
}
