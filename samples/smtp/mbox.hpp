// Appending messages to an mbox file (the mboxo flavour Python's
// mailbox.mbox reads and writes), durably.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <system_error>

namespace smtp {

/// One mbox entry for a message as smtpd hands it over (lines joined by
/// "\n"): a "From SENDER DATE" line (MAILER-DAEMON for the null sender "<>";
/// bytes of SENDER outside printable ASCII, spaces included, become '_'),
/// the message with an "X-Peer: PEER" header added where smtpd's PureProxy
/// puts it (before the first empty line, or at the end), every line that
/// starts with "From " escaped as ">From ", a final newline and the blank
/// line that separates entries.
std::string format_mbox_entry(std::string_view mailfrom, std::string_view peer,
                              std::string_view data, std::time_t when);

/// An mbox file opened for appending. Single-writer: entries are appended by
/// one process, so a failed append can be cut off again.
class Mailbox {
  public:
    /// Opens (creating it if needed, mode 0600) `path` for appending. Throws
    /// std::system_error with the errno.
    explicit Mailbox(const std::string& path);
    ~Mailbox();
    Mailbox(const Mailbox&) = delete;
    Mailbox& operator=(const Mailbox&) = delete;

    /// Appends `entry` and waits until it is on stable storage (fdatasync).
    /// Returns the errno on failure (ENOSPC when the disk is full), after
    /// truncating the file back to its previous length, so that a message is
    /// either wholly in the mailbox or not at all.
    std::error_code append(std::string_view entry);

    const std::string& path() const noexcept { return path_; }

  private:
    std::string path_;
    int fd_ = -1;
};

}  // namespace smtp
