#include <asyncore/async_chat.hpp>

#include <doctest/doctest.h>

#include <asyncore/error.hpp>

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "support/chat_fixtures.hpp"
#include "support/fixtures.hpp"

using asyncore::AsyncChat;
using asyncore::ChannelMap;
using asyncore::Socket;
using asyncore::Terminator;
using test::RecordingChat;

namespace doctest {
template <>
struct StringMaker<std::vector<std::string>> {
    static String convert(const std::vector<std::string>& v) {
        std::string s = "{";
        for (const auto& e : v) {
            s += " \"";
            for (char ch : e.substr(0, 40)) {
                s += ch == '\r' ? "\\r" : ch == '\n' ? "\\n" : std::string(1, ch);
            }
            s += e.size() > 40 ? "...\"" : "\"";
        }
        return (s + " }").c_str();
    }
};
}  // namespace doctest

namespace {

const std::string server_quit = "QUIT\n";

// test_asynchat's round trip: the client connects to a listener (pushing
// before the connection is up), pushes `pushes`, and the peer reads up to
// QUIT, then echoes what came before it `chunk` bytes at a time.
std::vector<std::string> echo_round_trip(const Terminator& term,
                                         const std::vector<std::string>& pushes,
                                         std::size_t chunk) {
    ChannelMap map;
    test::Listener l = test::listen_on(AF_INET);
    RecordingChat c(map);
    c.create_socket();
    c.connect(l.addr);
    c.set_terminator(term);
    for (const auto& p : pushes)
        c.push(p);
    c.push(server_quit);
    Socket peer = test::accept_one(l);
    std::string got;
    REQUIRE(test::run_until(map, [&] {
        test::drain(peer.fd(), got);
        return got.find(server_quit) != std::string::npos;
    }));
    got.erase(got.find(server_quit));
    REQUIRE(test::send_in_chunks(map, peer.fd(), c.fileno(), got, chunk));
    CHECK(c.reads >= static_cast<int>((got.size() + chunk - 1) / chunk));
    return c.contents;
}

template <class T>
concept pushable = requires(AsyncChat& c, T v) {
    c.push(v);
};

// A protocol of length-prefixed values: "N\r\n" (or "N\n") then N bytes.
// Switches the terminator inside found_terminator().
struct Framed : RecordingChat {
    Framed(Socket s, ChannelMap& m, std::string line)
        : RecordingChat(std::move(s), m), line_(line) {
        set_terminator(line_);
    }
    void found_terminator() override {
        std::string rec = std::exchange(buffer, {});
        if (get_terminator().kind() != Terminator::Kind::string) {
            contents.push_back(rec);
            set_terminator(line_);
        } else if (int n = std::stoi(rec); n > 0) {
            set_terminator(n);
        } else {
            contents.emplace_back();  // a count of 0 would mean "no terminator"
        }
    }
    std::string line_;
};

// A channel on one end of a socket pair; the test writes to the other end.
struct Pair {
    ChannelMap map;
    std::pair<Socket, Socket> socks = test::connected_pair(AF_UNIX);
    Socket& peer = socks.second;
    RecordingChat chat{std::move(socks.first), map};

    // Writes `data` and lets the channel read it in exactly one read.
    void one_read(std::string_view data) {
        test::write_all(peer.fd(), std::string(data));
        REQUIRE(test::wait_unread(chat.fileno(), data.size()));
        asyncore::read(chat);
    }
};

// Echoes each line as "echo: LINE\n" with push(), noting what stayed queued
// after it; a line "close", "discard" or "throw" then does that.
struct LineEcho : AsyncChat {
    LineEcho(Socket s, ChannelMap& m) : AsyncChat(std::move(s), m) {
        set_terminator("\n");
        set_ignore_log_types({"warning", "error"});
    }
    std::vector<std::size_t> queued_after_push;
    void found_record(std::string_view line) override {
        push("echo: " + std::string(line) + "\n");
        queued_after_push.push_back(output_queued());
        if (line == "close") {
            close();
        } else if (line == "discard") {
            discard_buffers();
        } else if (line == "throw") {
            throw std::runtime_error("a bad line");
        }
    }
};

// Writes `lines` in one write, lets `chat` read them in one read, and
// returns what the peer then receives (to EOF if `to_eof`).
std::string one_read_replies(ChannelMap& map, LineEcho& chat, Socket& peer,
                             const std::string& lines, bool to_eof) {
    test::write_all(peer.fd(), lines);
    REQUIRE(test::wait_unread(chat.fileno(), lines.size()));
    asyncore::read(chat);
    std::string got;
    bool open = true;
    REQUIRE(test::run_until(map, [&] {
        open = test::drain(peer.fd(), got);
        return to_eof ? !open : got.size() >= lines.size();
    }));
    return got;
}

}  // namespace

