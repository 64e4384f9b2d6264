// The worker threads behind run_in_thread() (async_file.hpp) and the name
// lookups of AsyncSocket::connect(host, port).
//
// Lifetime: the pool starts with its first job, never before, so a program
// that runs no job has no thread of ours. It then has thread_pool_size()
// threads: by default the machine's hardware concurrency, at least 2 and at
// most 8; set_thread_pool_size() picks another number before the pool
// starts. Jobs run in the order they were submitted. The threads live until
// shutdown_thread_pool() or the end of the process (the pool's static
// destructor then waits for the running jobs and drops the queued ones).
//
// Threads: every function here is safe from any thread. Jobs must reach a
// loop only through ChannelMap::post (run_in_thread does that for you).
#pragma once

#include <cstddef>

namespace asyncore {

/// The number of threads the pool runs (or will run when it starts).
std::size_t thread_pool_size() noexcept;

/// Sets the number of threads for the next start of the pool (at least 1).
/// Throws std::logic_error while the pool runs (shut it down first), and
/// std::invalid_argument for 0.
void set_thread_pool_size(std::size_t threads);

/// Stops the pool: no queued job starts any more, and the call returns
/// once the running jobs have ended and the threads have exited. A task
/// waiting in run_in_thread() for a job that never ran gets
/// std::system_error(ECANCELED) from its loop's next pass. The next job
/// starts the pool again. Must not be called from a job.
void shutdown_thread_pool();

}  // namespace asyncore
