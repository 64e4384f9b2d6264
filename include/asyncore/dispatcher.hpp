// Dispatcher: asyncore's dispatcher, a thin wrapper around a non-blocking
// socket whose handle_*() methods the loop calls when the socket is ready.
//
// When callbacks fire (asyncore's rules, applied by handle_*_event()):
//   read readiness on a listening socket  -> handle_accept() -> handle_accepted()
//   first read or write readiness while connecting -> handle_connect(), then
//     connected() becomes true; a failed connect raises instead (handle_error)
//   read readiness -> handle_read(); recv() seeing EOF -> handle_close()
//   write readiness -> handle_write()
//   urgent (out-of-band) data -> handle_expt()
// Handlers only ever run from loop() (or from connect() on an immediate
// success, as in asyncore), on the loop's thread, and never for a channel
// that has been closed, even when it was closed earlier in the same pass.
//
// Errors: socket failures raise std::system_error with the errno. Inside a
// handler, the disconnect errnos (see is_disconnect_errno()) become
// handle_close(); any other exception goes to handle_error(), whose default
// logs one line and closes this channel only. ExitNow leaves loop().
// When handle_error() or handle_close() itself throws, the map's
// ErrorPolicy decides (loop.hpp): by default the exception is logged through
// log_info() as an 'error' with this channel's repr and the channel is
// closed, so the loop goes on serving the others; with
// ErrorPolicy::propagate it leaves loop() as in Python's asyncore.
//
// Ownership: a dispatcher created with make<T>() is owned by its map and is
// destroyed after close(), once none of its handlers is on the stack. A
// dispatcher may also live on the stack or as a member: then the map only
// points at it, and its destructor closes it.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <asyncore/address.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/socket.hpp>

namespace asyncore {

class TlsContext;
namespace detail {
struct TlsChannel;
struct DispatcherTls;
struct ChannelIdle;
/// Frees a TlsChannel (defined where the type is complete, in lib/).
struct TlsChannelDeleter {
    void operator()(TlsChannel* t) const noexcept;
};
struct ChannelIdleDeleter {
    void operator()(ChannelIdle* t) const noexcept;
};
}  // namespace detail

/// A connection taken from a listening socket by Dispatcher::accept().
struct Accepted {
    Socket sock;   ///< the new connection, non-blocking, owned by whoever takes it
    Address addr;  ///< the peer's address
};

class Dispatcher {
  public:
    /// A dispatcher without a socket yet; call create_socket() or set_socket().
    explicit Dispatcher(ChannelMap& map = socket_map());
    /// Wraps an existing socket (typically one from handle_accepted()). It is
    /// made non-blocking and added to the map. connected() is true unless the
    /// socket is not connected (getpeername gives ENOTCONN or EINVAL); any
    /// other getpeername failure removes it from the map and throws.
    explicit Dispatcher(Socket sock, ChannelMap& map = socket_map());
    /// Closes the socket if still open. No handler runs.
    virtual ~Dispatcher();
    Dispatcher(const Dispatcher&) = delete;
    Dispatcher& operator=(const Dispatcher&) = delete;

    // -- Socket operations (asyncore's names). Throw std::system_error.

