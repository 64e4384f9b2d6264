// AsyncChat: asynchat's async_chat on the Dispatcher core.

#include <asyncore/async_chat.hpp>
#include <asyncore/error.hpp>
#include <asyncore/tls.hpp>

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <limits>

#include "detail/no_sigpipe.hpp"

namespace asyncore {

namespace {

constexpr std::size_t npos = std::string_view::npos;
constexpr std::size_t unknown = npos - 1;

#ifdef IOV_MAX
constexpr int max_iov = IOV_MAX;
#else
constexpr int max_iov = 1024;
#endif

// Pushes up to this size are appended to the last queued buffer rather than
// queued on their own: many small replies then go out as one iovec.
constexpr std::size_t coalesce_limit = 4096;

// One receive buffer per thread, shared by every channel of that thread's
// maps: handlers run one at a time, so 10,000 idle connections cost no
// receive memory. A channel keeps only the few bytes of a partial terminator
// between reads. A nested read (a callback feeding another channel) finds
// the buffer in use and takes a private one.
struct ScratchBuffer {
    std::string bytes;
    bool busy = false;
};

class ScratchLease {
  public:
    explicit ScratchLease(std::size_t size) {
        thread_local ScratchBuffer scratch;
        if (!scratch.busy) {
            shared_ = &scratch;
            scratch.busy = true;
        }
        std::string& b = shared_ ? shared_->bytes : own_;
        if (b.size() < size) b.resize(size);
        data_ = b.data();
    }
    ~ScratchLease() {
        if (shared_) shared_->busy = false;
    }
    ScratchLease(const ScratchLease&) = delete;
    ScratchLease& operator=(const ScratchLease&) = delete;
    char* data() const noexcept { return data_; }

  private:
    ScratchBuffer* shared_ = nullptr;
    std::string own_;
    char* data_ = nullptr;
};

// memchr for one byte, glibc's two-way memmem otherwise: both linear.
std::size_t find_from(std::string_view buf, std::size_t pos, std::string_view term) {
    const char* base = buf.data() + pos;
    std::size_t len = buf.size() - pos;
    const void* hit = term.size() == 1 ? std::memchr(base, term[0], len)
                                       : ::memmem(base, len, term.data(), term.size());
    return hit ? static_cast<std::size_t>(static_cast<const char*>(hit) - buf.data()) : npos;
}

// sendmsg() rather than writev() for MSG_NOSIGNAL; writev() for descriptors
// that are not sockets. Returns the byte count, or -1 with `err` set.
long send_iov(int fd, iovec* iov, int count, int& err) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<std::size_t>(count);
    for (;;) {
        ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = detail::writev_no_sigpipe(fd, iov, count);
        if (n >= 0) return static_cast<long>(n);
        if (errno != EINTR) {
            err = errno;
            return -1;
        }
    }
}

}  // namespace

// -- Terminator -------------------------------------------------------------------

Terminator Terminator::any_of(std::vector<std::string> terminators) {
    if (terminators.empty()) throw std::invalid_argument("Terminator::any_of: empty list");
    for (const auto& t : terminators) {
        if (t.empty()) throw std::invalid_argument("Terminator::any_of: empty terminator");
    }
    Terminator t;
    t.kind_ = Kind::any_of;
    t.any_of_ = std::move(terminators);
    return t;
}

std::span<const std::string> Terminator::strings() const noexcept {
    if (kind_ == Kind::string) return {&string_, 1};
    if (kind_ == Kind::any_of) return any_of_;
    return {};
}

bool Terminator::collects_all() const noexcept {
    return kind_ == Kind::none || (kind_ == Kind::count && count_ == 0) ||
           (kind_ == Kind::string && string_.empty());
}

std::size_t find_prefix_at_end(std::string_view haystack, std::string_view needle) noexcept {
    if (needle.empty()) return 0;
    std::size_t l = std::min(needle.size() - 1, haystack.size());
    while (l > 0 && !haystack.ends_with(needle.substr(0, l)))
        --l;
    return l;
}

// -- Construction -----------------------------------------------------------------

/// The arguments of a start_tls() that waits for the output queued before it.
struct AsyncChat::PendingTls {
    TlsContext ctx;
    bool server_side;
    std::string server_hostname;
};

AsyncChat::AsyncChat(ChannelMap& map) : Dispatcher(map) {}

