"""Hostile peers for the fault tests, and what each sample server speaks.

A peer is a Conn: a non-blocking socket, optionally TLS through memory BIOs
so that one selector drives plain and TLS connections alike, with every
wait bounded by a deadline. On top of it, the misbehaviours of issue 11:
resetting (SO_LINGER 0, then close: the kernel sends RST), half-closing,
never reading, vanishing (neither reading nor writing any more).

A Sample describes one server: how to start it (--port 0, temporary files,
a throwaway PKI for TLS), its greeting, one request and its exact reply
(the "ping" that proves the server still serves), and a request with a
large reply. A Server is a running sample whose descriptors and RSS can be
read from /proc, with its stdout and stderr kept in files.
"""

import os
import resource
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

TIMEOUT = 20.0


# The servers running, whose logs a failure shows.
RUNNING = []


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    for server in RUNNING:
        for what, text in (("stdout", server.stdout()), ("stderr", server.stderr())):
            if text.strip():
                print("--- %s %s (last lines):\n%s" % (server.sample.name, what,
                                                      "\n".join(text.splitlines()[-20:])),
                      file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


# -- A connection -------------------------------------------------------------


class Closed(Exception):
    """The server closed (or reset) the connection."""


class Conn:
    """One client connection. `inbox` collects what arrived (decrypted for
    TLS); `eof` is set once the server closed or reset its side."""

    def __init__(self, host, port, tls=None, rcvbuf=None, sndbuf=None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.sock.setblocking(False)
        self.sock.connect_ex((host, port))
        self.connected = False
        self.inbox = bytearray()
        self.eof = False
        self.reset = False
        self.out = bytearray()  # raw bytes waiting for the socket
        self.tls = None
        if tls is not None:
            self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = tls.wrap_bio(self._in, self._out, server_hostname="localhost")
        self.handshaken = tls is None

    def fileno(self):
        return self.sock.fileno()

    # The selector-facing half: what the connection waits for, and the two
    # events. Each moves bytes without blocking.
    def interest(self):
        ev = 0
        if not self.eof:
            ev |= selectors.EVENT_READ
        if not self.connected or self.out:
            ev |= selectors.EVENT_WRITE
        return ev

    def on_writable(self):
        if not self.connected:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            self.connected = True
            self._tls_step()
        if self.out:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                return
            except (BrokenPipeError, ConnectionResetError):
                self.eof = self.reset = True
                self.out.clear()
                return
            del self.out[:n]

    def on_readable(self):
        try:
            data = self.sock.recv(1 << 18)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            data, self.reset = b"", True
        if not data:
            self.eof = True
            self.connected = True
            return
        self.connected = True
        if self.tls is None:
            self.inbox += data
            return
        self._in.write(data)
        self._tls_step()

    def _tls_step(self):
        if self.tls is None:
            return
        if not self.handshaken:
            try:
                self.tls.do_handshake()
                self.handshaken = True
            except ssl.SSLWantReadError:
                pass
        if self.handshaken:
            while True:
                try:
                    chunk = self.tls.read(1 << 18)
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    self.eof = True
                    break
                if not chunk:
                    self.eof = True
                    break
                self.inbox += chunk
        self._flush_tls()

    def _flush_tls(self):
        pending = self._out.read()
        if pending:
            self.out += pending

    # The synchronous half, for tests that drive one connection at a time.
    def pump(self, deadline, stop):
        """Moves bytes both ways until stop() is true; fails at the deadline."""
        sel = selectors.DefaultSelector()
        try:
            while not stop():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no progress before the deadline (have %d bytes: %r)"
                                       % (len(self.inbox), bytes(self.inbox[-120:])))
                ev = self.interest()
                if ev == 0:
                    if stop():
                        break
                    raise Closed("the connection is closed (%d bytes received)" % len(self.inbox))
                sel.register(self.sock, ev)
                ready = sel.select(min(left, 1.0))
                sel.unregister(self.sock)
                for _, mask in ready:
                    if mask & selectors.EVENT_WRITE:
                        self.on_writable()
                    if mask & selectors.EVENT_READ:
                        self.on_readable()
        finally:
            sel.close()

    def wait_ready(self, timeout=TIMEOUT):
        """Waits for the TCP connection (and the TLS handshake)."""
        self.pump(time.monotonic() + timeout, lambda: self.connected and self.handshaken
                  and not self.out)

    def send(self, data, timeout=TIMEOUT):
        """Sends `data` whole, reading meanwhile (so a server that answers as
        it reads never waits for us)."""
        self.queue(data)
        self.pump(time.monotonic() + timeout, lambda: not self.out)

    def queue(self, data):
        if self.tls is None:
            self.out += data
        else:
            view = memoryview(data)
            while view:
                n = self.tls.write(view[:1 << 16])
                view = view[n:]
            self._flush_tls()

    def recv_exactly(self, n, timeout=TIMEOUT):
        """The next `n` bytes of the inbox, waiting for them."""
        try:
            self.pump(time.monotonic() + timeout, lambda: len(self.inbox) >= n or self.eof)
        except Closed:
            pass
        if len(self.inbox) < n:
            raise Closed("closed after %d of %d bytes" % (len(self.inbox), n))
        data = bytes(self.inbox[:n])
        del self.inbox[:n]
        return data

    def recv_until(self, marker, timeout=TIMEOUT):
        """The inbox up to and including `marker`, waiting for it."""
        try:
            self.pump(time.monotonic() + timeout, lambda: marker in self.inbox or self.eof)
        except Closed:
            pass
        i = self.inbox.find(marker)
        if i < 0:
            raise Closed("closed before %r (have %r)" % (marker, bytes(self.inbox[-120:])))
        data = bytes(self.inbox[:i + len(marker)])
        del self.inbox[:i + len(marker)]
        return data

    def read_to_eof(self, timeout=TIMEOUT):
        """Everything until the server closes; fails if it does not in time."""
        self.pump(time.monotonic() + timeout, lambda: self.eof)
        data = bytes(self.inbox)
        self.inbox.clear()
        return data

    def shutdown_write(self, timeout=TIMEOUT):
        """Half-closes: a TLS peer sends its close_notify first."""
        if self.tls is not None:
            try:
                self.tls.unwrap()
            except ssl.SSLWantReadError:
                pass
            self._flush_tls()
        self.pump(time.monotonic() + timeout, lambda: not self.out)
        self.sock.shutdown(socket.SHUT_WR)

    def rst(self):
        """Closes with a reset: SO_LINGER {on, 0} makes close() send RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()


# -- The samples --------------------------------------------------------------


def client_tls_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = True
    return ctx


class Sample:
    """One sample server's protocol. Subclasses fill in the blanks."""
    name = "?"
    greeting = None          # marker ending the greeting, or None
    idle_args = None         # options for a short idle timeout, or None
    idle_notice = b""        # what a dropped idle client is told first
    replies = True           # False: the server never answers (tut_sock)
    drops_non_readers = False  # True: a peer that does not read is closed, not paused
    noisy = False            # True: other clients' events reach a client (chat)

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="faults-%s-" % self.name)
        self.tls = None

    def args(self):
        """Options the server needs besides --port 0."""
        return []

    def connect(self, server, **kw):
        """A connection through the greeting (and TLS handshake)."""
        c = Conn(server.host, server.port, tls=self.tls, **kw)
        c.wait_ready()
        if self.greeting is not None:
            c.recv_until(self.greeting)
        return c

    def request(self, i):
        raise NotImplementedError

    def reply(self, i):
        raise NotImplementedError

    def ping(self, conn, i=0, timeout=TIMEOUT):
        """One request and its exact reply on `conn`."""
        conn.send(self.request(i), timeout)
        want = self.reply(i)
        got = conn.recv_exactly(len(want), timeout)
        check(got == want, "%s: reply %r, expected %r" % (self.name, got[:200], want[:200]))

    def big(self):
        """(request, expected reply) with a reply of several MiB."""
        raise NotImplementedError

    def prepare_flood(self, conn):
        """What a connection does before sending flood() requests."""

    def flood(self, i):
        """The i-th batch of requests a peer that never reads keeps sending."""
        raise NotImplementedError

    def flood_reply(self, i):
        """What the server answers to flood(i): bytes, or a list of them."""
        raise NotImplementedError


