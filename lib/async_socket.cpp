// AsyncSocket: each operation is a small state machine (step) run once when
// started and again on each readiness event, or in a poll() loop in blocking
// mode.

#include <asyncore/async_file.hpp>
#include <asyncore/async_socket.hpp>

#include <netdb.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <new>
#include <vector>

#include "detail/io_wait.hpp"
#include "detail/map_core.hpp"
#include "detail/socket_state.hpp"

namespace asyncore {
namespace detail {

namespace {

using Code = SocketOp::Code;

// Memory per idle connection (issue 6): a plaintext socket's state must fit
// a 128-byte malloc chunk (120 usable bytes on 64-bit glibc), and its
// operations carry no TLS-only fields beyond one pointer.
static_assert(sizeof(void*) != 8 || sizeof(SocketState) <= 120);
static_assert(sizeof(void*) != 8 || sizeof(SocketOp) <= 168);
// Only the operations that return or own a string carry one.
static_assert(sizeof(SocketAwaitable<void>) == sizeof(SocketOp));
static_assert(sizeof(SocketAwaitable<std::size_t>) == sizeof(SocketOp));
static_assert(sizeof(SocketAwaitable<void, false, true>) == sizeof(SocketOp) + sizeof(std::string));

bool is_write(Code c) noexcept {
    return c >= Code::send && c != Code::handshake;
}

bool is_read(Code c) noexcept {
    return c < Code::send || c == Code::handshake;
}

constexpr std::size_t header_size = 4;

// Fairness between tasks. An operation tries its system call before it waits,
// so a task whose peer keeps its socket busy (a flood, a fast bulk sender)
// would otherwise finish operation after operation without ever returning
// to the loop, and every other connection would wait behind it. asyncore is
// fair by construction (one handle_read() per channel per pass); here a
// socket waits one pass, on its level-triggered readiness (so it waits
// only while the loop serves the others), after fair_streak operations
// that all finished at once, or fewer that moved fair_bytes between them,
// and an operation that loops inside one step (recvall, recv_msg, sendall,
// send_msg) after moving fair_bytes. libuv
// reads at most 32 times per readiness event for the same reason.
constexpr std::uint8_t fair_streak = 16;
constexpr std::size_t fair_bytes = 256 * 1024;

// Whether `op` may wait a pass for the others: run by the loop, and an
// operation whose wait for its readiness cannot miss anything (not a TLS
// handshake, a connect or a close_notify; not a TLS read served from what
// OpenSSL holds; not a TLS socket before its handshake, whose operations
// fail at once).
bool may_yield(const SocketOp& op) noexcept {
    if (op.blocking) return false;
    switch (op.code) {
        case Code::recv:
        case Code::recv_into:
        case Code::recv_all:
        case Code::recv_msg:
        case Code::recvfrom:
        case Code::accept:
            return op.state->input_only_in_kernel();
        case Code::send:
        case Code::send_all:
        case Code::send_msg:
        case Code::sendto:
            return op.state->writes_wait_on_kernel();
        default:
            return false;
    }
}

// Whether `op`, having moved `moved` bytes in this step with more to move,
// should wait a pass for the others (and makes that wait the right one).
bool yield_after(SocketOp& op, std::size_t moved) noexcept {
    if (moved < fair_bytes || !may_yield(op)) return false;
    op.wait_write = is_write(op.code);
    return true;
}

Io classify(ssize_t r, SocketOp& op) noexcept {
    if (r > 0) return Io::progress;
    if (r == 0) return Io::eof;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Io::again;
    op.error = errno;
    return Io::failed;
}

// A socket given a context but not yet through its handshake must never
// carry plaintext.
Io not_connected(SocketOp& op) noexcept {
    op.error = ENOTCONN;
    return Io::failed;
}

// One recv(), or one TLS read: the seam every stream read goes through,
// which also notes whether it drained the socket (see read_drained).
Io read_some(SocketOp& op, int fd, char* buf, std::size_t len, std::size_t& got) noexcept {
    SocketState& s = *op.state;
    if (TlsSession* tls = s.tls()) {
        Io io = tls_io(op, *tls, tls->read({buf, len}), got);
        s.note_tls_read(io == Io::progress && got < len);
        if (io == Io::progress) s.note_progress(op);
        return io;
    }
    if (s.tls_ctx() != nullptr) return not_connected(op);
    ssize_t r = ::recv(fd, buf, len, 0);
    s.note_read(r, len);
    Io io = classify(r, op);
    if (io == Io::progress) {
        got = static_cast<std::size_t>(r);
        s.note_progress(op);
    }
    return io;
}

// One send(), or one TLS write (a retry passes the same leading bytes, as
// OpenSSL requires, because op.done moves only on progress).
Io write_some(SocketOp& op, int fd, const char* buf, std::size_t len, std::size_t& put) noexcept {
    SocketState& s = *op.state;
    Io io;
    if (TlsSession* tls = s.tls()) {
        io = tls_io(op, *tls, tls->write({buf, len}), put);
    } else if (s.tls_ctx() != nullptr) {
        return not_connected(op);
    } else {
        ssize_t r = ::send(fd, buf, len, MSG_NOSIGNAL);
        io = classify(r, op);
        if (io == Io::progress) put = static_cast<std::size_t>(r);
    }
    if (io == Io::progress) s.note_progress(op);
    return io;
}

// Reads into op.in[op.done, op.n) until full, EOF, EAGAIN or an error.
// Returns true when the operation is over (full, EOF handled, error).
bool read_exact(SocketOp& op, int fd) noexcept {
    op.done += op.state->take_ahead(op.in->data() + op.done, op.n - op.done);
    std::size_t moved = 0;
    while (op.done < op.n) {
        std::size_t got = 0;
        switch (read_some(op, fd, op.in->data() + op.done, op.n - op.done, got)) {
            case Io::progress:
                op.done += got;
                moved += got;
                if (op.done < op.n && yield_after(op, moved)) return false;
                break;
            case Io::again:
                return false;
            case Io::eof:
                op.in->resize(op.done);
                op.lib_error = errc::truncated;
                return true;
            case Io::failed:
                return true;
        }
    }
    return true;
}

// recv() (or a TLS read) lands in a per-thread scratch buffer and only
// what arrived is copied out: the result is allocated at its real size,
// nothing is zero-filled, and a receive that waits holds no buffer. Only a
// request larger than the scratch buffer is read in place.
constexpr std::size_t scratch_size = 64 * 1024;

char* scratch() {
    thread_local std::unique_ptr<char[]> buf;
    if (!buf) buf.reset(new (std::nothrow) char[scratch_size]);
    return buf.get();
}

bool step_recv(SocketOp& op, int fd) noexcept {
    SocketState& s = *op.state;
    std::string& in = *op.in;
    if (std::size_t have = s.ahead_len(); have > 0) {
        in.resize(std::min(op.n, have));
        s.take_ahead(in.data(), in.size());
        op.done = in.size();
        return true;
    }
    if (op.n == 0) {
        in.clear();
        return true;
    }
    char* buf = op.n <= scratch_size ? scratch() : nullptr;
    if (buf == nullptr && in.size() != op.n) in.resize(op.n);
    std::size_t got = 0;
    switch (read_some(op, fd, buf != nullptr ? buf : in.data(), op.n, got)) {
        case Io::again:
            if (buf == nullptr && op.code == Code::recv) std::string().swap(in);
            return false;
        case Io::progress:
            if (buf != nullptr) {
                in.assign(buf, got);
            } else {
                in.resize(got);
            }
            op.done = in.size();
            return true;
        default:
            in.clear();
            return true;
    }
}

// Fills the read-ahead buffer until it holds a header. The length is
// checked before anything is allocated for the payload.
bool read_header(SocketOp& op, int fd) noexcept {
    SocketState& s = *op.state;
    if (!s.ahead) s.ahead.reset(new (std::nothrow) char[SocketState::ahead_size]);
    if (!s.ahead) {
        op.error = ENOMEM;
        return true;
    }
    while (s.ahead_len() < header_size) {
        if (s.ahead_begin > 0) {
            std::memmove(s.ahead.get(), s.ahead.get() + s.ahead_begin, s.ahead_len());
            s.ahead_end -= s.ahead_begin;
            s.ahead_begin = 0;
        }
        std::size_t got = 0;
        char* free_space = s.ahead.get() + s.ahead_end;
        switch (read_some(op, fd, free_space, SocketState::ahead_size - s.ahead_end, got)) {
            case Io::progress:
                s.ahead_end += static_cast<std::uint32_t>(got);
                break;
            case Io::again:
                return false;
            case Io::eof:
                if (s.ahead_len() == 0) {
                    op.eof = true;
                } else {
                    op.in->resize(s.ahead_len());
                    s.take_ahead(op.in->data(), op.in->size());
                    op.lib_error = errc::truncated;
                }
                return true;
            case Io::failed:
                return true;
        }
    }
    s.take_ahead(reinterpret_cast<char*>(op.header), header_size);
    op.header_done = header_size;
    std::size_t len = (std::size_t{op.header[0]} << 24) | (std::size_t{op.header[1]} << 16) |
                      (std::size_t{op.header[2]} << 8) | std::size_t{op.header[3]};
    if (len > s.max_message) {
        // The socket stays open: closing it now, with the peer's input
        // unread, would make the kernel reset the connection, and a reset
        // throws away what the peer has not read yet of what we sent it.
        // The caller closes (sample::lingering_close shows how to do it
        // without losing those bytes).
        op.lib_error = errc::message_too_large;
        s.framing_lost = true;
        return true;
    }
    op.n = len;
    op.in->resize(len);
    return true;
}

bool step_recv_msg(SocketOp& op, int fd) noexcept {
    if (op.state->framing_lost) {
        op.lib_error = errc::message_too_large;
        return true;
    }
    if (op.header_done < header_size) {
        if (!read_header(op, fd)) return false;
        if (op.eof || op.lib_error != errc{} || op.error != 0) return true;
    }
    return read_exact(op, fd);
}

bool step_recvfrom(SocketOp& op, int fd) noexcept {
    if (op.in->size() != op.n) op.in->resize(op.n);
    socklen_t len = Address::capacity;
    ssize_t r = ::recvfrom(fd, op.in->data(), op.n, 0, op.addr->native(), &len);
    if (r < 0) {
        if (classify(r, op) == Io::again) return false;
        return true;
    }
    op.addr->set_native_size(len);
    op.in->resize(static_cast<std::size_t>(r));
    op.state->note_progress(op);
    return true;
}

// How long accept() stops watching its listener when the process is out of
// descriptors (or the kernel out of memory), as Dispatcher's accept does:
// long enough that a backlog of pending connections does not spin the loop,
// short enough that accepting resumes promptly once descriptors are freed.
constexpr auto accept_pause = std::chrono::milliseconds(100);

bool is_accept_resource_error(int err) noexcept {
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

bool step_accept(SocketOp& op, int fd) noexcept {
    if (op.handshaking) return step_handshake(op);
    for (;;) {
        socklen_t len = Address::capacity;
        int c = ::accept4(fd, op.addr->native(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0) {
            op.addr->set_native_size(len);
            op.state->note_progress(op);
            if (op.state->tls_ctx() != nullptr) return start_accept_handshake(op, c);
            op.accepted = c;
            return true;
        }
        const int err = errno;
        // A connection reset while queued is the peer's business, not ours.
        if (err == ECONNABORTED || err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) return false;
        // The listener is fine and the connections wait in its backlog: a
        // pause, then another try (pause_accept, or run_blocking's sleep).
        if (is_accept_resource_error(err)) {
            std::fprintf(stderr, "accept: %s; pausing accepts for %d ms\n", std::strerror(err),
                         static_cast<int>(accept_pause.count()));
            op.backing_off = true;
            return false;
        }
        op.error = err;
        return true;
    }
}

bool step_send(SocketOp& op, int fd, bool all) noexcept {
    std::size_t moved = 0;
    while (op.done < op.out.size()) {
        std::size_t put = 0;
        Io io = write_some(op, fd, op.out.data() + op.done, op.out.size() - op.done, put);
        if (io == Io::again) return false;
        if (io != Io::progress) return true;
        op.done += put;
        moved += put;
        if (!all) return true;
        if (op.done < op.out.size() && yield_after(op, moved)) return false;
    }
    return true;
}

// Header and payload leave in one sendmsg() whenever the kernel takes both.
bool step_send_msg(SocketOp& op, int fd) noexcept {
    if (TlsSession* tls = op.state->tls()) return step_send_msg_tls(op, *tls);
    if (op.state->tls_ctx() != nullptr) return not_connected(op) == Io::failed;
    std::size_t total = header_size + op.out.size();
    std::size_t moved = 0;
    while (op.done < total) {
        iovec iov[2];
        int count = 0;
        if (op.done < header_size) {
            iov[count++] = {op.header + op.done, header_size - op.done};
            iov[count++] = {const_cast<char*>(op.out.data()), op.out.size()};
        } else {
            std::size_t off = op.done - header_size;
            iov[count++] = {const_cast<char*>(op.out.data()) + off, op.out.size() - off};
        }
        msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = static_cast<std::size_t>(count);
        ssize_t r = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (r < 0) {
            if (classify(r, op) == Io::again) return false;
            return true;
        }
        op.done += static_cast<std::size_t>(r);
        moved += static_cast<std::size_t>(r);
        op.state->note_progress(op);
        if (op.done < total && yield_after(op, moved)) return false;
    }
    return true;
}

bool step_sendto(SocketOp& op, int fd) noexcept {
    ssize_t r = ::sendto(fd, op.out.data(), op.out.size(), MSG_NOSIGNAL, op.addr->native(),
                         op.addr->native_size());
    if (r < 0) {
        if (classify(r, op) == Io::again) return false;
        return true;
    }
    op.done = static_cast<std::size_t>(r);
    op.state->note_progress(op);
    return true;
}

// connect(): the first step issues it; later steps read its outcome; over
// TLS, the handshake follows.
bool step_connect(SocketOp& op, int fd) noexcept {
    if (op.handshaking) return step_handshake(op);
    if (op.done == 0) {
        op.done = 1;
        if (::connect(fd, op.addr->native(), op.addr->native_size()) == 0) {
            op.state->note_progress(op);
            return op.state->tls_ctx() != nullptr ? start_connect_handshake(op) : true;
        }
        if (errno == EINPROGRESS || errno == EINTR) return false;
        op.error = errno;
        return true;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    op.error = err;
    if (err == 0) op.state->note_progress(op);
    if (err == 0 && op.state->tls_ctx() != nullptr) return start_connect_handshake(op);
    return true;
}

bool step(SocketOp& op) noexcept {
    int fd = op.state->sock.fd();
    if (fd < 0) {
        // A socket its idle timeout closed says so to every later operation.
        if (op.state->idle_fired()) {
            op.outcome = errc::timed_out;
        } else {
            op.error = EBADF;
        }
        return true;
    }
    switch (op.code) {
        case Code::recv:
        case Code::recv_into:
            return step_recv(op, fd);
        case Code::recv_all:
            if (op.in->size() != op.n) op.in->resize(op.n);
            return read_exact(op, fd);
        case Code::recv_msg:
            return step_recv_msg(op, fd);
        case Code::recvfrom:
            return step_recvfrom(op, fd);
        case Code::accept:
            return step_accept(op, fd);
        case Code::send:
            return step_send(op, fd, false);
        case Code::send_all:
            return step_send(op, fd, true);
        case Code::send_msg:
            return step_send_msg(op, fd);
        case Code::sendto:
            return step_sendto(op, fd);
        case Code::connect:
            return step_connect(op, fd);
        case Code::tls_shutdown:
            return step_tls_shutdown(op);
        case Code::handshake:
            return step_handshake(op);
    }
    return true;
}

// How long shutdown_tls() waits for room for close_notify without a timeout.
constexpr auto close_notify_wait = std::chrono::seconds(5);

// The watch the next wait needs: the readiness a TLS step asked for, on the
// accepted connection during its handshake. When a reader needs to write
// while the writer waits on that watch (or the reverse), it waits for its
// own readiness instead: one watch holds one waiter.
IoWatch& watch_for(SocketOp& op) noexcept {
    SocketState& s = *op.io_state();
    IoWatch& wanted = op.wait_write ? s.write_watch : s.read_watch;
    if (wanted.waiter() == nullptr || wanted.waiter() == &op) return wanted;
    return is_write(op.code) ? s.write_watch : s.read_watch;
}

// The timeout of a wait about to start: a handshake has its own bound, and
// shutdown_tls() always has one.
Timeout wait_timeout(const SocketOp& op) noexcept {
    const SocketState& s = *op.state;
    if (op.handshaking && s.handshake_timeout()) return s.handshake_timeout();
    if (op.code == Code::tls_shutdown && !s.timeout()) return close_notify_wait;
    return s.timeout();
}

void end_accept_pause(SocketOp& op) noexcept;

// accept() found the process out of descriptors: its wait stays registered
// (its timeout runs on) but stops watching the listener until the pause
// ends. Without a timer (out of memory) it keeps watching: retried on the
// next readiness instead.
void pause_accept(SocketOp& op) noexcept {
    auto* watch = static_cast<IoWatch*>(op.watch);
    try {
        op.rare_part().backoff = core_of(op.task->map())
                                     .schedule(
                                         accept_pause, [&op] { end_accept_pause(op); }, false);
    } catch (...) {
        op.backing_off = false;
        return;
    }
    watch->pause();
}

// The pause is over: watch the listener again, if the accept still waits
// on it (a timeout, terminate() or close() may have ended it meanwhile).
void end_accept_pause(SocketOp& op) noexcept {
    op.backing_off = false;
    if (op.state == nullptr) return;
    auto* watch = static_cast<IoWatch*>(op.watch);
    if (watch == nullptr || watch->waiter() != &op) return;
    if (!watch->resume()) {
        op.backing_off = true;
        pause_accept(op);
    }
}

// A readiness event ran a step that must wait again: a TLS step may need the
// other readiness or (accept) the new connection's descriptor, and a
// handshake that has just begun starts its own timer. An accept() out of
// descriptors pauses.
bool step_waiter(IoWaiter& w) noexcept {
    auto& op = static_cast<SocketOp&>(w);
    bool was_handshaking = op.handshaking;
    if (step(op)) return true;
    if (op.backing_off) {
        pause_accept(op);
        return false;
    }
    auto* current = static_cast<IoWatch*>(op.watch);
    IoWatch& target = watch_for(op);
    if (&target != current) current->move_waiter(op, target);
    if (!was_handshaking && op.handshaking && op.state->handshake_timeout()) {
        op.task->suspend(op, op.handle, op.state->handshake_timeout());
    }
    return false;
}

// A wait taken back before its readiness (terminate(), a timeout) ends the
// operation: the socket may be gone by the time the task resumes.
void detach_op(Wait& w) noexcept {
    IoWatch::detach(w);
    orphan(static_cast<SocketOp&>(w));
}

const char* op_name(Code c) noexcept {
    static constexpr const char* names[] = {
        "recv",    "recv_into", "recvall", "recv_msg", "recvfrom",     "accept",   "send",
        "sendall", "send_msg",  "sendto",  "connect",  "shutdown_tls", "start_tls"};
    static_assert(std::size(names) == static_cast<std::size_t>(Code::handshake) + 1);
    return names[static_cast<int>(c)];
}

using Deadline = std::optional<std::chrono::steady_clock::time_point>;

Deadline deadline_after(Timeout timeout) {
    if (!timeout) return std::nullopt;
    return std::chrono::steady_clock::now() +
           std::chrono::duration_cast<std::chrono::steady_clock::duration>(*timeout);
}

// Milliseconds left until `deadline` for poll(); -1 without one.
int poll_ms(const Deadline& deadline) {
    if (!deadline) return -1;
    auto left =
        std::chrono::ceil<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

}  // namespace

// -- Idle timeout -------------------------------------------------------------------

namespace {

// The socket was idle for its timeout: it is closed, and the operations
// waiting on it, and every one started afterwards, fail with TimeoutError.
void socket_idle_expired(IdleEntry& e) noexcept {
    auto& idle = static_cast<SocketIdle&>(e);
    idle.fired = true;
    idle.state->close();
}

}  // namespace

SocketIdle::~SocketIdle() {
    if (scheduled()) core->idle->stop(*this);
}

void SocketState::note_progress(const SocketOp& op) noexcept {
    if (idle && !op.blocking) [[unlikely]] {
        idle->core->touch(*idle);
    }
}

void SocketState::stop_idle() noexcept {
    if (idle && idle->scheduled()) idle->core->idle->stop(*idle);
}

void SocketOp::frame_header() noexcept {
    if (out.size() > std::numeric_limits<std::uint32_t>::max()) {
        lib_error = errc::message_too_large;
        return;
    }
    auto len = static_cast<std::uint32_t>(out.size());
    header[0] = static_cast<unsigned char>(len >> 24);
    header[1] = static_cast<unsigned char>(len >> 16);
    header[2] = static_cast<unsigned char>(len >> 8);
    header[3] = static_cast<unsigned char>(len);
}

void SocketStateDeleter::operator()(SocketState* s) const noexcept {
    delete s;
}

void SocketOp::release() noexcept {
    if (code == Code::accept && state->tls_fields && state->tls_fields->accepting == this) {
        state->tls_fields->accepting = nullptr;
    }
    if (is_read(code)) state->reading = false;
    if (is_write(code)) state->writing = false;
    claimed = false;
}

bool SocketOp::begin() noexcept {
    if (lib_error != errc{}) return true;
    if (state == nullptr) {
        error = EBADF;
        return true;
    }
    if ((is_read(code) && state->reading) || (is_write(code) && state->writing)) {
        lib_error = errc::busy;
        return true;
    }
    if (is_read(code)) state->reading = true;
    if (is_write(code)) state->writing = true;
    claimed = true;
    IoWaiter::step = step_waiter;
    if ((state->read_drained_now() && expects_stream_data()) || owes_a_pass()) {
        state->streak = 0;
        return false;
    }
    const bool finished = detail::step(*this);
    if (!finished) {
        state->streak = 0;  // it waits
    } else {
        // One per operation, and one per sixteenth of fair_bytes it moved.
        std::size_t weight = 1 + done / (fair_bytes / fair_streak);
        state->streak =
            static_cast<std::uint8_t>(std::min<std::size_t>(fair_streak, state->streak + weight));
    }
    return finished;
}

// The socket's last fair_streak operations all finished without a wait (see
// fair_streak): this one waits a pass first, where it may (may_yield).
bool SocketOp::owes_a_pass() const noexcept {
    return state->streak >= fair_streak && may_yield(*this);
}

bool SocketOp::expects_stream_data() const noexcept {
    switch (code) {
        case Code::recv:
        case Code::recv_into:
        case Code::recv_all:
            return n > 0;
        case Code::recv_msg:
            return true;
        default:
            return false;
    }
}

bool SocketOp::suspend(TaskCore& t, std::coroutine_handle<> h) {
    if (!watch_for(*this).suspend(*this, t, h, wait_timeout(*this))) return false;
    detach_fn = detach_op;
    if (backing_off) pause_accept(*this);
    return true;
}

SocketState* SocketOp::io_state() const noexcept {
    return rare && rare->conn ? rare->conn.get() : state;
}

Connection SocketOp::take_connection() {
    if (rare && rare->conn) {
        return Connection{AsyncSocket(std::unique_ptr<SocketState>(rare->conn.release())), *addr};
    }
    return Connection{AsyncSocket(Socket(std::exchange(accepted, -1))), *addr};
}

void SocketOp::fail() {
    throw_if_failed();
    if (rare && !rare->reason.empty()) throw TlsError(lib_error, rare->reason);
    if (lib_error == errc::truncated) throw TruncatedError(in ? std::move(*in) : std::string());
    if (lib_error != errc{}) throw std::system_error(make_error_code(lib_error), op_name(code));
    if (error != 0) throw_errno(error, op_name(code));
}

void SocketOp::run_blocking() {
    blocking = true;
    if (begin()) return;
    Deadline deadline = deadline_after(wait_timeout(*this));
    bool was_handshaking = handshaking;
    for (;;) {
        if (backing_off) {
            // accept() out of descriptors: sleep out the pause (or what is
            // left of the timeout), then try again.
            backing_off = false;
            int ms = static_cast<int>(accept_pause.count());
            if (deadline) {
                int left = poll_ms(deadline);
                if (left == 0) {
                    outcome = errc::timed_out;
                    return;
                }
                ms = std::min(ms, left);
            }
            ::poll(nullptr, 0, ms);
            if (detail::step(*this)) return;
            continue;
        }
        if (!was_handshaking && handshaking) {
            was_handshaking = true;
            if (state->handshake_timeout()) deadline = deadline_after(state->handshake_timeout());
        }
        pollfd p{io_state()->sock.fd(), static_cast<short>(wait_write ? POLLOUT : POLLIN), 0};
        int r = ::poll(&p, 1, poll_ms(deadline));
        if (r < 0 && errno != EINTR) {
            error = errno;
            return;
        }
        if (r == 0) {
            outcome = errc::timed_out;
            return;
        }
        if (r > 0 && detail::step(*this)) return;
    }
}

}  // namespace detail

using detail::SocketOp;
using Code = SocketOp::Code;

AsyncSocket::AsyncSocket() noexcept = default;

AsyncSocket::AsyncSocket(Socket sock) : s_(std::make_unique<detail::SocketState>()) {
    sock.set_nonblocking(true);
    s_->sock = std::move(sock);
    s_->bind_watches();
}

AsyncSocket::AsyncSocket(int family, int type) : AsyncSocket(Socket::create(family, type)) {}

AsyncSocket::AsyncSocket(std::unique_ptr<detail::SocketState> s) noexcept : s_(std::move(s)) {}

AsyncSocket::AsyncSocket(AsyncSocket&&) noexcept = default;

AsyncSocket& AsyncSocket::operator=(AsyncSocket&& o) noexcept {
    if (this != &o) {
        close();
        s_ = std::move(o.s_);
    }
    return *this;
}

AsyncSocket::~AsyncSocket() {
    close();
}

int AsyncSocket::fd() const noexcept {
    return s_ ? s_->sock.fd() : -1;
}

namespace {

int checked_fd(const std::unique_ptr<detail::SocketState>& s) {
    if (!s || !s->sock) throw_errno(EBADF, "AsyncSocket");
    return s->sock.fd();
}

}  // namespace

void AsyncSocket::bind(const Address& addr) {
    if (::bind(checked_fd(s_), addr.native(), addr.native_size()) < 0) throw_errno(errno, "bind");
}

void AsyncSocket::listen(int backlog) {
    if (::listen(checked_fd(s_), backlog) < 0) throw_errno(errno, "listen");
}

void AsyncSocket::setsockopt(int level, int name, int value) {
    if (::setsockopt(checked_fd(s_), level, name, &value, sizeof value) < 0) {
        throw_errno(errno, "setsockopt");
    }
}

Address AsyncSocket::local_address() const {
    Address a;
    socklen_t len = Address::capacity;
    if (::getsockname(checked_fd(s_), a.native(), &len) < 0) throw_errno(errno, "getsockname");
    a.set_native_size(len);
    return a;
}

Address AsyncSocket::peer_address() const {
    Address a;
    socklen_t len = Address::capacity;
    if (::getpeername(checked_fd(s_), a.native(), &len) < 0) throw_errno(errno, "getpeername");
    a.set_native_size(len);
    return a;
}

void AsyncSocket::shutdown(int how) {
    if (::shutdown(checked_fd(s_), how) < 0) throw_errno(errno, "shutdown");
}

void AsyncSocket::close() noexcept {
    if (s_) s_->close();
}

void AsyncSocket::settimeout(Timeout timeout) noexcept {
    if (s_) s_->set_timeout(timeout);
}

Timeout AsyncSocket::gettimeout() const noexcept {
    return s_ ? s_->timeout() : std::nullopt;
}

void AsyncSocket::set_idle_timeout(Timeout timeout) {
    const bool on = timeout && *timeout > Duration::zero();
    if (!s_ || (!on && !s_->idle)) return;
    if (!s_->idle) {
        detail::TaskCore* t = detail::current_task();
        ChannelMap& map = t != nullptr ? t->map() : socket_map();
        s_->idle = std::make_unique<detail::SocketIdle>(*s_, detail::core_of(map));
        s_->idle->expired = detail::socket_idle_expired;
    }
    detail::SocketIdle& idle = *s_->idle;
    idle.timeout = on ? std::chrono::duration_cast<detail::IdleClock::duration>(*timeout)
                      : detail::IdleClock::duration::zero();
    idle.fired = false;
    if (s_->sock) idle.core->idle_timers().start(idle);
}

Timeout AsyncSocket::idle_timeout() const noexcept {
    if (!s_ || !s_->idle || s_->idle->timeout == detail::IdleClock::duration::zero()) {
        return std::nullopt;
    }
    return std::chrono::duration_cast<Duration>(s_->idle->timeout);
}

void AsyncSocket::set_max_message_size(std::size_t bytes) noexcept {
    if (s_) s_->max_message = bytes;
}

std::size_t AsyncSocket::max_message_size() const noexcept {
    return s_ ? s_->max_message : 0;
}

SocketAwaitable<Connection, true> AsyncSocket::accept() {
    return SocketAwaitable<Connection, true>(s_.get(), Code::accept);
}

SocketAwaitable<void, true> AsyncSocket::connect(const Address& addr) {
    return SocketAwaitable<void, true>(s_.get(), Code::connect, {}, 0, &addr);
}

SocketAwaitable<std::size_t> AsyncSocket::send(std::string_view data) {
    return SocketAwaitable<std::size_t>(s_.get(), Code::send, data);
}

SocketAwaitable<std::string> AsyncSocket::recv(std::size_t n) {
    return SocketAwaitable<std::string>(s_.get(), Code::recv, {}, n);
}

SocketAwaitable<void> AsyncSocket::sendall(std::string_view data) {
    return SocketAwaitable<void>(s_.get(), Code::send_all, data);
}

SocketAwaitable<std::size_t> AsyncSocket::recv_into(std::string& buf, std::size_t n) {
    return SocketAwaitable<std::size_t>(s_.get(), Code::recv_into, {}, n, nullptr, &buf);
}

SocketAwaitable<std::string> AsyncSocket::recvall(std::size_t n) {
    return SocketAwaitable<std::string>(s_.get(), Code::recv_all, {}, n);
}

SocketAwaitable<void> AsyncSocket::send_msg(std::string_view data) {
    return SocketAwaitable<void>(s_.get(), Code::send_msg, data);
}

SocketAwaitable<std::optional<std::string>> AsyncSocket::recv_msg() {
    return SocketAwaitable<std::optional<std::string>>(s_.get(), Code::recv_msg);
}

SocketAwaitable<std::size_t, true> AsyncSocket::sendto(std::string_view data, const Address& to) {
    return SocketAwaitable<std::size_t, true>(s_.get(), Code::sendto, data, 0, &to);
}

SocketAwaitable<Datagram, true> AsyncSocket::recvfrom(std::size_t n) {
    return SocketAwaitable<Datagram, true>(s_.get(), Code::recvfrom, {}, n);
}

namespace {

std::vector<Address> resolve(const std::string& host, std::uint16_t port, int family) {
    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    std::string service = std::to_string(port);
    int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
    if (rc != 0) {
        throw std::system_error(rc == EAI_SYSTEM ? errno : EHOSTUNREACH, std::generic_category(),
                                "getaddrinfo " + host + ": " + ::gai_strerror(rc));
    }
    std::vector<Address> out;
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next)
        out.push_back(Address::from_native(ai->ai_addr, ai->ai_addrlen));
    ::freeaddrinfo(res);
    return out;
}

int socket_family(const std::unique_ptr<detail::SocketState>& s) {
    int family = 0;
    socklen_t len = sizeof family;
    if (::getsockopt(checked_fd(s), SOL_SOCKET, SO_DOMAIN, &family, &len) < 0) return AF_UNSPEC;
    return family;
}

}  // namespace

Task<void> AsyncSocket::connect(std::string host, std::uint16_t port) {
    int family = socket_family(s_);
    std::vector<Address> addrs;
    try {
        addrs.push_back(Address::ip(host, port));
    } catch (const std::invalid_argument&) {
    }
    if (addrs.empty()) {
        // Explicit copies: GCC 12 mis-copies a coroutine parameter captured by [=].
        std::string name = host;
        auto lookup = [name, port, family] { return resolve(name, port, family); };
        addrs = co_await run_in_thread(std::move(lookup));
    }
    // A TLS client checks the certificate against the name it was asked for.
    if (s_ && s_->tls_ctx() != nullptr) s_->tls_fields->connect_host = host;
    std::exception_ptr last;
    for (const Address& a : addrs) {
        if (a.family() != family) continue;
        try {
            co_await connect(a);
            co_return;
        } catch (const std::system_error& e) {
            // Timeouts and cancellation end the attempt; an errno tries the next.
            if (e.code().category() == error_category()) throw;
            last = std::current_exception();
        }
    }
    if (last) std::rethrow_exception(last);
    throw_errno(EAFNOSUPPORT, "connect: no address of the socket's family");
}

}  // namespace asyncore
