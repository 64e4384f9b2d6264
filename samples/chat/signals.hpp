// Clean shutdown for the chat samples: SIGINT and SIGTERM are blocked and
// read from a signalfd watched by the loop, so the handler runs in-loop like
// any other event (no async-signal-safety concerns, no hidden thread).
#pragma once

#include <asyncore/file_dispatcher.hpp>

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <utility>

namespace chat_sample {

class SignalWatcher : public asyncore::FileDispatcher {
  public:
    /// Blocks SIGINT and SIGTERM and calls `on_signal` from the loop when one
    /// arrives; the watcher then closes itself, so that loop() can end.
    SignalWatcher(std::function<void()> on_signal, asyncore::ChannelMap& map)
        : FileDispatcher(make_signalfd(), map), on_signal_(std::move(on_signal)) {}

    void handle_read() override {
        signalfd_siginfo info;
        if (recv(sizeof info).empty()) return;
        on_signal_();
        close();
    }
    bool writable() override { return false; }

  private:
    // FileDispatcher keeps a duplicate: the original descriptor is closed
    // when the temporary guard goes away.
    struct Fd {
        int fd;
        ~Fd() { ::close(fd); }
        operator int() const { return fd; }
    };
    static Fd make_signalfd() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0) asyncore::throw_errno(errno, "sigprocmask");
        int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (fd < 0) asyncore::throw_errno(errno, "signalfd");
        return Fd{fd};
    }

    std::function<void()> on_signal_;
};

}  // namespace chat_sample