AsyncChat::AsyncChat(Socket sock, ChannelMap& map) : Dispatcher(std::move(sock), map) {}

AsyncChat::~AsyncChat() = default;

void AsyncChat::set_terminator(Terminator terminator) {
    terminator_ = std::move(terminator);
    ++terminator_gen_;
}

void AsyncChat::set_ac_in_buffer_size(std::size_t n) {
    if (n == 0) throw std::invalid_argument("AsyncChat: ac_in_buffer_size must be > 0");
    ac_in_buffer_size_ = n;
}

void AsyncChat::set_ac_out_buffer_size(std::size_t n) {
    if (n == 0) throw std::invalid_argument("AsyncChat: ac_out_buffer_size must be > 0");
    ac_out_buffer_size_ = n;
}

// -- Input ----------------------------------------------------------------------------

void AsyncChat::handle_read() {
    if (pending_tls_) return discard_read();
    const std::size_t held = held_.size();
    ScratchLease lease(held + ac_in_buffer_size_);
    std::memcpy(lease.data(), held_.data(), held);
    std::size_t n = 0;
    try {
        n = recv_into(std::span<char>(lease.data() + held, ac_in_buffer_size_));
    } catch (const std::system_error& e) {
        // A spurious wake-up (another reader took the data): asynchat ignores it.
        if (e.code() == std::errc::resource_unavailable_try_again ||
            e.code() == std::errc::operation_would_block) {
            return;
        }
        throw;
    }
    if (n == 0) return;  // EOF: recv_into() already called handle_close()
    held_.clear();
    process(std::string_view(lease.data(), held + n));
}

void AsyncChat::feed(std::string_view data) {
    if (held_.empty()) {
        process(data);
        return;
    }
    const std::size_t held = held_.size();
    ScratchLease lease(held + data.size());
    std::memcpy(lease.data(), held_.data(), held);
    if (!data.empty()) std::memcpy(lease.data() + held, data.data(), data.size());
    held_.clear();
    process(std::string_view(lease.data(), held + data.size()));
}

// The scanning loop. Each step consumes one record (or the data of one that
// is not complete yet) and re-reads the terminator, so a terminator changed
// by found_terminator() applies to the rest of the buffer. A step that finds
// no terminator keeps at most the bytes that may start one (fewer than the
// longest terminator) for the next read: each byte is scanned a bounded
// number of times, and nothing is ever rescanned from the start of a record.
void AsyncChat::process(std::string_view buf) {
    const std::size_t epoch = input_epoch_;
    ++scan_id_;
    std::size_t pos = 0;
    try {
        while (pos < buf.size() && input_epoch_ == epoch) {
            if (terminator_.collects_all()) {
                deliver(buf.substr(pos), 0);
                pos = buf.size();
            } else if (terminator_.kind() == Terminator::Kind::count) {
                pos = step_count(buf, pos, epoch);
            } else if (!step_strings(buf, pos, epoch)) {
                break;
            }
        }
    } catch (...) {
        scan_rest_ = 0;
        settle_input();
        flush_deferred_quietly();  // what was pushed before the throw goes out
        throw;
    }
    scan_rest_ = 0;
    settle_input();
    if (input_epoch_ == epoch) held_.assign(buf.substr(pos));
    if (send_deferred_) flush_deferred();
}

std::size_t AsyncChat::step_count(std::string_view buf, std::size_t pos, std::size_t epoch) {
    const std::size_t avail = buf.size() - pos;
    const std::size_t want = terminator_.count_;
    if (avail < want) {
        terminator_.count_ -= avail;
        deliver(buf.substr(pos), 0);
        return buf.size();
    }
    terminator_.count_ = 0;
    deliver(buf.substr(pos, want), 0);
    if (input_epoch_ == epoch) {
        last_terminator_.clear();
        end_record(buf.size() - (pos + want));
    }
    return pos + want;
}

bool AsyncChat::step_strings(std::string_view buf, std::size_t& pos, std::size_t epoch) {
    const Match m = scan_strings(buf, pos);
    if (!m.found) {
        deliver(buf.substr(pos, m.begin - pos), m.begin - pos);
        pos = m.begin;
        return false;
    }
    const std::size_t data_end = keep_terminator_ ? m.end : m.begin;
    deliver(buf.substr(pos, data_end - pos), m.begin - pos);
    pos = m.end;
    if (input_epoch_ != epoch) return false;
    last_terminator_.assign(buf.substr(m.begin, m.end - m.begin));
    end_record(buf.size() - m.end);
    return true;
}