def pattern(n, seed=0):
    block = bytes((i * 7 + seed * 131 + i // 251) & 0xff for i in range(65536))
    return (block * (n // len(block) + 1))[:n]


class Echo(Sample):
    name = "echo"

    def request(self, i):
        return b"ping %d\n" % i

    def reply(self, i):
        return self.request(i)

    def big(self):
        data = pattern(8 << 20, 1)
        return data, data

    def flood(self, i):
        return pattern(65536, i)

    def flood_reply(self, i):
        return self.flood(i)


class Chat(Sample):
    name = "chat"
    noisy = True
    greeting = b")\n"  # "* welcome, you are guestN (/nick NAME to rename, /quit to leave)"
    idle_args = ["--idle-timeout", "1"]
    idle_notice = b"* you have been idle for too long; bye\n"

    def request(self, i):
        return b"/ping%d\n" % i

    def reply(self, i):
        return b"* unknown command /ping%d (try /nick NAME or /quit)\n" % i

    def ping(self, conn, i=0, timeout=TIMEOUT):
        """As Sample.ping, skipping the joins and leaves of other clients
        that a chat client sees between its own lines."""
        conn.send(self.request(i), timeout)
        want = self.reply(i)
        deadline = time.monotonic() + timeout
        while True:
            line = conn.recv_until(b"\n", max(deadline - time.monotonic(), 0.01))
            if line == want:
                return
            check(line.startswith(b"* guest") and (line.endswith(b" has joined\n") or
                                                   line.endswith(b" has left\n")),
                  "chat: unexpected line %r, waiting for %r" % (line, want))

    def big(self):
        # Replies to unknown commands: ~0.9 MiB, under the server's 1 MiB
        # limit for a client that does not read.
        n = 18000
        return (b"".join(self.request(i) for i in range(n)),
                b"".join(self.reply(i) for i in range(n)))

    # A client that does not read is dropped once 1 MiB is queued for it
    # (chat_server's documented policy), rather than paused.
    drops_non_readers = True

    def flood(self, i):
        return b"".join(self.request(j) for j in range(i * 1000, i * 1000 + 1000))

    def flood_reply(self, i):
        return b"".join(self.reply(j) for j in range(i * 1000, i * 1000 + 1000))


class Smtp(Sample):
    name = "smtp"
    greeting = b"\r\n"
    # RFC 5321's 5 minutes times 0.004: 1.2 s awaiting a command.
    idle_args = ["--timeout-scale", "0.004"]
    idle_notice = b"421 "

    def args(self):
        return ["--mbox", os.path.join(self.dir.name, "mail.mbox")]

    def request(self, i):
        return b"NOOP\r\n"

    def reply(self, i):
        return b"250 OK\r\n"

    def big(self):
        n = 300000
        return b"NOOP\r\n" * n, b"250 OK\r\n" * n

    def flood(self, i):
        return b"NOOP\r\n" * 10000

    def flood_reply(self, i):
        return b"250 OK\r\n" * 10000


def resp_bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)


def resp_command(*args):
    return b"*%d\r\n" % len(args) + b"".join(resp_bulk(a) for a in args)


class Resp(Sample):
    name = "resp"
    idle_args = ["--timeout", "1"]  # only where resp_server has it (see supports())

    def request(self, i):
        return resp_command(b"ECHO", b"ping %d" % i)

    def reply(self, i):
        return resp_bulk(b"ping %d" % i)

    def big(self):
        value = pattern(4 << 20, 2)
        return (resp_command(b"SET", b"big", value) + resp_command(b"GET", b"big") * 2,
                b"+OK\r\n" + resp_bulk(value) * 2)

    def flood(self, i):
        # First 200 requests of 22 bytes, each answered with the 256 KiB
        # value: one read of pipelined requests asks for 50 MiB of replies.
        # Then smaller ones, whose replies stay few enough to read back.
        if i == 0:
            return resp_command(b"GET", b"v") * 200
        return self.request(i) * 1000

    def flood_reply(self, i):
        if i == 0:
            return [resp_bulk(self.value)] * 200
        return self.reply(i) * 1000

    def prepare_flood(self, conn):
        self.value = pattern(256 << 10, 6)
        conn.send(resp_command(b"SET", b"v", self.value))
        check(conn.recv_exactly(5) == b"+OK\r\n", "resp: SET v failed")


class Http(Sample):
    name = "http"
    idle_args = ["--header-timeout", "1", "--keepalive-timeout", "1"]

    def __init__(self):
        super().__init__()
        self.data = pattern(10 << 20, 3)
        with open(os.path.join(self.dir.name, "big.bin"), "wb") as f:
            f.write(self.data)
        with open(os.path.join(self.dir.name, "small.txt"), "wb") as f:
            f.write(b"a small file\n")

    def args(self):
        return ["--root", self.dir.name]

    def request(self, i):
        return b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"

    def reply(self, i):
        body = b"Hello, world!"
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: keep-alive\r\n\r\n%s" % (len(body), body))

    def big(self):
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(self.data))
        return b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n", head + self.data

    def flood(self, i):
        # A 10 MiB file first, then requests for /hello: the replies the
        # peer leaves unread stay few enough to read back.
        return self.big()[0] if i == 0 else self.request(i) * 100

    def flood_reply(self, i):
        return self.big()[1] if i == 0 else self.reply(i) * 100


def frame(b):
    return struct.pack(">L", len(b)) + b


class MsgEcho(Sample):
    name = "msg_echo"

    def request(self, i):
        return frame(b"ping %d" % i)

    def reply(self, i):
        return self.request(i)

    def big(self):
        data = frame(pattern(8 << 20, 4))
        return data, data

    def flood(self, i):
        return frame(pattern(65536, i))

    def flood_reply(self, i):
        return self.flood(i)


class TutSock(Sample):
    """pycos' tutorial: the client sends, closes, and the server prints
    'received: DATA' once the connection ends. It never answers."""
    name = "tut_sock"
    replies = False

    def request(self, i):
        return b"ping %d/" % i

    def reply(self, i):
        return b""

    # A message is kept whole until the peer closes: one that never ends is
    # refused past tut_sock_server's limit, and its connection closed.
    drops_non_readers = True

    def ping(self, conn, i=0, timeout=TIMEOUT):
        raise NotImplementedError("tut_sock_server answers nothing: use served()")

    def flood(self, i):
        return pattern(65536, i)

    def flood_reply(self, i):
        return b""


class TlsEcho(Echo):
    name = "tls_echo"

    def __init__(self):
        super().__init__()
        from tls_pki import make_pki
        self.pki = make_pki(self.dir.name, name="faults")
        self.tls = client_tls_context(self.pki["ca"])

    def args(self):
        return ["--cert", self.pki["cert"], "--key", self.pki["key"]]

    def big(self):
        data = pattern(4 << 20, 5)
        return data, data


SAMPLES = {cls.name: cls for cls in (Echo, Chat, Smtp, Resp, Http, MsgEcho, TutSock, TlsEcho)}


# -- A running server ---------------------------------------------------------


def nofile_limit(soft):
    """A preexec_fn setting the child's RLIMIT_NOFILE soft limit."""
    def apply():
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard), hard))
    return apply


