// DispatcherWithSend: send() that buffers what the socket does not take.

#include <asyncore/dispatcher_with_send.hpp>

#include <algorithm>

namespace asyncore {

namespace {
// asyncore sends at most 64 KiB per call; larger writes only fill the socket
// buffer for longer without letting other channels run.
constexpr std::size_t max_send_chunk = 65536;
}  // namespace

void DispatcherWithSend::send(std::string_view data) {
    if (pending() == 0 && connected() && !data.empty()) {
        // The common case, an idle socket: send straight from the caller's
        // memory and copy only what did not fit.
        std::size_t sent = Dispatcher::send(data);
        if (sent == data.size() || fileno() < 0) return;  // all sent, or the peer is gone
        // The socket is full: trying again now would only return EAGAIN.
        keep(data.substr(sent));
        return;
    }
    if (data.empty()) return;
    keep(data);
    initiate_send();
}

// Kept out of send() so that the common case, everything sent at once,
// needs no registers for the buffer work.
void DispatcherWithSend::keep(std::string_view data) {
    out_.append(data);
}

void DispatcherWithSend::initiate_send() {
    if (pending() == 0 || !connected()) return;
    std::size_t n = std::min(pending(), max_send_chunk);
    consume(Dispatcher::send(out_buffer().substr(0, n)));
}

void DispatcherWithSend::consume(std::size_t n) noexcept {
    out_pos_ += n;
    if (out_pos_ == out_.size()) {
        out_.clear();
        out_pos_ = 0;
    } else if (out_pos_ > out_.size() / 2) {
        // Compact once the sent prefix dominates: amortised O(1) per byte.
        out_.erase(0, out_pos_);
        out_pos_ = 0;
    }
}

void DispatcherWithSend::handle_write() {
    initiate_send();
}

bool DispatcherWithSend::writable() {
    return !connected() || pending() > 0;
}

}  // namespace asyncore
