// Dispatcher: asyncore's dispatcher over a non-blocking socket.

#include <asyncore/dispatcher.hpp>
#include <asyncore/error.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <poll.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <string>
#include <system_error>

#include "detail/dispatcher_tls.hpp"
#include "detail/map_core.hpp"
#include "detail/no_sigpipe.hpp"
#include "detail/routing.hpp"

namespace asyncore {

namespace {

// How long accepting pauses after EMFILE/ENFILE. Long enough that a flood of
// pending connections does not spin the loop, short enough that service
// resumes promptly once descriptors are freed.
constexpr Duration accept_pause = std::chrono::milliseconds(100);

bool is_accept_resource_error(int err) {
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

// Which socket `d` has: its descriptor and the map slot's generation, which
// every add bumps, so that a socket closed and replaced on the same
// descriptor counts as another.
std::uint64_t socket_identity(const Dispatcher& d) noexcept {
    const int fd = d.fileno();
    const detail::MapCore& core = d.map().core();
    if (core.find(fd) != &d) return static_cast<unsigned>(fd);
    return (std::uint64_t{core.slots[fd].generation} << 32) | static_cast<unsigned>(fd);
}

// Runs the connect event of a read or write event; false if handle_connect()
// closed the channel or replaced its socket (a redial), when the rest of the
// event belongs to a socket that is gone.
bool connect_event_kept_socket(Dispatcher& d) {
    const std::uint64_t id = socket_identity(d);
    d.handle_connect_event();
    return socket_identity(d) == id;
}

}  // namespace

Dispatcher::Dispatcher(ChannelMap& map) : map_(&map) {}

Dispatcher::Dispatcher(Socket sock, ChannelMap& map) : map_(&map) {
    sock.set_nonblocking();
    int fd = sock.fd();
    set_socket(std::move(sock));
    connected_ = true;
    Address peer;
    socklen_t len = Address::capacity;
    if (::getpeername(fd, peer.native(), &len) == 0) {
        peer.set_native_size(len);
        addr_ = peer;
        return;
    }
    int err = errno;
    if (err == ENOTCONN || err == EINVAL) {
        // An unconnected socket, e.g. a listening one handed over.
        connected_ = false;
        return;
    }
    // The socket is broken in an unknown way: keep it out of the map.
    del_channel();
    ::close(std::exchange(fd_, -1));
    throw_errno(err, "getpeername");
}

Dispatcher::~Dispatcher() {
    if (tls_) detail::DispatcherTls::close(*this);
    if (fd_ >= 0) {
        del_channel();
        ::close(std::exchange(fd_, -1));
    }
}

// -- Socket operations ----------------------------------------------------------

void Dispatcher::create_socket(int family, int type) {
    set_socket(Socket::create(family, type));
}

void Dispatcher::create_socket() {
    create_socket(AF_INET, SOCK_STREAM);
}

void Dispatcher::set_socket(Socket sock) {
    adopt_descriptor(std::move(sock), true);
}

void Dispatcher::set_file(Socket fd) {
    adopt_descriptor(std::move(fd), false);
}

void Dispatcher::adopt_descriptor(Socket sock, bool is_socket) {
    if (fd_ >= 0 && fd_ != sock.fd()) close();
    fd_ = sock.release();
    is_socket_ = is_socket;
    closed_ = false;
    reads_off_ = false;
    add_channel();
}

void Dispatcher::set_reuse_addr() {
    int on = 1;
    (void)::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
}

void Dispatcher::set_reuse_port() {
    int on = 1;
    if (::setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0) {
        throw_errno(errno, "setsockopt(SO_REUSEPORT)");
    }
}

void Dispatcher::bind(const Address& address) {
    addr_ = address;
    if (::bind(fd_, address.native(), address.native_size()) < 0) throw_errno(errno, "bind");
}

void Dispatcher::listen(int backlog) {
    accepting_ = true;
    rearm();
    if (::listen(fd_, backlog) < 0) throw_errno(errno, "listen");
}

void Dispatcher::connect(const Address& address) {
    connected_ = false;
    connecting_ = true;
    rearm();
    int err = 0;
    if (::connect(fd_, address.native(), address.native_size()) < 0) err = errno;
    if (err == EINPROGRESS || err == EALREADY || err == EWOULDBLOCK) {
        addr_ = address;
        return;
    }
    if (err == 0 || err == EISCONN) {
        addr_ = address;
        handle_connect_event();
        return;
    }
    throw_errno(err, "connect");
}

std::optional<Accepted> Dispatcher::accept() {
    Accepted a;
    socklen_t len = Address::capacity;
    int fd = ::accept4(fd_, a.addr.native(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        a.addr.set_native_size(len);
        a.sock.reset(fd);
        return a;
    }
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED || err == EINTR) {
        return std::nullopt;
    }
    if (is_accept_resource_error(err)) {
        pause_accepting(err);
        return std::nullopt;
    }
    throw_errno(err, "accept");
}

// asyncore closes a listener whose accept() fails with EMFILE; every
// connection after that is refused. Like libuv and nginx we keep the
// listener, and stop asking for read events for a moment: the pending
// connections wait in the backlog until descriptors are free again, instead
// of waking the loop on every pass.
void Dispatcher::pause_accepting(int err) {
    log_info("accept: " + strerror_text(err) + "; pausing accepts for 100 ms", "error");
    reads_off_ = true;
    rearm();
    int fd = fd_;
    ChannelMap* map = map_;
    map_->call_later(accept_pause, [this, fd, map] {
        if (map->find(fd) != this) return;  // closed meanwhile
        reads_off_ = false;
        rearm();
    });
}

void Dispatcher::stop_reading() noexcept {
    reads_off_ = true;
    rearm();
}

// The per-message paths below make one syscall and return; everything else
// (EINTR, EAGAIN, disconnects, errors) is handled out of line.
std::size_t Dispatcher::send(std::string_view data) {
    map_->core().mark_dirty(fd_);
    if (tls_) [[unlikely]] {
        return detail::DispatcherTls::send(*this, data);
    }
    ssize_t n = is_socket_ ? ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL)
                           : detail::write_no_sigpipe(fd_, data.data(), data.size());
    if (n >= 0) [[likely]] {
        return static_cast<std::size_t>(n);
    }
    return send_failed(data);
}

// send() failed: EAGAIN is 0 bytes, a disconnect errno is handle_close(),
// EINTR retries, anything else throws.
std::size_t Dispatcher::send_failed(std::string_view data) {
    for (;;) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) return 0;
        if (is_disconnect_errno(err)) {
            handle_close();
            return 0;
        }
        if (err != EINTR) throw_errno(err, "send");
        ssize_t n = is_socket_ ? ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL)
                               : detail::write_no_sigpipe(fd_, data.data(), data.size());
        if (n >= 0) return static_cast<std::size_t>(n);
    }
}

