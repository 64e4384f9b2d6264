// RingQueue: FIFO order across wrap-around and growth, middle insert/erase,
// element lifetimes, and the strong guarantee when growing throws.

#include <asyncore/ring_queue.hpp>

#include <doctest/doctest.h>

#include <deque>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>

namespace {

// Counts live instances, so that a leak or a double destruction shows.
struct Counted {
    static inline int live = 0;
    int value = 0;
    explicit Counted(int v) : value(v) { ++live; }
    Counted(const Counted& o) : value(o.value) { ++live; }
    Counted(Counted&& o) noexcept : value(o.value) { ++live; }
    Counted& operator=(const Counted&) = default;
    Counted& operator=(Counted&&) noexcept = default;
    ~Counted() { --live; }
};

// Copying may throw and moving is not noexcept: growth must then copy, and a
// throwing copy must leave the queue as it was.
struct ThrowingCopy {
    static inline int copies_left = 1000;
    int value = 0;
    explicit ThrowingCopy(int v) : value(v) {}
    ThrowingCopy(const ThrowingCopy& o) : value(o.value) {
        if (copies_left-- <= 0) throw std::runtime_error("copy failed");
    }
    ThrowingCopy(ThrowingCopy&& o) : value(o.value) {}  // NOLINT: not noexcept on purpose
    ThrowingCopy& operator=(const ThrowingCopy&) = default;
};

}  // namespace

TEST_SUITE("ring_queue") {
    TEST_CASE("an empty queue holds no allocation and reports empty") {
        asyncore::RingQueue<std::string> q;
        CHECK(q.empty());
        CHECK(q.size() == 0);
        q.clear();
        CHECK(q.empty());
    }

    TEST_CASE("elements come out in the order they went in, across wrap-around and growth") {
        asyncore::RingQueue<int> q;
        std::deque<int> model;
        std::mt19937 rng(7);
        int next = 0;
        for (int step = 0; step < 20000; ++step) {
            // Pushes slightly outnumber pops, so the ring both wraps and grows.
            if (model.empty() || rng() % 100 < 55) {
                q.push_back(next);
                model.push_back(next++);
            } else {
                REQUIRE(q.front() == model.front());
                q.pop_front();
                model.pop_front();
            }
            REQUIRE(q.size() == model.size());
        }
        for (std::size_t i = 0; i < model.size(); ++i)
            REQUIRE(q[i] == model[i]);
        CHECK(q.back() == model.back());
    }

    TEST_CASE("insert and erase in the middle keep the order of the rest") {
        asyncore::RingQueue<std::string> q;
        std::deque<std::string> model;
        std::mt19937 rng(11);
        for (int step = 0; step < 5000; ++step) {
            std::string s = "item" + std::to_string(step);
            switch (rng() % 4) {
                case 0: {
                    std::size_t at = model.empty() ? 0 : rng() % (model.size() + 1);
                    q.insert(at, std::string(s));
                    model.insert(model.begin() + static_cast<std::ptrdiff_t>(at), s);
                    break;
                }
                case 1:
                    if (!model.empty()) {
                        std::size_t at = rng() % model.size();
                        q.erase(at);
                        model.erase(model.begin() + static_cast<std::ptrdiff_t>(at));
                    }
                    break;
                case 2:
                    if (!model.empty()) {
                        q.pop_front();
                        model.pop_front();
                    }
                    break;
                default:
                    q.push_back(std::string(s));
                    model.push_back(s);
            }
            REQUIRE(q.size() == model.size());
        }
        for (std::size_t i = 0; i < model.size(); ++i)
            REQUIRE(q[i] == model[i]);
    }

    TEST_CASE("every element is destroyed exactly once: by pop, erase, clear or the destructor") {
        Counted::live = 0;
        {
            asyncore::RingQueue<Counted> q;
            for (int i = 0; i < 100; ++i)
                q.emplace_back(i);
            CHECK(Counted::live == 100);
            q.pop_front();
            q.erase(10);
            CHECK(Counted::live == 98);
            asyncore::RingQueue<Counted> moved(std::move(q));
            CHECK(q.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
            CHECK(moved.size() == 98);
            CHECK(moved.front().value == 1);
            CHECK(moved[10].value == 12);
            moved.clear();
            CHECK(Counted::live == 0);
            for (int i = 0; i < 10; ++i)
                moved.emplace_back(i);
        }
        CHECK(Counted::live == 0);
    }

    TEST_CASE("a growth whose element copy throws leaves the queue unchanged") {
        asyncore::RingQueue<ThrowingCopy> q;
        ThrowingCopy::copies_left = 1000;
        for (int i = 0; i < 4; ++i)
            q.push_back(ThrowingCopy(i));  // fills the first 4 slots
        q.pop_front();
        q.push_back(ThrowingCopy(4));   // wraps around
        ThrowingCopy::copies_left = 2;  // the growth copies 4: the third throws
        CHECK_THROWS_AS(q.push_back(ThrowingCopy(5)), std::runtime_error);
        ThrowingCopy::copies_left = 1000;
        REQUIRE(q.size() == 4);
        for (int i = 0; i < 4; ++i)
            CHECK(q[static_cast<std::size_t>(i)].value == i + 1);
        q.push_back(ThrowingCopy(5));
        CHECK(q.size() == 5);
        CHECK(q.back().value == 5);
    }
}
