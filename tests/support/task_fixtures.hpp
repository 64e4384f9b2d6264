// Fixtures for the task layer's suites: stderr capture and exception checks.
#pragma once

#include <asyncore/task.hpp>

#include <unistd.h>

#include <cstdio>
#include <exception>
#include <string>

#include "../../lib/detail/map_core.hpp"

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
class StderrCapture {
  public:
    StderrCapture() {
        std::fflush(stderr);
        file_ = std::tmpfile();
        saved_ = ::dup(2);
        ::dup2(::fileno(file_), 2);
    }
    ~StderrCapture() {
        restore();
        std::fclose(file_);
    }
    StderrCapture(const StderrCapture&) = delete;
    StderrCapture& operator=(const StderrCapture&) = delete;

    /// Everything written to stderr so far.
    std::string text() {
        std::fflush(stderr);
        std::string out;
        std::rewind(file_);
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0)
            out.append(buf, n);
        return out;
    }

  private:
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        ::dup2(saved_, 2);
        ::close(saved_);
        saved_ = -1;
    }
    std::FILE* file_ = nullptr;
    int saved_ = -1;
};

}  // namespace test