std::size_t Dispatcher::recv_into(std::span<char> buffer) {
    if (tls_) [[unlikely]] {
        return detail::DispatcherTls::recv_into(*this, buffer);
    }
    ssize_t n = is_socket_ ? ::recv(fd_, buffer.data(), buffer.size(), 0)
                           : ::read(fd_, buffer.data(), buffer.size());
    if (n > 0) [[likely]] {
        return static_cast<std::size_t>(n);
    }
    return recv_failed(buffer, n);
}

// recv() returned 0 (EOF, or an empty buffer) or failed.
std::size_t Dispatcher::recv_failed(std::span<char> buffer, long n) {
    for (;;) {
        if (n > 0) return static_cast<std::size_t>(n);
        if (n == 0) {
            if (buffer.empty()) return 0;
            handle_close();
            return 0;
        }
        int err = errno;
        if (is_disconnect_errno(err)) {
            handle_close();
            return 0;
        }
        if (err != EINTR) throw_errno(err, "recv");
        n = is_socket_ ? ::recv(fd_, buffer.data(), buffer.size(), 0)
                       : ::read(fd_, buffer.data(), buffer.size());
    }
}

std::string Dispatcher::recv(std::size_t buffer_size) {
    std::string data(buffer_size, '\0');
    data.resize(recv_into(data));
    return data;
}

void Dispatcher::close() {
    if (tls_) [[unlikely]] {
        detail::DispatcherTls::close(*this);
    }
    connected_ = accepting_ = connecting_ = false;
    bool had_socket = fd_ >= 0;
    del_channel();
    if (had_socket) {
        int fd = std::exchange(fd_, -1);
        if (::close(fd) < 0 && errno != ENOTCONN && errno != EBADF && errno != EINTR) {
            closed_ = true;
            if (owned_) map_->core().bury(*this);
            throw_errno(errno, "close");
        }
    }
    closed_ = true;
    if (owned_) map_->core().bury(*this);
}

void Dispatcher::close_when_done() {
    handle_close();
}

void Dispatcher::add_channel() {
    if (fd_ >= 0) map_->core().add(*this, fd_);
}

void Dispatcher::del_channel() {
    if (fd_ >= 0 && map_->core().find(fd_) == this) map_->core().remove(fd_);
}

// -- State ----------------------------------------------------------------------

