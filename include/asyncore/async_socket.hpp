// AsyncSocket: pycos' asynchronous socket for tasks, with its framing.
//
//   Task<void> echo(AsyncSocket conn) {
//       for (;;) {
//           std::string data = co_await conn.recv(4096);
//           if (data.empty()) break;             // EOF
//           co_await conn.sendall(data);
//       }
//   }
//   Task<void> server(AsyncSocket listener) {
//       for (;;) {
//           auto [conn, addr] = co_await listener.accept();
//           spawn(echo(std::move(conn)));
//       }
//   }
//
// Every operation tries its system call first and waits for readiness only
// on EAGAIN (then with one persistent libevent event per direction, kept
// registered between messages). Operations return awaitables: `co_await` them
// in a task, or call `.wait()` on them from a plain thread (pycos'
// blocking=True mode: same methods, same framing, blocking with poll()).
//
// Fairness: a task whose peer keeps its socket busy (a flood, a bulk
// transfer) never holds the loop. After 16 operations on a socket that all
// finished without waiting (or fewer that moved 256 KiB between them), the
// next one waits one pass first; a recvall,
// recv_msg, sendall or send_msg waits a pass after each 256 KiB it moves
// (waits for readiness that is already there: they cost a pass, not a
// timeout). Every other connection is served in between, as asyncore's one
// handle_read() per channel per pass.
//
// Hot loops: recv() returns a new string per call; recv_into(buf, n) reuses
// the caller's string, so that a connection echoing messages allocates
// nothing per message once `buf` has grown to the message size.
//
// Concurrency: one read (recv, recv_into, recvall, recv_msg, recvfrom, accept) and one
// write (send, sendall, send_msg, sendto, connect) may be pending at once,
// so two tasks can do full-duplex I/O on one socket; starting a second read
// (or write) while one is pending throws errc::busy.
//
// Descriptor exhaustion: accept() waits it out instead of failing, pausing
// 100 ms at a time (see accept() below), so a listener survives EMFILE.
//
// Timeouts: settimeout() applies to each operation started afterwards
// (TimeoutError). A recvall/recv_msg/sendall/send_msg that times out or is
// cancelled may have moved part of the data: close the socket then.
//
// Framing (send_msg/recv_msg) is pycos' wire format exactly: a 4-byte
// unsigned big-endian length, then the payload; a zero length is an empty
// message. recv_msg refuses a length above max_message_size() (default
// 64 MiB) with errc::message_too_large, without allocating it; the stream
// cannot be resynchronised, so every later recv_msg on the socket fails the
// same way. The socket stays open for the caller to close: closing with the
// peer's input unread makes the kernel reset the connection, which throws
// away what the peer had not yet read of the replies sent before. To keep
// those, shutdown(SHUT_WR), then recv() and drop until EOF or a time limit,
// then close (samples/common/task_server.hpp: lingering_close).
//
// EOF: recv returns an empty string (as Python). recvall and recv_msg throw
// TruncatedError, carrying the bytes that did arrive, when the peer closes in
// the middle (pycos silently returns an empty buffer; a short read is an
// error a caller must see). recv_msg yields std::nullopt when the peer
// closes cleanly between messages.
//
// Lifetime: the buffer given to send* as a view (a literal, a string_view,
// a named string) must stay valid until the operation completes (natural
// with `co_await sock.send(buf)`). sendall and send_msg given a std::string
// rvalue move it into the awaitable, which owns it until then: use that for
// a temporary (`co_await sock.sendall(make_reply())`), which then need not
// outlive anything (GCC 12 mishandles some temporaries in co_await
// expressions), and in blocking mode alike. A socket that was awaited on
// must not outlive its map. Errors are std::system_error with the
// errno (generic category) or an asyncore::errc.
//
// TLS (pycos' keyfile/certfile): a stream socket given a TlsContext, by the
// constructor or set_tls(), speaks TLS; send, recv, sendall, recvall,
// send_msg and recv_msg then carry plaintext, in tasks and in blocking mode.
//
//   AsyncSocket listener(AF_INET, SOCK_STREAM, TlsContext::server("c.pem", "k.pem"));
//   auto [conn, addr] = co_await listener.accept();   // handshake done
//
//   AsyncSocket client(AF_INET, SOCK_STREAM, TlsContext::client("ca.pem"));
//   co_await client.connect("localhost", 8443);        // handshake + check done
//
// - accept() returns a connection only after its server-side handshake; a
//   failed handshake makes that accept() throw (the listener stays usable).
//   The handshakes are serial: a server that must not let one slow client
//   delay the next accepts plainly and calls start_tls() in the
//   connection's own task.
// - connect() handshakes as a client and checks the server's certificate
//   against, in order: the name given to set_tls(), the host of
//   connect(host, port), or the IP address connected to.
// - start_tls() runs the handshake on a connected socket now (STARTTLS);
//   its role is the context's (TlsContext::server_side()).
// - Each handshake is bounded by handshake_timeout() (default 60 s, as
//   asyncio's ssl_handshake_timeout); settimeout() bounds the operation's
//   other waits (the TCP connect, waiting for a connection to accept).
// - Errors: a failed handshake, verification or record throws TlsError with
//   OpenSSL's reason (errc::tls_verification_failed for a rejected
//   certificate); socket failures stay std::system_error with the errno.
//   A peer's close_notify is EOF (recv returns "", recv_msg nullopt); the
//   transport ending without one throws TlsError(errc::truncated). Data
//   operations before the handshake fail with ENOTCONN: never plaintext.
// - close() makes one non-blocking attempt at sending close_notify (it goes
//   through whenever the kernel has room for ~30 bytes); shutdown_tls()
//   sends it waiting for room, bounded by settimeout() or else 5 s.
// - A reader and a writer task may share a TLS socket. With renegotiation
//   off, OpenSSL needs the other direction only in rare cases (a write
//   blocked mid-record when a read must answer); a read that needs to write
//   while the writer waits then waits for its own readiness instead.
// - Writing to a peer that has gone is EPIPE, never SIGPIPE, TLS included
//   (its transport sends with MSG_NOSIGNAL): the library leaves the
//   process's SIGPIPE disposition alone.
#pragma once