    /// Creates a non-blocking socket (defaults: AF_INET, SOCK_STREAM) and adds it to the map.
    void create_socket(int family, int type);
    void create_socket();
    /// Adopts `sock` as this channel's socket and adds it to the map.
    void set_socket(Socket sock);
    /// Sets SO_REUSEADDR; errors are ignored, as in asyncore.
    void set_reuse_addr();
    /// Sets SO_REUSEPORT, before bind(): several sockets, typically one per
    /// thread each with its own ChannelMap, may then listen on the same
    /// address and port, and the kernel spreads incoming connections over
    /// them (shared-nothing multi-loop servers; see samples/echo/echo_server
    /// --threads). Throws std::system_error if the system refuses it.
    void set_reuse_port();
    /// Binds the socket; addr() becomes `address`.
    void bind(const Address& address);
    /// Starts listening; accepting() becomes true.
    void listen(int backlog);
    /// Starts a connection. connecting() is true until the first readiness
    /// event, which runs handle_connect_event(). An immediate success runs
    /// handle_connect_event() before returning; an immediate failure throws.
    void connect(const Address& address);
    /// Takes one pending connection. Empty when there is none (EAGAIN) or it
    /// was aborted (ECONNABORTED). Out of descriptors (EMFILE, ENFILE) or
    /// memory: logs it, pauses accepting for a short while, and returns empty;
    /// the listener stays open and accepting resumes by itself.
    std::optional<Accepted> accept();
    /// Sends what the socket takes now and returns the byte count: 0 when it
    /// would block. A disconnect errno calls handle_close() and returns 0.
    /// With TLS (start_tls), `data` is plaintext; 0 also while the handshake
    /// runs, and a send() that returned 0 must be retried with the same bytes
    /// first (as DispatcherWithSend and AsyncChat do). TLS failures throw
    /// TlsError.
    std::size_t send(std::string_view data);
    /// Receives up to `buffer_size` bytes. EOF or a disconnect errno calls
    /// handle_close() and returns an empty string. Throws std::system_error
    /// with EAGAIN when nothing is ready (asyncore's BlockingIOError).
    std::string recv(std::size_t buffer_size);
    /// recv() into caller memory; returns the byte count, 0 meaning closed
    /// (handle_close() was called). Same errors as recv().
    /// With TLS, plaintext: EAGAIN also while the handshake runs or when only
    /// part of a record arrived; the peer's close_notify calls handle_close();
    /// an EOF without close_notify throws TlsError with errc::truncated.
    std::size_t recv_into(std::span<char> buffer);
    /// Closes the socket and removes the channel from the map. Safe to call
    /// twice and from any handler, including another channel's. With TLS, a
    /// close_notify alert is sent first if the socket takes it at once (no
    /// waiting).
    virtual void close();
    /// Closes the channel through handle_close() once every byte queued for
    /// it has been written (asynchat's close_when_done). A plain Dispatcher
    /// queues nothing: it calls handle_close() now. DispatcherWithSend and
    /// AsyncChat wait for their output; close_all_when_done() (loop.hpp)
    /// relies on it for a graceful shutdown.
    virtual void close_when_done();
    /// Adds this channel to its map (done by set_socket()).
    void add_channel();
    /// Removes this channel from its map without closing the socket.
    void del_channel();

    // -- State.

    bool connected() const noexcept { return connected_; }
    bool accepting() const noexcept { return accepting_; }
    bool connecting() const noexcept { return connecting_; }
    /// The address given to bind() or connect(), or the peer of an accepted socket.
    const Address& addr() const noexcept { return addr_; }
    /// The socket's own address (getsockname), e.g. to learn an ephemeral port.
    Address local_address() const;
    /// The descriptor, or -1 when there is none.
    int fileno() const noexcept { return fd_; }
    ChannelMap& map() const noexcept { return *map_; }
    /// asyncore's repr: "<EchoHandler connected 127.0.0.1:5000 at 0x55d0c0>".
    std::string repr() const;

    // -- TLS (see tls.hpp).

    /// Runs TLS over this channel's connection from now on, as the server or
    /// the client side (`server_side` must match ctx.server_side()). Call it
    /// right after connect() or accept, or mid-connection once the plaintext
    /// exchange is over and every plaintext byte was sent (STARTTLS).
    ///
    /// No I/O happens here: the loop drives the handshake on readiness
    /// events, during which handle_read()/handle_write() are not called and
    /// readable()/writable() are not consulted. When it completes,
    /// handle_tls_established() runs; from then on send()/recv()/recv_into()
    /// carry plaintext and the handlers run as before. A failed handshake or
    /// certificate check (or the peer closing during it) reaches
    /// handle_error() with a TlsError; nothing is ever sent or read in clear.
    ///
    /// A client verifying its peer checks the certificate against
    /// `server_hostname` (a DNS name, also sent as SNI, or an IP literal);
    /// when empty, against the IP address given to connect(). Throws
    /// std::logic_error without a connected or connecting socket or when TLS
    /// already runs, std::invalid_argument when a verifying client has no
    /// name to check (e.g. over a Unix socket), TlsError if OpenSSL fails.
    void start_tls(const TlsContext& ctx, bool server_side, std::string server_hostname = {});
    /// True from start_tls() until close().
    bool tls_active() const noexcept { return tls_ != nullptr; }
    /// True once the TLS handshake completed (and until close()).
    bool tls_established() const noexcept;
    /// The protocol ALPN selected, empty when none (or without TLS).
    std::string tls_alpn_protocol() const;
    /// The negotiated TLS version ("TLSv1.3"), empty without TLS.
    std::string tls_version() const;