Address Dispatcher::local_address() const {
    Address a;
    socklen_t len = Address::capacity;
    if (::getsockname(fd_, a.native(), &len) < 0) throw_errno(errno, "getsockname");
    a.set_native_size(len);
    return a;
}

std::string Dispatcher::repr() const {
    std::string s = "<" + detail::type_name(typeid(*this));
    if (accepting_ && !addr_.empty()) {
        s += " listening";
    } else if (connected_) {
        s += " connected";
    }
    if (!addr_.empty()) s += " " + addr_.to_string();
    char at[32];
    std::snprintf(at, sizeof at, " at %#lx>", reinterpret_cast<unsigned long>(this));
    return s + at;
}

bool Dispatcher::readable() {
    return true;
}

bool Dispatcher::writable() {
    return true;
}

void Dispatcher::rearm() noexcept {
    map_->core().mark_dirty(fd_);
}

// -- Idle timeout -----------------------------------------------------------------

namespace {

// handle_idle_timeout() with the handlers' error routing. A channel it left
// open (it may have sent a keep-alive probe) counts from now again; one it
// closed or replaced needs nothing: add() starts a new socket's countdown.
void channel_idle_expired(detail::IdleEntry& e) noexcept {
    auto& idle = static_cast<detail::ChannelIdle&>(e);
    Dispatcher& d = *idle.channel;
    detail::MapCore& core = d.map().core();
    const std::uint64_t id = socket_identity(d);
    try {
        detail::routed(d, [&] { d.handle_idle_timeout(); });
    } catch (...) {
        core.request_exit(std::current_exception());
    }
    if (socket_identity(d) != id) return;
    core.queue_dirty(d.fileno());
    if (idle.scheduled()) return;
    try {
        core.idle_timers().start(idle);
    } catch (const std::bad_alloc&) {
        d.log_info("idle timeout: out of memory, countdown not restarted", "error");
    }
}

}  // namespace

void detail::ChannelIdleDeleter::operator()(ChannelIdle* idle) const noexcept {
    delete idle;
}

void Dispatcher::set_idle_timeout(Timeout timeout) {
    const bool on = timeout && *timeout > Duration::zero();
    if (!idle_) {
        if (!on) return;
        idle_.reset(new detail::ChannelIdle);
        idle_->channel = this;
        idle_->expired = channel_idle_expired;
    }
    idle_->timeout = on ? std::chrono::duration_cast<detail::IdleClock::duration>(*timeout)
                        : detail::IdleClock::duration::zero();
    detail::MapCore& core = map_->core();
    if (fd_ >= 0 && core.find(fd_) == this) core.idle_timers().start(*idle_);
}

Timeout Dispatcher::idle_timeout() const noexcept {
    if (!idle_ || idle_->timeout == detail::IdleClock::duration::zero()) return std::nullopt;
    return std::chrono::duration_cast<Duration>(idle_->timeout);
}

void Dispatcher::reset_idle_timer() noexcept {
    if (idle_ && idle_->scheduled()) map_->core().touch(*idle_);
}

// -- Event dispatch -------------------------------------------------------------

void Dispatcher::handle_read_event() {
    if (tls_) [[unlikely]] {
        detail::DispatcherTls::read_event(*this);
    } else if (accepting_) {
        handle_accept();
    } else if (!connected_) {
        if (connecting_ && !connect_event_kept_socket(*this)) return;
        handle_read();
    } else {
        handle_read();
    }
}

void Dispatcher::handle_write_event() {
    if (tls_) [[unlikely]] {
        return detail::DispatcherTls::write_event(*this);
    }
    if (accepting_) return;  // listeners never write
    if (!connected_ && connecting_ && !connect_event_kept_socket(*this)) return;
    handle_write();
}

void Dispatcher::handle_expt_event() {
    int err = 0;
    socklen_t len = sizeof err;
    if (is_socket_ && ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err != 0) {
        handle_close();
    } else {
        handle_expt();
    }
}

void Dispatcher::handle_connect_event() {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err != 0) throw_errno(err, "connect");
    // handle_connect() may close the channel, or close it and connect anew:
    // the new socket is still connecting.
    const std::uint64_t id = socket_identity(*this);
    handle_connect();
    if (socket_identity(*this) != id) return;
    connected_ = true;
    connecting_ = false;
    rearm();
}

// -- Hooks ------------------------------------------------------------------------

void Dispatcher::handle_read() {
    log_info("unhandled read event", "warning");
}

void Dispatcher::handle_write() {
    log_info("unhandled write event", "warning");
}

void Dispatcher::handle_expt() {
    log_info("unhandled incoming priority event", "warning");
}

void Dispatcher::handle_connect() {
    log_info("unhandled connect event", "warning");
}