#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <asyncore/address.hpp>
#include <asyncore/error.hpp>
#include <asyncore/socket.hpp>
#include <asyncore/task.hpp>
#include <asyncore/tls.hpp>

namespace asyncore {

/// The peer closed in the middle of recvall()/recv_msg() (errc::truncated).
class TruncatedError : public std::system_error {
  public:
    explicit TruncatedError(std::string partial)
        : std::system_error(make_error_code(errc::truncated)), partial_(std::move(partial)) {}
    /// The bytes received before the peer closed.
    const std::string& partial() const noexcept { return partial_; }

  private:
    std::string partial_;
};

class AsyncSocket;

/// A connection taken by AsyncSocket::accept().
struct Connection;

/// A datagram received by AsyncSocket::recvfrom().
struct Datagram {
    std::string data;
    Address from;
};

namespace detail {

struct SocketState;

/// Deletes a SocketState where its type is complete, so that an awaitable's
/// destructor stays inline.
struct SocketStateDeleter {
    void operator()(SocketState* s) const noexcept;
};

/// The state of one socket operation; lives in the awaitable (no allocation
/// per operation beyond the std::string a receive returns).
struct SocketOp : IoWaiter {
    enum class Code : std::uint8_t {
        recv,
        recv_into,
        recv_all,
        recv_msg,
        recvfrom,
        accept,
        send,
        send_all,
        send_msg,
        sendto,
        connect,
        tls_shutdown,
        handshake,  ///< start_tls(): claims both directions
    };

    /// `out` is what a send sends, `n` what a receive wants, `addr` the
    /// destination of connect/sendto or where accept/recvfrom put the peer's
    /// address (storage of the awaitable's, null for the other operations),
    /// `buf` what a read fills (the awaitable's string, or recv_into's).
    SocketOp(SocketState* s, Code c, std::string_view data, std::size_t size, Address* address,
             std::string* buf) noexcept
        : state(s),
          code(c),
          n(size),
          out(data),
          in(buf),
          addr(address),
          wait_write(c >= Code::send && c != Code::handshake),
          handshaking(c == Code::handshake) {
        if (c == Code::send_msg) frame_header();
    }
    SocketOp(const SocketOp&) = delete;
    SocketOp& operator=(const SocketOp&) = delete;
    ~SocketOp() {
        if (claimed) release();
    }

    /// Claims the direction and tries the system call: true if finished.
    bool begin() noexcept;
    /// A read of stream data (which may wait without trying first when the
    /// last read drained the socket).
    bool expects_stream_data() const noexcept;
    /// Waits a pass before trying: the socket's operations have all
    /// finished at once for a while, and the loop's other tasks get a turn.
    bool owes_a_pass() const noexcept;
    /// Releases the directions this operation claimed.
    void release() noexcept;
    void fail();
    void frame_header() noexcept;
    bool suspend(TaskCore& t, std::coroutine_handle<> h);
    /// Releases the direction; throws the operation's error, if any.
    void finish() {
        if (claimed) release();
        if (outcome != errc{} || lib_error != errc{} || error != 0) fail();
    }
    /// The whole operation from a plain thread, waiting with poll().
    void run_blocking();
    /// The accepted connection (accept only).
    Connection take_connection();
    /// The socket whose descriptor the operation waits on: the accepted
    /// connection during its handshake, else the operation's own.
    SocketState* io_state() const noexcept;

