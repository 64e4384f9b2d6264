// mbox output. The entry is built in one buffer and written with as few
// write() calls as the kernel allows, then fdatasync()ed: the 250 reply that
// follows promises the message survives a crash.
#include "mbox.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>

namespace smtp {
namespace {

std::string from_line(std::string_view mailfrom, std::time_t when) {
    std::string sender =
        mailfrom.empty() || mailfrom == "<>" ? "MAILER-DAEMON" : std::string(mailfrom);
    // The From line is one ASCII line whose sender field ends at a space
    // (Python's mailbox decodes it as ASCII): other bytes become '_'.
    for (char& c : sender)
        if (c < 0x21 || c > 0x7e) c = '_';
    std::tm tm{};
    gmtime_r(&when, &tm);
    char date[64];
    // time.asctime()'s layout: "Thu Jan  1 00:00:00 1970".
    std::size_t n = std::strftime(date, sizeof date, "%a %b %e %H:%M:%S %Y", &tm);
    return "From " + sender + " " + std::string(date, n) + "\n";
}

void append_line(std::string& out, std::string_view line) {
    if (line.starts_with("From ")) out += '>';
    out.append(line);
    out += '\n';
}

}  // namespace

std::string format_mbox_entry(std::string_view mailfrom, std::string_view peer,
                              std::string_view data, std::time_t when) {
    std::string out = from_line(mailfrom, when);
    out.reserve(out.size() + data.size() + data.size() / 64 + peer.size() + 16);
    bool peer_written = false;
    while (true) {
        auto nl = data.find('\n');
        std::string_view line = data.substr(0, nl);
        if (line.empty() && !peer_written) {
            out.append("X-Peer: ").append(peer).append("\n");
            peer_written = true;
        }
        append_line(out, line);
        if (nl == std::string_view::npos) break;
        data.remove_prefix(nl + 1);
    }
    if (!peer_written) {
        // No empty line: the message is all headers; X-Peer goes last, before
        // the final line break.
        out.insert(out.size() - 1, "\nX-Peer: " + std::string(peer));
    }
    out += '\n';
    return out;
}

Mailbox::Mailbox(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
}

Mailbox::~Mailbox() {
    if (fd_ >= 0) ::close(fd_);
}

std::error_code Mailbox::append(std::string_view entry) {
    struct stat st {};
    off_t before = ::fstat(fd_, &st) == 0 ? st.st_size : -1;
    int err = 0;
    while (!entry.empty() && err == 0) {
        ssize_t n = ::write(fd_, entry.data(), entry.size());
        if (n > 0) {
            entry.remove_prefix(static_cast<std::size_t>(n));
        } else if (n < 0 && errno != EINTR) {
            err = errno;
        } else if (n == 0) {
            err = EIO;
        }
    }
    if (err == 0 && ::fdatasync(fd_) != 0) err = errno;
    if (err == 0) return {};
    // Cut the partial entry off; a device such as /dev/full cannot be
    // truncated, and has nothing to cut.
    if (before >= 0 && S_ISREG(st.st_mode)) {
        [[maybe_unused]] int rc = ::ftruncate(fd_, before);
    }
    return {err, std::generic_category()};
}

}  // namespace smtp