    // -- Idle timeout: drop a peer that connects and then says nothing (or
    //    one byte a minute).

    /// Once `timeout` passes without the loop delivering a read or write
    /// event to this channel (the peer sent nothing, and took none of any
    /// output waiting for room), handle_idle_timeout() runs. std::nullopt
    /// or zero turns it off (the default). The countdown starts now, or
    /// when the channel gets a socket, and again after handle_idle_timeout()
    /// if that leaves the channel open.
    ///
    /// It costs nothing per message: an event only bumps a counter, and one
    /// timer per map, armed for the earliest countdown, looks at a busy
    /// connection eight times per timeout. handle_idle_timeout() runs
    /// between `timeout` and `timeout` plus an eighth after the last event,
    /// never before. Bytes send() writes at once are not activity (output
    /// to a peer that never speaks does not keep it); call
    /// reset_idle_timer() where they should count. Loop thread only; throws
    /// std::bad_alloc.
    void set_idle_timeout(Timeout timeout);
    /// The idle timeout in force; std::nullopt when off.
    Timeout idle_timeout() const noexcept;
    /// Counts now as activity: the countdown starts again.
    void reset_idle_timer() noexcept;

    // -- Interest. Evaluated after this channel ran a handler or had a method
    //    called (or for every channel each pass with ChannelMap::set_poll_all).

    /// Whether read events are wanted. Default: true.
    virtual bool readable();
    /// Whether write events are wanted. Default: true. Ignored while
    /// accepting(); always on while connecting().
    virtual bool writable();
    /// Asks the loop to evaluate readable()/writable() again before its next
    /// wait: call it when state they depend on changed outside this channel's
    /// own handlers and methods.
    void rearm() noexcept;
    /// No more read events on this socket, whatever readable() says: for a
    /// channel whose peer closed its side (an EOF stays readable) while it
    /// still has output to write. A new socket turns reading on again.
    void stop_reading() noexcept;
    /// True after stop_reading() (until a new socket).
    bool reading_stopped() const noexcept { return reads_off_ && !accepting_; }

    // -- Event dispatch: asyncore's rules. Override only to change the rules.

    virtual void handle_read_event();
    virtual void handle_write_event();
    /// Urgent data: SO_ERROR set -> handle_close(), else handle_expt().
    virtual void handle_expt_event();
    /// Checks SO_ERROR (nonzero: throws std::system_error), then runs
    /// handle_connect() and only then sets connected(). If handle_connect()
    /// closed the channel or replaced its socket (a redial), the channel is
    /// not marked connected and the event that brought the connect ends
    /// there: no handle_read()/handle_write() for a socket that is gone
    /// (Python's asyncore would still run them).
    virtual void handle_connect_event();

    // -- Hooks. The defaults are asyncore's: log a warning (handle_close also closes).

    virtual void handle_read();
    virtual void handle_write();
    virtual void handle_expt();
    virtual void handle_connect();
    /// The TLS handshake completed and the peer passed verification. Default:
    /// nothing.
    virtual void handle_tls_established();
    /// Default: accept() and hand the connection to handle_accepted().
    virtual void handle_accept();
    /// Default: closes `sock` and logs a warning. Take ownership of `sock`
    /// (e.g. `make<Handler>(std::move(sock))`) to keep the connection.
    virtual void handle_accepted(Socket sock, const Address& addr);
    virtual void handle_close();
    /// The channel was idle for its idle timeout (set_idle_timeout()).
    /// Default: logs "idle timeout, closing channel <repr>" as a 'warning'
    /// (ignored unless asked for) and calls handle_close(), so that the
    /// cleanup a program does there runs for idle peers too. Exceptions go
    /// to handle_error(), as from any handler.
    virtual void handle_idle_timeout();
    /// Called with any exception a handler let escape (except ExitNow and
    /// the disconnect errnos). Default: logs "uncaptured exception, closing
    /// channel <repr> (<type>: <what>)" as an 'error' and calls
    /// handle_close(). What it throws follows the map's ErrorPolicy (see
    /// the top of this file).
    virtual void handle_error(std::exception_ptr error);