TEST_SUITE("async_chat") {
    // -- test_asynchat ---------------------------------------------------------------

    TEST_CASE("line terminators of one to three bytes are found in echoes of 1, 2 and 3 bytes") {
        for (const char* term : {"\n", "\r\n", "qqq"}) {
            for (std::size_t chunk : {1u, 2u, 3u}) {
                CAPTURE(term);
                CAPTURE(chunk);
                std::string t = term;
                auto got =
                    echo_round_trip(term, {"hello ", "world" + t, "I'm not dead yet!" + t}, chunk);
                CHECK(got == std::vector<std::string>{"hello world", "I'm not dead yet!"});
            }
        }
    }

    TEST_CASE("a numeric terminator delivers exactly that many bytes, then collects the rest") {
        const std::string data = "hello world, I'm not dead yet!\n";
        for (int n : {1, 6}) {
            CAPTURE(n);
            Pair p;
            p.chat.set_terminator(n);
            p.one_read(data);
            CHECK(p.chat.contents == std::vector<std::string>{data.substr(0, n)});
            CHECK(p.chat.get_terminator().count() == 0);
            CHECK(p.chat.buffer == data.substr(n));
        }
        for (std::size_t n : {1u, 6u}) {
            auto got = echo_round_trip(static_cast<int>(n), {data}, 3);
            CHECK(got == std::vector<std::string>{data.substr(0, n)});
        }
    }

    TEST_CASE("with no terminator every byte is collected and no record ends") {
        const std::string data = "hello world, I'm not dead yet!\n";
        Pair p;
        p.chat.set_terminator(std::nullopt);
        p.one_read(data.substr(0, 10));
        p.one_read(data.substr(10));
        CHECK(p.chat.contents.empty());
        CHECK(p.chat.buffer == data);
        CHECK(p.chat.get_terminator().kind() == Terminator::Kind::none);
        CHECK(echo_round_trip(std::nullopt, {data}, 2).empty());
    }

    TEST_CASE("a simple producer with buffer size 8 is sent whole and in order") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        RecordingChat c(std::move(a), map);
        c.set_terminator("\n");
        const std::string data = "hello world\nI'm not dead yet!\n";
        c.push_with_producer(std::make_unique<asyncore::SimpleProducer>(data + server_quit, 8));
        std::string got;
        REQUIRE(test::run_until(map, [&] {
            test::drain(b.fd(), got);
            return got.size() >= data.size() + server_quit.size();
        }));
        CHECK(got == data + server_quit);
        CHECK(c.output_items() == 0);
        REQUIRE(test::send_in_chunks(map, b.fd(), c.fileno(), data, 3));
        CHECK(c.contents == std::vector<std::string>{"hello world", "I'm not dead yet!"});
    }

    TEST_CASE("a plain string is accepted as a producer") {
        const std::string data = "hello world\nI'm not dead yet!\n";
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        RecordingChat c(std::move(a), map);
        c.push_with_producer(data + server_quit);
        std::string got;
        REQUIRE(test::run_until(map, [&] {
            test::drain(b.fd(), got);
            return got.size() >= data.size() + server_quit.size();
        }));
        CHECK(got == data + server_quit);
        CHECK(echo_round_trip("\n", {data}, 1) ==
              std::vector<std::string>{"hello world", "I'm not dead yet!"});
    }

    TEST_CASE("empty lines are empty records, found without a collect call") {
        auto got = echo_round_trip("\n", {"hello world\n\nI'm not dead yet!\n"}, 2);
        CHECK(got == std::vector<std::string>{"hello world", "", "I'm not dead yet!"});
        Pair p;
        p.chat.set_terminator("\r\n");
        p.one_read("\r\n\r\n");
        CHECK(p.chat.contents == std::vector<std::string>{"", ""});
        CHECK(p.chat.collects == 0);
    }

    TEST_CASE("close_when_done closes after the queued data and before any reply") {
        ChannelMap map;
        test::Listener l = test::listen_on(AF_INET);
        RecordingChat c(map);
        c.create_socket();
        c.connect(l.addr);
        c.set_terminator("\n");
        c.push("hello world\nI'm not dead yet!\n");
        c.push(server_quit);
        c.close_when_done();
        Socket peer = test::accept_one(l);
        REQUIRE(test::run_until(map, [&] { return c.fileno() < 0; }));
        CHECK(test::read_to_eof(peer.fd()) == "hello world\nI'm not dead yet!\n" + server_quit);
        CHECK(c.contents.empty());
    }

    TEST_CASE("close_when_done waits until every queued byte is written") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        test::shrink_buffers(a.fd());
        test::shrink_buffers(b.fd());
        RecordingChat c(std::move(a), map);
        std::string big(8 << 20, 'x');
        for (std::size_t i = 0; i < big.size(); i += 4093)
            big[i] = static_cast<char>('a' + i % 26);
        c.push(std::string(big));
        c.close_when_done();
        c.push("never sent");
        test::run_passes(map, 3);
        REQUIRE(c.output_queued() > 0);  // the peer has not read: the data cannot all be out
        CHECK(c.fileno() >= 0);
        std::string got;
        std::thread reader([&, fd = b.fd()] { got = test::read_to_eof(fd); });
        bool closed = test::run_until(map, [&] { return c.fileno() < 0; });
        reader.join();
        CHECK(closed);
        CHECK(got.size() == big.size());
        CHECK((got == big));
    }

    TEST_CASE("close_when_done flushes pushes and a producer of several MiB to a slow reader") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        test::shrink_buffers(a.fd());
        test::shrink_buffers(b.fd());
        RecordingChat c(std::move(a), map);
        const std::string first = test::pattern(2 << 20, 1), second = test::pattern(3 << 20, 2),
                          third = test::pattern(1 << 20, 3);
        c.push(first);
        c.push_with_producer(std::make_unique<asyncore::SimpleProducer>(second, 4096));
        c.push(std::string(third));
        c.push("!");
        c.close_when_done();
        c.push("never sent");
        std::string got;
        std::thread reader([&, fd = b.fd()] { got = test::read_slowly(fd, 1000); });
        bool closed = test::run_until(map, [&] { return c.fileno() < 0; });
        reader.join();
        CHECK(closed);
        CHECK(got.size() == first.size() + second.size() + third.size() + 1);
        CHECK((got == first + second + third + "!"));
    }

    TEST_CASE("close_when_done: a peer that half-closes still gets every queued byte") {
        // A client that sends its last request and shuts down its sending
        // side (nc -N, HTTP/1.0 clients) still reads: its EOF must not cut
        // off what was queued before close_when_done().
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        test::shrink_buffers(a.fd());
        test::shrink_buffers(b.fd());
        RecordingChat c(std::move(a), map);
        c.set_terminator("\n");
        const std::string reply = test::pattern(4 << 20, 4);
        c.push(reply);
        c.close_when_done();
        REQUIRE(::shutdown(b.fd(), SHUT_WR) == 0);
        test::run_passes(map, 3);  // the channel sees the EOF with the reply still queued
        REQUIRE(c.output_queued() > 0);
        std::string got;
        std::thread reader([&, fd = b.fd()] { got = test::read_slowly(fd, 4096); });
        bool closed = test::run_until(map, [&] { return c.fileno() < 0; });
        reader.join();
        CHECK(closed);
        CHECK(c.errors.empty());
        CHECK(got.size() == reply.size());
        CHECK((got == reply));
    }

    TEST_CASE("close_when_done: a peer that is gone closes the channel at once") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        test::shrink_buffers(a.fd());
        test::shrink_buffers(b.fd());
        RecordingChat c(std::move(a), map);
        c.push(test::pattern(4 << 20, 5));
        c.close_when_done();
        b = Socket();  // closed with unread data: a reset
        REQUIRE(test::run_until(map, [&] { return c.fileno() < 0; }));
        CHECK(c.errors.empty());
    }

    TEST_CASE("close_when_done: a channel whose peer was gone before it was made closes at EOF") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        linger reset{1, 0};
        REQUIRE(::setsockopt(b.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset) == 0);
        b = Socket();  // a reset before the channel exists
        RecordingChat c(std::move(a), map);
        // asyncore's rule: getpeername() fails, so the channel is not
        // connected, and what it queues can never be written.
        REQUIRE_FALSE(c.connected());
        c.push("welcome\n");
        c.close_when_done();
        REQUIRE(test::run_until(map, [&] { return c.fileno() < 0; }));
    }

    TEST_CASE("push accepts strings, views, literals and byte spans, and nothing else") {
        static_assert(pushable<std::string> && pushable<std::string_view> &&
                      pushable<const char*> && pushable<std::vector<std::byte>> &&
                      pushable<std::vector<unsigned char>>);
        static_assert(!pushable<int> && !pushable<std::u16string> && !pushable<double>);
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        RecordingChat c(std::move(a), map);
        c.set_terminator("\n");
        const std::string data = "bytes\n";
        std::string lvalue = data;
        std::vector<std::byte> bytes;
        for (char ch : data)
            bytes.push_back(static_cast<std::byte>(ch));
        std::vector<unsigned char> uchars(data.begin(), data.end());
        std::array<std::byte, 6> arr{};
        std::copy(bytes.begin(), bytes.end(), arr.begin());
        c.push(data);
        c.push(std::string_view(data));
        c.push("bytes\n");
        c.push(std::string(data));
        c.push(lvalue);
        c.push(bytes);
        c.push(uchars);
        c.push(arr);
        std::string got;
        REQUIRE(test::run_until(map, [&] {
            test::drain(b.fd(), got);
            return got.size() >= 8 * data.size();
        }));
        REQUIRE(got.size() == 8 * data.size());
        REQUIRE(test::send_in_chunks(map, b.fd(), c.fileno(), got, 5));
        CHECK(c.contents == std::vector<std::string>(8, "bytes"));
    }

    TEST_CASE("a read that would block is silent") {
        Pair p;
        p.chat.set_terminator("\n");
        CHECK_NOTHROW(p.chat.handle_read());
        asyncore::read(p.chat);
        CHECK(p.chat.errors.empty());
        CHECK(p.chat.fileno() >= 0);
        CHECK(p.chat.contents.empty());
    }

    TEST_CASE("find_prefix_at_end gives the longest terminator prefix ending the data") {
        CHECK(asyncore::find_prefix_at_end("qwerty\r", "\r\n") == 1);
        CHECK(asyncore::find_prefix_at_end("qwertydkjf", "\r\n") == 0);
        CHECK(asyncore::find_prefix_at_end("abqq", "qqq") == 2);
        CHECK(asyncore::find_prefix_at_end("q", "qqq") == 1);
        CHECK(asyncore::find_prefix_at_end("", "\r\n") == 0);
        CHECK(asyncore::find_prefix_at_end("abc", "") == 0);
    }

    TEST_CASE("terminators convert from strings, characters, counts and nullopt") {
        CHECK(Terminator('\n') == Terminator("\n"));
        CHECK(Terminator('\n').kind() == Terminator::Kind::string);
        CHECK(Terminator(10).kind() == Terminator::Kind::count);
        CHECK(Terminator(10u).count() == 10);
        CHECK(Terminator(std::nullopt).kind() == Terminator::Kind::none);
        CHECK(Terminator(std::string("\r\n")).strings().size() == 1);
        CHECK(Terminator::any_of({"a", "b"}).strings().size() == 2);
        CHECK(Terminator("").collects_all());
        CHECK(Terminator(0).collects_all());
        CHECK_FALSE(Terminator(1).collects_all());
        static_assert(!std::is_convertible_v<bool, Terminator>);
    }

    TEST_CASE("a negative terminator is rejected and the old one kept") {
        Pair p;
        p.chat.set_terminator("\n");
        CHECK_THROWS_AS(p.chat.set_terminator(-1), std::invalid_argument);
        CHECK(p.chat.get_terminator() == Terminator("\n"));
    }

    // -- Record delivery ------------------------------------------------------------

    TEST_CASE("every record of one read is delivered during that read") {
        Pair p;
        p.chat.set_terminator("\n");
        p.one_read("a\nbb\nccc\ndd");
        CHECK(p.chat.reads == 1);
        CHECK(p.chat.contents == std::vector<std::string>{"a", "bb", "ccc"});
        CHECK(p.chat.buffer == "dd");
    }

    TEST_CASE("a terminator changed in found_terminator applies to the rest of the read") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Framed c(std::move(a), map, "\n");
        const std::string stream = "5\nhel\nl2\n\n\n0\n3\nabc";
        test::write_all(b.fd(), stream);
        REQUIRE(test::wait_unread(c.fileno(), stream.size()));
        asyncore::read(c);
        CHECK(c.reads == 1);
        CHECK(c.contents == std::vector<std::string>{"hel\nl", "\n\n", "", "abc"});
    }

    TEST_CASE("a count terminator counts down across reads and then collects everything") {
        Pair p;
        p.chat.set_terminator(10);
        p.one_read("abcd");
        CHECK(p.chat.get_terminator().count() == 6);
        CHECK(p.chat.contents.empty());
        p.one_read("efghijKLM");
        CHECK(p.chat.contents == std::vector<std::string>{"abcdefghij"});
        CHECK(p.chat.get_terminator() == Terminator(0));
        CHECK(p.chat.buffer == "KLM");
    }

    TEST_CASE("a string terminator split across reads is found") {
        Pair p;
        p.chat.set_terminator("\r\n.\r\n");
        p.one_read("body\r");
        CHECK(p.chat.buffer == "body");  // the possible terminator start is held back
        p.one_read("\n.");
        p.one_read("\r");
        CHECK(p.chat.contents.empty());
        p.one_read("\nnext\r\n");
        CHECK(p.chat.contents == std::vector<std::string>{"body"});
        CHECK(p.chat.buffer == "next");  // "\r\n" may start the terminator: held back
    }

    TEST_CASE("data before a partial terminator is passed on at once, not buffered") {
        Pair p;
        p.chat.set_terminator("\r\n");
        p.one_read("abc\r");
        CHECK(p.chat.buffer == "abc");
        p.one_read("x");
        CHECK(p.chat.buffer == "abc\rx");
        CHECK(p.chat.collects == 2);
    }

    TEST_CASE("keep_terminator hands the terminator over with the record") {
        Pair p;
        p.chat.set_terminator("\r\n");
        p.chat.set_keep_terminator(true);
        p.one_read("one\r");
        p.one_read("\n\r\ntwo\r\n");
        CHECK(p.chat.contents == std::vector<std::string>{"one\r\n", "\r\n", "two\r\n"});
    }

    TEST_CASE("with several terminators the earliest in the stream ends the record") {
        Pair p;
        p.chat.set_terminator(Terminator::any_of({"\n", "\r\n", "\x03"}));
        p.one_read(
            "a\r\nb\nc\x03"
            "d\r");
        CHECK(p.chat.contents == std::vector<std::string>{"a", "b", "c"});
        CHECK(p.chat.last_terminator() == "\x03");
        p.one_read("\n");
        CHECK(p.chat.contents.back() == "d");
        CHECK(p.chat.last_terminator() == "\r\n");
    }

    TEST_CASE("a longer terminator that may still complete is waited for") {
        Pair p;
        p.chat.set_terminator(Terminator::any_of({"b", "abc"}));
        p.one_read("xab");
        CHECK(p.chat.contents.empty());
        p.one_read("cyb");
        CHECK(p.chat.contents == std::vector<std::string>{"x", "y"});
        CHECK_THROWS_AS(Terminator::any_of({}), std::invalid_argument);
        CHECK_THROWS_AS(Terminator::any_of({"a", ""}), std::invalid_argument);
    }

    TEST_CASE("found_record gets whole records, also when they span reads") {
        struct Lines : AsyncChat {
            using AsyncChat::AsyncChat;
            void found_record(std::string_view r) override { lines.emplace_back(r); }
            std::vector<std::string> lines;
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Lines c(std::move(a), map);
        c.set_terminator("\r\n");
        for (std::string piece : {"GET a\r\nGET", " b\r", "\nGET c\r\n\r\n"}) {
            test::write_all(b.fd(), piece);
            REQUIRE(test::wait_unread(c.fileno(), piece.size()));
            asyncore::read(c);
        }
        CHECK(c.lines == std::vector<std::string>{"GET a", "GET b", "GET c", ""});
        CHECK(c.incoming().empty());
    }

    TEST_CASE("the default collector keeps data for get_data") {
        struct Collect : AsyncChat {
            using AsyncChat::AsyncChat;
            void found_terminator() override { records.push_back(get_data()); }
            std::vector<std::string> records;
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Collect c(std::move(a), map);
        c.set_terminator("\n");
        c.feed("ab");
        CHECK(c.incoming() == "ab");
        c.feed("c\nd\n");
        CHECK(c.records == std::vector<std::string>{"abc", "d"});
        CHECK(c.get_data().empty());
    }

    TEST_CASE("without found_terminator or found_record a record is an error") {
        Pair p;
        struct Bare : AsyncChat {
            using AsyncChat::AsyncChat;
        };
        Bare c(p.map);
        c.set_terminator("\n");
        CHECK_THROWS_AS(c.feed("x\n"), std::logic_error);
    }

    TEST_CASE("a small ac_in_buffer_size still yields the same records") {
        Pair p;
        p.chat.set_ac_in_buffer_size(3);
        p.chat.set_terminator("\r\n");
        test::write_all(p.peer.fd(), "hello\r\nworld\r\n");
        REQUIRE(test::run_until(p.map, [&] { return p.chat.contents.size() == 2; }));
        CHECK(p.chat.contents == std::vector<std::string>{"hello", "world"});
        CHECK(p.chat.reads >= 5);
        CHECK_THROWS_AS(p.chat.set_ac_in_buffer_size(0), std::invalid_argument);
    }

    // -- Limits -----------------------------------------------------------------------

    TEST_CASE("a record over max_input_buffer closes only its channel, with limit_exceeded") {
        ChannelMap map;
        auto [a1, b1] = test::connected_pair(AF_INET);
        auto [a2, b2] = test::connected_pair(AF_INET);
        RecordingChat flooded(std::move(a1), map), fine(std::move(a2), map);
        for (RecordingChat* c : {&flooded, &fine}) {
            c->set_terminator("\r\n");
            c->set_max_input_buffer(1000);
            c->set_ignore_log_types({"error", "warning"});
        }
        test::write_all(b2.fd(), std::string(1000, 'k') + "\r\n");  // exactly at the limit
        REQUIRE(test::run_until(map, [&] { return fine.contents.size() == 1; }));
        test::write_all(b1.fd(), std::string(600, 'x'));
        REQUIRE(test::run_until(map, [&] { return test::unread(flooded.fileno()) == 0; }));
        CHECK(flooded.errors.empty());
        test::write_all(b1.fd(), std::string(600, 'y'));  // 1200 bytes, no terminator
        REQUIRE(test::run_until(map, [&] { return flooded.fileno() < 0; }));
        REQUIRE(flooded.errors.size() == 1);
        try {
            std::rethrow_exception(flooded.errors[0]);
        } catch (const std::system_error& e) {
            CHECK(e.code() == asyncore::errc::limit_exceeded);
            CHECK(std::string(e.what()).find("max_input_buffer") != std::string::npos);
        }
        CHECK(test::read_to_eof(b1.fd()).empty());
        test::write_all(b2.fd(), "still here\r\n");
        REQUIRE(test::run_until(map, [&] { return fine.contents.size() == 2; }));
        CHECK(fine.contents[1] == "still here");
        CHECK(fine.fileno() >= 0);
    }

    TEST_CASE("max_input_buffer of 0 lets records grow without bound") {
        Pair p;
        p.chat.set_terminator("\n");
        p.chat.set_max_input_buffer(0);
        std::string big(200000, 'z');
        p.chat.feed(big);
        p.chat.feed("\n");
        REQUIRE(p.chat.contents.size() == 1);
        CHECK(p.chat.contents[0] == big);
        CHECK(p.chat.errors.empty());
    }

    // -- Output -----------------------------------------------------------------------

    TEST_CASE("watermarks report a full queue once and its draining once") {
        struct Marks : RecordingChat {
            using RecordingChat::RecordingChat;
            void on_output_high() override { ++highs; }
            void on_output_drained() override { ++drains; }
            int highs = 0;
            int drains = 0;
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        test::shrink_buffers(a.fd());
        test::shrink_buffers(b.fd());
        Marks c(std::move(a), map);
        CHECK_THROWS_AS(c.set_output_watermarks(10, 5), std::invalid_argument);
        c.set_output_watermarks(64 * 1024, 512 * 1024);
        std::string expected;
        for (int i = 0; c.highs == 0 && i < 100000; ++i) {
            std::string msg = "message " + std::to_string(i) + "\n";
            expected += msg;
            c.push(msg);
        }
        REQUIRE(c.highs == 1);
        CHECK(c.output_paused());
        CHECK(c.output_queued() > 512 * 1024);
        c.push("one more\n");
        expected += "one more\n";
        CHECK(c.highs == 1);
        std::string got;
        REQUIRE(test::run_until(map, [&] {
            test::drain(b.fd(), got);
            return got.size() >= expected.size();
        }));
        CHECK((got == expected));
        CHECK(c.drains == 1);
        CHECK_FALSE(c.output_paused());
        CHECK(c.output_queued() == 0);
    }

    TEST_CASE("an endless producer is pulled only as fast as the peer reads") {
        struct Endless : asyncore::Producer {
            std::string more() override {
                ++pulls;
                return std::string(1024, 'e');
            }
            int pulls = 0;
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        test::shrink_buffers(a.fd());
        test::shrink_buffers(b.fd());
        RecordingChat c(std::move(a), map);
        auto owned = std::make_unique<Endless>();
        Endless& p = *owned;
        c.push_with_producer(std::move(owned));
        test::run_passes(map, 50);  // the peer reads nothing: the socket fills up
        int pulls = p.pulls;
        test::run_passes(map, 50);
        CHECK(p.pulls == pulls);
        CHECK(c.output_queued() <= c.ac_out_buffer_size() + 1024);
        std::string got;
        test::drain(b.fd(), got);
        REQUIRE(test::run_until(map, [&] { return p.pulls > pulls; }));
        c.discard_buffers();
        CHECK(c.output_items() == 0);
    }

    TEST_CASE("thousands of small queued pushes are gathered and arrive in order") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_INET);
        RecordingChat c(std::move(a), map);
        c.set_ac_out_buffer_size(1 << 20);
        std::string expected;
        for (int i = 0; i < 20000; ++i) {
            std::string msg = std::to_string(i) + ",";
            if (i % 7 == 0) {
                c.push(std::string(5000, 'L'));  // large items too, queued uncopied
                expected += std::string(5000, 'L');
            }
            expected += msg;
            c.push(msg);
        }
        std::string got;
        REQUIRE(test::run_until(map, [&] {
            test::drain(b.fd(), got);
            return got.size() >= expected.size();
        }));
        CHECK((got == expected));
    }

    TEST_CASE("discard_buffers drops queued output, producers, input and a pending close") {
        Pair p;
        p.chat.set_terminator("\r\n");
        p.one_read("partial\r");
        p.chat.push(std::string(4 << 20, 'q'));
        p.chat.push_with_producer(std::make_unique<asyncore::SimpleProducer>("abc", 1));
        p.chat.close_when_done();
        p.chat.discard_buffers();
        CHECK(p.chat.output_queued() == 0);
        CHECK(p.chat.output_items() == 0);
        p.chat.buffer.clear();
        p.one_read("\nline\r\n");
        CHECK(p.chat.contents == std::vector<std::string>{"\nline"});
        test::run_passes(p.map, 3);
        CHECK(p.chat.fileno() >= 0);
    }

    TEST_CASE("a peer that went away makes push close the channel, not throw") {
        Pair p;
        p.peer.reset();
        p.chat.set_ignore_log_types({"warning", "error"});
        CHECK_NOTHROW(p.chat.push(std::string(1 << 20, 'x')));
        REQUIRE(test::run_until(p.map, [&] { return p.chat.fileno() < 0; }));
        CHECK(p.chat.errors.empty());
    }

    // -- Replies to pipelined records ------------------------------------------------

    TEST_CASE("the replies to the records of one read leave together, after the last record") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        LineEcho chat(std::move(a), map);
        std::string lines, want;
        for (int i = 0; i < 16; ++i) {
            lines += "line " + std::to_string(i) + "\n";
            want += "echo: line " + std::to_string(i) + "\n";
        }
        std::string got = one_read_replies(map, chat, b, lines, false);
        CHECK(got == want);
        // Queued while more records of the read followed; the last one's push
        // sent them all (one writev), leaving nothing queued.
        REQUIRE(chat.queued_after_push.size() == 16);
        for (std::size_t i = 0; i + 1 < 16; ++i)
            CHECK(chat.queued_after_push[i] > 0);
        CHECK(chat.queued_after_push.back() == 0);
        CHECK(chat.output_queued() == 0);
        // A lone record is sent at once, as asynchat's push does.
        got = one_read_replies(map, chat, b, "alone\n", false);
        CHECK(got == "echo: alone\n");
        CHECK(chat.queued_after_push.back() == 0);
    }

    TEST_CASE("a partial record after the last whole one still gets the replies sent") {
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        LineEcho chat(std::move(a), map);
        std::string got = one_read_replies(map, chat, b, "one\ntwo\nthr", false);
        CHECK(got.substr(0, 22) == "echo: one\necho: two\n");
        CHECK(chat.output_queued() == 0);
    }

    TEST_CASE(
        "close(), discard_buffers() or a throw in a later record still sends earlier replies") {
        for (std::string last : {"close", "discard", "throw"}) {
            CAPTURE(last);
            ChannelMap map;
            auto [a, b] = test::connected_pair(AF_UNIX);
            LineEcho chat(std::move(a), map);
            const std::string lines = "one\ntwo\n" + last + "\nafter\n";
            test::write_all(b.fd(), lines);
            REQUIRE(test::wait_unread(chat.fileno(), lines.size()));
            asyncore::read(chat);  // a throw reaches handle_error(), which closes
            if (last == "discard") chat.close();
            std::string got;
            REQUIRE(test::run_until(map, [&] { return !test::drain(b.fd(), got); }));
            // What was pushed before the call went out, as immediate sends
            // would have sent it; the record after it was never read.
            CHECK(got == "echo: one\necho: two\necho: " + last + "\n");
        }
    }

    // -- Property ------------------------------------------------------------------------

    TEST_CASE("records do not depend on how the stream is split into reads") {
        std::mt19937 rng(20240611);
        auto pick = [&](std::size_t n) {
            return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
        };
        const std::string alphabet = "ab\r\nq";
        auto random_string = [&](std::size_t max_len, std::size_t min_len) {
            std::string s(min_len + pick(max_len - min_len + 1), ' ');
            for (char& ch : s)
                ch = alphabet[pick(alphabet.size())];
            return s;
        };
        // An independent reference: the earliest match, ties to list order.
        auto reference = [](const std::string& s, const std::vector<std::string>& terms,
                            bool keep) {
            std::vector<std::string> out;
            std::size_t pos = 0;
            for (;;) {
                std::size_t best = std::string::npos, len = 0;
                for (const auto& t : terms) {
                    std::size_t at = s.find(t, pos);
                    if (at < best) best = at, len = t.size();
                }
                if (best == std::string::npos) return out;
                out.push_back(s.substr(pos, best - pos + (keep ? len : 0)));
                pos = best + len;
            }
        };
        for (int round = 0; round < 300; ++round) {
            CAPTURE(round);
            std::vector<std::string> terms;
            std::size_t nterms = 1 + pick(3);
            for (std::size_t i = 0; i < nterms; ++i)
                terms.push_back(random_string(4, 1));
            const bool keep = pick(2) == 1;
            CAPTURE(terms);
            CAPTURE(keep);
            std::string stream;
            std::size_t nrecords = 1 + pick(8);
            for (std::size_t i = 0; i < nrecords; ++i) {
                stream += random_string(12, 0) + terms[pick(terms.size())];
            }
            // A final byte no terminator contains: a terminator that could
            // still grow into a longer, higher-priority one is then decided.
            stream += random_string(6, 0) + "Z";
            const auto expected = reference(stream, terms, keep);
            CAPTURE(std::vector<std::string>{stream});
            for (int split = 0; split < 8; ++split) {
                CAPTURE(split);
                Pair p;
                p.chat.set_terminator(terms.size() == 1 ? Terminator(terms[0])
                                                        : Terminator::any_of(terms));
                p.chat.set_keep_terminator(keep);
                std::size_t pos = 0;
                while (pos < stream.size()) {
                    std::size_t n = split == 0 ? stream.size()
                                    : split == 1
                                        ? 1
                                        : 1 + pick(std::min<std::size_t>(8, stream.size() - pos));
                    n = std::min(n, stream.size() - pos);
                    p.one_read(std::string_view(stream).substr(pos, n));
                    pos += n;
                }
                REQUIRE(p.chat.contents == expected);
                CHECK(p.chat.errors.empty());
            }
        }
    }

    TEST_CASE("switching between lines and counts does not depend on how the stream is split") {
        std::mt19937 rng(7);
        auto pick = [&](std::size_t n) {
            return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
        };
        for (int round = 0; round < 100; ++round) {
            std::vector<std::string> values;
            std::string stream;
            for (std::size_t i = 0, n = 1 + pick(6); i < n; ++i) {
                std::string v(pick(20), ' ');
                for (char& ch : v)
                    ch = "\r\nx0"[pick(4)];
                values.push_back(v);
                stream += std::to_string(v.size()) + "\r\n" + v;
            }
            for (int split = 0; split < 4; ++split) {
                ChannelMap map;
                auto [a, b] = test::connected_pair(AF_UNIX);
                Framed c(std::move(a), map, "\r\n");
                for (std::size_t pos = 0; pos < stream.size();) {
                    std::size_t n =
                        std::min(split == 0 ? stream.size() : 1 + pick(5), stream.size() - pos);
                    test::write_all(b.fd(), stream.substr(pos, n));
                    REQUIRE(test::wait_unread(c.fileno(), n));
                    asyncore::read(c);
                    pos += n;
                }
                REQUIRE(c.contents == values);
            }
        }
    }

    TEST_CASE(
        "a found_terminator that closes its channel and opens one on the same descriptor "
        "ends the read there, and the new channel is served") {
        struct Handover : RecordingChat {
            using RecordingChat::RecordingChat;
            std::unique_ptr<RecordingChat> next;
            Socket next_peer;
            int old_fd = -1;
            void found_terminator() override {
                RecordingChat::found_terminator();
                old_fd = fileno();
                close();
                auto [p, q] = test::connected_pair(AF_UNIX);
                test::write_all(q.fd(), "fresh\n");
                next = std::make_unique<RecordingChat>(std::move(p), map());
                next->set_terminator("\n");
                next_peer = std::move(q);
            }
        };
        ChannelMap map;
        auto [a, b] = test::connected_pair(AF_UNIX);
        Handover h(std::move(a), map);
        h.set_terminator("\n");
        test::write_all(b.fd(), "one\ntwo\n");  // one read: "two" follows the close
        REQUIRE(test::run_until(map, [&] { return h.next && !h.next->contents.empty(); }));
        REQUIRE(h.next->fileno() == h.old_fd);  // the premise: the descriptor was reused
        test::run_passes(map, 2);
        CHECK(h.contents == std::vector<std::string>{"one"});
        CHECK(h.next->contents == std::vector<std::string>{"fresh"});
        CHECK(h.next->buffer.empty());
    }
}
