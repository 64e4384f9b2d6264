// Dispatcher: CPython's test_asyncore (helper functions, dispatcher basics,
// the TestAPI cases over IPv4, IPv6 and Unix sockets) and the semantics the
// loop promises on top (connect order, disconnects, error routing).

#include <asyncore/dispatcher.hpp>

#include <asyncore/error.hpp>
#include <asyncore/loop.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <poll.h>

#include <doctest/doctest.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "support/core_fixtures.hpp"
#include "support/fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::Address;
using asyncore::ChannelMap;
using asyncore::Dispatcher;
using asyncore::Socket;

namespace {

std::string what(std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        return ex.what();
    } catch (...) {
        return "non-standard exception";
    }
}

int error_code_of(std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::system_error& ex) {
        return ex.code().value();
    } catch (...) {
        return -1;
    }
}

std::string hex_address(const void* p) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%#lx", reinterpret_cast<unsigned long>(p));
    return buf;
}

// -- asyncore's test doubles for the helper functions ----------------------

// Records which event method readwrite() called (test_readwrite's testobj).
struct EventProbe : Dispatcher {
    explicit EventProbe(ChannelMap& m) : Dispatcher(m) {}
    bool read = false, write = false, expt = false, closed = false, error_handled = false;
    void handle_read_event() override { read = true; }
    void handle_write_event() override { write = true; }
    void handle_expt_event() override { expt = true; }
    void handle_close() override { closed = true; }
    void handle_error(std::exception_ptr) override { error_handled = true; }
};

// Raises `E` from every event method (exitingdummy / crashingdummy).
template <class E>
struct Raising : Dispatcher {
    explicit Raising(ChannelMap& m, E e = E()) : Dispatcher(m), error(std::move(e)) {}
    E error;
    bool error_handled = false;
    bool closed = false;
    void handle_read_event() override { throw error; }
    void handle_write_event() override { throw error; }
    void handle_expt_event() override { throw error; }
    void handle_close() override {
        closed = true;
        throw error;
    }
    void handle_error(std::exception_ptr) override { error_handled = true; }
};

