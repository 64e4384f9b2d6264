// DispatcherWithSend: a Dispatcher whose send() never loses data.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <asyncore/dispatcher.hpp>

namespace asyncore {

/// asyncore's dispatcher_with_send. send() writes what the socket takes at
/// once and keeps the rest in an output buffer that handle_write() drains;
/// writable() is true only while the buffer holds data (or before the
/// connection is up), so an idle channel costs no write wake-ups.
///
/// The buffer is unbounded: a peer that does not read makes it grow. Servers
/// apply backpressure by making readable() false while pending() is large
/// (see samples/echo/echo_server.cpp).
class DispatcherWithSend : public Dispatcher {
  public:
    using Dispatcher::Dispatcher;

    /// Queues `data` behind anything already pending and tries to send now.
    /// Returns nothing: every byte is either sent or kept.
    void send(std::string_view data) {
        // Inline: an echo-style handler calls this once per message. With
        // nothing pending, send straight from the caller's memory.
        if (pending() == 0 && connected() && !data.empty()) [[likely]] {
            std::size_t sent = Dispatcher::send(data);
            if (sent != data.size()) [[unlikely]] {
                keep_unsent(data.substr(sent));
            }
            return;
        }
        queue_and_send(data);
    }
    /// Sends from the output buffer (up to 64 KiB per call, as asyncore).
    void initiate_send();
    /// Calls handle_close() once the output buffer is empty: now if it is.
    /// Data sent afterwards is still sent first.
    void close_when_done() override;
    /// Bytes waiting in the output buffer.
    std::size_t pending() const noexcept { return out_.size() - out_pos_; }
    /// The bytes waiting in the output buffer.
    std::string_view out_buffer() const noexcept { return std::string_view(out_).substr(out_pos_); }

    void handle_write() override;
    bool writable() override;

  private:
    void keep_unsent(std::string_view rest);
    void queue_and_send(std::string_view data);
    void keep(std::string_view data);
    void consume(std::size_t n) noexcept;

    void close_if_done();

    std::string out_;
    std::size_t out_pos_ = 0;
    bool close_when_done_ = false;
};

}  // namespace asyncore
