// The promise types behind Task<T>: where a coroutine's frame is allocated
// (behind its TaskState) and how its result is kept. Internals of task.hpp,
// which includes this at its end: not part of the API.
#pragma once

#include <coroutine>
#include <cstddef>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

namespace asyncore {

namespace detail {

template <class T>
void TaskResult<T>::destroy(TaskState* s) noexcept {
    auto* r = static_cast<TaskResult*>(s);
    void* frame = r->frame_;
    r->~TaskResult();
    if (frame != nullptr) {
        free_frame_block(static_cast<char*>(frame) - FrameBlock<T>::head);
    } else {
        ::operator delete(static_cast<void*>(r));
    }
}

/// What Promise<T> and Promise<void> share: the frame is allocated behind
/// the task's TaskResult<T>, so that a task whose frame is destroyed still
/// has its outcome without a second allocation per coroutine.
template <class T>
class PromiseFor : public PromiseBase {
  public:
    static void* operator new(std::size_t size) {
        if constexpr (!FrameBlock<T>::used) {
            return ::operator new(size);
        } else {
            char* block = static_cast<char*>(allocate_frame_block(FrameBlock<T>::head + size));
            auto* state = ::new (block) TaskResult<T>();
            void* frame = block + FrameBlock<T>::head;
            state->frame_ = frame;
            state->frame_memory_ = true;
            offer_state(state);
            return frame;
        }
    }
    static void operator delete(void* frame) noexcept {
        if constexpr (!FrameBlock<T>::used) {
            ::operator delete(frame);
        } else {
            auto* state =
                reinterpret_cast<TaskResult<T>*>(static_cast<char*>(frame) - FrameBlock<T>::head);
            withdraw_state(state);
            state->frame_memory_ = false;
            state->free_if_unused();
        }
    }

  protected:
    PromiseFor() noexcept = default;
    /// Called by get_return_object(), the first thing that runs after the
    /// promise is constructed: adopts the block allocated with `frame`, or
    /// (when the allocation was elided, or a parameter's copy created another
    /// coroutine meanwhile) allocates a state of its own.
    void attach_state(void* frame) {
        TaskState* s = nullptr;
        if constexpr (FrameBlock<T>::used) s = adopt_offered_state(frame);
        attach(s != nullptr ? s : new TaskResult<T>());
    }
    TaskResult<T>& result() noexcept { return static_cast<TaskResult<T>&>(*state_); }
};

template <class T>
class Promise : public PromiseFor<T> {
  public:
    Task<T> get_return_object() {
        auto h = std::coroutine_handle<Promise>::from_promise(*this);
        this->self_ = h;
        this->attach_state(h.address());
        return Task<T>(this->state_);
    }
    template <class U>
    void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
        this->result().value.emplace(std::forward<U>(v));
    }
};

template <>
class Promise<void> : public PromiseFor<void> {
  public:
    Task<void> get_return_object() {
        auto h = std::coroutine_handle<Promise>::from_promise(*this);
        self_ = h;
        attach_state(h.address());
        return Task<void>(state_);
    }
    void return_void() noexcept {}
};

}  // namespace detail

}  // namespace asyncore