// Finds where the record that starts at `pos` ends. Not found: `begin` is
// where the bytes to keep for the next read start (a possible partial
// terminator).
AsyncChat::Match AsyncChat::scan_strings(std::string_view buf, std::size_t pos) {
    const auto terms = terminator_.strings();
    if (terms.size() == 1) {
        const std::string& t = terms[0];
        std::size_t at = find_from(buf, pos, t);
        if (at != npos) return {true, at, at + t.size()};
        return {false, buf.size() - find_prefix_at_end(buf.substr(pos), t), 0};
    }
    std::size_t best = npos, which = 0, longest = 0;
    for (std::size_t i = 0; i < terms.size(); ++i) {
        std::size_t at = find_cached(buf, pos, i);
        if (at < best) best = at, which = i;
        longest = std::max(longest, terms[i].size());
    }
    // A longer terminator that starts before the match (or at it, listed
    // first) may still complete in the next read: wait for it, so that the
    // records never depend on how the stream was split.
    std::size_t hold = buf.size();
    if (best == npos || best + longest > buf.size()) {
        for (std::size_t i = 0; i < terms.size(); ++i) {
            std::size_t l = find_prefix_at_end(buf.substr(pos), terms[i]);
            if (l == 0) continue;
            std::size_t q = buf.size() - l;
            if (best == npos || q < best || (q == best && i < which)) hold = std::min(hold, q);
        }
    }
    if (hold < buf.size() || best == npos) return {false, hold, 0};
    return {true, best, best + terms[which].size()};
}

// any_of: each terminator's next occurrence is remembered for the rest of
// the buffer, so k records in one read cost one pass per terminator instead
// of k.
std::size_t AsyncChat::find_cached(std::string_view buf, std::size_t pos, std::size_t index) {
    const auto terms = terminator_.strings();
    if (match_scan_ != scan_id_ || match_gen_ != terminator_gen_ ||
        next_match_.size() != terms.size()) {
        next_match_.assign(terms.size(), unknown);
        match_scan_ = scan_id_;
        match_gen_ = terminator_gen_;
    }
    std::size_t& cached = next_match_[index];
    if (cached == npos || (cached != unknown && cached >= pos)) return cached;
    cached = find_from(buf, pos, terms[index]);
    return cached;
}

// Hands a piece of the current record to collect_incoming_data(). `counted`
// is how many of its bytes are record data under a string terminator, which
// max_input_buffer bounds.
void AsyncChat::deliver(std::string_view data, std::size_t counted) {
    if (counted > 0 && max_input_buffer_ > 0 && record_len_ + counted > max_input_buffer_) {
        reject_record();
    }
    record_len_ += counted;
    if (!data.empty()) collect_incoming_data(data);
}

// `rest` is how many bytes of the buffer being scanned follow this record:
// what start_tls() discards if found_terminator() calls it.
void AsyncChat::end_record(std::size_t rest) {
    record_len_ = 0;
    scan_rest_ = rest;
    ending_record_ = true;
    try {
        found_terminator();
    } catch (...) {
        ending_record_ = false;
        throw;
    }
    ending_record_ = false;
}

void AsyncChat::reject_record() {
    pending_ = {};
    incoming_.clear();
    record_len_ = 0;
    throw std::system_error(make_error_code(errc::limit_exceeded),
                            "AsyncChat: a record exceeded max_input_buffer (" +
                                std::to_string(max_input_buffer_) + " bytes) without a terminator");
}

// The collected data may still point into a receive buffer that is about to
// be reused: copy it out.
void AsyncChat::settle_input() {
    if (pending_.empty()) return;
    incoming_.append(pending_);
    pending_ = {};
}

void AsyncChat::collect_incoming_data(std::string_view data) {
    if (incoming_.empty() && pending_.empty()) {
        pending_ = data;  // zero-copy until the read ends
        return;
    }
    settle_input();
    incoming_.append(data);
}

void AsyncChat::found_terminator() {
    found_record(incoming());
    pending_ = {};
    incoming_.clear();
}

void AsyncChat::found_record(std::string_view) {
    throw std::logic_error("AsyncChat: override found_terminator() or found_record()");
}

std::string_view AsyncChat::incoming() {
    return pending_.empty() ? std::string_view(incoming_) : pending_;
}