    SocketState* state;
    Code code;
    bool claimed = false;
    bool eof = false;  ///< recv_msg: clean EOF before a header
    errc lib_error{};
    int error = 0;
    std::size_t n = 0;     ///< bytes wanted (recv*, message length)
    std::size_t done = 0;  ///< bytes moved so far
    std::string_view out;
    std::string* in;  ///< what a read fills: the awaitable's or recv_into's buffer
    Address* addr;
    int accepted = -1;
    unsigned char header[4] = {};
    std::uint8_t header_done = 0;
    bool wait_write = false;   ///< the readiness the next wait needs
    bool handshaking = false;  ///< in a TLS handshake
    bool blocking = false;     ///< run by wait() on a plain thread: not the loop's to track
    bool backing_off = false;  ///< accept() out of descriptors: waits for the pause to end
    /// What only rare operations need (TLS, an accept() backing off),
    /// allocated on first use so that the awaitables of plaintext
    /// operations, in coroutine frames, stay small.
    struct RarePart {
        RarePart() = default;
        RarePart(const RarePart&) = delete;
        RarePart& operator=(const RarePart&) = delete;
        ~RarePart() {
            if (backoff && !backoff.cancelled()) backoff.cancel();
        }
        /// Non-empty after a TLS failure: finish() throws TlsError(lib_error, reason).
        std::string reason;
        /// accept() over TLS: the connection while it handshakes.
        std::unique_ptr<SocketState, SocketStateDeleter> conn;
        /// accept() out of descriptors: the end of its pause.
        TimerHandle backoff;
    };
    std::unique_ptr<RarePart> rare;
    RarePart& rare_part() {
        if (!rare) rare = std::make_unique<RarePart>();
        return *rare;
    }
};

/// The address storage of the operations that have one (accept, recvfrom,
/// connect, sendto); empty for the others, so that the awaitables of the
/// frequent operations, which live in coroutine frames, stay small.
/// Likewise the string a read returns, for the operations that return one,
/// and the string an owning send (sendall/send_msg given a std::string
/// rvalue) sends from. As a base constructed before SocketOp, it holds the
/// moved-in data before SocketOp takes its view; the awaitable never moves,
/// so the view stays valid.
template <bool Buffered>
struct OpBuffer {
    std::string* buffer_slot() noexcept { return nullptr; }
};
template <>
struct OpBuffer<true> {
    OpBuffer() = default;
    explicit OpBuffer(std::string&& data) noexcept : buffer(std::move(data)) {}
    std::string buffer;
    std::string* buffer_slot() noexcept { return &buffer; }
};

template <bool Addressed>
struct OpAddress {
    Address* address_slot() noexcept { return nullptr; }
};
template <>
struct OpAddress<true> {
    Address address;
    Address* address_slot() noexcept { return &address; }
};

}  // namespace detail

/// An awaitable socket operation yielding R; `.wait()` runs it blocking.
/// `Addressed` operations carry an Address (the peer's or the destination).
/// `Owning` sends carry the string they send (moved in at construction).
template <class R, bool Addressed = false, bool Owning = false>
class [[nodiscard]] SocketAwaitable
    : private detail::OpAddress<Addressed>,
      private detail::OpBuffer<Owning || std::is_same_v<R, std::string> ||
                               std::is_same_v<R, std::optional<std::string>> ||
                               std::is_same_v<R, Datagram>>,
      public detail::SocketOp {
    using Buffer = detail::OpBuffer<true>;

  public:
    SocketAwaitable(detail::SocketState* s, Code c, std::string_view out = {}, std::size_t n = 0,
                    const Address* to = nullptr, std::string* into = nullptr) noexcept
        requires(!Owning)
        : SocketOp(s, c, out, n, this->address_slot(),
                   into != nullptr ? into : this->buffer_slot()) {
        if constexpr (Addressed) {
            if (to != nullptr) this->address = *to;
        }
    }
    /// A send of `data`, which moves into the awaitable (no copy, no allocation).
    SocketAwaitable(detail::SocketState* s, Code c, std::string&& data) noexcept requires Owning
        : Buffer(std::move(data)),
          SocketOp(s, c, this->buffer, 0, nullptr, nullptr) {}
    bool await_ready() noexcept { return begin(); }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        return suspend(detail::task_of(h), h);
    }
    R await_resume() {
        finish();
        return result();
    }
    /// Runs the operation to completion on the calling thread (blocking mode).
    R wait() {
        run_blocking();
        finish();
        return result();
    }

