// Property: AsyncSocket::recv_msg() frames pycos messages (a 4-byte
// big-endian length, then the payload) exactly as a reference parse of the
// whole stream does, however the stream is cut into reads.
//
// The input chooses set_max_message_size(), whether the writer closes at the
// end, how the stream is split, and the stream. A reader task on a ChannelMap
// calls recv_msg() in a loop on one end of a socketpair; each piece is
// written to the other end and the map runs until the reader has read it all
// and waits again, so every piece boundary reaches the parser. The reader
// must see the reference's messages, then: errc::message_too_large for a
// length above the maximum; at EOF, std::nullopt between messages or a
// TruncatedError carrying exactly the bytes of the cut message (its partial
// header, or its partial payload); without EOF, it must still be waiting.

#include <asyncore/async_socket.hpp>
#include <asyncore/error.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/socket.hpp>
#include <asyncore/task.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "fuzz/split.hpp"

namespace {

using namespace std::chrono_literals;

struct Event {
    enum class Kind { message, eof, truncated, too_large };
    Kind kind;
    std::string data;  ///< the message, or a TruncatedError's partial bytes
    bool operator==(const Event&) const = default;
};

// What a reader saw; `finished` once its loop ended.
struct Log {
    std::vector<Event> events;
    bool finished = false;
};

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "recv_msg: %s\n", what.c_str());
    std::abort();
}

// The reference: pycos' framing over the whole stream, in plain steps.
Log reference(std::string_view s, std::size_t max_message, bool eof) {
    Log log;
    std::size_t pos = 0;
    for (;;) {
        const std::size_t left = s.size() - pos;
        if (left < 4) {
            if (!eof) return log;
            if (left == 0) {
                log.events.push_back({Event::Kind::eof, {}});
            } else {
                log.events.push_back({Event::Kind::truncated, std::string(s.substr(pos))});
            }
            log.finished = true;
            return log;
        }
        std::size_t len = 0;
        for (std::size_t i = 0; i < 4; ++i)
            len = len << 8 | static_cast<unsigned char>(s[pos + i]);
        if (len > max_message) {
            log.events.push_back({Event::Kind::too_large, {}});
            log.finished = true;
            return log;
        }
        if (left - 4 < len) {
            if (!eof) return log;
            log.events.push_back({Event::Kind::truncated, std::string(s.substr(pos + 4))});
            log.finished = true;
            return log;
        }
        log.events.push_back({Event::Kind::message, std::string(s.substr(pos + 4, len))});
        pos += 4 + len;
    }
}

asyncore::Task<void> reader(asyncore::AsyncSocket sock, Log& log) {
    try {
        for (;;) {
            std::optional<std::string> m = co_await sock.recv_msg();
            if (!m) {
                log.events.push_back({Event::Kind::eof, {}});
                break;
            }
            log.events.push_back({Event::Kind::message, std::move(*m)});
        }
    } catch (const asyncore::TruncatedError& e) {
        log.events.push_back({Event::Kind::truncated, e.partial()});
    } catch (const asyncore::Cancelled&) {
        throw;
    } catch (const std::system_error& e) {
        if (e.code() != asyncore::errc::message_too_large) fail(std::string("reader: ") + e.what());
        log.events.push_back({Event::Kind::too_large, {}});
    }
    log.finished = true;
}

int unread(int fd) {
    int n = 0;
    if (::ioctl(fd, FIONREAD, &n) < 0) return 0;  // closed by the reader (too large)
    return n;
}

// Runs passes until the reader has taken everything written and a pass
// changes nothing: it waits for more (or has finished).
void settle(asyncore::ChannelMap& map, int reader_fd, const Log& log) {
    constexpr int max_passes = 1000;
    int quiet = 0;
    for (int pass = 0; pass < max_passes; ++pass) {
        const std::size_t before = log.events.size();
        map.run_pass(0s);
        const bool changed = log.events.size() != before;
        quiet = changed || (!log.finished && unread(reader_fd) > 0) ? 0 : quiet + 1;
        if (quiet == 2) return;
    }
    fail("the reader did not settle within " + std::to_string(max_passes) + " passes");
}

std::string describe(const Log& log) {
    std::string d;
    for (const Event& e : log.events) {
        static const char* const names[] = {"message", "eof", "truncated", "too_large"};
        d += std::string(" ") + names[static_cast<int>(e.kind)] + "(" +
             std::to_string(e.data.size()) + ")";
    }
    return d + (log.finished ? " [finished]" : " [waiting]");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    const std::size_t max_message = in.ConsumeIntegralInRange<std::size_t>(0, 1024);
    const bool eof = in.ConsumeBool();
    const std::uint32_t split_seed = in.ConsumeIntegral<std::uint32_t>();
    const std::string stream = in.ConsumeRemainingBytesAsString();

    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) fail("socketpair");
    asyncore::Socket writer(fds[1]);
    const int reader_fd = fds[0];
    Log log;
    {
        asyncore::ChannelMap map;
        asyncore::AsyncSocket sock{asyncore::Socket(reader_fd)};
        sock.set_max_message_size(max_message);
        asyncore::spawn(reader(std::move(sock), log), map);
        settle(map, reader_fd, log);
        for (std::string_view piece : fuzz::split_random(stream, split_seed)) {
            if (piece.empty()) continue;
            if (::send(writer.fd(), piece.data(), piece.size(), MSG_NOSIGNAL) !=
                static_cast<ssize_t>(piece.size())) {
                // The reader closed its end after a length above the maximum.
                if (log.finished) break;
                fail("send to the reader failed");
            }
            settle(map, reader_fd, log);
        }
        if (eof) {
            ::shutdown(writer.fd(), SHUT_WR);
            settle(map, reader_fd, log);
        }
        // Destroying the map cancels a reader that still waits.
    }
    const Log want = reference(stream, max_message, eof);
    if (log.events != want.events || log.finished != want.finished) {
        fail("reader:" + describe(log) + "\n  reference:" + describe(want));
    }
    return 0;
}
