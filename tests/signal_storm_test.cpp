// EINTR never surfaces: with no-op SIGUSR1 and SIGCHLD handlers installed WITHOUT
// SA_RESTART (so every blocking system call it interrupts fails with EINTR
// instead of restarting), and another thread sending both to the loop
// thread every millisecond, real traffic through a Dispatcher echo, an
// AsyncChat line echo and AsyncSocket tasks arrives whole, and nothing
// reaches handle_error() or a task as an exception. A blocking-mode client
// on a thread of its own, signalled likewise, gets its echo too.

#include <asyncore/async_chat.hpp>
#include <asyncore/async_socket.hpp>
#include <asyncore/dispatcher.hpp>
#include <asyncore/dispatcher_with_send.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/task.hpp>

#include <doctest/doctest.h>

#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <exception>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/fixtures.hpp"
#include "support/task_fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::AsyncSocket;
using asyncore::ChannelMap;
using asyncore::Socket;
using asyncore::Task;

namespace {

std::atomic<long> signals_delivered{0};
extern "C" void count_signal(int) {
    signals_delivered.fetch_add(1, std::memory_order_relaxed);
}

// A signal's disposition while alive: a handler without SA_RESTART.
class NoRestartHandler {
  public:
    explicit NoRestartHandler(int signo) : signo_(signo) {
        struct sigaction sa {};
        sa.sa_handler = count_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;  // no SA_RESTART: interrupted calls fail with EINTR
        ::sigaction(signo_, &sa, &old_);
    }
    ~NoRestartHandler() { ::sigaction(signo_, &old_, nullptr); }
    NoRestartHandler(const NoRestartHandler&) = delete;
    NoRestartHandler& operator=(const NoRestartHandler&) = delete;

  private:
    int signo_;
    struct sigaction old_ {};
};

// Sends SIGUSR1 and SIGCHLD to each target thread every millisecond until
// destroyed.
class Storm {
  public:
    explicit Storm(std::vector<pthread_t> targets)
        : targets_(std::move(targets)), thread_([this] {
              while (!stop_.load()) {
                  for (pthread_t t : targets_) {
                      ::pthread_kill(t, SIGUSR1);
                      ::pthread_kill(t, SIGCHLD);
                  }
                  std::this_thread::sleep_for(1ms);
              }
          }) {}
    ~Storm() {
        stop_ = true;
        thread_.join();
    }
    Storm(const Storm&) = delete;
    Storm& operator=(const Storm&) = delete;

  private:
    std::vector<pthread_t> targets_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

std::string pattern(std::size_t n, int seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>((i * 7 + static_cast<std::size_t>(seed) * 131 + i / 251) & 0xff);
    return s;
}

// What went wrong on the loop's side, counted by every handle_error().
struct Errors {
    int count = 0;
    std::string first;
    void note(std::exception_ptr e) {
        if (count++ == 0) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& x) {
                first = x.what();
            } catch (...) {
                first = "?";
            }
        }
    }
};

struct EchoHandler : asyncore::DispatcherWithSend {
    EchoHandler(Socket s, ChannelMap& m, Errors& e)
        : DispatcherWithSend(std::move(s), m), errors(e) {}
    Errors& errors;
    void handle_read() override {
        char buf[65536];
        if (std::size_t n = recv_into(buf)) send(std::string_view(buf, n));
    }
    void handle_close() override { close(); }
    void handle_error(std::exception_ptr e) override {
        errors.note(e);
        DispatcherWithSend::handle_error(e);
    }
};

struct LineEcho : asyncore::AsyncChat {
    LineEcho(Socket s, ChannelMap& m, Errors& e) : AsyncChat(std::move(s), m), errors(e) {
        set_terminator("\n");
    }
    Errors& errors;
    void found_record(std::string_view line) override { push(std::string(line) + "\n"); }
    void handle_close() override { close(); }
    void handle_error(std::exception_ptr e) override {
        errors.note(e);
        AsyncChat::handle_error(e);
    }
};

// A listener making a T for each connection.
template <class T>
struct Server : asyncore::Dispatcher {
    Server(ChannelMap& m, Errors& e) : Dispatcher(m), errors(e) {
        create_socket(AF_INET, SOCK_STREAM);
        bind(test::loopback(AF_INET));
        listen(16);
    }
    Errors& errors;
    void handle_accepted(Socket s, const asyncore::Address&) override {
        asyncore::make<T>(std::move(s), map(), errors);
    }
    void handle_error(std::exception_ptr e) override {
        errors.note(e);
        Dispatcher::handle_error(e);
    }
};

// Sends `data` on `s` while another task reads the same amount back into `got`.
Task<void> write_all(AsyncSocket& s, const std::string& data) {
    for (std::size_t off = 0; off < data.size(); off += 65536)
        co_await s.sendall(std::string_view(data).substr(off, 65536));
}

Task<void> read_back(AsyncSocket& s, std::size_t n, std::string& got) {
    std::string buf;
    while (got.size() < n) {
        if (co_await s.recv_into(buf, 65536) == 0) break;
        got += buf;
    }
}

