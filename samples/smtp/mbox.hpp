// Appending messages to an mbox file (the mboxo flavour Python's
// mailbox.mbox reads and writes), durably, and without ever leaving a torn
// entry behind after a crash.
#pragma once

#include <cstdint>
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
/// line that separates entries. So "\nFrom " never occurs inside an entry:
/// only where the next one begins.
std::string format_mbox_entry(std::string_view mailfrom, std::string_view peer,
                              std::string_view data, std::time_t when);

/// An mbox file opened for appending, with a journal that makes each append
/// all-or-nothing across crashes.
///
/// The problem: an append is a write() of the entry and an fdatasync(), and
/// the 250 that follows promises the message is kept. A SIGKILL, a crash or
/// a power cut in the middle leaves the first part of an entry at the end of
/// the file; the next append would glue a new entry to it, and a reader then
/// sees a message that was cut short, or two messages run together.
///
/// The design: a small sidecar file, PATH.journal, holds a record of the
/// append in progress. append() makes these steps, each one durable before
/// the next starts:
///   1. lock the mbox (an fcntl write lock, the lock Python's mailbox,
///      procmail and mutt take), note its length L;
///   2. write an intent record "appending N bytes at L" (with the 64 bytes
///      before L and the entry's first 64 bytes) and fdatasync the journal;
///   3. write the entry and fdatasync the mbox;
///   4. write a commit record and fdatasync the journal; unlock. Only then
///      does the caller answer 250.
/// The journal keeps two 128-byte slots, written alternately, each with a
/// sequence number and a checksum: a record torn by a power cut fails its
/// checksum and the other slot, one step older, is used.
///
/// Recovery, when the Mailbox is opened: if the newest record is an intent,
/// that append never committed, so nobody was told 250 for it. The entry it
/// began at L is cut off (ftruncate to L, then fdatasync), whether it is
/// torn or whole (a whole one was never acknowledged: the client will send
/// it again, and keeping it would make a duplicate). Before cutting, the
/// bytes are checked to be ours: the file must be longer than L, hold the
/// same 64 bytes before L and the entry's first bytes at L, and nothing may
/// follow the entry. Another program may have appended to the mbox between a
/// crash and the restart (its entry starts with "\nFrom ", which no entry of
/// ours contains), or rewritten it (a mail reader expunging): then nothing
/// is cut, and the report says so. A kill between any two of the system
/// calls above therefore leaves either the committed mbox plus an entry
/// that recovery cuts, or the mbox with the new entry committed; so does a
/// power cut, since each step is on disk before the next begins.
///
/// What is left: a crash after the commit and before the client reads its
/// 250 keeps a message the client was not told about, and a client may
/// send it again (RFC 5321 section 6.1 accepts that risk); the window is
/// the reply's trip, no longer a whole write and fdatasync. Nor is covered
/// a program appending without taking the lock while an append runs, or a
/// mailbox that is not a regular file (a device such as /dev/full, a pipe),
/// which gets no journal and no lock. The cost: three fdatasync() calls per
/// message instead of one.
class Mailbox {
  public:
    /// Opens (creating it if needed, mode 0600) `path` and `path`.journal,
    /// and recovers from an interrupted append as described above;
    /// recovery_report() tells what was done. Throws std::system_error with
    /// the errno (EAGAIN: another process holds the mbox's lock).
    explicit Mailbox(const std::string& path);
    ~Mailbox();
    Mailbox(const Mailbox&) = delete;
    Mailbox& operator=(const Mailbox&) = delete;

    /// The steps of append(), for tests that stop it as a kill would.
    enum class Stop { never, after_intent, after_write, after_sync, after_commit };

    /// Appends `entry` and returns once it and its commit record are on
    /// stable storage. Returns the errno on failure (ENOSPC when the disk is
    /// full, EAGAIN when another process holds the lock), after cutting the
    /// file back to its previous length: a message is either wholly in the
    /// mailbox or not at all. `stop` (tests only) returns right after that
    /// step, leaving the files as a SIGKILL there would.
    std::error_code append(std::string_view entry, Stop stop = Stop::never);

    /// One line saying what opening the mailbox recovered ("cut a torn
    /// entry at offset ..."), or empty when there was nothing to do.
    const std::string& recovery_report() const noexcept { return report_; }

    const std::string& path() const noexcept { return path_; }
    /// The journal's path; empty when the mailbox has none (not a regular file).
    const std::string& journal_path() const noexcept { return journal_path_; }

  private:
    struct Record;
    std::error_code append_unjournaled(std::string_view entry);
    std::error_code write_record(const Record& r);
    void recover();
    std::uint64_t context_hash(std::uint64_t end);

    std::string path_;
    std::string journal_path_;
    std::string report_;
    int fd_ = -1;
    int journal_fd_ = -1;
    std::uint64_t seq_ = 0;
};

}  // namespace smtp
