// run_in_thread(): a small pool of worker threads, started on first use,
// handing results back to the loop with ChannelMap::post.

#include <asyncore/async_file.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "detail/scheduler.hpp"

namespace asyncore::detail {
namespace {

class Pool {
  public:
    Pool() {
        unsigned n = std::clamp(std::thread::hardware_concurrency(), 2u, 8u);
        for (unsigned i = 0; i < n; ++i)
            threads_.emplace_back([this] { work(); });
    }
    // Jobs still queued at exit are dropped; running ones are waited for.
    ~Pool() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& t : threads_)
            t.join();
    }
    void push(std::function<void()> fn) {
        {
            std::lock_guard lock(mutex_);
            jobs_.push_back(std::move(fn));
        }
        cv_.notify_one();
    }

  private:
    void work() {
        for (;;) {
            std::function<void()> fn;
            {
                std::unique_lock lock(mutex_);
                cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
                if (stop_) return;
                fn = std::move(jobs_.front());
                jobs_.pop_front();
            }
            fn();
        }
    }
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    std::vector<std::thread> threads_;
    bool stop_ = false;
};

Pool& pool() {
    static Pool p;
    return p;
}

// Runs on the loop thread: resumes the waiter unless it gave up meanwhile.
void hand_back(const std::shared_ptr<ThreadJob>& job) {
    Wait* w = job->waiter;
    if (w == nullptr) return;
    job->waiter = nullptr;
    w->detach_fn = nullptr;
    w->task->complete_inline(*w);
}

}  // namespace

void submit(std::shared_ptr<ThreadJob> job, TaskCore& t) {
    std::shared_ptr<PostLink> link = scheduler_of(t.map()).post_link;
    pool().push([job = std::move(job), link = std::move(link)] {
        job->run();
        std::lock_guard lock(link->mutex);
        if (link->map != nullptr) link->map->post([job] { hand_back(job); });
    });
}

}  // namespace asyncore::detail
