// Fixtures for the core suites: socket families as types (for
// TEST_CASE_TEMPLATE), capture of stdout/stderr, and a descriptor-limit guard.
#pragma once

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace test {

/// A socket family as a type, so one TEST_CASE_TEMPLATE runs over all three.
template <int F>
struct Family {
    static constexpr int value = F;
};
using IPv4 = Family<AF_INET>;
using IPv6 = Family<AF_INET6>;
using Unix = Family<AF_UNIX>;

/// Redirects stdout or stderr into a temporary file while alive; text()
/// returns what was written so far.
class CaptureFd {
  public:
    explicit CaptureFd(int fd) : fd_(fd), file_(std::tmpfile()) {
        std::fflush(nullptr);
        saved_ = ::dup(fd_);
        ::dup2(::fileno(file_), fd_);
    }
    ~CaptureFd() {
        restore();
        std::fclose(file_);
    }
    CaptureFd(const CaptureFd&) = delete;
    CaptureFd& operator=(const CaptureFd&) = delete;

    std::string text() {
        std::fflush(nullptr);
        std::string out;
        std::rewind(file_);
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0)
            out.append(buf, n);
        return out;
    }

    void restore() {
        if (saved_ < 0) return;
        std::fflush(nullptr);
        ::dup2(saved_, fd_);
        ::close(saved_);
        saved_ = -1;
    }

  private:
    int fd_;
    std::FILE* file_;
    int saved_ = -1;
};

/// Sets RLIMIT_NOFILE's soft limit for its lifetime and restores the old one
/// on every path out of the test (including a failed REQUIRE).
class NofileLimit {
  public:
    NofileLimit() { ::getrlimit(RLIMIT_NOFILE, &old_); }
    ~NofileLimit() { restore(); }
    NofileLimit(const NofileLimit&) = delete;
    NofileLimit& operator=(const NofileLimit&) = delete;

    rlim_t hard() const { return old_.rlim_max; }
    rlim_t soft() const { return old_.rlim_cur; }
    /// False if the hard limit does not allow `n`.
    bool set(rlim_t n) {
        rlimit r = old_;
        r.rlim_cur = n;
        return ::setrlimit(RLIMIT_NOFILE, &r) == 0;
    }

    /// Puts the limit back as it was.
    void restore() { ::setrlimit(RLIMIT_NOFILE, &old_); }

  private:
    rlimit old_{};
};

/// The highest descriptor number currently open, found by probing every
/// number below the soft limit.
inline int highest_open_fd() {
    rlimit r{};
    ::getrlimit(RLIMIT_NOFILE, &r);
    int end = r.rlim_cur < 65536 ? static_cast<int>(r.rlim_cur) : 65536;
    int top = -1;
    for (int i = 0; i < end; ++i) {
        if (::fcntl(i, F_GETFD) >= 0) top = i;
    }
    return top;
}

}  // namespace test

TYPE_TO_STRING(test::IPv4);
TYPE_TO_STRING(test::IPv6);
TYPE_TO_STRING(test::Unix);
