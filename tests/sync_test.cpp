#include <asyncore/sync.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/fixtures.hpp"
#include "support/task_fixtures.hpp"

using namespace std::chrono_literals;
using asyncore::ChannelMap;
using asyncore::Task;

namespace {

bool all_done(const std::vector<asyncore::TaskRef>& ts) {
    for (auto& t : ts)
        if (!t.done()) return false;
    return true;
}

void run_all(ChannelMap& map, const std::vector<asyncore::TaskRef>& ts) {
    REQUIRE(test::run_until(map, [&] { return all_done(ts); }));
    for (auto& t : ts)
        if (auto e = t.state()->take_error()) std::rethrow_exception(e);
}

}  // namespace

TEST_SUITE("sync") {
    TEST_CASE("a Lock is handed to waiters in the order they came") {
        ChannelMap map;
        asyncore::Lock lock;
        std::vector<int> order;
        auto worker = [&](int i) -> Task<void> {
            auto held = co_await lock.scoped();
            order.push_back(i);
            co_await asyncore::sleep(1ms);
        };
        std::vector<asyncore::TaskRef> ts;
        for (int i = 0; i < 5; ++i)
            ts.push_back(asyncore::spawn(worker(i), map));
        run_all(map, ts);
        CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
        CHECK_FALSE(lock.locked());
    }

    TEST_CASE("a task that releases and re-acquires at once cannot overtake a waiter") {
        ChannelMap map;
        asyncore::Lock lock;
        std::vector<std::string> order;
        auto greedy = [&]() -> Task<void> {
            for (int i = 0; i < 2; ++i) {
                co_await lock.acquire();
                order.push_back("greedy");
                co_await asyncore::sleep(0s);
                lock.release();
            }
        };
        auto polite = [&]() -> Task<void> {
            co_await lock.acquire();
            order.push_back("polite");
            lock.release();
        };
        std::vector<asyncore::TaskRef> ts{asyncore::spawn(greedy(), map),
                                          asyncore::spawn(polite(), map)};
        run_all(map, ts);
        CHECK(order == std::vector<std::string>{"greedy", "polite", "greedy"});
    }

    TEST_CASE("releasing a Lock held by another task is a logic_error") {
        ChannelMap map;
        asyncore::Lock lock;
        bool refused = false;
        auto holder = [&]() -> Task<void> {
            co_await lock.acquire();
            co_await asyncore::sleep(20ms);
            lock.release();
        };
        auto intruder = [&]() -> Task<void> {
            co_await asyncore::sleep(1ms);
            try {
                lock.release();
            } catch (const std::logic_error&) {
                refused = true;
            }
        };
        std::vector<asyncore::TaskRef> ts{asyncore::spawn(holder(), map),
                                          asyncore::spawn(intruder(), map)};
        run_all(map, ts);
        CHECK(refused);
        CHECK_THROWS_AS(lock.release(), std::logic_error);
    }

    TEST_CASE("acquire times out and leaves the queue as if it never came") {
        ChannelMap map;
        asyncore::Lock lock;
        bool timed_out = false;
        bool third_got_it = false;
        auto holder = [&]() -> Task<void> {
            auto held = co_await lock.scoped();
            co_await asyncore::sleep(50ms);
        };
        auto impatient = [&]() -> Task<void> {
            try {
                co_await lock.acquire(10ms);
            } catch (const asyncore::TimeoutError&) {
                timed_out = true;
            }
        };
        auto patient = [&]() -> Task<void> {
            auto held = co_await lock.scoped(5s);
            third_got_it = true;
        };
        std::vector<asyncore::TaskRef> ts{asyncore::spawn(holder(), map),
                                          asyncore::spawn(impatient(), map),
                                          asyncore::spawn(patient(), map)};
        run_all(map, ts);
        CHECK(timed_out);
        CHECK(third_got_it);
        CHECK_FALSE(lock.locked());
    }

    TEST_CASE("terminating a task waiting for a Lock unwinds it and it never owns the lock") {
        ChannelMap map;
        asyncore::Lock lock;
        test::LifetimeProbe::reset();
        auto holder = [&]() -> Task<void> {
            auto held = co_await lock.scoped();
            co_await asyncore::sleep(30ms);
        };
        auto waiter = [&]() -> Task<void> {
            test::LifetimeProbe probe;
            auto held = co_await lock.scoped();
            FAIL("the terminated waiter got the lock");
        };
        auto h = asyncore::spawn(holder(), map);
        auto w = asyncore::spawn(waiter(), map);
        test::run_passes(map, 2);
        CHECK(test::LifetimeProbe::alive == 1);
        w.terminate();
        REQUIRE(test::run_until(map, [&] { return h.done() && w.done(); }));
        CHECK(test::LifetimeProbe::alive == 0);
        CHECK_FALSE(lock.locked());
    }

    TEST_CASE("an RLock may be taken again by its owner and frees after as many releases") {
        ChannelMap map;
        asyncore::RLock lock;
        bool owner_done = false;
        bool other_waited = false;
        auto owner = [&]() -> Task<void> {
            co_await lock.acquire();
            co_await lock.acquire();
            lock.release();
            co_await asyncore::sleep(5ms);
            CHECK(lock.locked());
            owner_done = true;
            lock.release();
        };
        auto other = [&]() -> Task<void> {
            co_await asyncore::sleep(1ms);
            co_await lock.acquire();
            other_waited = owner_done;
            lock.release();
        };
        std::vector<asyncore::TaskRef> ts{asyncore::spawn(owner(), map),
                                          asyncore::spawn(other(), map)};
        run_all(map, ts);
        CHECK(other_waited);
        CHECK_FALSE(lock.locked());
    }

    TEST_CASE("an Event wakes every waiter when set, and wait times out when not") {
        ChannelMap map;
        asyncore::Event ev;
        int woken = 0;
        bool timed_out = false;
        auto waiter = [&]() -> Task<void> {
            co_await ev.wait(5s);
            ++woken;
        };
        auto late = [&]() -> Task<void> {
            try {
                co_await ev.wait(10ms);
            } catch (const asyncore::TimeoutError&) {
                timed_out = true;
            }
        };
        auto l = asyncore::spawn(late(), map);
        REQUIRE(test::run_until(map, [&] { return l.done(); }));
        std::vector<asyncore::TaskRef> ts;
        for (int i = 0; i < 3; ++i)
            ts.push_back(asyncore::spawn(waiter(), map));
        test::run_passes(map, 2);
        CHECK(woken == 0);
        ev.set();
        CHECK(woken == 0);  // never inline
        run_all(map, ts);
        CHECK(woken == 3);
        CHECK(timed_out);
        CHECK(ev.is_set());
    }

    TEST_CASE("a Semaphore admits at most its count, in FIFO order, with timeouts") {
        ChannelMap map;
        asyncore::Semaphore sem(2);
        int inside = 0;
        int peak = 0;
        std::vector<int> order;
        auto worker = [&](int i) -> Task<void> {
            auto held = co_await sem.scoped(5s);
            order.push_back(i);
            peak = std::max(peak, ++inside);
            co_await asyncore::sleep(2ms);
            --inside;
        };
        std::vector<asyncore::TaskRef> ts;
        for (int i = 0; i < 6; ++i)
            ts.push_back(asyncore::spawn(worker(i), map));
        run_all(map, ts);
        CHECK(peak == 2);
        CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5});
        CHECK(sem.value() == 2);

        bool timed_out = false;
        auto hog = [&]() -> Task<void> {
            co_await sem.acquire();
            co_await sem.acquire();
            try {
                co_await sem.acquire(10ms);
            } catch (const asyncore::TimeoutError&) {
                timed_out = true;
            }
            sem.release();
            sem.release();
        };
        run_all(map, {asyncore::spawn(hog(), map)});
        CHECK(timed_out);
        CHECK(sem.value() == 2);
        CHECK_THROWS_AS(asyncore::Semaphore(-1), std::invalid_argument);
    }

    TEST_CASE("Condition wait releases the lock, wakes on notify and holds it again after") {
        ChannelMap map;
        asyncore::Condition cv;
        std::vector<int> items;
        std::vector<int> consumed;
        auto consumer = [&]() -> Task<void> {
            auto held = co_await cv.scoped();
            while (consumed.size() < 3) {
                while (items.empty())
                    co_await cv.wait(5s);
                CHECK(cv.locked());
                consumed.push_back(items.front());
                items.erase(items.begin());
            }
        };
        auto producer = [&]() -> Task<void> {
            for (int i = 0; i < 3; ++i) {
                co_await asyncore::sleep(1ms);
                auto held = co_await cv.scoped();
                items.push_back(i);
                cv.notify();
            }
        };
        std::vector<asyncore::TaskRef> ts{asyncore::spawn(consumer(), map),
                                          asyncore::spawn(producer(), map)};
        run_all(map, ts);
        CHECK(consumed == std::vector<int>{0, 1, 2});
        CHECK_FALSE(cv.locked());
    }

    TEST_CASE("Condition wait times out holding the lock again") {
        ChannelMap map;
        asyncore::Condition cv;
        bool timed_out_locked = false;
        auto body = [&]() -> Task<void> {
            auto held = co_await cv.scoped();
            try {
                co_await cv.wait(10ms);
            } catch (const asyncore::TimeoutError&) {
                timed_out_locked = cv.locked();
            }
        };
        run_all(map, {asyncore::spawn(body(), map)});
        CHECK(timed_out_locked);
        CHECK_FALSE(cv.locked());
        CHECK_THROWS_AS(cv.notify(), std::logic_error);
    }

    TEST_CASE("a terminated Condition waiter unwinds holding the lock, then releases it") {
        ChannelMap map;
        asyncore::Condition cv;
        auto body = [&]() -> Task<void> {
            auto held = co_await cv.scoped();
            co_await cv.wait();
        };
        auto t = asyncore::spawn(body(), map);
        test::run_passes(map, 2);
        CHECK_FALSE(cv.locked());
        t.terminate();
        REQUIRE(test::run_until(map, [&] { return t.done(); }));
        CHECK(test::is_cancelled(t.state()->error()));
        CHECK_FALSE(cv.locked());
        CHECK_FALSE(map.has_work());
    }

    TEST_CASE(
        "terminating a task waiting on an Event or a Semaphore unwinds it and leaves no waiter") {
        ChannelMap map;
        asyncore::Event ev;
        asyncore::Semaphore sem(0);
        test::LifetimeProbe::reset();
        auto on_event = [&]() -> Task<void> {
            test::LifetimeProbe probe;
            co_await ev.wait(5s);
        };
        auto on_sem = [&]() -> Task<void> {
            test::LifetimeProbe probe;
            co_await sem.acquire(5s);
        };
        auto a = asyncore::spawn(on_event(), map);
        auto b = asyncore::spawn(on_sem(), map);
        test::run_passes(map, 2);
        CHECK(test::LifetimeProbe::alive == 2);
        a.terminate();
        b.terminate();
        REQUIRE(test::run_until(map, [&] { return a.done() && b.done(); }));
        CHECK(test::LifetimeProbe::alive == 0);
        CHECK(test::is_cancelled(a.state()->error()));
        CHECK(test::is_cancelled(b.state()->error()));
        CHECK_FALSE(map.has_work());
        sem.release();  // the cancelled waiter is gone: the unit is kept
        CHECK(sem.value() == 1);
    }
}