  private:
    R result();
};

class AsyncSocket {
  public:
    /// No socket.
    AsyncSocket() noexcept;
    /// Takes `sock` (made non-blocking).
    explicit AsyncSocket(Socket sock);
    /// A new non-blocking socket: AF_INET/AF_INET6/AF_UNIX, SOCK_STREAM/SOCK_DGRAM.
    AsyncSocket(int family, int type);
    /// A new stream socket speaking TLS: AsyncSocket(family, type) then
    /// set_tls(ctx, server_hostname).
    AsyncSocket(int family, int type, TlsContext ctx, std::string server_hostname = {});
    AsyncSocket(AsyncSocket&&) noexcept;
    AsyncSocket& operator=(AsyncSocket&&) noexcept;
    /// Closes the socket (see close()).
    ~AsyncSocket();

    int fd() const noexcept;
    explicit operator bool() const noexcept { return fd() >= 0; }

    void bind(const Address& addr);
    void listen(int backlog = 128);
    void setsockopt(int level, int name, int value);
    Address local_address() const;
    Address peer_address() const;
    /// shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR.
    void shutdown(int how);
    /// Closes the socket; an operation still waiting on it fails with EBADF.
    void close() noexcept;

    /// The timeout of each operation started from now on (nullopt: none).
    void settimeout(Timeout timeout) noexcept;
    Timeout gettimeout() const noexcept;
    /// The whole connection's idle timeout: once `timeout` passes without
    /// any operation on this socket moving a byte (or accepting or making
    /// a connection), the socket is closed (the peer sees EOF), and the
    /// operations waiting on it, and every one started afterwards, throw
    /// TimeoutError. It runs whether or not a task waits on the socket, so
    /// a peer that connects and says nothing, or one byte a minute when
    /// that is under the timeout of each operation, is still dropped.
    /// std::nullopt or zero turns it off (the default); setting it again
    /// restarts the countdown (and reopens nothing). Costs nothing per
    /// operation: progress bumps a counter; one timer per map looks at a busy
    /// socket eight times per timeout, so it fires between `timeout` and
    /// `timeout` plus an eighth after the last progress.
    /// The countdown runs on the map of the task that calls this (the
    /// thread's default map outside a task), for operations awaited in
    /// tasks; blocking-mode operations (wait()) are not counted. Throws
    /// std::bad_alloc.
    void set_idle_timeout(Timeout timeout);
    Timeout idle_timeout() const noexcept;
    void set_max_message_size(std::size_t bytes) noexcept;
    std::size_t max_message_size() const noexcept;