def raise_own_nofile(n):
    """Raises this process's soft RLIMIT_NOFILE to `n` (at most the hard
    limit); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(n, hard) if hard != resource.RLIM_INFINITY else n
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Server:
    """A sample server on an ephemeral port. Its stdout and stderr go to
    files (a flood of log lines never blocks it); log() reads both."""

    def __init__(self, sample, exe, *extra, nofile=None, env=None):
        self.sample = sample
        self.out_path = os.path.join(sample.dir.name, "server.out")
        self.err_path = os.path.join(sample.dir.name, "server.err")
        out = open(self.out_path, "w")
        err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [exe, "--port", "0", *sample.args(), *extra], stdout=out, stderr=err,
            preexec_fn=nofile_limit(nofile) if nofile else None, env=env)
        out.close()
        err.close()
        self.pid = self.proc.pid
        RUNNING.append(self)
        deadline = time.monotonic() + TIMEOUT
        line = ""
        while time.monotonic() < deadline:
            with open(self.out_path) as f:
                line = f.readline()
            if line.endswith("\n") or self.proc.poll() is not None:
                break
            time.sleep(0.02)  # polling a file for the server's first line
        if not line.startswith("listening on "):
            self.kill()
            fail("%s did not report 'listening on HOST:PORT' (got %r; stderr %r)"
                 % (sample.name, line, self.stderr()[-500:]))
        host, port = line[len("listening on "):].strip().rsplit(":", 1)
        self.host, self.port = host.strip("[]"), int(port)
        self.sanitized = self._sanitized()
        # The samples' contract: once 'listening on' is out, SIGINT and
        # SIGTERM shut the server down (exit 0). So their handling must be
        # in place by then: caught (a handler) or blocked (a signalfd).
        missing = [sig.name for sig in (signal.SIGINT, signal.SIGTERM)
                   if not self._signal_handled(sig)]
        if missing:
            self.kill()
            fail("%s printed 'listening on' before handling %s: a signal now would kill it"
                 % (sample.name, " and ".join(missing)))

    def _signal_handled(self, sig):
        masks = {}
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("SigCgt", "SigBlk"):
                    masks[key] = int(value, 16)
        bit = 1 << (sig - 1)
        return bool((masks.get("SigCgt", 0) | masks.get("SigBlk", 0)) & bit)

    def _sanitized(self):
        try:
            with open("/proc/%d/maps" % self.pid) as f:
                maps = f.read()
        except OSError:
            return False
        return "libasan" in maps or "libtsan" in maps

    def log(self):
        return self.stdout() + self.stderr()

    def stdout(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def check_alive(self, what):
        if not self.alive():
            fail("%s died %s (exit %s)" % (self.sample.name, what, self.proc.returncode))

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_fds(self, want, timeout=TIMEOUT):
        """Waits until the server holds at most `want` descriptors; returns
        the count then (more than `want` if the deadline passed)."""
        deadline = time.monotonic() + timeout
        n = self.fds()
        while n > want and time.monotonic() < deadline:
            time.sleep(0.05)  # polling /proc for the server to close
            n = self.fds()
        return n

    def stop(self):
        """SIGTERM; fails unless the server exits 0."""
        if not self.alive():
            self.check_alive("before SIGTERM")
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            fail("%s did not exit within %.0f s of SIGTERM" % (self.sample.name, TIMEOUT))
        if rc != 0:
            fail("%s exited %d after SIGTERM" % (self.sample.name, rc))
        RUNNING.remove(self)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self in RUNNING:
            RUNNING.remove(self)


def served(sample, server, i=0, timeout=TIMEOUT):
    """Proves the server still serves: a new connection gets a ping
    answered (tut_sock: its message printed)."""
    if sample.replies:
        c = sample.connect(server)
        try:
            sample.ping(c, i, timeout)
        finally:
            c.close()
        return
    marker = "served-%d-%d/" % (os.getpid(), i)
    c = Conn(server.host, server.port)
    c.wait_ready(timeout)
    c.send(marker.encode(), timeout)
    c.shutdown_write(timeout)
    c.read_to_eof(timeout)
    c.close()
    deadline = time.monotonic() + timeout
    while marker not in server.stdout():
        if time.monotonic() > deadline:
            fail("tut_sock_server never printed %r" % marker)
        time.sleep(0.02)  # polling the server's log file


# -- Many connections at once -------------------------------------------------


class Session:
    """One client's conversation, driven by a Driver: connect (and TLS),
    the greeting, `pings` request/reply rounds, then `end`: "close" (FIN),
    "rst", "hold" (stay open, served) or "none" (left as it is). `start`:
    "rst"/"fin" end the session as soon as the TCP connection is up,
    without a word. tut_sock sessions send their message and half-close;
    the server's close ends them."""

    def __init__(self, sample, host, port, i, pings=1, end="close", early=None, rcvbuf=None,
                 drain=True):
        self.sample, self.i, self.pings, self.end, self.early = sample, i, pings, end, early
        self.drain = drain  # held: keep reading (False: leave it to the kernel's buffers)
        self.conn = Conn(host, port, tls=None if early else sample.tls, rcvbuf=rcvbuf)
        self.phase = "connect"
        self.driver = None
        self.done = False
        self.error = None
        self.served = False

    def advance(self):
        """Moves the conversation on after an event; True once finished."""
        c, s = self.conn, self.sample
        if self.phase == "connect":
            if not (c.connected and c.handshaken) or c.out:
                return self._eof_check()
            if self.early:
                self._finish(self.early)
                return True
            self.phase = "greeting" if s.greeting is not None else "request"
        if self.phase == "greeting":
            i = c.inbox.find(s.greeting)
            if i < 0:
                return self._eof_check()
            del c.inbox[:i + len(s.greeting)]
            self.phase = "request"
        while self.phase in ("request", "reply"):
            if self.phase == "request":
                if self.pings == 0:
                    self.phase = "end"
                    break
                if not s.replies:
                    c.queue(s.request(self.i))
                    self.phase = "end" if self.end == "hold" else "half-closed"
                    break
                c.queue(s.request(self.i))
                self.want = s.reply(self.i)
                self.phase = "reply"
            if self.phase == "reply":
                if s.noisy:
                    while c.inbox.startswith(b"* guest") and b"\n" in c.inbox:
                        del c.inbox[:c.inbox.index(b"\n") + 1]
                if len(c.inbox) < len(self.want):
                    return self._eof_check()
                got = bytes(c.inbox[:len(self.want)])
                del c.inbox[:len(self.want)]
                if got != self.want:
                    self.error = "reply %r, expected %r" % (got[:100], self.want[:100])
                    self._finish("close")
                    return True
                self.served = True
                self.pings -= 1
                self.phase = "request"
        if self.phase == "half-closed":
            if c.out:
                return False
            if not getattr(self, "shut", False):
                c.sock.shutdown(socket.SHUT_WR)
                self.shut = True
            if not c.eof:
                return False
            self.served = True
            self._finish("close")
            return True
        if self.phase == "end":
            if c.out:
                return False
            if self.end == "hold":
                self.phase = "held"
                return True
            self._finish(self.end)
            return True
        return False

    def again(self):
        """Another round for a held session: one more request and reply
        (tut_sock: the half-close, answered by the server's close)."""
        self.served = False
        self.end = "hold"
        if self.sample.replies:
            self.pings, self.phase = 1, "request"
        else:
            self.phase, self.end = "half-closed", "close"

    def _eof_check(self):
        if self.conn.eof:
            self.error = "the server closed the connection in phase %s" % self.phase
            self._finish("close")
            return True
        return False

    def _finish(self, how):
        if self.done:
            return
        self.done = True
        if self.driver is not None:
            self.driver._drop(self)
        if how == "rst":
            self.conn.rst()
        elif how in ("close", "fin"):
            self.conn.close()


