// mbox output. The entry is built in one buffer and written with as few
// write() calls as the kernel allows, then fdatasync()ed: the 250 reply that
// follows promises the message survives a crash. The journal that makes an
// append all-or-nothing is described in mbox.hpp.
#include "mbox.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

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

std::error_code errno_code(int err) {
    return {err, std::generic_category()};
}

// -- The journal's record -----------------------------------------------------

// Each slot: magic, sequence number, state, head length, start, length,
// context hash, the entry's first bytes, a reserved word, and a checksum of
// everything before it. Integers are little-endian.
constexpr std::size_t slot_size = 128;
constexpr std::size_t context_size = 64;  // bytes before the entry that must not change
constexpr std::size_t head_size = 64;     // the entry's first bytes
constexpr char magic[8] = {'m', 'b', 'o', 'x', 'j', 'n', 'l', '1'};
constexpr std::size_t off_seq = 8, off_state = 16, off_head_len = 20, off_start = 24,
                      off_length = 32, off_context = 40, off_head = 48, off_check = 120;

enum : std::uint32_t { state_appending = 1, state_done = 2 };

std::uint64_t fnv1a(std::string_view bytes) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (char c : bytes) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ull;
    }
    return h;
}

void put64(char* p, std::uint64_t v) {
    for (int i = 0; i < 8; ++i)
        p[i] = static_cast<char>(v >> (8 * i));
}

std::uint64_t get64(const char* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    return v;
}

// pread/pwrite of exactly `n` bytes; false on a short transfer or an error.
bool pread_all(int fd, char* buf, std::size_t n, std::uint64_t at) {
    while (n > 0) {
        ssize_t r = ::pread(fd, buf, n, static_cast<off_t>(at));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        buf += r;
        n -= static_cast<std::size_t>(r);
        at += static_cast<std::uint64_t>(r);
    }
    return true;
}

int write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
        } else if (n < 0 && errno != EINTR) {
            return errno;
        } else if (n == 0) {
            return EIO;
        }
    }
    return 0;
}

// An fcntl write lock on the whole file, taken without waiting and released
// when the guard goes.
class FileLock {
  public:
    explicit FileLock(int fd) : fd_(fd) {
        struct flock fl {};
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (::fcntl(fd_, F_SETLK, &fl) != 0) err_ = errno == EACCES ? EAGAIN : errno;
    }
    ~FileLock() {
        if (err_ != 0) return;
        struct flock fl {};
        fl.l_type = F_UNLCK;
        fl.l_whence = SEEK_SET;
        ::fcntl(fd_, F_SETLK, &fl);
    }
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;
    int error() const noexcept { return err_; }

  private:
    int fd_;
    int err_ = 0;
};

// The first position at or after `from` where "\nFrom " starts in the file,
// looking no further than `limit`; `limit` when there is none.
std::uint64_t find_next_entry(int fd, std::uint64_t from, std::uint64_t limit) {
    constexpr std::string_view sep = "\nFrom ";
    constexpr std::size_t chunk = 1 << 20;
    std::string buf;
    for (std::uint64_t pos = from; pos < limit;) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, limit - pos));
        buf.resize(n);
        if (!pread_all(fd, buf.data(), n, pos)) return limit;
        if (auto i = buf.find(sep); i != std::string::npos) return pos + i;
        if (pos + n >= limit) break;
        pos += n - (sep.size() - 1);  // a separator may span two chunks
    }
    return limit;
}

void sync_directory_of(const std::string& path) {
    auto slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

}  // namespace

struct Mailbox::Record {
    std::uint64_t seq = 0;
    std::uint32_t state = state_done;
    std::uint64_t start = 0;    ///< the mbox's length when the append began
    std::uint64_t length = 0;   ///< the entry's length
    std::uint64_t context = 0;  ///< fnv1a of the (up to) 64 bytes before `start`
    std::string head;           ///< the entry's first (up to) 64 bytes

    std::array<char, slot_size> encode() const {
        std::array<char, slot_size> s{};
        std::memcpy(s.data(), magic, sizeof magic);
        put64(s.data() + off_seq, seq);
        put64(s.data() + off_state, state | (std::uint64_t{head.size()} << 32));
        put64(s.data() + off_start, start);
        put64(s.data() + off_length, length);
        put64(s.data() + off_context, context);
        std::memcpy(s.data() + off_head, head.data(), head.size());
        put64(s.data() + off_check, fnv1a(std::string_view(s.data(), off_check)));
        return s;
    }

    static std::optional<Record> decode(const char* s) {
        if (std::memcmp(s, magic, sizeof magic) != 0) return std::nullopt;
        if (get64(s + off_check) != fnv1a(std::string_view(s, off_check))) return std::nullopt;
        Record r;
        r.seq = get64(s + off_seq);
        std::uint64_t word = get64(s + off_state);
        r.state = static_cast<std::uint32_t>(word);
        auto head_len = static_cast<std::size_t>(word >> 32);
        if (head_len > head_size) return std::nullopt;
        r.start = get64(s + off_start);
        r.length = get64(s + off_length);
        r.context = get64(s + off_context);
        r.head.assign(s + off_head, head_len);
        return r;
    }
};
static_assert(off_head + head_size <= off_check);
static_assert(off_state + 4 == off_head_len);

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
    fd_ = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0 && errno == EACCES) {
        // A device we may only write to.
        fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    }
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) return;  // no journal
    journal_path_ = path + ".journal";
    bool created = ::access(journal_path_.c_str(), F_OK) != 0;
    journal_fd_ = ::open(journal_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (journal_fd_ < 0) {
        int err = errno;
        ::close(fd_);
        throw std::system_error(err, std::generic_category(), "open " + journal_path_);
    }
    // A new journal (and perhaps a new mbox) must still exist after a power
    // cut: their directory entries are synced too.
    if (created) sync_directory_of(path);
    try {
        recover();
    } catch (...) {
        ::close(journal_fd_);
        ::close(fd_);
        throw;
    }
}

