#!/usr/bin/env python3
"""Bad input for each sample server (issue 11 section 5), beside good
clients; the machinery (rounds, seeds, p99) is in badinput.py.

usage: bad_input_smoke.py KIND SERVER [TEST ARGS] [--seed N] [--max-ratio X] ...
  KIND: echo, msg_echo, tls_echo, chat, smtp, resp, http, tut_sock

Per server: the good client and what it checks, and the bad cases with the
outcome each must get. "closed" means the server ends the connection (EOF
or a reset) within the deadline; a case's reply checks come first.
"""
import collections
import os
import re
import select
import socket
import ssl
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import badinput  # noqa: E402
from badinput import DEADLINE, CaseFailed, Peer, expect  # noqa: E402


def flood(peer, data, stall=0.3):
    """Sends `data` without reading until the server stops taking it for
    `stall` seconds (its backpressure) or closes; returns the bytes sent."""
    sock = peer.sock
    sock.setblocking(False)
    sent = 0
    try:
        while sent < len(data):
            if not select.select([], [sock], [], stall)[1]:
                break  # the server stopped reading: backpressure
            try:
                sent += sock.send(data[sent:sent + (1 << 16)])
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                peer.reset = True
                break
    finally:
        sock.setblocking(True)
    return sent


def generic_cases():
    """Cases any TCP server must survive: a reset or a close at once, random
    bytes then a reset."""
    def reset_at_once(host, port, rng):
        Peer(host, port).abort()

    def close_at_once(host, port, rng):
        Peer(host, port).close()

    def junk_then_reset(host, port, rng):
        p = Peer(host, port)
        p.send(rng.junk(rng.junk_size(1, 256 << 10)))
        p.abort()

    return [("reset at once", reset_at_once), ("close at once", close_at_once),
            ("random bytes, then a reset", junk_then_reset)]


# -- echo_server ----------------------------------------------------------------


class EchoGood:
    def __init__(self, host, port, rng):
        self.rng = rng
        self.sock = socket.create_connection((host, port), timeout=DEADLINE)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self):
        data = self.rng.junk(self.rng.randint(1, 4096))
        self.sock.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = self.sock.recv(len(data) - len(got))
            if not chunk:
                raise CaseFailed("echo closed the connection of a good client")
            got += chunk
        if got != data:
            raise CaseFailed("a good client's echo differs")

    def close(self):
        self.sock.close()


def echo_cases():
    def junk_half_close(host, port, rng):
        p = Peer(host, port)
        data = rng.junk(rng.junk_size(1, 1 << 20))
        p.send(data)
        p.half_close()
        got = p.to_eof(limit=len(data))
        expect(got == data, "echo of %d random bytes then a half-close: %d bytes came back%s"
               % (len(data), len(got), "" if len(got) != len(data) else ", different"))

    def flood_unread(host, port, rng):
        p = Peer(host, port)
        # Small buffers, so that the server, not the kernels, holds the echo
        # it cannot send: past 1 MiB it stops reading (its backpressure).
        p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        data = rng.junk(4 << 20)
        sent = flood(p, data)
        expect(not p.reset, "the server reset a client that only stopped reading")
        p.half_close()
        got = p.to_eof(limit=sent)
        expect(got == data[:sent], "after %d bytes unread, %d came back" % (sent, len(got)))

    return [("random bytes, then a half-close: the exact echo", junk_half_close),
            ("4 MiB to a peer that does not read, then a half-close: the exact echo",
             flood_unread)] + generic_cases()


# -- msg_echo_server ------------------------------------------------------------

MSG_MAX = 1 << 20  # --max-message for the run


class MsgGood(EchoGood):
    def request(self):
        payload = self.rng.junk(self.rng.randint(0, 4096))
        self.sock.sendall(struct.pack(">L", len(payload)) + payload)
        got = b""
        want = 4 + len(payload)
        while len(got) < want:
            chunk = self.sock.recv(want - len(got))
            if not chunk:
                raise CaseFailed("msg_echo closed the connection of a good client")
            got += chunk
        if got[4:] != payload or struct.unpack(">L", got[:4])[0] != len(payload):
            raise CaseFailed("a good client's message came back different")