// A channel whose handle_write() fails and whose handle_error() fails too.
struct FailingErrorHandler : Dispatcher {
    FailingErrorHandler(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
    int errors = 0;
    bool readable() override { return false; }
    void handle_write() override { throw std::runtime_error("first"); }
    void handle_error(std::exception_ptr) override {
        ++errors;
        throw std::runtime_error("second");
    }
};

// A channel whose handler meets a reset connection, and whose
// handle_close() fails.
struct FailingCloseHandler : Dispatcher {
    FailingCloseHandler(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
    int closes = 0;
    bool readable() override { return false; }
    void handle_write() override {
        throw std::system_error(ECONNRESET, std::generic_category(), "send");
    }
    void handle_close() override {
        ++closes;
        throw std::runtime_error("in close");
    }
};

// Echoes what it reads and counts the bytes.
struct Echo : Dispatcher {
    Echo(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
    std::size_t echoed = 0;
    bool writable() override { return false; }
    void handle_read() override {
        std::string got = recv(4096);
        echoed += send(got);
    }
    void handle_close() override { close(); }
};

// -- TestAPI's handlers ------------------------------------------------------

// BaseTestHandler: every hook a test does not expect fails the test.
struct Strict : Dispatcher {
    explicit Strict(ChannelMap& m) : Dispatcher(m) {}
    Strict(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
    bool flag = false;
    void handle_accept() override { FAIL_CHECK("handle_accept not supposed to be called"); }
    void handle_accepted(Socket, const Address&) override {
        FAIL_CHECK("handle_accepted not supposed to be called");
    }
    void handle_connect() override { FAIL_CHECK("handle_connect not supposed to be called"); }
    void handle_expt() override { FAIL_CHECK("handle_expt not supposed to be called"); }
    void handle_close() override {
        FAIL_CHECK("handle_close not supposed to be called");
        close();
    }
    void handle_error(std::exception_ptr e) override {
        FAIL_CHECK("handle_error: " << what(e));
        close();
    }
};

// BaseServer: listens on loopback and hands each connection to a Handler
// owned by the map.
template <class Handler = Strict>
struct Server : Dispatcher {
    Server(int family, ChannelMap& m) : Dispatcher(m) {
        create_socket(family, SOCK_STREAM);
        set_reuse_addr();
        bind(test::loopback(family));
        listen(5);
    }
    Address address() const { return local_address(); }
    int accepted = 0;
    void handle_accepted(Socket s, const Address&) override {
        ++accepted;
        asyncore::make<Handler>(std::move(s), map());
    }
    void handle_error(std::exception_ptr e) override {
        FAIL_CHECK("server handle_error: " << what(e));
        close();
    }
};

// BaseClient: connect() is called by the test after construction, so that
// an immediate success (Unix sockets) reaches the most derived handle_connect.
struct Client : Strict {
    Client(int family, ChannelMap& m) : Strict(m) { create_socket(family, SOCK_STREAM); }
    void handle_connect() override {}
};

void wait_for_flag(ChannelMap& map, const Strict& d) {
    REQUIRE(test::run_until(map, [&] { return d.flag; }));
}

// test_asyncore's pattern: a TClient connects to a Server<Handler>, and the
// test passes once the client's handler set its flag.
template <class TClient, class Handler = Strict>
void expect_client_flag(int family) {
    ChannelMap map;
    Server<Handler> server(family, map);
    TClient client(family, map);
    client.connect(server.address());
    wait_for_flag(map, client);
}

// A listener whose unexpected callbacks fail the test.
struct StrictListener : Strict {
    StrictListener(int family, ChannelMap& m) : Strict(m) {
        create_socket(family, SOCK_STREAM);
        bind(test::loopback(family));
        listen(5);
    }
};

// The same with the roles swapped: a plain Client connects to a TListener,
// whose handler sets the flag.
template <class TListener>
void expect_server_flag(int family) {
    ChannelMap map;
    TListener server(family, map);
    Client client(family, map);
    client.connect(server.local_address());
    wait_for_flag(map, server);
}

// A free TCP port nobody listens on.
Address refused_address(int family) {
    Socket s = Socket::create(family, SOCK_STREAM);
    Address a = test::loopback(family);
    REQUIRE(::bind(s.fd(), a.native(), a.native_size()) == 0);
    socklen_t len = Address::capacity;
    ::getsockname(s.fd(), a.native(), &len);
    a.set_native_size(len);
    return a;  // s closes here: connecting is refused
}

// Accepts one connection from a listening socket, waiting for it.
Socket accept_one(int listener) {
    pollfd p{listener, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 5000) == 1);
    Socket s(::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    REQUIRE(s);
    return s;
}

}  // namespace

TEST_SUITE("dispatcher") {
    // -- HelperFunctionTests -----------------------------------------------------

    TEST_CASE(
        "read, write and exception let ExitNow through and route other errors to "
        "handle_error") {
        ChannelMap map;
        Raising<asyncore::ExitNow> exiting(map);
        CHECK_THROWS_AS(asyncore::read(exiting), asyncore::ExitNow);
        CHECK_THROWS_AS(asyncore::write(exiting), asyncore::ExitNow);
        CHECK_THROWS_AS(asyncore::exception(exiting), asyncore::ExitNow);
        CHECK_FALSE(exiting.error_handled);

        for (auto helper : {&asyncore::read, &asyncore::write, &asyncore::exception}) {
            Raising<std::runtime_error> crashing(map, std::runtime_error("crash"));
            CHECK_NOTHROW(helper(crashing));
            CHECK(crashing.error_handled);
        }
    }

    TEST_CASE("readwrite calls exactly the method each poll flag stands for") {
        struct Row {
            int flag;
            const char* expected;
        };
        for (Row row : {Row{POLLIN, "read"}, Row{POLLPRI, "expt"}, Row{POLLOUT, "write"},
                        Row{POLLERR, "closed"}, Row{POLLHUP, "closed"}, Row{POLLNVAL, "closed"}}) {
            CAPTURE(row.expected);
            ChannelMap map;
            EventProbe p(map);
            asyncore::readwrite(p, row.flag);
            CHECK(p.read == (std::string(row.expected) == "read"));
            CHECK(p.expt == (std::string(row.expected) == "expt"));
            CHECK(p.write == (std::string(row.expected) == "write"));
            CHECK(p.closed == (std::string(row.expected) == "closed"));
            CHECK_FALSE(p.error_handled);

            Raising<asyncore::ExitNow> exiting(map);
            CHECK_THROWS_AS(asyncore::readwrite(exiting, row.flag), asyncore::ExitNow);

            Raising<std::runtime_error> crashing(map, std::runtime_error("crash"));
            CHECK_FALSE(crashing.error_handled);
            asyncore::readwrite(crashing, row.flag);
            CHECK(crashing.error_handled);
        }
    }

    TEST_CASE("readwrite stops once a handler closes the socket, even if it opens another") {
        // The second socket gets the descriptor just freed: the rest of the
        // poll result belonged to the first one.
        struct Reopener : Dispatcher {
            using Dispatcher::Dispatcher;
            bool reopen = false;
            int old_fd = -1;
            int writes = 0;
            int closes = 0;
            void handle_read() override {
                old_fd = fileno();
                close();
                if (reopen) create_socket(AF_INET, SOCK_STREAM);
            }
            void handle_write() override { ++writes; }
            void handle_close() override { ++closes; }
        };
        for (bool reopen : {false, true}) {
            CAPTURE(reopen);
            ChannelMap map;
            Reopener d(map);
            d.reopen = reopen;
            d.create_socket(AF_INET, SOCK_STREAM);
            asyncore::readwrite(d, POLLIN | POLLOUT | POLLHUP);
            if (reopen) REQUIRE(d.fileno() == d.old_fd);  // the premise: the descriptor was reused
            CHECK(d.writes == 0);
            CHECK(d.closes == 0);
        }
    }

    TEST_CASE("the helpers turn every disconnect errno into handle_close, not handle_error") {
        for (int err : {ECONNRESET, ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE, EBADF}) {
            CAPTURE(err);
            CHECK(asyncore::is_disconnect_errno(err));
            ChannelMap map;
            Raising<std::system_error> d(map, std::system_error(err, std::generic_category()));
            test::CaptureFd out(1);
            asyncore::read(d);
            CHECK(d.closed);
            CHECK_FALSE(d.error_handled);
            // Raising's handle_close() throws too: logged, never swallowed.
            CHECK(out.text().rfind("error: handle_close() raised std::system_error: ", 0) == 0);
        }
    }

    // -- DispatcherTests -----------------------------------------------------------

    TEST_CASE("a new dispatcher is readable and writable") {
        ChannelMap map;
        Dispatcher d(map);
        CHECK(d.readable());
        CHECK(d.writable());
        CHECK(d.fileno() == -1);
        CHECK_FALSE(d.connected());
        CHECK_FALSE(d.accepting());
        CHECK_FALSE(d.connecting());
        CHECK(map.empty());
    }

    TEST_CASE("repr names the class and the object's address") {
        ChannelMap map;
        Dispatcher d(map);
        CHECK(d.repr() == "<asyncore::Dispatcher at " + hex_address(&d) + ">");
    }

    TEST_CASE("repr says listening or connected and shows the address") {
        ChannelMap map;
        Server<> server(AF_INET, map);
        CHECK(server.repr().find(" listening 127.0.0.1:0 at ") != std::string::npos);
        Client c(AF_INET, map);
        c.connect(server.address());
        REQUIRE(test::run_until(map, [&] { return c.connected(); }));
        CHECK(c.repr().find(" connected " + server.address().to_string() + " at ") !=
              std::string::npos);
    }

    TEST_CASE("log writes 'log: MESSAGE' lines to stderr") {
        ChannelMap map;
        Dispatcher d(map);
        test::CaptureFd err(2);
        d.log("Lovely spam! Wonderful spam!");
        d.log("I don't like spam!");
        CHECK(err.text() == "log: Lovely spam! Wonderful spam!\nlog: I don't like spam!\n");
    }

    TEST_CASE("log_info writes 'TYPE: MESSAGE' lines to stdout, 'info' by default") {
        ChannelMap map;
        Dispatcher d(map);
        test::CaptureFd out(1);
        d.log_info("Have you got anything without spam?", "EGGS");
        d.log_info("Why can't she have egg bacon spam and sausage?");
        d.log_info("THAT'S got spam in it!", "SPAM");
        CHECK(out.text() ==
              "EGGS: Have you got anything without spam?\n"
              "info: Why can't she have egg bacon spam and sausage?\n"
              "SPAM: THAT'S got spam in it!\n");
    }

    TEST_CASE("the default hooks warn about unhandled events once warnings are not ignored") {
        ChannelMap map;
        Dispatcher d(map);
        {
            test::CaptureFd out(1);
            d.handle_read();
            CHECK(out.text().empty());  // warnings are ignored by default
        }
        d.set_ignore_log_types({});
        CHECK_FALSE(d.log_type_ignored("warning"));
        test::CaptureFd out(1);
        d.handle_expt();
        d.handle_read();
        d.handle_write();
        d.handle_connect();
        CHECK(out.text() ==
              "warning: unhandled incoming priority event\n"
              "warning: unhandled read event\n"
              "warning: unhandled write event\n"
              "warning: unhandled connect event\n");
    }

    TEST_CASE("ignored log types are not printed") {
        ChannelMap map;
        Dispatcher d(map);
        d.set_ignore_log_types({"debug"});
        test::CaptureFd out(1);
        d.log_info("hidden", "debug");
        d.log_info("shown", "warning");
        CHECK(out.text() == "warning: shown\n");
    }

    // -- TestAPI over IPv4, IPv6 and Unix sockets ----------------------------------

    TEST_CASE_TEMPLATE("handle_connect is called when connect() completes", F, test::IPv4,
                       test::IPv6, test::Unix) {
        struct TestClient : Client {
            using Client::Client;
            bool was_connected = true;
            void handle_connect() override {
                was_connected = connected();
                flag = true;
            }
        };
        ChannelMap map;
        Server<> server(F::value, map);
        TestClient client(F::value, map);
        client.connect(server.address());
        CHECK(client.connecting() != client.flag);
        wait_for_flag(map, client);
        CHECK_FALSE(client.was_connected);  // handle_connect runs before connected() is true
        CHECK(client.connected());
        CHECK_FALSE(client.connecting());
    }

    TEST_CASE_TEMPLATE("handle_accept is called when a client connects", F, test::IPv4, test::IPv6,
                       test::Unix) {
        struct TestListener : StrictListener {
            using StrictListener::StrictListener;
            void handle_accept() override { flag = true; }
        };
        expect_server_flag<TestListener>(F::value);
    }

    TEST_CASE_TEMPLATE("handle_accepted is given the new connection", F, test::IPv4, test::IPv6,
                       test::Unix) {
        struct TestListener : StrictListener {
            using StrictListener::StrictListener;
            void handle_accept() override { Dispatcher::handle_accept(); }
            void handle_accepted(Socket sock, const Address& addr) override {
                CHECK(sock);
                if (addr.family() != AF_UNIX) CHECK(addr.port() != 0);
                CHECK(addr.family() == local_address().family());
                flag = true;
            }
        };
        expect_server_flag<TestListener>(F::value);
    }

    TEST_CASE_TEMPLATE("handle_read is called when data arrives", F, test::IPv4, test::IPv6,
                       test::Unix) {
        struct TestClient : Client {
            using Client::Client;
            void handle_read() override { flag = true; }
        };
        struct TestHandler : Strict {
            TestHandler(Socket s, ChannelMap& m) : Strict(std::move(s), m) {
                send(std::string(1024, 'x'));
            }
        };
        expect_client_flag<TestClient, TestHandler>(F::value);
    }

    TEST_CASE_TEMPLATE("handle_write is called when the socket can take data", F, test::IPv4,
                       test::IPv6, test::Unix) {
        struct TestClient : Client {
            using Client::Client;
            void handle_write() override { flag = true; }
        };
        expect_client_flag<TestClient>(F::value);
    }

    TEST_CASE_TEMPLATE("handle_close is called when the other end closes", F, test::IPv4,
                       test::IPv6, test::Unix) {
        struct TestClient : Client {
            using Client::Client;
            int closes = 0;
            void handle_read() override { recv(1024); }
            void handle_close() override {
                ++closes;
                flag = true;
                close();
            }
        };
        struct TestHandler : Strict {
            TestHandler(Socket s, ChannelMap& m) : Strict(std::move(s), m) { close(); }
        };
        ChannelMap map;
        Server<TestHandler> server(F::value, map);
        TestClient client(F::value, map);
        client.connect(server.address());
        wait_for_flag(map, client);
        CHECK(client.closes == 1);
        CHECK(client.fileno() == -1);
    }

    TEST_CASE_TEMPLATE("a connection broken while sending ends in handle_close", F, test::IPv4,
                       test::IPv6, test::Unix) {
        static const std::string data(128, '\0');
        struct TestClient : Client {
            using Client::Client;
            void handle_write() override { send(data); }
            void handle_close() override {
                flag = true;
                close();
            }
            void handle_expt() override {
                flag = true;
                close();
            }
        };
        struct TestHandler : Strict {
            TestHandler(Socket s, ChannelMap& m) : Strict(std::move(s), m) {}
            void handle_read() override {
                recv(data.size());
                close();
            }
            bool writable() override { return false; }
        };
        expect_client_flag<TestClient, TestHandler>(F::value);
    }

    TEST_CASE_TEMPLATE("handle_expt is called when out-of-band data arrives", F, test::IPv4,
                       test::IPv6) {
        struct TestClient : Client {
            using Client::Client;
            char urgent = 0;
            bool readable() override { return !flag; }
            void handle_read() override {}
            void handle_expt() override {
                CHECK(::recv(fileno(), &urgent, 1, MSG_OOB) == 1);
                flag = true;
            }
        };
        struct TestHandler : Strict {
            TestHandler(Socket s, ChannelMap& m) : Strict(std::move(s), m) {
                const char byte = static_cast<char>(244);
                CHECK(::send(fileno(), &byte, 1, MSG_OOB) == 1);
            }
            bool writable() override { return false; }
        };
        ChannelMap map;
        Server<TestHandler> server(F::value, map);
        TestClient client(F::value, map);
        client.connect(server.address());
        wait_for_flag(map, client);
        CHECK(client.urgent == static_cast<char>(244));
    }

    TEST_CASE_TEMPLATE("an exception from a handler reaches handle_error with the exception", F,
                       test::IPv4, test::IPv6, test::Unix) {
        struct TestClient : Client {
            using Client::Client;
            void handle_write() override { throw std::domain_error("division by zero"); }
            void handle_error(std::exception_ptr e) override {
                flag = true;
                CHECK_THROWS_AS(std::rethrow_exception(e), std::domain_error);
                close();
            }
        };
        expect_client_flag<TestClient>(F::value);
    }

    TEST_CASE_TEMPLATE("connection attributes follow the connection's life", F, test::IPv4,
                       test::IPv6, test::Unix) {
        ChannelMap map;
        Server<> server(F::value, map);
        Client client(F::value, map);
        client.connect(server.address());
        CHECK_FALSE(server.connected());
        CHECK(server.accepting());
        CHECK_FALSE(client.accepting());

        asyncore::loop(10ms, map, 100);
        CHECK_FALSE(server.connected());
        CHECK(server.accepting());
        CHECK(client.connected());
        CHECK_FALSE(client.accepting());

        client.close();
        CHECK_FALSE(server.connected());
        CHECK(server.accepting());
        CHECK_FALSE(client.connected());
        CHECK_FALSE(client.accepting());

        server.close();
        CHECK_FALSE(server.connected());
        CHECK_FALSE(server.accepting());
    }

    TEST_CASE_TEMPLATE("create_socket makes a non-blocking, close-on-exec stream socket", F,
                       test::IPv4, test::IPv6, test::Unix) {
        ChannelMap map;
        Dispatcher s(map);
        s.create_socket(F::value, SOCK_STREAM);
        int type = 0, domain = 0;
        socklen_t len = sizeof type;
        REQUIRE(::getsockopt(s.fileno(), SOL_SOCKET, SO_TYPE, &type, &len) == 0);
        len = sizeof domain;
        REQUIRE(::getsockopt(s.fileno(), SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0);
        CHECK(type == SOCK_STREAM);
        CHECK(domain == F::value);
        CHECK((::fcntl(s.fileno(), F_GETFL) & O_NONBLOCK) != 0);
        CHECK((::fcntl(s.fileno(), F_GETFD) & FD_CLOEXEC) != 0);
        CHECK(map.find(s.fileno()) == &s);
    }

    TEST_CASE_TEMPLATE("binding a second socket to a bound address fails", F, test::IPv4,
                       test::IPv6, test::Unix) {
        ChannelMap map;
        Dispatcher s1(map);
        s1.create_socket(F::value, SOCK_STREAM);
        s1.bind(test::loopback(F::value));
        s1.listen(5);
        Dispatcher s2(map);
        s2.create_socket(F::value, SOCK_STREAM);
        try {
            s2.bind(s1.local_address());
            FAIL("bind to an address in use succeeded");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::address_in_use);
        }
    }

    TEST_CASE_TEMPLATE("set_reuse_addr sets SO_REUSEADDR", F, test::IPv4, test::IPv6) {
        auto reuse = [](int fd) {
            int on = 0;
            socklen_t len = sizeof on;
            REQUIRE(::getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, &len) == 0);
            return on != 0;
        };
        ChannelMap map;
        Dispatcher s(Socket::create(F::value, SOCK_STREAM), map);
        CHECK_FALSE(s.connected());  // an unconnected socket is accepted (ENOTCONN)
        CHECK_FALSE(reuse(s.fileno()));
        s.close();
        s.create_socket(F::value, SOCK_STREAM);
        s.set_reuse_addr();
        CHECK(reuse(s.fileno()));
    }