Mailbox::~Mailbox() {
    if (journal_fd_ >= 0) ::close(journal_fd_);
    if (fd_ >= 0) ::close(fd_);
}

std::uint64_t Mailbox::context_hash(std::uint64_t end) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(end, context_size));
    char buf[context_size];
    if (!pread_all(fd_, buf, n, end - n)) return 0;
    return fnv1a(std::string_view(buf, n));
}

std::error_code Mailbox::write_record(const Record& r) {
    auto slot = r.encode();
    const off_t at = static_cast<off_t>((r.seq % 2) * slot_size);
    if (::pwrite(journal_fd_, slot.data(), slot.size(), at) != static_cast<ssize_t>(slot.size()))
        return errno_code(errno != 0 ? errno : EIO);
    if (::fdatasync(journal_fd_) != 0) return errno_code(errno);
    return {};
}

void Mailbox::recover() {
    FileLock lock(fd_);
    if (lock.error() != 0)
        throw std::system_error(lock.error(), std::generic_category(), "lock " + path_);
    std::optional<Record> newest;
    for (std::size_t i = 0; i < 2; ++i) {
        char slot[slot_size];
        if (!pread_all(journal_fd_, slot, slot_size, i * slot_size)) continue;
        auto r = Record::decode(slot);
        if (r && (!newest || r->seq > newest->seq)) newest = r;
    }
    if (!newest) return;  // a new journal: no append ever began
    seq_ = newest->seq;
    if (newest->state != state_appending) return;

    const Record& r = *newest;
    struct stat st {};
    if (::fstat(fd_, &st) != 0)
        throw std::system_error(errno, std::generic_category(), "stat " + path_);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    const std::string at = "mbox " + path_ + ": ";
    const std::string where = " at offset " + std::to_string(r.start);
    if (size < r.start || context_hash(r.start) != r.context) {
        report_ = at + "changed by another program since an append" + where +
                  " was interrupted; nothing cut";
    } else if (size > r.start) {
        // Our entry runs to the end of the file, to where another program's
        // From line begins, or to its own length, whichever comes first.
        // (The newline before that From line may be either program's: it is
        // not compared with our entry's first bytes.)
        std::uint64_t limit = std::min(size, r.start + r.length);
        std::uint64_t next = find_next_entry(fd_, r.start + 1, size);
        std::uint64_t end = std::min(next + 1, limit);
        std::uint64_t ours = end - r.start;
        std::size_t have = static_cast<std::size_t>(
            std::min<std::uint64_t>(r.head.size(), std::min(next, limit) - r.start));
        std::string head(have, '\0');
        std::string what =
            ours < r.length ? "a torn entry (" + std::to_string(ours) + " of " +
                                  std::to_string(r.length) + " bytes)"
                            : "an unacknowledged entry of " + std::to_string(r.length) + " bytes";
        if (!pread_all(fd_, head.data(), have, r.start) || r.head.compare(0, have, head) != 0) {
            report_ = at + "changed by another program since an append" + where +
                      " was interrupted; nothing cut";
        } else if (end < size) {
            report_ = at + what + where + " is followed by " + std::to_string(size - end) +
                      " bytes another program appended; left in place";
        } else {
            if (::ftruncate(fd_, static_cast<off_t>(r.start)) != 0 || ::fdatasync(fd_) != 0)
                throw std::system_error(errno, std::generic_category(), "truncate " + path_);
            report_ = at + "cut " + what + where + ", left by an append that was interrupted";
        }
    }
    Record done = r;
    done.seq = ++seq_;
    done.state = state_done;
    if (auto ec = write_record(done)) throw std::system_error(ec, "write " + journal_path_);
}

std::error_code Mailbox::append_unjournaled(std::string_view entry) {
    int err = write_all(fd_, entry);
    if (err == 0 && ::fdatasync(fd_) != 0 && errno != EINVAL) err = errno;
    return err == 0 ? std::error_code() : errno_code(err);
}

std::error_code Mailbox::append(std::string_view entry, Stop stop) {
    if (journal_fd_ < 0) return append_unjournaled(entry);
    FileLock lock(fd_);
    if (lock.error() != 0) return errno_code(lock.error());
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return errno_code(errno);
    Record r;
    r.start = static_cast<std::uint64_t>(st.st_size);
    r.length = entry.size();
    r.context = context_hash(r.start);
    r.head = std::string(entry.substr(0, head_size));
    r.seq = ++seq_;
    r.state = state_appending;
    if (auto ec = write_record(r)) return ec;  // nothing is in the mbox yet
    if (stop == Stop::after_intent) return {};
    int err = write_all(fd_, entry);
    if (stop == Stop::after_write) return {};
    if (err == 0 && ::fdatasync(fd_) != 0) err = errno;
    if (stop == Stop::after_sync) return {};
    if (err == 0) {
        r.seq = ++seq_;
        r.state = state_done;
        std::error_code ec = write_record(r);
        if (!ec) return {};
        err = ec.value();
    }
    // Cut the entry off again and say so in the journal. If either fails, the
    // intent record stays the newest and the next start-up cuts it.
    if (::ftruncate(fd_, static_cast<off_t>(r.start)) == 0 && ::fdatasync(fd_) == 0) {
        r.seq = ++seq_;
        r.state = state_done;
        (void)write_record(r);
    }
    return errno_code(err);
}

}  // namespace smtp