class Driver:
    """Runs many Sessions on one selector. A held session stays watched for
    reading: what a chat client is sent meanwhile is drained, and a server
    closing it is noticed (its error)."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.running = set()

    def add(self, session):
        self.running.add(session)
        ev = session.conn.interest() or selectors.EVENT_READ
        if session.driver is self:
            self.sel.modify(session.conn.sock, ev, session)
        else:
            session.driver = self
            self.sel.register(session.conn.sock, ev, session)

    def _drop(self, s):
        """Stops watching `s` (before its socket closes)."""
        if s.driver is self:
            s.driver = None
            self.running.discard(s)
            self.sel.unregister(s.conn.sock)

    def run(self, deadline, until=None, idle=False):
        """Moves every session on until all are finished or held, until()
        is true, or the deadline; with `idle`, runs (draining the held
        sessions) until the deadline or until() even with none running.
        Returns the sessions still running."""
        while not (until and until()) and (idle or self.running):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, mask in self.sel.select(min(left, 1.0)):
                s = key.data
                c = s.conn
                if s.phase == "held":
                    c.on_readable()
                    if s.sample.noisy:
                        c.inbox.clear()
                    if c.eof:
                        s.error = "the server closed a connection it had answered"
                        s._finish("close")
                    continue
                try:
                    if mask & selectors.EVENT_WRITE:
                        c.on_writable()
                    if mask & selectors.EVENT_READ:
                        c.on_readable()
                    finished = s.advance()
                except (OSError, ssl.SSLError) as e:
                    s.error = "%s in phase %s" % (e, s.phase)
                    s._finish("close")
                    finished = True
                if not finished:
                    self.sel.modify(c.sock, c.interest() or selectors.EVENT_READ, s)
                    continue
                self.running.discard(s)
                if not s.done:
                    if s.drain:
                        self.sel.modify(c.sock, selectors.EVENT_READ, s)
                    else:
                        self._drop(s)
        return self.running