    TEST_CASE_TEMPLATE("set_reuse_port lets two listeners share one address and port", F,
                       test::IPv4, test::IPv6) {
        ChannelMap map;
        Dispatcher first(map);
        first.create_socket(F::value, SOCK_STREAM);
        first.set_reuse_port();
        first.bind(test::loopback(F::value));
        first.listen(16);
        Dispatcher second(map);
        second.create_socket(F::value, SOCK_STREAM);
        second.set_reuse_port();
        second.bind(first.local_address());  // without SO_REUSEPORT: EADDRINUSE, as above
        second.listen(16);
        CHECK(second.local_address() == first.local_address());
    }

    TEST_CASE_TEMPLATE("a client that connects and resets at once does not upset the server", F,
                       test::IPv4, test::IPv6) {
        struct Handler : Dispatcher {
            Handler(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
            bool writable() override { return false; }
            void handle_read() override { recv(1024); }
            void handle_close() override { close(); }
            void handle_error(std::exception_ptr e) override {
                FAIL_CHECK("handler error: " << what(e));
                close();
            }
        };
        ChannelMap map;
        Server<Handler> server(F::value, map);
        {
            Socket s = Socket::create(F::value, SOCK_STREAM);
            auto to = server.address();
            REQUIRE(
                (::connect(s.fd(), to.native(), to.native_size()) == 0 || errno == EINPROGRESS));
            pollfd p{s.fd(), POLLOUT, 0};
            REQUIRE(::poll(&p, 1, 5000) == 1);
            linger lg{1, 0};
            REQUIRE(::setsockopt(s.fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
        }  // closed with SO_LINGER 0: an RST instead of a FIN
        asyncore::loop(100ms, map, 5);
        CHECK(server.accepting());
        CHECK(map.find(server.fileno()) == &server);
        CHECK(map.size() == 1);  // the reset connection, if accepted at all, was closed
    }

    // -- Semantics beyond test_asyncore ----------------------------------------------

    TEST_CASE_TEMPLATE("a refused connect reaches handle_error then closes, never handle_connect",
                       F, test::IPv4, test::IPv6) {
        struct Refused : Dispatcher {
            explicit Refused(ChannelMap& m) : Dispatcher(m) {}
            std::vector<std::string> calls;
            int error = 0;
            void handle_connect() override { calls.push_back("connect"); }
            void handle_error(std::exception_ptr e) override {
                calls.push_back("error");
                error = error_code_of(e);
                Dispatcher::handle_error(e);
            }
            void handle_close() override {
                calls.push_back("close");
                Dispatcher::handle_close();
            }
            void log_info(std::string_view, std::string_view) override {}
        };
        ChannelMap map;
        Refused d(map);
        d.create_socket(F::value, SOCK_STREAM);
        d.connect(refused_address(F::value));
        asyncore::loop(1s, map);  // returns once the channel closed
        CHECK(d.calls == std::vector<std::string>{"error", "close"});
        CHECK(d.error == ECONNREFUSED);
        CHECK_FALSE(d.connected());
        CHECK(d.fileno() == -1);
    }

    TEST_CASE_TEMPLATE("a handle_connect that closes its channel ends the event: no handle_write",
                       F, test::IPv4, test::IPv6) {
        struct Quitter : Dispatcher {
            explicit Quitter(ChannelMap& m) : Dispatcher(m) {}
            int connects = 0;
            int writes = 0;
            void handle_connect() override {
                ++connects;
                close();
            }
            void handle_write() override { ++writes; }
            void handle_read() override {}
        };
        ChannelMap map;
        auto server = test::listen_on(F::value);
        Quitter d(map);
        d.create_socket(F::value, SOCK_STREAM);
        d.connect(server.addr);
        REQUIRE(test::run_until(map, [&] { return d.connects > 0; }));
        test::run_passes(map, 2);
        CHECK(d.writes == 0);
        CHECK_FALSE(d.connected());
    }

    TEST_CASE_TEMPLATE("a handle_connect that reconnects on a new socket gets handle_connect again",
                       F, test::IPv4, test::IPv6) {
        // The redial idiom: close, create_socket (the lowest free descriptor:
        // most likely the same), connect. The second connection is in
        // progress, not connected, when the first handle_connect returns.
        struct Redialer : Dispatcher {
            Redialer(ChannelMap& m, Address a) : Dispatcher(m), target(std::move(a)) {}
            Address target;
            int connects = 0;
            int early_writes = 0;
            void handle_connect() override {
                if (++connects > 1) return;
                close();
                create_socket(target.family(), SOCK_STREAM);
                connect(target);
            }
            void handle_write() override {
                if (connects < 2) ++early_writes;
            }
            void handle_read() override {}
        };
        ChannelMap map;
        auto server = test::listen_on(F::value);
        Redialer d(map, server.addr);
        d.create_socket(F::value, SOCK_STREAM);
        d.connect(server.addr);
        REQUIRE(test::run_until(
            map, [&] { return d.connects >= 2; }, 2s));
        CHECK(d.early_writes == 0);
        CHECK(d.connected());
    }

    TEST_CASE("an immediate connect failure throws from connect()") {
        ChannelMap map;
        // A Unix socket bound but not listening refuses at once.
        Socket bound = Socket::create(AF_UNIX, SOCK_STREAM);
        Address path = test::loopback(AF_UNIX);
        REQUIRE(::bind(bound.fd(), path.native(), path.native_size()) == 0);
        Dispatcher d(map);
        d.create_socket(AF_UNIX, SOCK_STREAM);
        try {
            d.connect(path);
            FAIL("connect to a socket that does not listen succeeded");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::connection_refused);
        }
    }

    TEST_CASE("the default handle_error logs one condensed line and closes the channel") {
        struct Faulty : Dispatcher {
            Faulty(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
            void handle_write() override { throw std::runtime_error("boom"); }
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Faulty f(std::move(a), map);
        std::string repr = f.repr();
        test::CaptureFd out(1);
        map.run_pass(1s);
        CHECK(f.fileno() == -1);
        CHECK(out.text() == "error: uncaptured exception, closing channel " + repr +
                                " (std::runtime_error: boom)\n");
    }

    TEST_CASE("a handle_error that throws is logged with the channel's repr and closes it") {
        ChannelMap map;
        CHECK(map.error_policy() == asyncore::ErrorPolicy::log_and_close);
        auto [a, b] = test::connected_pair(AF_UNIX);
        FailingErrorHandler w(std::move(a), map);
        auto [c, d] = test::connected_pair(AF_UNIX);
        Echo other(std::move(c), map);
        std::string repr = w.repr();
        test::CaptureFd out(1);
        CHECK_NOTHROW(map.run_pass(1s));
        CHECK(w.fileno() == -1);
        CHECK(out.text() ==
              "error: handle_error() raised std::runtime_error: second, closing channel " + repr +
                  "\n");
        // The loop goes on serving the other channel.
        test::write_all(d.fd(), "ping");
        REQUIRE(test::run_until(map, [&] { return other.echoed == 4; }));
    }

    TEST_CASE("a handle_close that throws is logged with the channel's repr and closes it") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        FailingCloseHandler w(std::move(a), map);
        std::string repr = w.repr();
        test::CaptureFd out(1);
        CHECK_NOTHROW(map.run_pass(1s));
        CHECK(w.closes == 1);
        CHECK(w.fileno() == -1);
        CHECK(out.text() ==
              "error: handle_close() raised std::runtime_error: in close, closing channel " + repr +
                  "\n");
    }

    TEST_CASE(
        "under ErrorPolicy::propagate a handle_error exception leaves loop(), as asyncore's") {
        ChannelMap map;
        map.set_error_policy(asyncore::ErrorPolicy::propagate);
        auto [a, b] = test::connected_pair(AF_UNIX);
        FailingErrorHandler w(std::move(a), map);
        test::CaptureFd out(1);
        CHECK_THROWS_WITH_AS(asyncore::loop(1s, map), "second", std::runtime_error);
        CHECK(w.errors == 1);
        // asyncore leaves the channel as it was: still open, still in the map.
        CHECK(w.fileno() >= 0);
        CHECK(map.find(w.fileno()) == &w);
        CHECK(out.text().empty());
        // The next pass raises again, as asyncore.loop() would.
        CHECK_THROWS_WITH_AS(map.run_pass(1s), "second", std::runtime_error);
        CHECK(w.errors == 2);
    }

    TEST_CASE("under ErrorPolicy::propagate a handle_close exception leaves loop()") {
        ChannelMap map;
        map.set_error_policy(asyncore::ErrorPolicy::propagate);
        auto [a, b] = test::connected_pair(AF_UNIX);
        FailingCloseHandler w(std::move(a), map);
        CHECK_THROWS_WITH_AS(asyncore::loop(1s, map), "in close", std::runtime_error);
        CHECK(w.closes == 1);
        CHECK(w.fileno() >= 0);
    }

    TEST_CASE("under ErrorPolicy::propagate the read/write/readwrite helpers rethrow") {
        ChannelMap map;
        map.set_error_policy(asyncore::ErrorPolicy::propagate);
        Raising<std::runtime_error> r(map, std::runtime_error("crash"));
        struct Rethrowing : Raising<std::runtime_error> {
            using Raising::Raising;
            void handle_error(std::exception_ptr e) override { std::rethrow_exception(e); }
        };
        Rethrowing rr(map, std::runtime_error("crash"));
        CHECK_NOTHROW(asyncore::read(r));  // handle_error took it
        CHECK(r.error_handled);
        CHECK_THROWS_WITH_AS(asyncore::read(rr), "crash", std::runtime_error);
        CHECK_THROWS_WITH_AS(asyncore::write(rr), "crash", std::runtime_error);
        CHECK_THROWS_WITH_AS(asyncore::readwrite(rr, POLLIN), "crash", std::runtime_error);
        // A disconnect errno goes to handle_close(), whose exception propagates too.
        Raising<std::system_error> reset(
            map, std::system_error(ECONNRESET, std::generic_category(), "reset"));
        CHECK_THROWS_AS(asyncore::read(reset), std::system_error);
        CHECK(reset.closed);
        CHECK_FALSE(reset.error_handled);
    }

    TEST_CASE("under ErrorPolicy::propagate a readable() exception leaves loop()") {
        struct BadInterest : Dispatcher {
            BadInterest(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
            bool errors = false;
            bool readable() override { throw std::logic_error("readable"); }
            void handle_error(std::exception_ptr) override { errors = true; }
        };
        for (auto policy :
             {asyncore::ErrorPolicy::log_and_close, asyncore::ErrorPolicy::propagate}) {
            ChannelMap map;
            map.set_error_policy(policy);
            auto [a, b] = test::connected_pair(AF_UNIX);
            BadInterest bad(std::move(a), map);
            if (policy == asyncore::ErrorPolicy::propagate) {
                CHECK_THROWS_WITH_AS(map.run_pass(0s), "readable", std::logic_error);
                CHECK_FALSE(bad.errors);
            } else {
                CHECK_NOTHROW(map.run_pass(0s));
                CHECK(bad.errors);  // the default goes to handle_error()
            }
        }
    }

    TEST_CASE_TEMPLATE("EOF from the peer becomes handle_close", F, test::IPv4, test::IPv6,
                       test::Unix) {
        struct Reader : Dispatcher {
            Reader(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
            std::string got;
            int closes = 0;
            bool writable() override { return false; }
            void handle_read() override { got += recv(4096); }
            void handle_close() override {
                ++closes;
                close();
            }
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(F::value);
        Reader r(std::move(a), map);
        test::write_all(b.fd(), "last words");
        b.reset();
        asyncore::loop(1s, map);
        CHECK(r.got == "last words");
        CHECK(r.closes == 1);
    }

    TEST_CASE_TEMPLATE("a connection reset by the peer becomes handle_close", F, test::IPv4,
                       test::IPv6) {
        struct Reader : Dispatcher {
            Reader(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
            int closes = 0;
            bool writable() override { return false; }
            void handle_read() override { recv(4096); }
            void handle_close() override {
                ++closes;
                close();
            }
            void handle_error(std::exception_ptr e) override {
                FAIL_CHECK("a reset must not be an error: " << what(e));
                close();
            }
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(F::value);
        Reader r(std::move(a), map);
        linger lg{1, 0};
        REQUIRE(::setsockopt(b.fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
        b.reset();
        asyncore::loop(1s, map);
        CHECK(r.closes == 1);
    }

    TEST_CASE("sending to a peer that has gone becomes handle_close") {
        struct Sender : Dispatcher {
            Sender(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
            int closes = 0;
            void handle_close() override {
                ++closes;
                close();
            }
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Sender s(std::move(a), map);
        b.reset();
        CHECK(s.send("into the void") == 0);  // EPIPE
        CHECK(s.closes == 1);
        CHECK(s.fileno() == -1);
    }

    TEST_CASE("every disconnect errno thrown by a handler becomes handle_close") {
        for (int err : {ECONNRESET, ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE, EBADF}) {
            CAPTURE(asyncore::strerror_text(err));
            struct Dropped : Dispatcher {
                Dropped(Socket s, ChannelMap& m, int e) : Dispatcher(std::move(s), m), err(e) {}
                int err;
                int closes = 0;
                bool writable() override { return false; }
                void handle_read() override {
                    throw std::system_error(err, std::generic_category());
                }
                void handle_close() override {
                    ++closes;
                    close();
                }
                void handle_error(std::exception_ptr e) override {
                    FAIL_CHECK("a disconnect must not be an error: " << what(e));
                    close();
                }
            };
            ChannelMap map;
            auto [a, b] = test::connected_pair(AF_UNIX);
            Dropped d(std::move(a), map, err);
            test::write_all(b.fd(), "x");
            asyncore::loop(1s, map);
            CHECK(d.closes == 1);
        }
    }

    TEST_CASE("an exception from any handler reaches handle_error and other channels are served") {
        // An echo pair that must keep working while the faulty channel fails.
        struct Echo : Dispatcher {
            Echo(Socket s, ChannelMap& m) : Dispatcher(std::move(s), m) {}
            bool writable() override { return false; }
            void handle_read() override { send(recv(4096)); }
            void handle_close() override { close(); }
        };
        struct Faulty : Dispatcher {
            Faulty(ChannelMap& m, std::string w) : Dispatcher(m), where(std::move(w)) {}
            std::string where;
            int errors = 0;
            void boom(const char* here) {
                if (where == here) throw std::runtime_error(here);
            }
            bool readable() override {
                boom("readable");
                return true;
            }
            bool writable() override {
                boom("writable");
                return !connected() || where == "write";
            }
            void handle_read() override {
                boom("read");
                recv(4096);
            }
            void handle_write() override { boom("write"); }
            void handle_connect() override { boom("connect"); }
            void handle_accept() override { boom("accept"); }
            void handle_close() override {
                boom("close");
                close();
            }
            void handle_error(std::exception_ptr e) override {
                ++errors;
                CHECK(what(e) == where);
                close();
            }
        };
        for (const char* where :
             {"readable", "writable", "read", "write", "connect", "accept", "close"}) {
            CAPTURE(where);
            ChannelMap map;
            auto [e1, e2] = test::connected_pair(AF_UNIX);
            Echo echo(std::move(e1), map);
            test::Listener l = test::listen_on(AF_INET);
            Faulty f(map, where);
            Socket peer;
            if (std::string(where) == "accept") {
                f.create_socket(AF_INET, SOCK_STREAM);
                f.bind(test::loopback(AF_INET));
                f.listen(5);
                peer = Socket::create(AF_INET, SOCK_STREAM);
                auto to = f.local_address();
                ::connect(peer.fd(), to.native(), to.native_size());
            } else {
                f.create_socket(AF_INET, SOCK_STREAM);
                f.connect(l.addr);
                peer = accept_one(l.sock.fd());
                if (std::string(where) == "read") test::write_all(peer.fd(), "data");
                if (std::string(where) == "close") peer.reset();
            }
            REQUIRE(test::run_until(map, [&] { return f.errors > 0; }));
            CHECK(f.errors == 1);
            CHECK(f.fileno() == -1);
            test::write_all(e2.fd(), "still served");
            std::string back;
            REQUIRE(test::run_until(map, [&] {
                char buf[64];
                ssize_t n = ::recv(e2.fd(), buf, sizeof buf, 0);
                if (n > 0) back.append(buf, static_cast<std::size_t>(n));
                return back == "still served";
            }));
        }
    }

    TEST_CASE("a dispatcher built on an accepted socket is connected to the peer's address") {
        ChannelMap map;
        test::Listener l = test::listen_on(AF_INET);
        Socket c = Socket::create(AF_INET, SOCK_STREAM);
        ::connect(c.fd(), l.addr.native(), l.addr.native_size());
        Dispatcher d(accept_one(l.sock.fd()), map);
        CHECK(d.connected());
        Address client_side;
        socklen_t len = Address::capacity;
        ::getsockname(c.fd(), client_side.native(), &len);
        client_side.set_native_size(len);
        CHECK(d.addr() == client_side);
        CHECK((::fcntl(d.fileno(), F_GETFL) & O_NONBLOCK) != 0);
        CHECK(map.find(d.fileno()) == &d);
    }

    TEST_CASE("accept() is empty when no connection is pending") {
        ChannelMap map;
        Server<> server(AF_INET, map);
        CHECK_FALSE(server.accept().has_value());
        CHECK(server.accepting());
    }

    TEST_CASE("recv() with nothing ready throws EAGAIN, as asyncore's BlockingIOError") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Dispatcher d(std::move(a), map);
        try {
            d.recv(16);
            FAIL("recv on an empty socket returned");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::resource_unavailable_try_again);
        }
        CHECK(d.fileno() >= 0);
    }

    TEST_CASE("recv() and recv_into() return what the peer sent") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Dispatcher d(std::move(a), map);
        test::write_all(b.fd(), "hello world");
        char buf[5];
        CHECK(d.recv_into(buf) == 5);
        CHECK(std::string(buf, 5) == "hello");
        CHECK(d.recv(100) == " world");
    }

    TEST_CASE("del_channel removes a channel from its map without closing it") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Dispatcher d(std::move(a), map);
        int fd = d.fileno();
        d.del_channel();
        CHECK(map.empty());
        CHECK(d.fileno() == fd);
        CHECK(::fcntl(fd, F_GETFD) >= 0);
        d.add_channel();
        CHECK(map.find(fd) == &d);
        d.close();
        d.close();  // twice is fine
        CHECK(::fcntl(fd, F_GETFD) < 0);
    }

    TEST_CASE("set_socket replaces and closes the previous socket") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        auto [c, e] = test::connected_pair(AF_UNIX);
        Dispatcher d(map);
        d.set_socket(std::move(a));
        int first = d.fileno();
        d.set_socket(std::move(c));
        CHECK(map.size() == 1);
        CHECK(map.find(d.fileno()) == &d);
        CHECK(map.find(first) == nullptr);
        CHECK(test::read_to_eof(b.fd()).empty());
    }

    TEST_CASE("the destructor of a dispatcher that lives on the stack closes its socket") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        {
            Dispatcher d(std::move(a), map);
            CHECK(map.size() == 1);
        }
        CHECK(map.empty());
        CHECK(test::read_to_eof(b.fd()).empty());
    }

}  // TEST_SUITE
