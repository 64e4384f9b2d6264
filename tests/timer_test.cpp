// call_later(): python-astm's CallLaterTests (order, delay, reset, cancel,
// interface), plus the loop's promises about timers.

#include <asyncore/loop.hpp>

#include <asyncore/error.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <stdexcept>
#include <vector>

#include "support/fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::ChannelMap;
using asyncore::Duration;

namespace {

// astm's delays are 10 ms apart; ours are scaled up so that a loaded machine
// cannot reorder them. Only the order is asserted.
constexpr Duration unit = 40ms;

struct Recorder {
    std::vector<int> order;
    std::function<void()> add(int x) {
        return [this, x] { order.push_back(x); };
    }
};

void run_all(ChannelMap& map) {
    REQUIRE(test::run_until(map, [&] { return !map.has_work(); }));
}

}  // namespace

TEST_SUITE("timer") {
    TEST_CASE("timers fire in deadline order, not in the order they were made") {
        ChannelMap map;
        Recorder r;
        for (int x : {5, 4, 3, 2, 1})
            map.call_later(x * unit, r.add(x));
        run_all(map);
        CHECK(r.order == std::vector<int>{1, 2, 3, 4, 5});
    }

    TEST_CASE("delay() reschedules a call from now and makes that its new delay") {
        ChannelMap map;
        Recorder r;
        map.call_later(1 * unit, r.add(1)).delay(7 * unit);
        map.call_later(2 * unit, r.add(2)).delay(8 * unit);
        map.call_later(3 * unit, r.add(3));
        map.call_later(4 * unit, r.add(4));
        map.call_later(5 * unit, r.add(5));
        map.call_later(6 * unit, r.add(6)).delay(unit / 10);
        run_all(map);
        CHECK(r.order == std::vector<int>{6, 3, 4, 5, 1, 2});
    }

    TEST_CASE("reset() restarts the countdown of a call that was already due") {
        ChannelMap map;
        Recorder r;
        map.call_later(1 * unit, r.add(1));
        map.call_later(2 * unit, r.add(2));
        map.call_later(3 * unit, r.add(3));
        auto x = map.call_later(4 * unit, r.add(4));
        map.call_later(5 * unit, r.add(5));
        // Let every deadline pass without running the loop, as astm's test does.
        auto until = std::chrono::steady_clock::now() + 10 * unit;
        while (std::chrono::steady_clock::now() < until) {
        }
        x.reset();
        run_all(map);
        CHECK(r.order == std::vector<int>{1, 2, 3, 5, 4});
    }

    TEST_CASE("a cancelled call never runs and the others still do") {
        ChannelMap map;
        Recorder r;
        map.call_later(1 * unit, r.add(1)).cancel();
        map.call_later(2 * unit, r.add(2));
        map.call_later(3 * unit, r.add(3));
        map.call_later(4 * unit, r.add(4));
        map.call_later(5 * unit, r.add(5)).cancel();
        run_all(map);
        CHECK(r.order == std::vector<int>{2, 3, 4});
    }

    TEST_CASE("the handle interface rejects negative delays and use after cancel") {
        ChannelMap map;
        CHECK_THROWS_AS(map.call_later(-1s, [] {}), std::invalid_argument);
        auto x = map.call_later(3s, test::never_called("cancelled timer"));
        CHECK_THROWS_AS(x.delay(-1s), std::invalid_argument);
        CHECK(x);
        CHECK_FALSE(x.cancelled());
        x.cancel();
        CHECK(x.cancelled());
        CHECK_THROWS_AS(x.reset(), std::logic_error);
        CHECK_THROWS_AS(x.delay(2s), std::logic_error);
        CHECK_THROWS_AS(x.cancel(), std::logic_error);
        CHECK_FALSE(map.has_work());
    }

    TEST_CASE("operations on a call that already ran throw std::logic_error") {
        ChannelMap map;
        int runs = 0;
        auto x = map.call_later(0s, [&] { ++runs; });
        run_all(map);
        CHECK(runs == 1);
        CHECK(x.cancelled());
        CHECK_THROWS_AS(x.reset(), std::logic_error);
        CHECK_THROWS_AS(x.cancel(), std::logic_error);
        CHECK_THROWS_AS(x.delay(1s), std::logic_error);
    }

    TEST_CASE("an empty handle throws std::logic_error instead of crashing") {
        asyncore::TimerHandle empty;
        CHECK_FALSE(empty);
        CHECK(empty.cancelled());
        CHECK_THROWS_AS(empty.cancel(), std::logic_error);
    }

    TEST_CASE("dropping every handle does not cancel the call") {
        ChannelMap map;
        bool ran = false;
        map.call_later(1ms, [&] { ran = true; });
        run_all(map);
        CHECK(ran);
    }

    TEST_CASE("a call is never run inline by call_later") {
        ChannelMap map;
        bool ran = false;
        map.call_later(0s, [&] { ran = true; });
        CHECK_FALSE(ran);
        map.run_pass(0s);
        CHECK(ran);
    }

    TEST_CASE("a timer callback may schedule another timer") {
        ChannelMap map;
        Recorder r;
        map.call_later(1ms, [&] {
            r.order.push_back(1);
            map.call_later(1ms, r.add(2));
        });
        run_all(map);
        CHECK(r.order == std::vector<int>{1, 2});
    }

    TEST_CASE("a timer callback may cancel another pending timer") {
        ChannelMap map;
        auto victim = map.call_later(2 * unit, test::never_called("cancelled by another timer"));
        map.call_later(1ms, [&] { victim.cancel(); });
        run_all(map);
        CHECK(victim.cancelled());
    }

    TEST_CASE("an exception from a timer is logged and the loop goes on") {
        ChannelMap map;
        bool later = false;
        map.call_later(1ms, [] { throw std::runtime_error("timer boom"); });
        map.call_later(2 * unit, [&] { later = true; });
        run_all(map);
        CHECK(later);
    }

    TEST_CASE("ExitNow from a timer leaves loop()") {
        ChannelMap map;
        map.call_later(1ms, [] { throw asyncore::ExitNow(); });
        auto keep_alive = map.call_later(30s, test::never_called("far timer"));
        CHECK_THROWS_AS(asyncore::loop(1s, map), asyncore::ExitNow);
        keep_alive.cancel();
    }

    TEST_CASE("the free call_later() schedules on the thread's default map") {
        bool ran = false;
        auto h = asyncore::call_later(1ms, [&] { ran = true; });
        CHECK(asyncore::socket_map().has_work());
        run_all(asyncore::socket_map());
        CHECK(ran);
    }

    TEST_CASE("destroying the map with pending timers leaves their handles safe") {
        asyncore::TimerHandle h;
        {
            ChannelMap map;
            h = map.call_later(1s, test::never_called("timer of a destroyed map"));
        }
        CHECK(h.cancelled());
        CHECK_THROWS_AS(h.reset(), std::logic_error);
    }

}  // TEST_SUITE