def frames_echoed(data):
    """What msg_echo_server owes a client that sent `data` then half-closed:
    each whole message up to the first that is too large or cut short."""
    out, pos = [], 0
    while len(data) - pos >= 4:
        n = struct.unpack(">L", data[pos:pos + 4])[0]
        if n > MSG_MAX or len(data) - pos - 4 < n:
            break
        out.append(data[pos:pos + 4 + n])
        pos += 4 + n
    return b"".join(out)


def msg_cases():
    def sized(host, port, rng, prefix, what):
        p = Peer(host, port)
        good = [rng.junk(rng.randint(0, 2000)) for _ in range(rng.randint(0, 3))]
        framed = b"".join(struct.pack(">L", len(m)) + m for m in good)
        p.send(framed + prefix + rng.junk(rng.randint(0, 4096)))
        got = p.to_eof(limit=len(framed))
        expect(got == framed, "%s: %d bytes came back, expected the %d of the messages before it"
               % (what, len(got), len(framed)))

    def four_gib(host, port, rng):
        sized(host, port, rng, struct.pack(">L", 0xffffffff), "a 4 GiB length prefix")

    def just_over(host, port, rng):
        sized(host, port, rng, struct.pack(">L", MSG_MAX + 1), "a length one over the limit")

    def cut_short(host, port, rng):
        p = Peer(host, port)
        n = rng.randint(1, 100000)
        p.send(struct.pack(">L", n) + rng.junk(rng.randint(0, n - 1)))
        p.half_close()
        expect(p.to_eof(limit=0) == b"", "a message cut short by EOF was echoed")

    def junk(host, port, rng):
        p = Peer(host, port)
        data = rng.junk(rng.junk_size(1, 256 << 10))
        p.send(data)
        p.half_close()
        want = frames_echoed(data)
        got = p.to_eof(limit=len(want))
        expect(got == want, "random bytes: got %d bytes back, expected %d" % (len(got), len(want)))

    return [("a 4 GiB length prefix: closed", four_gib),
            ("a length over --max-message: closed", just_over),
            ("a message cut short by a half-close: closed", cut_short),
            ("random bytes, then a half-close: whole messages echoed, then closed", junk)
            ] + generic_cases()


# -- tls_echo_server ------------------------------------------------------------

PKI = {}


def tls_context():
    ctx = ssl.create_default_context(cafile=PKI["ca"])
    return ctx


class TlsGood(EchoGood):
    def __init__(self, host, port, rng):
        self.rng = rng
        raw = socket.create_connection((host, port), timeout=DEADLINE)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls_context().wrap_socket(raw, server_hostname="localhost")