std::string AsyncChat::get_data() {
    std::string data = pending_.empty() ? std::move(incoming_) : std::string(pending_);
    pending_ = {};
    incoming_.clear();
    return data;
}

// -- Output -------------------------------------------------------------------------

bool AsyncChat::can_send_directly() const noexcept {
    return out_.empty() && connected() && !write_blocked_;
}

// Sends from the caller's memory; returns true when nothing is left to queue
// (all sent, or the send found the peer gone and closed the channel).
bool AsyncChat::send_directly(std::string_view data, std::size_t& sent) {
    sent = Dispatcher::send(data);
    if (fileno() < 0) return true;
    if (sent < data.size()) write_blocked_ = true;
    return sent == data.size();
}

void AsyncChat::push(std::string_view data) {
    if (data.empty()) return;
    std::size_t sent = 0;
    const bool defer = defer_send();
    const bool tried = !defer && can_send_directly();
    if (tried && send_directly(data, sent)) return;
    enqueue(data.substr(sent));
    if (defer) return defer_after_enqueue();
    after_enqueue(tried);
}

void AsyncChat::push(std::string&& data) {
    if (data.empty()) return;
    std::size_t sent = 0;
    const bool defer = defer_send();
    const bool tried = !defer && can_send_directly();
    if (tried && send_directly(data, sent)) return;
    if (data.size() - sent <= coalesce_limit) {
        enqueue(std::string_view(data).substr(sent));
    } else {
        if (out_.empty()) out_offset_ = sent;
        out_bytes_ += data.size() - sent;
        out_.push_back(OutItem{std::move(data), nullptr, false});
    }
    if (defer) return defer_after_enqueue();
    after_enqueue(tried);
}

