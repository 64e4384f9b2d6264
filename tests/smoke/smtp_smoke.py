#!/usr/bin/env python3
"""Smoke test for samples/smtp/smtp_server, driven by Python's smtplib.

usage: smtp_smoke.py PATH/TO/smtp_server

Delivers real messages (a plain one, 10 MiB, 100 over 10 concurrent
connections) and reads them back with mailbox.mbox; checks the EHLO
features, the SIZE limit, dot transparency, a full disk, and replays
test_smtpd's SMTPChannel conversations over a raw socket, byte for byte.
With --timeout-scale shrinking RFC 5321's timeouts to a few hundred ms,
checks that silent clients get 421 and are disconnected, no earlier than the
timeout and without a message cut short reaching the mbox, that clients
speaking within the timeouts stay, and that --timeout-scale 0 keeps a silent
client.
"""
import mailbox
import os
import random
import select
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

SERVER = sys.argv[1]
TIMEOUT = 30


class Server:
    def __init__(self, *args, mbox=None):
        self.dir = tempfile.TemporaryDirectory()
        self.mbox = mbox or os.path.join(self.dir.name, "mail.mbox")
        self.proc = subprocess.Popen(
            [SERVER, "--host", "127.0.0.1", "--port", "0", "--mbox", self.mbox, *args],
            stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        assert ready, "server did not start"
        line = self.proc.stdout.readline().strip()
        assert line.startswith("listening on "), line
        host, port = line[len("listening on "):].rsplit(":", 1)
        self.host, self.port = host, int(port)

    def client(self):
        return smtplib.SMTP(self.host, self.port, timeout=TIMEOUT)

    def raw(self):
        sock = socket.create_connection((self.host, self.port), timeout=TIMEOUT)
        return sock, sock.makefile("rb")

    def messages(self):
        return list(mailbox.mbox(self.mbox, create=False))

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=TIMEOUT)
        self.proc.stdout.close()
        self.dir.cleanup()
        assert code == 0, "exit status %s after %s" % (code, sig)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()


def body_of(msg):
    return msg.get_payload(decode=False)


def test_plain_message():
    with Server() as srv:
        with srv.client() as s:
            s.sendmail("eggs@example.com", ["spam@example.com", "ham@example.com"],
                       "Subject: hello\r\nFrom: eggs@example.com\r\n\r\nHello, world.\r\n")
        msgs = srv.messages()
        assert len(msgs) == 1
        m = msgs[0]
        assert m["Subject"] == "hello"
        assert m.get_all("X-Peer") == ["127.0.0.1"], m.get_all("X-Peer")
        assert m.get_from().startswith("eggs@example.com "), m.get_from()
        assert body_of(m) == "Hello, world.\n", repr(body_of(m))


LINE_POOL = ["".join(random.Random(n).choice("abcdefghij .-=") for _ in range(n % 121))
             for n in range(500)]


def big_body(size, rng):
    """Lines of 0-120 characters, some starting with a dot, about `size` bytes."""
    lines = []
    total = 0
    while total < size:
        line = rng.choice(LINE_POOL)
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


def test_ten_mib_message():
    rng = random.Random(10)
    body = big_body(10 * 1024 * 1024, rng)
    with Server() as srv:
        with srv.client() as s:
            s.sendmail("big@example.com", ["spam@example.com"],
                       "Subject: big\n\n" + body)
        msgs = srv.messages()
        assert len(msgs) == 1
        assert body_of(msgs[0]) == body, "the 10 MiB body changed"


