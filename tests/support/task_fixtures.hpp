// Fixtures for the task layer's suites: stderr capture and exception checks.
#pragma once

#include <asyncore/task.hpp>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

#include "../../lib/detail/map_core.hpp"
#include "core_fixtures.hpp"

namespace test {

/// True if `e` holds asyncore::Cancelled.
inline bool is_cancelled(std::exception_ptr e) {
    if (!e) return false;
    try {
        std::rethrow_exception(e);
    } catch (const asyncore::Cancelled&) {
        return true;
    } catch (...) {
        return false;
    }
}

/// Redirects stderr (fd 2) into a temporary file for its lifetime.
struct StderrCapture : CaptureFd {
    StderrCapture() : CaptureFd(2) {}
};

}  // namespace test

#include <dirent.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <vector>

extern char** environ;

namespace test {

/// Open descriptors of this process (entries of /proc/self/fd).
inline int open_fds() {
    DIR* d = ::opendir("/proc/self/fd");
    if (d == nullptr) return -1;
    int n = 0;
    while (::readdir(d) != nullptr)
        ++n;
    ::closedir(d);
    return n;
}

/// Raises the soft RLIMIT_NOFILE to at least `n` (up to the hard limit);
/// returns the soft limit now in force.
inline rlim_t raise_fd_limit(rlim_t n) {
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < n) {
        rl.rlim_cur = std::min(n, rl.rlim_max);
        ::setrlimit(RLIMIT_NOFILE, &rl);
        ::getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

/// A child process started with posix_spawnp; waited for by wait().
class Child {
  public:
    explicit Child(std::vector<std::string> argv) {
        std::vector<char*> args;
        for (auto& a : argv)
            args.push_back(a.data());
        args.push_back(nullptr);
        if (::posix_spawnp(&pid_, args[0], nullptr, nullptr, args.data(), environ) != 0) pid_ = -1;
    }
    ~Child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            wait();
        }
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    /// The exit status (as for WEXITSTATUS), or -1.
    int wait() {
        if (pid_ <= 0) return -1;
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

  private:
    pid_t pid_ = -1;
};

}  // namespace test