    /// Accepts a connection (non-blocking, close-on-exec). A connection
    /// reset while it waited in the backlog is skipped. Out of descriptors
    /// or kernel memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), accept() neither
    /// fails nor spins: it logs one line on stderr, stops watching the
    /// listener for 100 ms, tries again, and so on, until it takes a
    /// connection, its timeout (settimeout()) expires, it is terminated, or
    /// the socket is closed. The listener stays open and the connections
    /// wait in its backlog, as with nginx and Dispatcher's accept(): a
    /// server whose accept loop is `for (;;) spawn(serve(co_await
    /// l.accept()))` rides out descriptor exhaustion, serving the
    /// connections it has, and accepts again once descriptors are freed.
    /// Blocking mode (wait()) pauses likewise.
    SocketAwaitable<Connection, true> accept();
    /// Connects to `addr`; raises the connect errno (ECONNREFUSED...).
    SocketAwaitable<void, true> connect(const Address& addr);
    /// Connects to `host` (a name is resolved by getaddrinfo on the thread
    /// pool, never blocking the loop; each address is tried in turn).
    Task<void> connect(std::string host, std::uint16_t port);
    /// Sends what the kernel takes at once (at least one byte); returns the count.
    SocketAwaitable<std::size_t> send(std::string_view data);
    /// Up to `n` bytes; an empty string at EOF.
    SocketAwaitable<std::string> recv(std::size_t n);
    /// Up to `n` bytes into `buf`, replacing its contents and reusing its
    /// capacity; returns buf.size(), 0 at EOF. `buf` must stay valid until
    /// the operation completes.
    SocketAwaitable<std::size_t> recv_into(std::string& buf, std::size_t n);
    /// Sends all of `data`, which the caller owns and keeps valid until the
    /// operation completes. Taken by string literals, views and lvalue strings.
    SocketAwaitable<void> sendall(std::string_view data);
    /// Sends all of `data`, a std::string rvalue moved (never copied) into
    /// the awaitable, which owns it until the operation completes:
    /// `co_await sock.sendall(make_reply())` depends on no temporary
    /// outliving the call. Only a non-const std::string rvalue picks this
    /// overload.
    template <std::same_as<std::string> S>
    SocketAwaitable<void, false, true> sendall(S&& data) {
        return SocketAwaitable<void, false, true>(s_.get(), detail::SocketOp::Code::send_all,
                                                  std::move(data));
    }
    /// Exactly `n` bytes; TruncatedError if the peer closes first.
    SocketAwaitable<std::string> recvall(std::size_t n);
    /// Sends `data` framed: 4-byte big-endian length, then the bytes, in one
    /// system call when the kernel takes it. errc::message_too_large above 4 GiB.
    /// The caller owns `data` and keeps it valid until the operation completes.
    SocketAwaitable<void> send_msg(std::string_view data);
    /// send_msg() of a std::string rvalue moved (never copied) into the
    /// awaitable, which owns it until the operation completes, as the owning
    /// sendall(). Only a non-const std::string rvalue picks this overload.
    template <std::same_as<std::string> S>
    SocketAwaitable<void, false, true> send_msg(S&& data) {
        return SocketAwaitable<void, false, true>(s_.get(), detail::SocketOp::Code::send_msg,
                                                  std::move(data));
    }
    /// The next framed message; nullopt on a clean EOF between messages.
    SocketAwaitable<std::optional<std::string>> recv_msg();
    SocketAwaitable<std::size_t, true> sendto(std::string_view data, const Address& to);
    SocketAwaitable<Datagram, true> recvfrom(std::size_t n);

    /// Makes this (unconnected or listening) stream socket speak TLS with
    /// `ctx` (see the top of this file): accept() handshakes as a server,
    /// connect() as a client verifying `server_hostname` when given. The
    /// context is shared, not copied. Throws std::logic_error if TLS was
    /// already started.
    void set_tls(TlsContext ctx, std::string server_hostname = {});
    /// Starts TLS on this connected socket now, in the role of `ctx`; a
    /// client verifies `server_hostname` (or the peer's IP address when
    /// empty). Completes when the handshake has. Bytes received and not yet
    /// read are discarded: plaintext sent before the handshake must not pass
    /// for protected data (RFC 3207, 5). Throws TlsError, TimeoutError,
    /// std::logic_error if TLS was already started.
    SocketAwaitable<void> start_tls(TlsContext ctx, std::string server_hostname = {});
    /// Sends close_notify, waiting for the kernel to take it (at most
    /// settimeout(), or 5 s without one); the socket stays open. Does
    /// nothing without an established TLS session.
    SocketAwaitable<void> shutdown_tls();
    /// The bound on each TLS handshake (nullopt: only settimeout()).
    /// Throws std::bad_alloc.
    void set_handshake_timeout(Timeout timeout);
    Timeout handshake_timeout() const noexcept;
    /// True once a TLS handshake completed on this socket, until close().
    bool tls_established() const noexcept;
    /// The negotiated version ("TLSv1.3"); empty without an established session.
    std::string tls_version() const;
    /// The ALPN protocol selected; empty when none.
    std::string alpn_protocol() const;

  private:
    explicit AsyncSocket(std::unique_ptr<detail::SocketState> s) noexcept;
    friend struct detail::SocketOp;

    std::unique_ptr<detail::SocketState> s_;
};

struct Connection {
    AsyncSocket sock;
    Address addr;
};

template <class R, bool Addressed, bool Owning>
R SocketAwaitable<R, Addressed, Owning>::result() {
    if constexpr (std::is_same_v<R, std::size_t>) {
        return done;
    } else if constexpr (std::is_same_v<R, std::string>) {
        return std::move(this->buffer);
    } else if constexpr (std::is_same_v<R, std::optional<std::string>>) {
        if (eof) return std::nullopt;
        return std::move(this->buffer);
    } else if constexpr (std::is_same_v<R, Datagram>) {
        return Datagram{std::move(this->buffer), this->address};
    } else if constexpr (std::is_same_v<R, Connection>) {
        return take_connection();
    } else {
        static_assert(std::is_void_v<R>);
    }
}

}  // namespace asyncore