def test_concurrent_connections():
    rng = random.Random(100)
    bodies = {"m%03d" % i: big_body(rng.randint(10, 20000), rng) for i in range(100)}
    errors = []

    def worker(names, srv):
        try:
            with srv.client() as s:
                for name in names:
                    s.sendmail("%s@example.com" % name, ["spam@example.com"],
                               "Subject: %s\n\n%s" % (name, bodies[name]))
        except Exception as e:  # reported below, with the thread's name
            errors.append(repr(e))

    with Server() as srv:
        names = sorted(bodies)
        threads = [threading.Thread(target=worker, args=(names[i::10], srv)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
            assert not t.is_alive(), "a client thread hung"
        assert not errors, errors
        msgs = srv.messages()
        assert len(msgs) == 100, len(msgs)
        for m in msgs:
            assert body_of(m) == bodies[m["Subject"]], m["Subject"]
            assert m.get_all("X-Peer") == ["127.0.0.1"]


def test_ehlo_features():
    with Server() as srv:
        with srv.client() as s:
            code, _ = s.ehlo("client.example")
            assert code == 250
            assert s.esmtp_features == {"size": "33554432", "8bitmime": "", "help": ""}, \
                s.esmtp_features
    with Server("--smtputf8", "--data-size-limit", "4096") as srv:
        with srv.client() as s:
            s.ehlo("client.example")
            assert s.esmtp_features == {"size": "4096", "8bitmime": "", "smtputf8": "",
                                        "help": ""}, s.esmtp_features
            s.sendmail("na\u00efve@example.com", ["sp\u00e4m@example.com"],
                       "Subject: utf8\n\nh\u00e9llo\n".encode("utf-8"),
                       mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert len(srv.messages()) == 1


def test_size_limit():
    with Server("--data-size-limit", "1000") as srv:
        with srv.client() as s:
            try:
                s.sendmail("eggs@example.com", ["spam@example.com"], "x" * 2000)
                raise AssertionError("a message over SIZE was accepted")
            except smtplib.SMTPSenderRefused as e:
                assert e.smtp_code == 552
                assert e.smtp_error == b"Error: message size exceeds fixed maximum message size"
            # Without SIZE the limit applies at the end of DATA.
            s.ehlo_or_helo_if_needed()
            assert s.mail("eggs@example.com") == (250, b"OK")
            assert s.rcpt("spam@example.com") == (250, b"OK")
            assert s.data(b"y" * 5000) == (552, b"Error: Too much mail data")
            assert s.noop() == (250, b"OK")
            s.sendmail("eggs@example.com", ["spam@example.com"], "Subject: small\n\nok\n")
        msgs = srv.messages()
        assert [m["Subject"] for m in msgs] == ["small"]


def test_dot_transparency_and_from_escaping():
    body = ".\n..\n.leading dot\nmiddle . dot\nFrom the start\n From indented\n"
    with Server() as srv:
        with srv.client() as s:
            s.sendmail("eggs@example.com", ["spam@example.com"], "Subject: dots\n\n" + body)
        (m,) = srv.messages()
        expected = body.replace("\nFrom the", "\n>From the")
        assert body_of(m) == expected, repr(body_of(m))
        with open(srv.mbox, "rb") as f:
            assert b"\n>From the start\n" in f.read()


def test_full_disk_answers_an_error_and_keeps_serving():
    with Server(mbox="/dev/full") as srv:
        with srv.client() as s:
            try:
                s.sendmail("eggs@example.com", ["spam@example.com"], "Subject: lost\n\nx\n")
                raise AssertionError("a message was accepted on a full disk")
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 452, e
            assert s.noop() == (250, b"OK")
        with srv.client() as s:
            assert s.noop() == (250, b"OK")


def test_incomplete_message_is_never_written():
    with Server() as srv:
        sock, f = srv.raw()
        f.readline()
        for line in [b"HELO x", b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"DATA"]:
            sock.sendall(line + b"\r\n")
            f.readline()
        sock.sendall(b"Subject: half\r\n\r\nnot finished\r\n")
        sock.close()
        with srv.client() as s:
            s.sendmail("eggs@example.com", ["spam@example.com"], "Subject: whole\n\nx\n")
        assert [m["Subject"] for m in srv.messages()] == ["whole"]


# test_smtpd's SMTPChannel conversations: (line sent, reply expected). "{fqdn}"
# is the name the server greets with. A None reply means: not checked.
SCRIPTS = [
    [(b"", b"500 Error: bad syntax")],
    [(b"EHLO example", b"250-{fqdn}\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250 HELP"),
     (b"EHLO example", b"503 Duplicate HELO/EHLO"),
     (b"HELO example", b"503 Duplicate HELO/EHLO")],
    [(b"EHLO", b"501 Syntax: EHLO hostname"), (b"HELO", b"501 Syntax: HELO hostname"),
     (b"HELO example", b"250 {fqdn}"), (b"EHLO example", b"503 Duplicate HELO/EHLO")],
    [(b"HELP", b"250 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY"),
     (b"HELP MAIL", b"250 Syntax: MAIL FROM: <address>"),
     (b"HELP SPAM", b"501 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY"),
     (b"NOOP", b"250 OK"), (b"NOOP hi", b"501 Syntax: NOOP"),
     (b"RSET hi", b"501 Syntax: RSET"), (b"RSET", b"250 OK"),
     (b"VRFY eggs@example",
      b"252 Cannot VRFY user, but will accept message and attempt delivery"),
     (b"VRFY", b"501 Syntax: VRFY <address>"), (b"EXPN", b"502 EXPN not implemented"),
     (b"UNKNOWN_CMD", b'500 Error: command "UNKNOWN_CMD" not recognized'),
     (b"QUIT bye bye", b"221 Bye")],
    [(b"MAIL from:<foo@example.com>", b"503 Error: send HELO first"),
     (b"RCPT to eggs@example", b"503 Error: send HELO first"),
     (b"DATA spam", b"503 Error: send HELO first"),
     (b"HELO example", b"250 {fqdn}"),
     (b"RCPT to:spam@example", b"503 Error: need MAIL command"),
     (b"MAIL from:<foo@example.com> SIZE=1234", b"501 Syntax: MAIL FROM: <address>"),
     (b"MAIL from eggs@example", b"501 Syntax: MAIL FROM: <address>"),
     (b"MAIL from:", b"501 Syntax: MAIL FROM: <address>"),
     (b"MAIL from: " + b"a" * 512 + b"@example", b"500 Error: line too long"),
     (b"MAIL from:   <foo@example.com>", b"250 OK"),
     (b"MAIL from:spam@example", b"503 Error: nested MAIL command"),
     (b"DATA", b"503 Error: need RCPT command"),
     (b"RCPT to eggs@example", b"501 Syntax: RCPT TO: <address>"),
     (b"RCPT to: <eggs@example>", b"250 OK"),
     (b"DATA spam", b"501 Syntax: DATA"),
     (b"DATA", b"354 End data with <CR><LF>.<CR><LF>"),
     (b"Subject: raw\r\n\r\ndata\r\n..\r\nmore\r\n.", b"250 OK"),
     (b"QUIT", b"221 Bye")],
    [(b"EHLO example", None),
     (b"MAIL from eggs@example",
      b"501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"),
     (b"MAIL FROM:<eggs@example> SIZE=invalid",
      b"501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"),
     (b"MAIL FROM:<eggs@example> SIZE=33554433",
      b"552 Error: message size exceeds fixed maximum message size"),
     (b"MAIL FROM:<eggs@example> ham=green",
      b"555 MAIL FROM parameters not recognized or not implemented"),
     (b"MAIL from: <naive@example.com> BODY=8BITMIME SMTPUTF8",
      b"555 MAIL FROM parameters not recognized or not implemented"),
     (b"MAIL from: <foo@example.com> size=20 SMTPUTF8 BODY=UNKNOWN",
      b"501 Error: BODY can only be one of 7BIT, 8BITMIME"),
     (b"MAIL from:<" + b"a" * (512 - 20 + 26 + 1) + b"@example>", b"500 Error: line too long"),
     (b"MAIL from:<" + b"a" * (512 - 20 + 26) + b"@example>", b"250 OK"),
     (b"RSET", b"250 OK"),
     (b'MAIL from: "Fred Blogs"@example.com SIZE=1000', b"250 OK"),
     (b"RCPT TO:<eggs@example> ham=green",
      b"555 RCPT TO parameters not recognized or not implemented"),
     (b"RCPT TO:<eggs@example>", b"250 OK"),
     (b"RSET", b"250 OK"),
     (b"MAIL from:<>", b"250 OK")],
]


def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        assert line.endswith(b"\r\n"), "connection closed: %r" % lines
        lines.append(line)
        if line[3:4] != b"-":
            return b"".join(lines)


def test_raw_conversations():
    with Server() as srv:
        for script in SCRIPTS:
            sock, f = srv.raw()
            greeting = read_reply(f)
            assert greeting.startswith(b"220 ") and greeting.endswith(
                b" asyncore-cpp smtp_server\r\n"), greeting
            fqdn = greeting.split(b" ")[1]
            for line, expected in script:
                sock.sendall(line + b"\r\n")
                reply = read_reply(f)
                if expected is not None:
                    want = expected.replace(b"{fqdn}", fqdn) + b"\r\n"
                    assert reply == want, "%r: got %r, want %r" % (line[:60], reply, want)
            sock.close()
        (m,) = srv.messages()
        assert body_of(m) == "data\n.\nmore\n", repr(body_of(m))


def test_pipelined_commands_from_a_client_that_does_not_read():
    # 8 MB of replies: more than the socket buffers and the channel's output
    # high watermark, so the server has to stop reading and resume.
    count = 1000000
    with Server() as srv:
        sock, f = srv.raw()
        read_reply(f)
        sender = threading.Thread(target=sock.sendall, args=(b"NOOP\r\n" * count,))
        sender.start()
        sender.join(2)  # let the backlog build up; correctness does not depend on it
        replies = f.read(len(b"250 OK\r\n") * count)
        assert replies == b"250 OK\r\n" * count
        sender.join(TIMEOUT)
        assert not sender.is_alive()
        sock.sendall(b"QUIT\r\n")
        assert read_reply(f) == b"221 Bye\r\n"
        sock.close()


# --timeout-scale 0.001: RFC 5321's 5 minutes awaiting a command become
# 300 ms, and its 3 minutes within a message 180 ms.
TIMEOUT_SCALE = 0.001
COMMAND_TIMEOUT = 300 * TIMEOUT_SCALE
DATA_TIMEOUT = 180 * TIMEOUT_SCALE


def greeted(srv):
    """A raw connection past the 220 greeting, and the name the server gave."""
    sock, f = srv.raw()
    greeting = read_reply(f)
    assert greeting.startswith(b"220 "), greeting
    return sock, f, greeting.split(b" ")[1]


def expect_timeout(sock, f, fqdn, since, timeout):
    """Reads the 421 and then the end of the stream (each read bounded by the
    socket's timeout) and checks they came no earlier than `timeout` seconds
    after `since`, the client's last word."""
    try:
        reply = read_reply(f)
        elapsed = time.monotonic() - since
        assert elapsed >= timeout, "%r after %.3f s, before the timeout" % (reply, elapsed)
        assert reply == b"421 4.4.2 " + fqdn + b" Error: timeout exceeded\r\n", reply
        assert f.read() == b"", "more after the 421"
    finally:
        sock.close()


def start_message(sock, f, fqdn):
    """HELO, MAIL, RCPT and DATA: the server waits for the message text."""
    for line, expected in [(b"HELO x", b"250 " + fqdn), (b"MAIL FROM:<a@b>", b"250 OK"),
                           (b"RCPT TO:<c@d>", b"250 OK"),
                           (b"DATA", b"354 End data with <CR><LF>.<CR><LF>")]:
        sock.sendall(line + b"\r\n")
        assert read_reply(f) == expected + b"\r\n", line


def test_a_silent_client_gets_421_after_the_command_timeout():
    with Server("--timeout-scale", str(TIMEOUT_SCALE)) as srv:
        since = time.monotonic()
        sock, f, fqdn = greeted(srv)
        expect_timeout(sock, f, fqdn, since, COMMAND_TIMEOUT)


def test_a_partial_command_line_gets_421_after_the_command_timeout():
    with Server("--timeout-scale", str(TIMEOUT_SCALE)) as srv:
        sock, f, fqdn = greeted(srv)
        sock.sendall(b"HELO x\r\n")
        assert read_reply(f) == b"250 " + fqdn + b"\r\n"
        since = time.monotonic()
        sock.sendall(b"NOOP")
        expect_timeout(sock, f, fqdn, since, COMMAND_TIMEOUT)


def test_a_client_stalled_in_data_gets_421_and_delivers_nothing():
    with Server("--timeout-scale", str(TIMEOUT_SCALE)) as srv:
        sock, f, fqdn = greeted(srv)
        start_message(sock, f, fqdn)
        since = time.monotonic()
        sock.sendall(b"Subject: stalled\r\n\r\nhalf a line")
        expect_timeout(sock, f, fqdn, since, DATA_TIMEOUT)
        with srv.client() as s:
            s.sendmail("eggs@example.com", ["spam@example.com"], "Subject: whole\n\nx\n")
        assert [m["Subject"] for m in srv.messages()] == ["whole"]


def test_a_client_speaking_within_the_timeouts_stays():
    # Twice the scale of the other tests: 600 ms and 360 ms, with the client
    # speaking every sixth of that, so a client delayed by a busy machine
    # still speaks in time.
    scale = 2 * TIMEOUT_SCALE
    with Server("--timeout-scale", str(scale)) as srv:
        sock, f, fqdn = greeted(srv)
        for _ in range(8):  # 800 ms in all, longer than the command timeout
            time.sleep(300 * scale / 6)
            sock.sendall(b"NOOP\r\n")
            assert read_reply(f) == b"250 OK\r\n"
        start_message(sock, f, fqdn)
        sock.sendall(b"Subject: slow\r\n\r\n")
        for i in range(8):  # 480 ms in all, longer than the data timeout
            time.sleep(180 * scale / 6)
            sock.sendall(b"line %d\r\n" % i)
        sock.sendall(b".\r\n")
        assert read_reply(f) == b"250 OK\r\n"
        sock.sendall(b"QUIT\r\n")
        assert read_reply(f) == b"221 Bye\r\n"
        sock.close()
        with srv.client() as s:
            s.sendmail("eggs@example.com", ["spam@example.com"], "Subject: brisk\n\nx\n")
        msgs = srv.messages()
        assert [m["Subject"] for m in msgs] == ["slow", "brisk"]
        assert body_of(msgs[0]) == "".join("line %d\n" % i for i in range(8))


def test_timeout_scale_0_keeps_a_silent_client():
    with Server("--timeout-scale", "0") as srv:
        sock, f, _ = greeted(srv)
        sock.settimeout(3 * COMMAND_TIMEOUT)
        try:
            data = sock.recv(1)
            raise AssertionError("a silent client got %r" % data)
        except socket.timeout:
            pass
        sock.settimeout(TIMEOUT)
        sock.sendall(b"NOOP\r\n")
        assert read_reply(f) == b"250 OK\r\n"
        sock.close()


def test_sigint_exits_zero():
    srv = Server()
    with srv.client() as s:
        s.noop()
        srv.stop(signal.SIGINT)


def main():
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_")]
    for name, fn in tests:
        start = time.monotonic()
        fn()
        print("ok  %-50s %.2fs" % (name, time.monotonic() - start), flush=True)
    print("%d tests passed" % len(tests))


if __name__ == "__main__":
    main()