def client_hello(rng):
    """A real ClientHello (from Python's ssl, through memory BIOs)."""
    ctx = ssl.create_default_context(cafile=PKI["ca"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def tls_records(data):
    """True if `data` is a sequence of whole TLS records (handshake, alert,
    change-cipher-spec or application data: a TLS 1.3 server sends its
    session tickets as the last)."""
    pos = 0
    while pos < len(data):
        head = data[pos:pos + 5]
        if len(head) < 5 or head[0] not in (20, 21, 22, 23) or head[1] != 3:
            return False
        pos += 5 + int.from_bytes(head[3:5], "big")
    return pos == len(data)


def expect_tls_close(p, what):
    """The server ends the connection; all it may send first is TLS records
    (a ServerHello, session tickets, an alert)."""
    got = p.to_eof(limit=64 << 10)
    expect(tls_records(got), "%s: the server sent %r before closing, not TLS records"
           % (what, got[:16]))


def tls_cases():
    def garbage(host, port, rng):
        p = Peer(host, port)
        p.send(rng.junk(rng.junk_size(1, 64 << 10)))
        p.half_close()
        expect_tls_close(p, "random bytes instead of a ClientHello")

    def huge_record(host, port, rng):
        p = Peer(host, port)
        p.send(b"\x16\x03\x01\xff\xff" + rng.junk(rng.randint(0, 4096)))
        p.half_close()
        expect_tls_close(p, "a handshake record claiming 64 KiB")

    def hello_then_garbage(host, port, rng):
        p = Peer(host, port)
        p.send(client_hello(rng) + rng.junk(rng.junk_size(1, 64 << 10)))
        # As in the cases above: random bytes now and then start a record
        # header that announces more than follows, and a server rightly waits
        # for the rest (until its handshake timeout, 60 s); our EOF ends that.
        p.half_close()
        expect_tls_close(p, "a ClientHello, then random bytes")

    def established_then_garbage(host, port, rng):
        raw = socket.create_connection((host, port), timeout=DEADLINE)
        tls = tls_context().wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"hello")
        got = b""
        while len(got) < 5:
            chunk = tls.recv(5 - len(got))
            expect(chunk, "no echo before the garbage")
            got += chunk
        # Garbage records straight onto the TCP stream, under the TLS layer.
        dup = socket.socket(fileno=os.dup(tls.fileno()))
        try:
            dup.sendall(b"\x17\x03\x03\x00\x40" + rng.junk(64) + rng.junk(rng.randint(0, 4096)))
            # What comes back is TLS records (an alert), then the close.
            expect_tls_close(Peer.adopt(dup), "garbage records after the handshake")
        finally:
            dup.close()
            tls.close()

    def established_then_eof(host, port, rng):
        raw = socket.create_connection((host, port), timeout=DEADLINE)
        tls = tls_context().wrap_socket(raw, server_hostname="localhost")
        raw_dup = socket.socket(fileno=os.dup(tls.fileno()))
        raw_dup.shutdown(socket.SHUT_WR)  # a truncation: no close_notify
        try:
            expect_tls_close(Peer.adopt(raw_dup), "EOF without close_notify")
        finally:
            raw_dup.close()
            tls.close()

    return [("random bytes instead of a ClientHello: closed", garbage),
            ("an oversized handshake record: closed", huge_record),
            ("a ClientHello, then random bytes: closed", hello_then_garbage),
            ("a handshake, then garbage records: closed", established_then_garbage),
            ("a handshake, then EOF without close_notify: closed", established_then_eof),
            ] + generic_cases()


# -- chat_server ----------------------------------------------------------------

WELCOME = re.compile(rb"^\* welcome, you are (guest\d+) ")


class ChatPeer(Peer):
    def __init__(self, host, port):
        super().__init__(host, port)
        first = self.line(b"\n")
        m = WELCOME.match(first)
        expect(m, "no welcome line: %r" % first[:100])
        self.name = m.group(1)

    def wait_line(self, want):
        """Reads lines (others' chatter included) until `want`."""
        while True:
            line = self.line(b"\n")
            if line == want:
                return


class ChatGood:
    """Two connections: each request, one says a fresh token and the other
    must hear it, prefixed with the speaker's name."""

    def __init__(self, host, port, rng):
        self.rng = rng
        self.a, self.b = ChatPeer(host, port), ChatPeer(host, port)
        for p in (self.a, self.b):
            p.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.turn = 0

    def request(self):
        speak, hear = (self.a, self.b) if self.turn % 2 == 0 else (self.b, self.a)
        self.turn += 1
        token = b"token-%d" % self.rng.getrandbits(64)
        speak.sock.sendall(token + b"\n")
        hear.wait_line(speak.name + b": " + token)

    def close(self):
        self.a.close()
        self.b.close()


def chat_cases():
    def quit_politely(p):
        p.send(b"/quit\n")
        got = p.to_eof(limit=64 << 20)
        expect(b"\n* bye\n" in b"\n" + got, "no '* bye' after /quit")

    def long_line(host, port, rng):
        p = ChatPeer(host, port)
        n = rng.pick([4097, 70000, 1 << 20])
        p.send(rng.text_junk(100) * (n // 100 + 1) + b"\n")
        p.to_eof(limit=64 << 20)  # a line over 4 KiB: disconnected

    def random_lines(host, port, rng):
        p = ChatPeer(host, port)
        for _ in range(rng.randint(1, 20)):
            p.send(rng.line_junk(rng.randint(0, 400), b"\n"))
        quit_politely(p)

    def nul_and_binary(host, port, rng):
        p = ChatPeer(host, port)
        p.send(b"\0\0\0\n\xff\xfe\xfd\n\r\r\r\n" + rng.junk(50).replace(b"\n", b"") + b"\n")
        quit_politely(p)

    def bad_commands(host, port, rng):
        p = ChatPeer(host, port)
        p.send(b"/frobnicate " + rng.text_junk(20) + b"\n")
        line = p.line(b"\n")
        while not line.startswith(b"* unknown command /frobnicate"):
            line = p.line(b"\n")
        p.send(b"/nick " + rng.text_junk(40) + b" with spaces\n")
        line = p.line(b"\n")
        while not line.startswith(b"* usage: /nick"):
            line = p.line(b"\n")
        quit_politely(p)

    return [("a line over 4 KiB: closed", long_line),
            ("random lines: relayed, then /quit answers", random_lines),
            ("NUL and non-UTF-8 bytes: relayed, then /quit answers", nul_and_binary),
            ("unknown commands and bad names: answered", bad_commands),
            ] + generic_cases()


# -- smtp_server ----------------------------------------------------------------

SMTP_LIMIT = 1 << 20  # --data-size-limit for the run


class SmtpPeer(Peer):
    def __init__(self, host, port):
        super().__init__(host, port)
        expect(self.reply().startswith(b"220 "), "no 220 greeting")

    def reply(self):
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line[3:4] != b"-":
                return b"\r\n".join(lines)

    def command(self, line):
        self.send(line + b"\r\n")
        return self.reply()


class SmtpGood:
    """A session that keeps going: NOOP, RSET, and a whole transaction
    every few requests. The delivery (which waits for fdatasync) is checked
    but not timed: the p99 is of the protocol's replies."""

    def __init__(self, host, port, rng):
        self.rng = rng
        self.p = SmtpPeer(host, port)
        self.p.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = self.p.command(b"EHLO good.example")
        expect(r.startswith(b"250"), "EHLO: %r" % r)
        self.script = []
        self.sent = []
        self.delivered = []  # whose final dot went out: 250 or an error follows
        self.id = self.rng.getrandbits(48)

    def report(self):
        return self.delivered

    def request(self):
        if not self.script:
            n = len(self.sent)
            body = b"Subject: good %d-%d\r\n\r\n%s\r\n" % (self.id, n, self.rng.text_junk(200))
            self.script = [(b"NOOP", b"250 OK"), (b"RSET", b"250 OK"),
                           (b"MAIL FROM:<good@example.com>", b"250 OK"),
                           (b"RCPT TO:<box@example.com>", b"250 OK"),
                           (b"DATA", b"354 End data with <CR><LF>.<CR><LF>"),
                           (body + b".", b"250 OK")]
            self.sent.append(b"good %d-%d" % (self.id, n))
        line, want = self.script.pop(0)
        if line.endswith(b"."):
            self.delivered.append(self.sent[-1])
        r = self.p.command(line)
        if r != want:
            raise CaseFailed("good SMTP client: %r answered %r" % (line[:40], r))
        return not line.endswith(b".")  # the delivery is not timed

    def close(self):
        self.p.close()


def smtp_cases():
    def session(host, port):
        p = SmtpPeer(host, port)
        expect(p.command(b"EHLO bad.example").startswith(b"250"), "EHLO refused")
        return p

    def quit(p):
        expect(p.command(b"QUIT") == b"221 Bye", "QUIT not answered 221")
        p.to_eof(limit=0)

    def out_of_order(host, port, rng):
        p = session(host, port)
        for line, want in rng.pick([
                [(b"DATA", b"503 Error: need RCPT command")],  # smtpd checks RCPT first
                [(b"RCPT TO:<x@example.com>", b"503 Error: need MAIL command")],
                [(b"MAIL FROM:<a@example.com>", b"250 OK"), (b"DATA", b"503 Error: need RCPT command")],
                [(b"MAIL FROM:<a@example.com>", b"250 OK"),
                 (b"MAIL FROM:<b@example.com>", b"503 Error: nested MAIL command")]]):
            r = p.command(line)
            expect(r == want, "%r answered %r, not %r" % (line, r, want))
        quit(p)

    def long_line(host, port, rng):
        p = session(host, port)
        r = p.command(rng.pick([b"NOOP ", b"MAIL FROM:<", b""]) + rng.text_junk(64) * (1 << 14))
        expect(r == b"500 Error: line too long", "a 1 MiB line answered %r" % r[:80])
        quit(p)

    def nul_bytes(host, port, rng):
        p = session(host, port)
        # (A NUL inside an address is no error to smtpd: its parser notes a
        # defect and goes on, and so does this server.)
        r = p.command(rng.pick([b"NO\0OP", b"\0\0\0\0", b"QU\0IT", b"DATA\0", b"\0"]))
        expect(r.startswith(b"500 Error: command ") and r.endswith(b" not recognized"),
               "a command with NUL bytes answered %r" % r)
        quit(p)

    def junk_lines(host, port, rng):
        p = session(host, port)
        for _ in range(rng.randint(1, 20)):
            line = rng.line_junk(rng.randint(0, 600), b"")
            r = p.command(line)
            expect(r[:1] == b"5" or r == b"250 OK",  # junk may happen to spell NOOP/RSET
                   "random line %r answered %r" % (line[:30], r))
        quit(p)

    def too_big(host, port, rng):
        p = session(host, port)
        r = p.command(b"MAIL FROM:<a@example.com> SIZE=%d" % (SMTP_LIMIT + 1))
        expect(r == b"552 Error: message size exceeds fixed maximum message size", repr(r))
        expect(p.command(b"MAIL FROM:<a@example.com>") == b"250 OK", "MAIL after 552")
        expect(p.command(b"RCPT TO:<b@example.com>") == b"250 OK", "RCPT")
        expect(p.command(b"DATA").startswith(b"354"), "DATA")
        r = p.command((b"x" * 998 + b"\r\n") * (SMTP_LIMIT // 1000 + 1) + b".")
        expect(r == b"552 Error: Too much mail data", "an oversized message answered %r" % r)
        quit(p)

    def pipelined_junk_then_reset(host, port, rng):
        p = session(host, port)
        p.send(b"".join(rng.line_junk(rng.randint(0, 100)) for _ in range(2000)))
        p.abort()

    return [("commands out of order: 503", out_of_order),
            ("a 1 MiB line: 500 line too long", long_line),
            ("NUL bytes in a command: 500", nul_bytes),
            ("random lines: each answered with an error", junk_lines),
            ("over the size limit: 552, then the session goes on", too_big),
            ("2,000 junk lines unread, then a reset", pipelined_junk_then_reset),
            ] + generic_cases()


def smtp_check(server, reports, extras):
    """Every message a good client delivered is in the mbox, once."""
    with open(SMTP_MBOX, "rb") as f:
        subjects = collections.Counter(re.findall(rb"\nSubject: (good [0-9-]+)\n", f.read()))
    for delivered in reports:
        for subject in delivered:
            if subjects[subject] != 1:
                raise SystemExit("FAIL: smtp: %r is in the mbox %d times"
                                 % (subject, subjects[subject]))


# -- resp_server ----------------------------------------------------------------


def resp_cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespGood:
    def __init__(self, host, port, rng):
        self.rng = rng
        self.p = Peer(host, port)
        self.p.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.key = b"good:%d" % rng.getrandbits(48)
        self.value = None

    def request(self):
        if self.value is None:
            self.value = self.rng.junk(self.rng.randint(0, 200))
            self.p.send(resp_cmd(b"SET", self.key, self.value))
            r = self.p.line()
            if r != b"+OK":
                raise CaseFailed("good SET answered %r" % r)
        else:
            self.p.send(resp_cmd(b"GET", self.key))
            head = self.p.line()
            if head != b"$%d" % len(self.value):
                raise CaseFailed("good GET answered %r" % head)
            if self.p.exactly(len(self.value) + 2) != self.value + b"\r\n":
                raise CaseFailed("good GET: another value")
            self.value = None

    def close(self):
        self.p.close()


def resp_error_then_close(p, want):
    got = p.to_eof(limit=1 << 20)
    expect(got.endswith(b"-ERR Protocol error: " + want + b"\r\n"),
           "wanted -ERR Protocol error: %s and the close, got %r" % (want.decode(), got[-120:]))


def resp_cases():
    def negative_count(host, port, rng):
        p = Peer(host, port)
        p.send(b"*-%d\r\n" % rng.randint(1, 1 << 40) + resp_cmd(b"PING"))
        # redis takes a count <= 0 as an empty request: nothing to answer.
        expect(p.line() == b"+PONG", "after *-N, PING was not answered +PONG")
        p.close()

    def huge_bulk(host, port, rng):
        p = Peer(host, port)
        p.send(b"*1\r\n$%d\r\n" % rng.pick([999999999999, 512 * 1024 * 1024 + 1, -7]))
        resp_error_then_close(p, b"invalid bulk length")

    def bad_count(host, port, rng):
        p = Peer(host, port)
        p.send(b"*" + rng.pick([b"abc", b"1x", b"99999999999999999999", b" 3"]) + b"\r\n")
        resp_error_then_close(p, b"invalid multibulk length")

    def not_a_bulk(host, port, rng):
        p = Peer(host, port)
        c = rng.pick([b"+", b":", b"-", b"*", b"x"])
        p.send(b"*1\r\n" + c + b"3\r\nfoo\r\n")
        resp_error_then_close(p, b"expected '$', got '%s'" % c)

    def longer_than_announced(host, port, rng):
        p = Peer(host, port)
        # $4 announced, "PINGPONG" sent: redis takes PING (and skips "PO"
        # unchecked as the CRLF), then "NG" is an inline command.
        p.send(b"*1\r\n$4\r\nPINGPONG\r\n")
        expect(p.line() == b"+PONG", "the announced 4 bytes were not PING")
        r = p.line()
        expect(r.startswith(b"-ERR unknown command 'NG'"), "the rest answered %r" % r)
        p.close()

    def long_inline(host, port, rng):
        p = Peer(host, port)
        flood(p, rng.text_junk(100) * 700)  # 70 KB and no newline
        resp_error_then_close(p, b"too big inline request")

    def long_count_line(host, port, rng):
        p = Peer(host, port)
        flood(p, b"*1\r\n$" + b"9" * 70000)
        resp_error_then_close(p, b"too big bulk count string")

    def junk(host, port, rng):
        p = Peer(host, port)
        p.send(rng.junk(rng.junk_size(1, 128 << 10)))
        p.half_close()
        got = p.to_eof(limit=64 << 20)
        # Whatever came back is whole RESP replies (errors, mostly).
        pos = 0
        while pos < len(got):
            end = got.find(b"\r\n", pos)
            expect(end >= 0 and got[pos:pos + 1] in b"+-:$*", "not RESP: %r" % got[pos:pos + 40])
            pos = end + 2

    return [("*-N: an empty request, as redis", negative_count),
            ("an absurd bulk length: protocol error, closed", huge_bulk),
            ("a multibulk count that is no number: protocol error, closed", bad_count),
            ("something else than $: protocol error, closed", not_a_bulk),
            ("a bulk longer than announced: the rest is the next command", longer_than_announced),
            ("a 70 KB inline request: protocol error, closed", long_inline),
            ("a 70 KB bulk count: protocol error, closed", long_count_line),
            ("random bytes: only RESP replies, then closed", junk),
            ] + generic_cases()


# -- http_server ----------------------------------------------------------------


class HttpGood:
    def __init__(self, host, port, rng):
        self.p = Peer(host, port)
        self.p.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self):
        self.p.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        head = self.p.line(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 OK\r\n"):
            raise CaseFailed("good GET answered %r" % head[:60])
        if self.p.exactly(13) != b"Hello, world!":
            raise CaseFailed("good GET: another body")

    def close(self):
        self.p.close()


def http_status(p):
    got = p.to_eof(limit=1 << 20)
    m = re.match(rb"HTTP/1\.1 (\d\d\d) ", got)
    return int(m.group(1)) if m else None, got


def http_cases():
    def expect_status(p, codes, what):
        code, got = http_status(p)
        expect(code in codes, "%s: got %r, expected %s" % (what, got[:60], codes))

    def huge_header(host, port, rng):
        p = Peer(host, port)
        flood(p, b"GET / HTTP/1.1\r\nX-Junk: " + rng.text_junk(64) * (1 << 14) + b"\r\n\r\n")
        expect_status(p, (431,), "a 1 MiB header line")

    def bad_length(host, port, rng):
        p = Peer(host, port)
        v = rng.pick([b"abc", b"-1", b"99999999999999999999999", b"1 2", b"", b"0x10",
                      b"10\r\nContent-Length: 20"])
        p.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + v + b"\r\n\r\n")
        expect_status(p, (400,), "Content-Length: %r" % v)

    def absurd_method(host, port, rng):
        p = Peer(host, port)
        m = rng.pick([b"G\0T", b"GET\x7f", b"<html>", b"(GET)", rng.text_junk(5000, b"ABC{}"),
                      b"G\xc3\xa9T"])
        p.send(m + b" / HTTP/1.1\r\nHost: x\r\n\r\n")
        expect_status(p, (400, 431), "method %r" % m[:20])

    def unknown_method(host, port, rng):
        p = Peer(host, port)
        p.send(rng.pick([b"FROBNICATE", b"PUT", b"BREW"]) + b" / HTTP/1.1\r\nHost: x\r\n\r\n")
        p.half_close()  # a 405 keeps the connection: end it
        code, got = http_status(p)
        expect(code in (405, 501), "an unknown method answered %r" % got[:60])

    def bad_request_line(host, port, rng):
        p = Peer(host, port)
        p.send(rng.pick([b"GET\r\n\r\n", b"GET /\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                         b"GET nopath HTTP/1.1\r\n\r\n", b"\r\n\r\n",
                         b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
                         b"GET / HTTP/1.1\r\n: empty name\r\n\r\n"]))
        expect_status(p, (400, 505), "a malformed request")

    def chunked(host, port, rng):
        p = Peer(host, port)
        p.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n")
        expect_status(p, (400, 411, 501), "Transfer-Encoding: chunked")

    def junk(host, port, rng):
        p = Peer(host, port)
        data = rng.junk(rng.junk_size(1, 64 << 10))
        p.send(data)
        p.half_close()
        code, got = http_status(p)
        expect(got == b"" or code in (400, 405, 431, 505),
               "random bytes answered %r" % got[:60])

    return [("a 1 MiB header line: 431", huge_header),
            ("a bad Content-Length: 400", bad_length),
            ("an absurd method: 400", absurd_method),
            ("an unknown method: 405/501", unknown_method),
            ("a malformed request line or header: 400", bad_request_line),
            ("Transfer-Encoding: chunked, which the server does not do: refused", chunked),
            ("random bytes: 400/431 or closed", junk),
            ] + generic_cases()


# -- tut_sock_server ------------------------------------------------------------

TUT_MAX = 1 << 20  # the server's bound on one message


class TutGood:
    """Each request is one tutorial message: connect, send, half-close,
    and the server's close once it has taken the message."""

    def __init__(self, host, port, rng):
        self.host, self.port, self.rng = host, port, rng
        self.id = rng.getrandbits(32)
        self.sent = []

    def report(self):
        return self.sent

    def request(self):
        msg = b"good %d-%d: %s/" % (self.id, len(self.sent), b"-" * self.rng.randint(100, 300))
        p = Peer(self.host, self.port)
        p.send(msg)
        p.half_close()
        if p.to_eof(limit=0) != b"":
            raise CaseFailed("tut_sock_server sent data")
        p.close()
        self.sent.append(msg)

    def close(self):
        pass


def tut_cases():
    def junk(host, port, rng):
        p = Peer(host, port)
        p.send(rng.junk(rng.junk_size(1, 64 << 10)))
        p.half_close()
        expect(p.to_eof(limit=0) == b"", "tut_sock_server sent data")

    def oversized(host, port, rng):
        p = Peer(host, port)
        data = rng.text_junk(64) * ((TUT_MAX * 4) // 64)
        sent = flood(p, data)
        if not p.reset:
            p.half_close()
            expect(p.to_eof(limit=0) == b"", "tut_sock_server sent data")
        expect(p.reset or sent < len(data),
               "the server took all of a 4 MiB message: no bound on what it keeps")

    def binary(host, port, rng):
        p = Peer(host, port)
        msg = b"bad %d: " % rng.getrandbits(64) + rng.junk(rng.randint(0, 300))
        p.send(msg)
        p.half_close()
        expect(p.to_eof(limit=0) == b"", "tut_sock_server sent data")
        return [b"received: " + tut_escape(msg) + b"\n"]

    return [("random bytes, then a half-close: closed", junk),
            ("4 MiB, over the bound on a message: closed before the end", oversized),
            ("NUL, newline and other bytes: printed escaped, on one line", binary),
            ] + generic_cases()


def tut_escape(data):
    """What tut_sock_server prints for `data`: printable ASCII as it is, a
    backslash doubled, any other byte as \\xNN."""
    out = bytearray()
    for b in data:
        if b == 0x5c:
            out += b"\\\\"
        elif 0x20 <= b <= 0x7e:
            out.append(b)
        else:
            out += b"\\x%02x" % b
    return bytes(out)


def tut_check(server, reports, extras):
    """Every good message was printed whole, on its own line, and so was
    each binary one, escaped."""
    # The server prints each message when its connection ends; the clients
    # waited for that end, so every line is there already.
    printed = collections.Counter(server.out)
    for sent in reports:
        for msg in sent:
            if printed[b"received: " + msg + b"\n"] != 1:
                raise SystemExit("FAIL: tut_sock: %r was not printed once" % msg[:40])
    for line in extras:
        if printed[line] != 1:
            raise SystemExit("FAIL: tut_sock: a binary message was not printed once as %r"
                             % line[:80])


# -----------------------------------------------------------------------------

SMTP_MBOX = None


def main():
    global SMTP_MBOX
    kind = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    tmp = tempfile.TemporaryDirectory(prefix="bad-input-")
    if kind == "echo":
        badinput.main("echo_server", lambda exe, extra: [exe, *extra], EchoGood, echo_cases())
    elif kind == "msg_echo":
        badinput.main("msg_echo_server",
                      lambda exe, extra: [exe, "--max-message", str(MSG_MAX), *extra],
                      MsgGood, msg_cases())
    elif kind == "tls_echo":
        from tls_pki import make_pki

        def argv(exe, extra):
            openssl = extra[0] if extra else "openssl"
            PKI.update(make_pki(tmp.name, openssl=openssl, name="bad input"))
            return [exe, "--cert", PKI["cert"], "--key", PKI["key"]]
        badinput.main("tls_echo_server", argv, TlsGood, tls_cases())
    elif kind == "chat":
        badinput.main("chat_server", lambda exe, extra: [exe, *extra], ChatGood, chat_cases())
    elif kind == "smtp":
        # On tmpfs when there is one: what is measured is the protocol, and
        # a disk shared with other work would only add its fdatasync times.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        mbox_dir = tempfile.TemporaryDirectory(prefix="bad-input-", dir=shm)
        SMTP_MBOX = os.path.join(mbox_dir.name, "bad.mbox")
        def smtp_argv(mbox):
            return lambda exe, extra: [exe, "--mbox", mbox, "--data-size-limit",
                                       str(SMTP_LIMIT), *extra]
        badinput.main("smtp_server", smtp_argv(SMTP_MBOX), SmtpGood, smtp_cases(),
                      server_check=smtp_check,
                      decoy_argv_of=smtp_argv(os.path.join(mbox_dir.name, "decoy.mbox")))
    elif kind == "resp":
        badinput.main("resp_server", lambda exe, extra: [exe, *extra], RespGood, resp_cases())
    elif kind == "http":
        badinput.main("http_server", lambda exe, extra: [exe, *extra], HttpGood, http_cases())
    elif kind == "tut_sock":
        badinput.main("tut_sock_server", lambda exe, extra: [exe, *extra], TutGood, tut_cases(),
                      server_check=tut_check)
    else:
        raise SystemExit("usage: bad_input_smoke.py echo|msg_echo|tls_echo|chat|smtp|resp|"
                         "http|tut_sock SERVER [ARGS] [--seed N] [--max-ratio X]")
    tmp.cleanup()


if __name__ == "__main__":
    main()
