#!/usr/bin/env python3
"""Smoke test for chat_server --tls and chat_client --tls.

Makes a throwaway CA and a server certificate with the openssl CLI in a
temporary directory, then drives chat_server --tls with Python ssl clients
that trust only that CA, and with chat_client --tls --cafile. Checks that:
  - verified TLS clients chat (relay, /nick, a burst of lines in order);
  - chat_client --tls --cafile chats and exits 0 when its input ends;
  - a plaintext client, a client without the CA and a client expecting
    another host name never join, and get no chat text in clear;
  - chat_client --tls trusting only the system store exits 1, saying why;
  - the server exits 0 on SIGTERM, closing the TLS connections cleanly.

usage: chat_tls_smoke.py CHAT_SERVER CHAT_CLIENT [OPENSSL]
Every wait is bounded; the server listens on an ephemeral port.
"""
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile

from tls_pki import make_pki

from chat_common import TIMEOUT, WELCOME, Lines


class Client:
    """A chat participant over TLS, trusting only `cafile`."""

    def __init__(self, port, cafile):
        ctx = ssl.create_default_context(cafile=cafile)
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.lines = Lines(lambda: self.sock.recv(65536), self.sock, self.sock.pending)
        m = WELCOME.match(self.lines.line())
        assert m, "no welcome line"
        self.name = m.group(1)

    def send(self, text):
        self.sock.sendall(text.encode())

    def expect(self, line):
        got = self.lines.line()
        assert got == line, "%s expected %r, got %r" % (self.name, line, got)


def start_server(path, pki):
    proc = subprocess.Popen([path, "--port", "0", "--tls", "--cert", pki["cert"],
                             "--key", pki["key"]], stdout=subprocess.PIPE)
    out = Lines(lambda: os.read(proc.stdout.fileno(), 4096), proc.stdout)
    m = re.match(r"^listening on 127\.0\.0\.1:(\d+)$", out.line())
    assert m, "no listening line"
    return proc, out, int(m.group(1))


def expect_all(clients, line):
    for c in clients:
        c.expect(line)


def quiet(clients):
    for c in clients:
        assert c.lines.nothing_pending(), "%s got %r" % (c.name, c.lines.buf)


def check_chat(port, pki):
    c1 = Client(port, pki["ca"])
    c2 = Client(port, pki["ca"])
    c1.expect("* %s has joined" % c2.name)
    c1.send("hello over TLS\n")
    c2.expect("%s: hello over TLS" % c1.name)
    c2.send("/nick bob\n")
    expect_all([c1, c2], "* %s is now known as bob" % c2.name)
    c2.name = "bob"
    c1.send("".join("line %d\n" % i for i in range(500)))
    for i in range(500):
        c2.expect("%s: line %d" % (c1.name, i))
    print("ok: TLS clients chat, 500 lines in order")
    return c1, c2


def check_chat_client(client_path, port, pki, others):
    cli = subprocess.Popen([client_path, "--port", str(port), "--tls", "--cafile", pki["ca"]],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = Lines(lambda: os.read(cli.stdout.fileno(), 65536), cli.stdout)
        m = WELCOME.match(out.line())
        assert m, "chat_client printed no welcome"
        name = m.group(1)
        expect_all(others, "* %s has joined" % name)
        others[0].send("to the cli\n")
        assert out.line() == "%s: to the cli" % others[0].name
        expect_all(others[1:], "%s: to the cli" % others[0].name)
        cli.stdin.write(b"from the cli\n")
        cli.stdin.close()
        expect_all(others, "%s: from the cli" % name)
        expect_all(others, "* %s has left" % name)
        assert cli.wait(TIMEOUT) == 0, "chat_client did not exit 0"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(TIMEOUT)
    print("ok: chat_client --tls --cafile chats and exits 0")


def check_plaintext_client(port, others):
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(b"hello in clear\n")
    lines = Lines(lambda: sock.recv(65536), sock)
    data = lines.wait_eof()
    sock.close()
    assert b"welcome" not in data and b"guest" not in data, data
    quiet(others)
    print("ok: a plaintext client is dropped without a word in clear")


def check_refused_tls_clients(port, pki, others):
    untrusted = ssl.create_default_context()  # the system store only
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            untrusted.wrap_socket(raw, server_hostname="localhost")
        raise AssertionError("a client without the test CA got through")
    except ssl.SSLCertVerificationError:
        pass
    wrong_name = ssl.create_default_context(cafile=pki["ca"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            wrong_name.wrap_socket(raw, server_hostname="chat.example.org")
        raise AssertionError("a client expecting another host name got through")
    except ssl.SSLCertVerificationError:
        pass
    quiet(others)
    print("ok: clients without the CA or expecting another name refuse the server")


def check_chat_client_refuses(client_path, port, others):
    cli = subprocess.run([client_path, "--port", str(port), "--tls"], input=b"secret\n",
                         capture_output=True, timeout=TIMEOUT)
    err = cli.stderr.decode(errors="replace")
    assert cli.returncode == 1, "chat_client exited %d: %s" % (cli.returncode, err)
    assert "certificate verify failed" in err, err
    assert b"welcome" not in cli.stdout, cli.stdout
    quiet(others)
    print("ok: chat_client --tls without the CA exits 1: %s" % err.strip().splitlines()[0])


def main():
    server_path, client_path = sys.argv[1], sys.argv[2]
    openssl = sys.argv[3] if len(sys.argv) > 3 else "openssl"
    with tempfile.TemporaryDirectory(prefix="chat-tls-smoke-") as d:
        pki = make_pki(d, openssl, "chat_tls")
        server, _, port = start_server(server_path, pki)
        try:
            c1, c2 = check_chat(port, pki)
            check_chat_client(client_path, port, pki, [c1, c2])
            check_plaintext_client(port, [c1, c2])
            check_refused_tls_clients(port, pki, [c1, c2])
            check_chat_client_refuses(client_path, port, [c1, c2])
            server.send_signal(signal.SIGTERM)
            assert server.wait(TIMEOUT) == 0, "chat_server did not exit 0 on SIGTERM"
            for c in (c1, c2):
                c.lines.wait_eof()
            print("ok: chat_server exited 0 on SIGTERM")
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(TIMEOUT)
    print("chat tls smoke: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