void Dispatcher::handle_accept() {
    if (auto a = accept()) handle_accepted(std::move(a->sock), a->addr);
}

void Dispatcher::handle_accepted(Socket sock, const Address&) {
    sock.reset();
    log_info("unhandled accepted event", "warning");
}

void Dispatcher::handle_close() {
    log_info("unhandled close event", "warning");
    close();
}

void Dispatcher::handle_idle_timeout() {
    log_info("idle timeout, closing channel " + repr(), "warning");
    handle_close();
}

void Dispatcher::handle_error(std::exception_ptr error) {
    log_info("uncaptured exception, closing channel " + repr() + " (" +
                 detail::describe_exception(error) + ")",
             "error");
    handle_close();
}

// -- Logging ----------------------------------------------------------------------

void Dispatcher::log(std::string_view message) {
    std::fprintf(stderr, "log: %.*s\n", static_cast<int>(message.size()), message.data());
}

void Dispatcher::log_info(std::string_view message, std::string_view type) {
    if (log_type_ignored(type)) return;
    std::fprintf(stdout, "%.*s: %.*s\n", static_cast<int>(type.size()), type.data(),
                 static_cast<int>(message.size()), message.data());
    std::fflush(stdout);
}

void Dispatcher::set_ignore_log_types(std::set<std::string, std::less<>> types) {
    ignore_log_types_ = std::make_unique<std::set<std::string, std::less<>>>(std::move(types));
}

bool Dispatcher::log_type_ignored(std::string_view type) const {
    if (!ignore_log_types_) return type == "warning";
    return ignore_log_types_->find(type) != ignore_log_types_->end();
}

// -- Ownership --------------------------------------------------------------------

void Dispatcher::adopt(std::unique_ptr<Dispatcher> d) {
    if (d) d->map_->core().adopt(std::move(d));
}

// -- Error routing ------------------------------------------------------------------

namespace detail {
namespace {

bool is_disconnect(std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::system_error& err) {
        return err.code().category() == std::generic_category() &&
               is_disconnect_errno(err.code().value());
    } catch (...) {
        return false;
    }
}

// The last resort of the log_and_close policy: the channel's own log_info()
// (so a program that routes its logs sees it), stderr if that throws too.
void report_handler_failure(Dispatcher& d, const char* handler, std::exception_ptr e) noexcept {
    std::string line;
    try {
        line = std::string(handler) + "() raised " + describe_exception(e) + ", closing channel " +
               d.repr();
        d.log_info(line, "error");
    } catch (...) {
        std::fprintf(stderr, "error: %s\n", line.empty() ? handler : line.c_str());
    }
}

void close_after_failure(Dispatcher& d) {
    try {
        d.close();
    } catch (const ExitNow&) {
        throw;
    } catch (...) {
        std::fprintf(stderr, "error: close() of %s failed (%s)\n", d.repr().c_str(),
                     describe_exception(std::current_exception()).c_str());
    }
}

}  // namespace

void route_failure(Dispatcher& d, std::exception_ptr failure) {
    const bool disconnect = is_disconnect(failure);
    try {
        if (disconnect) {
            d.handle_close();
        } else {
            d.handle_error(failure);
        }
    } catch (const ExitNow&) {
        throw;
    } catch (...) {
        if (d.map().error_policy() == ErrorPolicy::propagate) throw;
        report_handler_failure(d, disconnect ? "handle_close" : "handle_error",
                               std::current_exception());
        close_after_failure(d);
    }
}

}  // namespace detail

// -- Module-level helpers -----------------------------------------------------------

using detail::routed;

void read(Dispatcher& d) {
    routed(d, [&] { d.handle_read_event(); });
}

void write(Dispatcher& d) {
    routed(d, [&] { d.handle_write_event(); });
}

void exception(Dispatcher& d) {
    routed(d, [&] { d.handle_expt_event(); });
}

void readwrite(Dispatcher& d, int poll_flags) {
    // A handler that closes the channel ends the dispatch: no later callback
    // runs for it, even if the same poll result reported more events, and
    // even if the handler opened a new socket on the same descriptor.
    const std::uint64_t id = socket_identity(d);
    auto open = [&] { return socket_identity(d) == id; };
    routed(d, [&] {
        if ((poll_flags & POLLIN) && open()) d.handle_read_event();
        if ((poll_flags & POLLOUT) && open()) d.handle_write_event();
        if ((poll_flags & POLLPRI) && open()) d.handle_expt_event();
        if ((poll_flags & (POLLHUP | POLLERR | POLLNVAL)) && open()) d.handle_close();
    });
}

}  // namespace asyncore
