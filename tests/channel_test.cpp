#include <asyncore/channel.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "support/fixtures.hpp"
#include "support/task_fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::ChannelMap;
using asyncore::Task;

namespace {

Task<void> collect(std::vector<std::string>& out, std::size_t n) {
    while (out.size() < n)
        out.push_back(co_await asyncore::receive<std::string>(5s));
}

}  // namespace

TEST_SUITE("channel") {
    TEST_CASE("send reaches every current subscriber and counts them") {
        ChannelMap map;
        asyncore::Channel<std::string> ch("news");
        std::vector<std::string> a, b;
        auto ta = asyncore::spawn(collect(a, 2), map);
        auto tb = asyncore::spawn(collect(b, 1), map);
        ch.subscribe(ta);
        ch.subscribe(tb);
        ch.subscribe(ta);  // twice is once
        CHECK(ch.subscribers() == 2);
        CHECK(ch.send("one") == 2);
        CHECK(ch.unsubscribe(tb));
        CHECK_FALSE(ch.unsubscribe(tb));
        CHECK(ch.send("two") == 1);
        REQUIRE(test::run_until(map, [&] { return ta.done() && tb.done(); }));
        CHECK(a == std::vector<std::string>{"one", "two"});
        CHECK(b == std::vector<std::string>{"one"});
        CHECK(ch.send("three") == 0);  // finished subscribers are dropped
        CHECK(ch.subscribers() == 0);
    }

    TEST_CASE("deliver waits for enough subscribers and returns how many received") {
        ChannelMap map;
        asyncore::Channel<std::string> ch;
        std::vector<std::string> a, b;
        std::size_t delivered = 0;
        auto sender = [&]() -> Task<void> { delivered = co_await ch.deliver("hi", 2, 5s); };
        auto s = asyncore::spawn(sender(), map);
        test::run_passes(map, 2);
        CHECK_FALSE(s.done());
        auto ta = asyncore::spawn(collect(a, 1), map);
        ch.subscribe(ta);
        test::run_passes(map, 2);
        CHECK_FALSE(s.done());
        auto tb = asyncore::spawn(collect(b, 1), map);
        ch.subscribe(tb);
        REQUIRE(test::run_until(map, [&] { return s.done() && ta.done() && tb.done(); }));
        CHECK(delivered == 2);
        CHECK(a == std::vector<std::string>{"hi"});
    }

    TEST_CASE("deliver times out without enough subscribers and sends nothing") {
        ChannelMap map;
        asyncore::Channel<int> ch;
        bool timed_out = false;
        auto sender = [&]() -> Task<void> {
            try {
                co_await ch.deliver(1, 3, 10ms);
            } catch (const asyncore::TimeoutError&) {
                timed_out = true;
            }
        };
        auto s = asyncore::spawn(sender(), map);
        REQUIRE(test::run_until(map, [&] { return s.done(); }));
        CHECK(timed_out);
        CHECK_FALSE(map.has_work());
    }

    TEST_CASE("a channel subscribed to a channel passes messages on through its transform") {
        ChannelMap map;
        asyncore::Channel<std::string> upstream;
        asyncore::Channel<std::string> shouting(
            "shout", [](std::string s) -> std::optional<std::string> {
                if (s == "drop") return std::nullopt;
                for (auto& c : s)
                    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                return s;
            });
        std::vector<std::string> direct, loud;
        auto td = asyncore::spawn(collect(direct, 2), map);
        auto tl = asyncore::spawn(collect(loud, 1), map);
        upstream.subscribe(td);
        upstream.subscribe(shouting);
        shouting.subscribe(tl);
        shouting.subscribe(upstream);  // a cycle is cut, not looped
        CHECK(upstream.send("hello") == 2);
        CHECK(upstream.send("drop") == 1);
        REQUIRE(test::run_until(map, [&] { return td.done() && tl.done(); }));
        CHECK(direct == std::vector<std::string>{"hello", "drop"});
        CHECK(loud == std::vector<std::string>{"HELLO"});
        shouting.unsubscribe(upstream);
        upstream.unsubscribe(shouting);
    }

    TEST_CASE("messages from one channel arrive in the order sent") {
        ChannelMap map;
        asyncore::Channel<std::string> ch;
        std::vector<std::string> got;
        auto t = asyncore::spawn(collect(got, 100), map);
        ch.subscribe(t);
        std::vector<std::string> sent;
        for (int i = 0; i < 100; ++i) {
            sent.push_back(std::to_string(i));
            ch.send(sent.back());
            if (i % 7 == 0) test::run_passes(map, 1);
        }
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(got == sent);
    }

    TEST_CASE("terminating a task in deliver unwinds it and sends nothing") {
        ChannelMap map;
        asyncore::Channel<std::string> ch;
        test::LifetimeProbe::reset();
        auto sender = [&]() -> Task<void> {
            test::LifetimeProbe probe;
            co_await ch.deliver("never", 1, 5s);
        };
        auto s = asyncore::spawn(sender(), map);
        test::run_passes(map, 2);
        s.terminate();
        REQUIRE(test::run_until(map, [&] { return s.done(); }));
        CHECK(test::LifetimeProbe::alive == 0);
        std::vector<std::string> got;
        auto t = asyncore::spawn(collect(got, 1), map);
        ch.subscribe(t);  // wakes nobody: the cancelled deliver is gone
        CHECK(ch.send("later") == 1);
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(got == std::vector<std::string>{"later"});
    }
}
