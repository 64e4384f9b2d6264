#!/usr/bin/env python3
"""Smoke test for samples/chat: drives chat_server with several concurrent
Python socket clients and one chat_client (stdin/stdout through pipes).

A second server with a short --idle-timeout drops a silent client (telling
it, and the others) and keeps a talkative one.

usage: chat_smoke.py CHAT_SERVER CHAT_CLIENT
Every wait is bounded; the server listens on an ephemeral port.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from chat_common import TIMEOUT, WELCOME, Lines


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.lines = Lines(lambda: self.sock.recv(65536), self.sock)
        m = WELCOME.match(self.lines.line())
        assert m, "no welcome line"
        self.name = m.group(1)

    def send(self, text):
        self.sock.sendall(text.encode())

    def expect(self, line):
        got = self.lines.line()
        assert got == line, "%s expected %r, got %r" % (self.name, line, got)


def start_server(path, *args):
    proc = subprocess.Popen([path, "--port", "0", *args], stdout=subprocess.PIPE)
    out = Lines(lambda: os.read(proc.stdout.fileno(), 4096), proc.stdout)
    m = re.match(r"^listening on 127\.0\.0\.1:(\d+)$", out.line())
    assert m, "no listening line"
    return proc, out, int(m.group(1))


def expect_all(clients, line):
    for c in clients:
        c.expect(line)


def burst(clients, cli_out, count=50):
    """Every Python client sends `count` lines at once, from its own thread;
    every other participant must get each sender's lines, in order."""
    errors = []

    def run(me):
        try:
            me.send("".join("m %s %d\n" % (me.name, i) for i in range(count)))
            seen = {c.name: [] for c in clients if c is not me}
            for _ in range(count * (len(clients) - 1)):
                sender, text = me.lines.line().split(": ", 1)
                seen[sender].append(text)
            for sender, texts in seen.items():
                assert texts == ["m %s %d" % (sender, i) for i in range(count)], sender
        except Exception as e:  # reported by the main thread
            errors.append("%s: %r" % (me.name, e))

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    seen = {c.name: [] for c in clients}
    for _ in range(count * len(clients)):
        sender, text = cli_out.line().split(": ", 1)
        seen[sender].append(text)
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive(), "a burst thread hung"
    assert not errors, errors
    for sender, texts in seen.items():
        assert texts == ["m %s %d" % (sender, i) for i in range(count)], sender


def idle_check(server_path):
    idle = 0.4
    server, _, port = start_server(server_path, "--idle-timeout", str(idle))
    try:
        quiet = Client(port)
        talker = Client(port)
        quiet.expect("* %s has joined" % talker.name)
        start = time.monotonic()
        # The talker speaks every tenth of a second for three timeouts.
        while time.monotonic() - start < 3 * idle:
            talker.send("still here\n")
            time.sleep(0.1)  # pacing the talk, not a synchronisation
        while True:
            line = quiet.lines.line()
            if line != "%s: still here" % talker.name:
                break
        assert line == "* you have been idle for too long; bye", line
        took = time.monotonic() - start
        assert took >= idle, "idle client dropped after %.2f s" % took
        quiet.lines.wait_eof()
        while True:
            line = talker.lines.line()
            if line != "%s: still here" % talker.name:
                break
        assert line == "* %s has left" % quiet.name, line
        talker.send("/quit\n")
        talker.expect("* bye")
        server.send_signal(signal.SIGTERM)
        assert server.wait(TIMEOUT) == 0, "chat_server did not exit 0 on SIGTERM"
        print("chat idle timeout: OK")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(TIMEOUT)


def main():
    server_path, client_path = sys.argv[1], sys.argv[2]
    idle_check(server_path)
    server, server_out, port = start_server(server_path)
    cli = None
    try:
        clients = []
        for _ in range(5):
            c = Client(port)
            expect_all(clients, "* %s has joined" % c.name)
            clients.append(c)
        c1, c2, c3, c4, c5 = clients
        assert [c.name for c in clients] == ["guest%d" % i for i in range(1, 6)]

        c1.send("hello\r\n")
        expect_all(clients[1:], "guest1: hello")
        c2.send("/nick alice\n")
        expect_all(clients, "* guest2 is now known as alice")
        c2.name = "alice"
        c3.send("/nick alice\n/nick\n/bogus\n")
        c3.expect("* the name alice is taken")
        c3.expect("* usage: /nick NAME (1 to 32 characters, no spaces, ':', '*' or '/')")
        c3.expect("* unknown command /bogus (try /nick NAME or /quit)")
        assert c1.lines.nothing_pending(), "a sender got its own line back"

        cli = subprocess.Popen([client_path, "--host", "127.0.0.1", "--port", str(port)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        cli_out = Lines(lambda: os.read(cli.stdout.fileno(), 65536), cli.stdout)
        m = WELCOME.match(cli_out.line())
        assert m, "chat_client printed no welcome"
        cli_name = m.group(1)
        expect_all(clients, "* %s has joined" % cli_name)
        c1.send("to the cli\n")
        assert cli_out.line() == "guest1: to the cli"
        expect_all(clients[1:], "guest1: to the cli")
        cli.stdin.write(b"from the cli\n")
        cli.stdin.flush()
        expect_all(clients, "%s: from the cli" % cli_name)

        burst(clients, cli_out)

        c5.send("/quit\n")
        c5.expect("* bye")
        c5.lines.wait_eof()
        expect_all([c1, c2, c3, c4], "* guest5 has left")
        assert cli_out.line() == "* guest5 has left"

        c4.sock.close()
        expect_all([c1, c2, c3], "* guest4 has left")
        assert cli_out.line() == "* guest4 has left"

        c3.send("x" * 5000)  # a line over the server's 4 KiB limit
        c3.lines.wait_eof()
        expect_all([c1, c2], "* guest3 has left")
        assert cli_out.line() == "* guest3 has left"

        cli.stdin.write(b"last words\n")
        cli.stdin.close()
        expect_all([c1, c2], "%s: last words" % cli_name)
        expect_all([c1, c2], "* %s has left" % cli_name)
        assert cli.wait(TIMEOUT) == 0, "chat_client did not exit cleanly"

        server.send_signal(signal.SIGTERM)
        assert server.wait(TIMEOUT) == 0, "chat_server did not exit 0 on SIGTERM"
        for c in (c1, c2):
            c.lines.wait_eof()
        print("chat smoke: OK")
        return 0
    finally:
        for p in (server, cli):
            if p and p.poll() is None:
                p.kill()
                p.wait(TIMEOUT)


if __name__ == "__main__":
    sys.exit(main())
