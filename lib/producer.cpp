// SimpleProducer: asynchat's simple_producer.

#include <asyncore/producer.hpp>

#include <algorithm>
#include <stdexcept>

namespace asyncore {

SimpleProducer::SimpleProducer(std::string data, std::size_t buffer_size)
    : data_(std::move(data)), buffer_size_(buffer_size) {
    if (buffer_size_ == 0) throw std::invalid_argument("SimpleProducer: buffer_size must be > 0");
}

// Hands out slices by offset rather than re-slicing the remainder as
// asynchat does, so producing n bytes costs O(n), not O(n^2 / buffer_size).
std::string SimpleProducer::more() {
    std::size_t n = std::min(buffer_size_, remaining());
    std::string chunk = data_.substr(pos_, n);
    pos_ += n;
    if (remaining() == 0) {
        data_.clear();
        data_.shrink_to_fit();
        pos_ = 0;
    }
    return chunk;
}

}  // namespace asyncore
