// Test fixtures shared by every suite: bounded loop runners, loopback
// sockets on ephemeral ports, lifetime probes and must-never-fire callbacks.
#pragma once

#include <asyncore/address.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/socket.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <utility>

namespace test {

using namespace std::chrono_literals;

/// The deadline every wait in a test is bounded by.
inline constexpr std::chrono::seconds watchdog = std::chrono::seconds(10);

/// Runs passes of `map` (each waiting at most 50 ms) until `done()` is true
/// or `limit` has passed. Returns done(): use as REQUIRE(run_until(...)).
bool run_until(asyncore::ChannelMap& map, const std::function<bool()>& done,
               std::chrono::milliseconds limit = watchdog);

/// Runs `passes` passes of `map` with a zero timeout (a poll each).
void run_passes(asyncore::ChannelMap& map, int passes);

/// The longest time between two tick()s (the first counts from
/// construction). A timing test whose peer acts every N ms asserts "the
/// timeout never fired while the peer was active" only while longest() stayed
/// under the timeout: on a loaded machine the whole process can stall for
/// longer, and then the library is right to fire.
class GapMeter {
  public:
    void tick() {
        auto now = std::chrono::steady_clock::now();
        if (now - last_ > longest_) longest_ = now - last_;
        last_ = now;
    }
    std::chrono::steady_clock::duration longest() const { return longest_; }

  private:
    std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
    std::chrono::steady_clock::duration longest_{};
};

/// The loopback address of `family` (AF_INET -> 127.0.0.1, AF_INET6 -> ::1,
/// AF_UNIX -> a fresh path in a private temporary directory) with port 0.
asyncore::Address loopback(int family);

/// A listening socket bound to loopback(family), and its actual address.
struct Listener {
    asyncore::Socket sock;
    asyncore::Address addr;
};
Listener listen_on(int family, int backlog = 16);

/// A connected pair of stream sockets of `family` (AF_UNIX uses socketpair),
/// both non-blocking.
std::pair<asyncore::Socket, asyncore::Socket> connected_pair(int family);

/// Blocking helpers for the "other side" of a test, with a deadline.
void write_all(int fd, const std::string& data);
/// Reads until `n` bytes arrived, EOF, or the watchdog; returns what arrived.
std::string read_exactly(int fd, std::size_t n);
/// Reads until EOF or the watchdog.
std::string read_to_eof(int fd);

/// Counts constructions and destructions: proves objects die exactly once.
struct LifetimeProbe {
    static inline int alive = 0;
    static inline int destroyed = 0;
    LifetimeProbe() { ++alive; }
    LifetimeProbe(const LifetimeProbe&) { ++alive; }
    ~LifetimeProbe() {
        --alive;
        ++destroyed;
    }
    static void reset() { alive = destroyed = 0; }
};

/// A callback that fails the test if it ever runs.
std::function<void()> never_called(std::string what);

}  // namespace test