    // -- Logging.

    /// Writes "log: MESSAGE" to stderr.
    virtual void log(std::string_view message);
    /// Prints "TYPE: MESSAGE" to stdout unless TYPE is ignored.
    virtual void log_info(std::string_view message, std::string_view type = "info");
    /// The log_info types that are not printed. Default: {"warning"}.
    void set_ignore_log_types(std::set<std::string, std::less<>> types);
    bool log_type_ignored(std::string_view type) const;

    // -- Ownership.

    /// Hands `d` to its map (see make()). If it is already closed it is
    /// destroyed at the end of the current pass.
    static void adopt(std::unique_ptr<Dispatcher> d);
    /// True if the map owns this dispatcher.
    bool owned_by_map() const noexcept { return owned_; }

  protected:
    /// Adopts a descriptor that is not a socket (FileDispatcher): send() and
    /// recv() use write() and read(), and no urgent data is watched.
    void set_file(Socket fd);
    /// Marks the connection state; for subclasses that complete a handshake
    /// of their own.
    void set_connected(bool on) noexcept { connected_ = on; }

  private:
    void adopt_descriptor(Socket sock, bool is_socket);
    std::size_t send_failed(std::string_view data);
    std::size_t recv_failed(std::span<char> buffer, long n);
    void pause_accepting(int err);

    ChannelMap* map_;
    int fd_ = -1;
    bool is_socket_ = true;
    bool connected_ = false;
    bool accepting_ = false;
    bool connecting_ = false;
    bool owned_ = false;
    /// No read interest: accepts paused after EMFILE (a listener), or
    /// stop_reading() (a connection). One flag, so the interest check stays
    /// one test.
    bool reads_off_ = false;
    bool closed_ = false;  ///< close() ran and no socket was set since
    Address addr_;
    std::unique_ptr<std::set<std::string, std::less<>>> ignore_log_types_;
    /// Null unless start_tls() ran: the plaintext paths test only this.
    std::unique_ptr<detail::TlsChannel, detail::TlsChannelDeleter> tls_;
    /// Null unless set_idle_timeout() ran: the event path tests only this.
    std::unique_ptr<detail::ChannelIdle, detail::ChannelIdleDeleter> idle_;

    friend struct detail::MapCore;
    friend struct detail::DispatcherTls;
};

/// Creates a dispatcher owned by its map: asyncore's "create it in
/// handle_accepted() and forget it". The reference stays valid until the
/// dispatcher is closed and the pass that closed it ends.
template <class T, class... Args>
T& make(Args&&... args) {
    static_assert(std::is_base_of_v<Dispatcher, T>, "make<T>: T must derive from Dispatcher");
    auto owned = std::make_unique<T>(std::forward<Args>(args)...);
    T& ref = *owned;
    Dispatcher::adopt(std::move(owned));
    return ref;
}

// asyncore's module-level helpers: run one event on `d` with the loop's error
// routing (disconnect errnos -> handle_close(), other exceptions ->
// handle_error(), ExitNow propagates).

void read(Dispatcher& d);
void write(Dispatcher& d);
void exception(Dispatcher& d);
/// Dispatches poll(2) revents: POLLIN read, POLLOUT write, POLLPRI urgent,
/// POLLHUP/POLLERR/POLLNVAL close. Stops once a handler closed `d`'s
/// socket, even if it then opened another on the same descriptor.
void readwrite(Dispatcher& d, int poll_flags);

}  // namespace asyncore
