// The thread pool of run_in_thread(): started by its first job, stopped by
// shutdown_thread_pool() or at exit; results go back to the loop with
// ChannelMap::post.

#include <asyncore/thread_pool.hpp>

#include <asyncore/async_file.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "detail/scheduler.hpp"

namespace asyncore {
namespace detail {
namespace {

// A queued job with its way home.
struct Queued {
    std::shared_ptr<ThreadJob> job;
    std::shared_ptr<PostLink> link;
};

// Runs on the loop thread: resumes the waiter unless it gave up meanwhile.
void hand_back(const std::shared_ptr<ThreadJob>& job) {
    Wait* w = job->waiter;
    if (w == nullptr) return;
    job->waiter = nullptr;
    w->detach_fn = nullptr;
    w->task->complete_inline(*w);
}

void post_back(const Queued& q) {
    std::lock_guard lock(q.link->mutex);
    if (q.link->map != nullptr) q.link->map->post([job = q.job] { hand_back(job); });
}

class Pool {
  public:
    explicit Pool(std::size_t n) {
        threads_.reserve(n);
        for (std::size_t i = 0; i < n; ++i)
            threads_.emplace_back([this] { work(); });
    }
    // No queued job starts any more: they are returned, to be handed back.
    std::deque<Queued> request_stop() {
        std::deque<Queued> dropped;
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
            dropped.swap(jobs_);
        }
        cv_.notify_all();
        return dropped;
    }
    // Waits for the running jobs and the threads.
    void join() {
        for (auto& t : threads_)
            t.join();
        threads_.clear();
    }
    // At exit no loop is left to take the queued jobs back.
    ~Pool() {
        request_stop();
        join();
    }
    void push(Queued q) {
        {
            std::lock_guard lock(mutex_);
            jobs_.push_back(std::move(q));
        }
        cv_.notify_one();
    }

  private:
    void work() {
        for (;;) {
            Queued q;
            {
                std::unique_lock lock(mutex_);
                cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
                if (stop_) return;
                q = std::move(jobs_.front());
                jobs_.pop_front();
            }
            q.job->run();
            post_back(q);
        }
    }

    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Queued> jobs_;
    std::vector<std::thread> threads_;
    bool stop_ = false;
};

// The pool and its configuration; process-wide, as threads are.
struct Control {
    std::mutex mutex;
    std::unique_ptr<Pool> pool;
    std::size_t size = 0;  ///< 0: the default
};

Control& control() {
    static Control c;
    return c;
}

std::size_t default_size() noexcept {
    return std::clamp<std::size_t>(std::thread::hardware_concurrency(), 2, 8);
}

}  // namespace

void ThreadJob::cancel() noexcept {
    error = std::make_exception_ptr(std::system_error(ECANCELED, std::generic_category(),
                                                      "run_in_thread: thread pool shut down"));
}

void submit(std::shared_ptr<ThreadJob> job, TaskCore& t) {
    std::shared_ptr<PostLink> link = scheduler_of(t.map()).post_link;
    Control& c = control();
    std::lock_guard lock(c.mutex);
    if (!c.pool) c.pool = std::make_unique<Pool>(c.size != 0 ? c.size : default_size());
    c.pool->push(Queued{std::move(job), std::move(link)});
}

}  // namespace detail

std::size_t thread_pool_size() noexcept {
    detail::Control& c = detail::control();
    std::lock_guard lock(c.mutex);
    return c.size != 0 ? c.size : detail::default_size();
}

void set_thread_pool_size(std::size_t threads) {
    if (threads == 0) throw std::invalid_argument("set_thread_pool_size: 0 threads");
    detail::Control& c = detail::control();
    std::lock_guard lock(c.mutex);
    if (c.pool) throw std::logic_error("set_thread_pool_size: the pool runs; shut it down first");
    c.size = threads;
}

// The pool leaves the control block and stops taking jobs in one step, so
// that once set_thread_pool_size() is allowed again no queued job can start.
void shutdown_thread_pool() {
    detail::Control& c = detail::control();
    std::unique_ptr<detail::Pool> pool;
    std::deque<detail::Queued> dropped;
    {
        std::lock_guard lock(c.mutex);
        pool = std::move(c.pool);
        if (pool) dropped = pool->request_stop();
    }
    if (!pool) return;
    pool->join();
    for (detail::Queued& q : dropped) {
        q.job->cancel();
        detail::post_back(q);
    }
}

}  // namespace asyncore
