// RingQueue: the FIFO behind task mailboxes and AsyncChat's output queue.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace asyncore {

/// A first-in first-out queue on one growable ring of slots.
///
/// Why not std::deque: libstdc++'s deque allocates its map and a 512-byte
/// block as soon as it is constructed, empty or not. A server holds one
/// queue per connection or per task, most of them empty most of the time,
/// so that was most of the memory an idle connection or a task waiting in
/// receive() cost. A RingQueue allocates nothing until the first push,
/// then doubles when full (amortised O(1) per push, no allocation per
/// element) and keeps its capacity when it empties.
///
/// push_back() gives the strong guarantee: if it throws (allocation, or a
/// throwing move/copy of T while growing), the queue is unchanged.
template <class T>
class RingQueue {
  public:
    RingQueue() noexcept = default;
    RingQueue(const RingQueue&) = delete;
    RingQueue& operator=(const RingQueue&) = delete;
    RingQueue(RingQueue&& other) noexcept
        : slots_(std::exchange(other.slots_, nullptr)),
          capacity_(std::exchange(other.capacity_, 0)),
          head_(std::exchange(other.head_, 0)),
          size_(std::exchange(other.size_, 0)) {}
    RingQueue& operator=(RingQueue&& other) noexcept {
        if (this != &other) {
            release();
            slots_ = std::exchange(other.slots_, nullptr);
            capacity_ = std::exchange(other.capacity_, 0);
            head_ = std::exchange(other.head_, 0);
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }
    ~RingQueue() { release(); }

    bool empty() const noexcept { return size_ == 0; }
    std::size_t size() const noexcept { return size_; }

    /// The oldest element. Precondition: !empty().
    T& front() noexcept { return slots_[head_]; }
    const T& front() const noexcept { return slots_[head_]; }
    /// The newest element. Precondition: !empty().
    T& back() noexcept { return slots_[index(size_ - 1)]; }
    /// The i-th oldest element. Precondition: i < size().
    T& operator[](std::size_t i) noexcept { return slots_[index(i)]; }
    const T& operator[](std::size_t i) const noexcept { return slots_[index(i)]; }

    void push_back(T&& value) { emplace_back(std::move(value)); }
    void push_back(const T& value) { emplace_back(value); }
    template <class... Args>
    T& emplace_back(Args&&... args) {
        if (size_ == capacity_) grow();
        T* slot = std::construct_at(slots_ + index(size_), std::forward<Args>(args)...);
        ++size_;
        return *slot;
    }

    /// Removes the oldest element. Precondition: !empty().
    void pop_front() noexcept {
        std::destroy_at(slots_ + head_);
        head_ = (head_ + 1) & (capacity_ - 1);
        --size_;
    }

    /// Inserts `value` before the i-th oldest element (i == size() appends).
    /// O(size() - i): meant for the rare insertion near the front.
    /// Precondition: i <= size(). Basic guarantee if a move of T throws.
    void insert(std::size_t i, T&& value) {
        emplace_back(std::move(value));
        for (std::size_t j = size_ - 1; j > i; --j) {
            using std::swap;
            swap((*this)[j], (*this)[j - 1]);
        }
    }

    /// Removes the i-th oldest element. O(size() - i). Precondition: i < size().
    void erase(std::size_t i) noexcept(std::is_nothrow_move_assignable_v<T>) {
        for (std::size_t j = i; j + 1 < size_; ++j)
            (*this)[j] = std::move((*this)[j + 1]);
        std::destroy_at(slots_ + index(size_ - 1));
        if (--size_ == 0) head_ = 0;
    }

    /// Destroys every element; the capacity stays.
    void clear() noexcept {
        while (size_ > 0)
            pop_front();
        head_ = 0;
    }

  private:
    // The capacity is 0 or a power of two, so wrapping is a mask.
    std::size_t index(std::size_t i) const noexcept { return (head_ + i) & (capacity_ - 1); }

    void grow() {
        std::size_t capacity = capacity_ == 0 ? 4 : capacity_ * 2;
        T* slots = std::allocator<T>().allocate(capacity);
        std::size_t moved = 0;
        try {
            for (; moved < size_; ++moved)
                std::construct_at(slots + moved, std::move_if_noexcept(slots_[index(moved)]));
        } catch (...) {
            std::destroy(slots, slots + moved);
            std::allocator<T>().deallocate(slots, capacity);
            throw;
        }
        std::size_t size = size_;
        release();
        slots_ = slots;
        capacity_ = capacity;
        size_ = size;
    }

    void release() noexcept {
        clear();
        if (slots_ != nullptr) std::allocator<T>().deallocate(slots_, capacity_);
        slots_ = nullptr;
        capacity_ = 0;
    }

    T* slots_ = nullptr;
    std::size_t capacity_ = 0;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
};

}  // namespace asyncore
