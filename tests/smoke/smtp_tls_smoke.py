#!/usr/bin/env python3
"""Smoke test for smtp_server --cert/--key: STARTTLS (RFC 3207) with smtplib.

Makes a throwaway CA and a server certificate with the openssl CLI in a
temporary directory and checks that:
  - smtplib's ehlo(); starttls(context); ehlo(); sendmail() delivers
    messages (a small one and 1 MiB) intact into the mbox;
  - EHLO advertises STARTTLS in clear only; after the handshake the session
    starts over (MAIL before a new EHLO gets 503);
  - STARTTLS with an argument gets 501, a second STARTTLS gets 503;
  - a client sending "STARTTLS\\r\\nNOOP\\r\\n" in one packet gets no reply to
    that NOOP once TLS runs: the pipelined bytes are discarded, and logged;
  - a client that does not trust the CA refuses the server, which goes on;
  - with --timeout-scale 0.001 (300 ms awaiting a command), a client silent
    in the TLS handshake is dropped without a byte, and one silent after it
    gets the timeout's 421 over TLS;
  - without --cert there is no STARTTLS; the server exits 0 on SIGTERM.

usage: smtp_tls_smoke.py PATH/TO/smtp_server [OPENSSL]
"""
import mailbox
import os
import select
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

from tls_pki import make_pki

TIMEOUT = 10.0


class Server:
    def __init__(self, directory, *args):
        self.mbox = os.path.join(directory, "mail.mbox")
        self.proc = subprocess.Popen(
            [sys.argv[1], "--port", "0", "--mbox", self.mbox, *args],
            stdout=subprocess.PIPE, text=True)
        line = self.stdout_line()
        assert line.startswith("listening on 127.0.0.1:"), line
        self.port = int(line.rsplit(":", 1)[1])

    def stdout_line(self):
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        assert ready, "no output from the server within %.0f s" % TIMEOUT
        return self.proc.stdout.readline().strip()

    def client(self):
        return smtplib.SMTP("127.0.0.1", self.port, timeout=TIMEOUT)

    def messages(self):
        return list(mailbox.mbox(self.mbox, create=False))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=TIMEOUT)
        self.proc.stdout.close()
        assert code == 0, "smtp_server exited %s on SIGTERM" % code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)


def message(subject, body):
    return ("From: eggs@example.com\r\nTo: ham@example.com\r\nSubject: %s\r\n\r\n%s"
            % (subject, body))


def check_starttls_delivery(srv, ctx):
    big = "".join("line %06d %s\r\n" % (i, "x" * 60) for i in range(16000))  # ~1 MiB
    with srv.client() as s:
        code, _ = s.ehlo("client.example")
        assert code == 250 and s.has_extn("starttls"), s.esmtp_features
        code, text = s.starttls(context=ctx)
        assert (code, text) == (220, b"Ready to start TLS"), (code, text)
        assert isinstance(s.sock, ssl.SSLSocket)
        # RFC 3207 4.2: the server forgot the first EHLO.
        assert s.docmd("MAIL FROM:<eggs@example.com>") == (503, b"Error: send HELO first")
        s.ehlo("client.example")
        assert not s.has_extn("starttls"), s.esmtp_features
        s.sendmail("eggs@example.com", ["ham@example.com"],
                   message("over TLS", "Hello,\r\n.a dotted line\r\nbye\r\n"))
        s.sendmail("eggs@example.com", ["ham@example.com"], message("big", big))
        assert s.docmd("STARTTLS") == (503, b"Error: TLS already active")
    msgs = srv.messages()
    assert [m["Subject"] for m in msgs] == ["over TLS", "big"], [m["Subject"] for m in msgs]
    assert msgs[0].get_payload() == "Hello,\n.a dotted line\nbye\n", msgs[0].get_payload()
    assert msgs[1].get_payload() == big.replace("\r\n", "\n"), "the 1 MiB body changed"
    print("ok: smtplib starttls() then sendmail(): 2 messages (one of 1 MiB) intact")


def check_argument_refused(srv):
    with srv.client() as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS", "now") == (501, b"Syntax error (no parameters allowed)")
        assert s.noop() == (250, b"OK")  # still in clear and serving
    print("ok: STARTTLS with an argument gets 501")


def read_reply(sock_file):
    """One SMTP reply (all its lines) from a buffered reader."""
    lines = []
    while True:
        line = sock_file.readline()
        assert line, "connection closed"
        lines.append(line)
        if line[3:4] != b"-":
            return b"".join(lines)