Task<void> serve_messages(AsyncSocket& listener) {
    auto [conn, addr] = co_await listener.accept();
    while (auto msg = co_await conn.recv_msg())
        co_await conn.send_msg(std::move(*msg));
}

}  // namespace

TEST_SUITE("signals") {
    TEST_CASE("SIGUSR1 and SIGCHLD every millisecond, without SA_RESTART, never surface as EINTR") {
        NoRestartHandler on_usr1(SIGUSR1);
        NoRestartHandler on_chld(SIGCHLD);
        signals_delivered = 0;
        ChannelMap map;
        Errors errors;
        Server<EchoHandler> echo(map, errors);
        Server<LineEcho> lines(map, errors);
        AsyncSocket msg_listener(AF_INET, SOCK_STREAM);
        msg_listener.bind(test::loopback(AF_INET));
        msg_listener.listen(4);

        const std::string bulk = pattern(8 << 20, 1);
        std::string lines_out;
        for (int i = 0; i < 20000; ++i)
            lines_out += "line " + std::to_string(i) + "\n";
        std::vector<std::string> messages;
        for (int i = 0; i < 2000; ++i)
            messages.push_back(pattern(static_cast<std::size_t>(i * 37 % 9000), i));
        const std::string blocking_data = pattern(4 << 20, 2);

        AsyncSocket to_echo(AF_INET, SOCK_STREAM);
        AsyncSocket to_lines(AF_INET, SOCK_STREAM);
        AsyncSocket to_msgs(AF_INET, SOCK_STREAM);
        std::string echo_back, lines_back;
        std::vector<std::string> messages_back;
        std::vector<Task<void>> tasks;
        auto echo_client = [&]() -> Task<void> {
            co_await to_echo.connect(echo.local_address());
            auto reader = asyncore::spawn(read_back(to_echo, bulk.size(), echo_back), map);
            co_await write_all(to_echo, bulk);
            co_await reader;
        };
        auto lines_client = [&]() -> Task<void> {
            co_await to_lines.connect(lines.local_address());
            auto reader = asyncore::spawn(read_back(to_lines, lines_out.size(), lines_back), map);
            co_await write_all(to_lines, lines_out);
            co_await reader;
        };
        auto msgs_client = [&]() -> Task<void> {
            co_await to_msgs.connect(msg_listener.local_address());
            for (const std::string& m : messages) {
                co_await to_msgs.send_msg(m);
                auto back = co_await to_msgs.recv_msg();
                messages_back.push_back(back ? std::move(*back) : std::string("<EOF>"));
            }
            to_msgs.shutdown(SHUT_WR);
        };

        // A blocking-mode client on its own thread, signalled too: its
        // poll() and system calls see EINTR as well.
        std::atomic<bool> blocking_ready{false};
        std::atomic<bool> blocking_done{false};
        std::string blocking_back;
        std::string blocking_error;
        const asyncore::Address echo_addr = echo.local_address();
        std::thread blocking([&] {
            while (!blocking_ready.load())
                std::this_thread::yield();
            try {
                AsyncSocket s(AF_INET, SOCK_STREAM);
                s.settimeout(30s);
                s.connect(echo_addr).wait();
                for (std::size_t off = 0; off < blocking_data.size(); off += 65536) {
                    s.sendall(std::string_view(blocking_data).substr(off, 65536)).wait();
                    blocking_back += s.recvall(65536).wait();
                }
            } catch (const std::exception& e) {
                blocking_error = e.what();
            }
            blocking_done = true;
        });

        {
            Storm storm({::pthread_self(), blocking.native_handle()});
            blocking_ready = true;
            tasks.push_back(asyncore::spawn(serve_messages(msg_listener), map));
            tasks.push_back(asyncore::spawn(echo_client(), map));
            tasks.push_back(asyncore::spawn(lines_client(), map));
            tasks.push_back(asyncore::spawn(msgs_client(), map));
            // The blocking client's echo needs the loop too.
            CHECK(test::run_until(
                map,
                [&] {
                    for (auto& t : tasks)
                        if (!t.done()) return false;
                    return blocking_done.load();
                },
                120s));
        }
        blocking.join();

        CHECK(signals_delivered.load() > 100);  // the storm did reach the threads
        CHECK(errors.count == 0);
        CHECK(errors.first == "");
        for (auto& t : tasks) {
            REQUIRE(t.done());
            std::exception_ptr e = t.state()->take_error();
            std::string what;
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& x) {
                    what = x.what();
                }
            }
            CHECK(what == "");
        }
        CHECK(blocking_error == "");
        CHECK(echo_back.size() == bulk.size());
        CHECK(echo_back == bulk);
        CHECK(lines_back == lines_out);
        CHECK(messages_back == messages);
        CHECK(blocking_back == blocking_data);
        MESSAGE("SIGUSR1 and SIGCHLD delivered " << signals_delivered.load() << " times");
    }
}
