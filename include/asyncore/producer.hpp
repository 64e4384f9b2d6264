// Producers: lazy sources of outgoing data for AsyncChat::push_with_producer().
#pragma once

#include <cstddef>
#include <string>

namespace asyncore {

/// asynchat's producer protocol. An AsyncChat pulls a producer only when the
/// producer reaches the front of its output queue and the socket can take
/// more, so a producer of unbounded data costs at most one send's worth of
/// memory at a time.
///
/// Ownership: push_with_producer() takes the producer; it is destroyed once
/// exhausted, or with the channel's queue (discard_buffers(), destruction).
class Producer {
  public:
    virtual ~Producer() = default;
    /// Returns the next chunk of data; an empty string means the producer is
    /// exhausted and it is not called again. Called on the loop thread from
    /// AsyncChat::initiate_send(). An exception reaches the channel's
    /// handle_error().
    virtual std::string more() = 0;
};

/// asynchat's simple_producer: hands out `data` in chunks of at most
/// `buffer_size` bytes.
class SimpleProducer : public Producer {
  public:
    /// Throws std::invalid_argument if `buffer_size` is 0.
    explicit SimpleProducer(std::string data, std::size_t buffer_size = 512);
    std::string more() override;
    /// Bytes not handed out yet.
    std::size_t remaining() const noexcept { return data_.size() - pos_; }

  private:
    std::string data_;
    std::size_t pos_ = 0;
    std::size_t buffer_size_;
};

}  // namespace asyncore