def check_injection_discarded(srv, ctx):
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    try:
        # Unbuffered: no TLS byte may be swallowed by a reader's buffer.
        f = raw.makefile("rb", buffering=0)
        assert read_reply(f).startswith(b"220 ")
        raw.sendall(b"EHLO client.example\r\n")
        assert b"250-STARTTLS\r\n" in read_reply(f)
        raw.sendall(b"STARTTLS\r\nNOOP\r\n")  # one packet: NOOP is pipelined
        assert read_reply(f) == b"220 Ready to start TLS\r\n"
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        tf = tls.makefile("rb")
        tls.sendall(b"HELP\r\n")
        first = read_reply(tf)
        assert first.startswith(b"250 Supported commands"), \
            "the pipelined NOOP was answered over TLS: %r" % first
        tls.sendall(b"QUIT\r\n")
        assert read_reply(tf) == b"221 Bye\r\n"
        tls.close()
    finally:
        raw.close()
    log = srv.stdout_line()
    assert log == "info: 127.0.0.1 pipelined 6 bytes after STARTTLS; discarded unread", log
    print("ok: \"STARTTLS\\r\\nNOOP\\r\\n\" in one packet: the NOOP is discarded, never answered")


def check_untrusted_client(srv, ctx):
    with srv.client() as s:
        s.ehlo("client.example")
        try:
            s.starttls(context=ssl.create_default_context())  # system store only
            raise AssertionError("a client without the test CA accepted the server")
        except ssl.SSLCertVerificationError:
            pass
    with srv.client() as s:
        s.ehlo("client.example")
        s.starttls(context=ctx)
        s.ehlo("client.example")
        assert s.noop() == (250, b"OK")
    print("ok: a client without the CA refuses the server, which goes on serving")


def starttls_sent(port):
    """A raw connection whose STARTTLS was answered 220, and when it was sent."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    # Unbuffered: no TLS byte may be swallowed by a reader's buffer.
    f = raw.makefile("rb", buffering=0)
    assert read_reply(f).startswith(b"220 ")
    raw.sendall(b"EHLO client.example\r\n")
    assert b"250-STARTTLS\r\n" in read_reply(f)
    since = time.monotonic()
    raw.sendall(b"STARTTLS\r\n")
    assert read_reply(f) == b"220 Ready to start TLS\r\n"
    return raw, since


def check_timeouts(directory, pki, ctx):
    command_timeout = 0.3
    srv = Server(directory, "--cert", pki["cert"], "--key", pki["key"], "--timeout-scale", "0.001")
    try:
        raw, since = starttls_sent(srv.port)
        with raw:
            assert raw.recv(1) == b"", "a byte for a client silent in the handshake"
            assert time.monotonic() - since >= command_timeout
        raw, _ = starttls_sent(srv.port)
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tf = tls.makefile("rb")
            since = time.monotonic()
            tls.sendall(b"EHLO client.example\r\n")
            assert read_reply(tf).startswith(b"250-")
            reply = read_reply(tf)
            assert time.monotonic() - since >= command_timeout
            assert reply.startswith(b"421 4.4.2 ") and \
                reply.endswith(b" Error: timeout exceeded\r\n"), reply
            assert tf.read() == b"", "more after the 421"
        srv.stop()
    finally:
        srv.kill()
    print("ok: a client silent in the TLS handshake is dropped; after it, it gets 421 over TLS")


def check_without_cert(directory):
    srv = Server(directory)
    try:
        with srv.client() as s:
            s.ehlo("client.example")
            assert not s.has_extn("starttls"), s.esmtp_features
            assert s.docmd("STARTTLS") == (500, b'Error: command "STARTTLS" not recognized')
        srv.stop()
    finally:
        srv.kill()
    print("ok: without --cert there is no STARTTLS")


def main():
    openssl = sys.argv[2] if len(sys.argv) > 2 else "openssl"
    with tempfile.TemporaryDirectory(prefix="smtp-tls-smoke-") as d:
        pki = make_pki(d, openssl, "smtp_tls")
        ctx = ssl.create_default_context(cafile=pki["ca"])
        srv = Server(d, "--cert", pki["cert"], "--key", pki["key"])
        try:
            check_starttls_delivery(srv, ctx)
            check_argument_refused(srv)
            check_injection_discarded(srv, ctx)
            check_untrusted_client(srv, ctx)
            srv.stop()
            print("ok: smtp_server exited 0 on SIGTERM")
        finally:
            srv.kill()
        check_timeouts(d, pki, ctx)
        os.remove(srv.mbox)
        check_without_cert(d)
    print("smtp tls smoke: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