void AsyncChat::push(std::span<const std::byte> data) {
    push(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
}

void AsyncChat::push(std::span<const unsigned char> data) {
    push(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
}

void AsyncChat::push_with_producer(std::unique_ptr<Producer> producer) {
    if (!producer) throw std::invalid_argument("AsyncChat::push_with_producer: null producer");
    out_.push_back(OutItem{std::string(), std::move(producer), false});
    after_enqueue(false);
}

void AsyncChat::enqueue(std::string_view data) {
    out_bytes_ += data.size();
    if (!out_.empty() && data.size() <= coalesce_limit) {
        OutItem& last = out_.back();
        if (!last.producer && !last.mark() && last.data.size() < ac_out_buffer_size_) {
            last.data.append(data);
            return;
        }
    }
    out_.push_back(OutItem{std::string(data), nullptr, false});
}

// asynchat's push() ends with initiate_send(); skip it when the direct send
// just found the socket full, and when it is known full (write_blocked_):
// the write event will come.
void AsyncChat::after_enqueue(bool tried) {
    rearm();
    if (!tried && !write_blocked_) initiate_send();
    if (fileno() >= 0) check_high();
}

// A push from a record that more records of the same read follow: queued,
// sent with theirs when process() ends the scan (flush_deferred()). The
// watermark is checked then too, on what the send left.
void AsyncChat::defer_after_enqueue() {
    send_deferred_ = true;
    rearm();
}

// As the immediate sends the deferred pushes stand for: write until the
// socket is full or the queue empty (initiate_send() writes at most one
// ac_out_buffer_size at a time, as asynchat's does).
void AsyncChat::write_deferred() {
    send_deferred_ = false;
    for (;;) {
        if (write_blocked_ || fileno() < 0 || out_bytes_ == 0) return;
        const std::size_t before = out_bytes_;
        initiate_send();
        if (out_bytes_ >= before) return;  // a producer or a mark in the way
    }
}

void AsyncChat::flush_deferred() {
    write_deferred();
    if (fileno() >= 0) check_high();
}

// Before output is dropped (close(), discard_buffers()) or an exception
// leaves the scan: the deferred pushes get the send they were spared.
void AsyncChat::flush_deferred_quietly() noexcept {
    if (!send_deferred_) return;
    try {
        write_deferred();
    } catch (...) {
        // The channel is closing or failing already; its own error wins.
    }
}

void AsyncChat::close_when_done() {
    out_.push_back(OutItem{std::string(), nullptr, true});
    rearm();
}

void AsyncChat::initiate_send() {
    send_deferred_ = false;
    if (!connected() || fileno() < 0) return;
    rearm();
    if (!out_.empty() && !out_.front().mark()) {
        std::size_t n = write_queue();
        if (fileno() < 0) return;
        consume(n);
    }
    if (!out_.empty() && out_.front().close) {
        out_.pop_front();
        handle_close();
        return;
    }
    if (!out_.empty() && out_.front().start_tls) {
        out_.pop_front();
        start_pending_tls();
    }
    check_drained();
}

// Pulls producers at the front of the queue until one send's worth of bytes
// (ac_out_buffer_size) is ready or a close mark is reached. Producers are
// pulled here and nowhere else, so an endless producer never gets ahead of
// the socket by more than that.
void AsyncChat::pull_producers() {
    std::size_t bytes = 0;
    std::size_t i = 0;
    while (i < out_.size() && static_cast<int>(i) < max_iov && bytes < ac_out_buffer_size_) {
        OutItem& item = out_[i];
        if (item.mark()) return;
        if (!item.producer) {
            bytes += item.data.size() - (i == 0 ? out_offset_ : 0);
            ++i;
            continue;
        }
        std::string chunk = item.producer->more();
        if (chunk.empty()) {
            out_.erase(i);
            continue;
        }
        out_bytes_ += chunk.size();
        out_.insert(i, OutItem{std::move(chunk), nullptr, false});
    }
}

// One gathered write straight from the queued buffers: no copy into a
// contiguous output buffer.
std::size_t AsyncChat::write_queue() {
    pull_producers();
    iovec iov[max_iov];
    int count = 0;
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < out_.size() && count < max_iov && bytes < ac_out_buffer_size_;
         ++i) {
        const OutItem& item = out_[i];
        if (item.mark() || item.producer) break;
        std::size_t off = i == 0 ? out_offset_ : 0;
        std::size_t len = std::min(item.data.size() - off, ac_out_buffer_size_ - bytes);
        iov[count++] = iovec{const_cast<char*>(item.data.data() + off), len};
        bytes += len;
    }
    if (count == 0) return 0;
    if (tls_active()) {
        // Plaintext must go through the TLS session, one buffer at a time;
        // after a short write the queue still starts with the unsent bytes,
        // which is what OpenSSL's retry rule requires.
        std::size_t sent = Dispatcher::send(
            std::string_view(static_cast<const char*>(iov[0].iov_base), iov[0].iov_len));
        if (sent < iov[0].iov_len) write_blocked_ = true;
        return sent;
    }
    int err = 0;
    long n = send_iov(fileno(), iov, count, err);
    return finish_send(n, err, bytes);
}

// Returns the bytes written, 0 when the socket is full, or handles a
// disconnect (handle_close) and returns 0.
std::size_t AsyncChat::finish_send(long n, int err, std::size_t bytes) {
    if (n >= 0) {
        if (static_cast<std::size_t>(n) < bytes) write_blocked_ = true;
        return static_cast<std::size_t>(n);
    }
    if (err == EAGAIN || err == EWOULDBLOCK) {
        write_blocked_ = true;
        return 0;
    }
    if (is_disconnect_errno(err)) {
        handle_close();
        return 0;
    }
    throw_errno(err, "sendmsg");
}

void AsyncChat::consume(std::size_t n) {
    out_bytes_ -= n;
    while (n > 0) {
        const std::size_t avail = out_.front().data.size() - out_offset_;
        if (n < avail) {
            out_offset_ += n;
            return;
        }
        n -= avail;
        out_.pop_front();
        out_offset_ = 0;
    }
}

void AsyncChat::discard_buffers() {
    flush_deferred_quietly();
    held_.clear();
    pending_ = {};
    incoming_.clear();
    record_len_ = 0;
    ++input_epoch_;
    out_.clear();
    out_offset_ = 0;
    out_bytes_ = 0;
    pending_tls_.reset();
    rearm();
    check_drained();
}

// -- TLS --------------------------------------------------------------------------

// Plaintext must never cross into the TLS part of the conversation: the
// input not yet delivered goes now, the output queued goes out first (the
// mark below), and what arrives meanwhile is read and dropped (discard_read).
void AsyncChat::start_tls(const TlsContext& ctx, bool server_side, std::string server_hostname) {
    if (pending_tls_)
        throw std::logic_error("start_tls: TLS already waits to start on this channel");
    if (out_.empty()) {
        Dispatcher::start_tls(ctx, server_side, std::move(server_hostname));
        discard_unread_input();
        return;
    }
    check_tls_arguments(ctx, server_side, server_hostname);
    discard_unread_input();
    pending_tls_.reset(new PendingTls{ctx, server_side, std::move(server_hostname)});
    out_.push_back(OutItem{std::string(), nullptr, false, true});
    rearm();
    if (!write_blocked_) initiate_send();
}

// What Dispatcher::start_tls() would refuse, checked before the call is
// deferred so that the caller hears of it.
void AsyncChat::check_tls_arguments(const TlsContext& ctx, bool server_side,
                                    const std::string& server_hostname) const {
    if (fileno() < 0 || accepting() || !(connected() || connecting())) {
        throw std::logic_error("start_tls: the channel has no connected socket");
    }
    if (tls_active()) throw std::logic_error("start_tls: TLS already runs on this channel");
    if (ctx.server_side() != server_side) {
        throw std::invalid_argument(server_side ? "start_tls: a server needs a server TlsContext"
                                                : "start_tls: a client needs a client TlsContext");
    }
    const int family = addr().family();
    if (!server_side && ctx.verify() == TlsContext::Verify::peer && server_hostname.empty() &&
        family != AF_INET && family != AF_INET6) {
        throw std::invalid_argument(
            "TLS client: the server's host name or IP address is needed to verify it");
    }
}

void AsyncChat::discard_unread_input() {
    std::size_t n = held_.size() + scan_rest_;
    held_.clear();
    scan_rest_ = 0;
    ++input_epoch_;  // process() stops after the current record
    if (!ending_record_) {
        n += incoming_.size() + pending_.size();
        incoming_.clear();
        pending_ = {};
        record_len_ = 0;
    }
    plaintext_discarded_ += n;
}

// Input while TLS waits for the output to drain: plaintext the peer sent
// past STARTTLS. It is read (not left to spin the loop) and dropped.
void AsyncChat::discard_read() {
    ScratchLease lease(ac_in_buffer_size_);
    try {
        plaintext_discarded_ += recv_into(std::span<char>(lease.data(), ac_in_buffer_size_));
    } catch (const std::system_error& e) {
        if (e.code() != std::errc::resource_unavailable_try_again &&
            e.code() != std::errc::operation_would_block) {
            throw;
        }
    }
}

void AsyncChat::start_pending_tls() {
    std::unique_ptr<PendingTls> p = std::move(pending_tls_);
    Dispatcher::start_tls(p->ctx, p->server_side, std::move(p->server_hostname));
}

// -- Watermarks -----------------------------------------------------------------------

void AsyncChat::set_output_watermarks(std::size_t low, std::size_t high) {
    if (low > high) throw std::invalid_argument("AsyncChat: output low watermark above high");
    out_low_ = low;
    out_high_ = high;
    check_high();
    check_drained();
}

void AsyncChat::check_high() {
    if (out_paused_ || out_bytes_ <= out_high_) return;
    out_paused_ = true;
    rearm();
    on_output_high();
}

void AsyncChat::check_drained() {
    if (!out_paused_ || out_bytes_ > out_low_) return;
    out_paused_ = false;
    rearm();
    on_output_drained();
}

void AsyncChat::on_output_high() {}

void AsyncChat::on_output_drained() {}

// -- Dispatcher hooks -----------------------------------------------------------------

void AsyncChat::handle_write() {
    write_blocked_ = false;
    initiate_send();
}

// asynchat closes at once. But with close_when_done() queued behind output,
// the close is already planned for when that output is written: a peer's
// EOF (a half-close: it still reads) stops the reading only, and the output
// goes on. A peer that is gone fails the next send, which comes back here
// with reading stopped and closes.
void AsyncChat::handle_close() {
    // Not connected (a peer gone before the accept: asyncore's getpeername()
    // rule), the queue can never be written: close at once.
    if (!reading_stopped() && close_queued() && fileno() >= 0 && connected() &&
        !out_.front().close) {
        stop_reading();
        return;
    }
    close();
}

bool AsyncChat::close_queued() const noexcept {
    for (std::size_t i = 0; i < out_.size(); ++i)
        if (out_[i].close) return true;
    return false;
}

void AsyncChat::close() {
    flush_deferred_quietly();
    ++input_epoch_;
    pending_tls_.reset();
    Dispatcher::close();
}

bool AsyncChat::readable() {
    return true;
}

bool AsyncChat::writable() {
    return !out_.empty() || !connected();
}

}  // namespace asyncore
