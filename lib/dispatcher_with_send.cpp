// DispatcherWithSend: send() that buffers what the socket does not take.

#include <asyncore/dispatcher_with_send.hpp>

#include <algorithm>

namespace asyncore {

namespace {
// asyncore sends at most 64 KiB per call; larger writes only fill the socket
// buffer for longer without letting other channels run.
constexpr std::size_t max_send_chunk = 65536;
}  // namespace

// The socket took only part of a send(): keep the rest, unless the peer is
// gone (send() then called handle_close()). Trying again now would only
// return EAGAIN.
void DispatcherWithSend::keep_unsent(std::string_view rest) {
    if (fileno() >= 0) keep(rest);
}

void DispatcherWithSend::queue_and_send(std::string_view data) {
    if (data.empty()) return;
    keep(data);
    initiate_send();
}

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
    if (close_when_done_) close_if_done();
}

void DispatcherWithSend::close_when_done() {
    close_when_done_ = true;
    rearm();
    close_if_done();
}

void DispatcherWithSend::close_if_done() {
    if (pending() == 0 && fileno() >= 0) {
        close_when_done_ = false;
        handle_close();
    }
}

bool DispatcherWithSend::writable() {
    return !connected() || pending() > 0;
}

}  // namespace asyncore
