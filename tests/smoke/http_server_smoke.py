"""http_server driven by curl (GET /hello, a 10 MiB file byte-exact, 404),
raw sockets (pipelining, a client that half-closes after pipelining, 400,
request-size limit), a short wrk run, and a second server with short
timeouts: a silent client, a slowloris client and an idle keep-alive
connection are each closed in time, and a client within them is served."""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from half_close import half_close
from server_process import fail, start_server, stop_server

root = tempfile.mkdtemp(prefix="http-smoke-")
data = os.urandom(10 << 20)
with open(os.path.join(root, "big.bin"), "wb") as f:
    f.write(data)
with open(os.path.join(root, "index.html"), "w") as f:
    f.write("<p>hi</p>")


def curl(url, *extra):
    out = subprocess.run(["curl", "-sS", "--max-time", "20", *extra, url],
                         capture_output=True, timeout=30)
    if out.returncode != 0:
        fail("curl %s: %s" % (url, out.stderr.decode()))
    return out.stdout


def raw(host, port, payload, want_close=True):
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(payload)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if not want_close and buf.count(b"Hello, world!") >= 3:
                break
        return buf


proc, host, port = start_server(sys.argv[1], "--root", root)
base = "http://%s:%d" % (host, port)
try:
    if curl(base + "/hello") != b"Hello, world!":
        fail("GET /hello")
    got = curl(base + "/big.bin")
    if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
        fail("10 MiB file not byte-exact (%d bytes)" % len(got))
    headers = curl(base + "/index.html", "-D", "-", "-o", "/dev/null").decode()
    if "Content-Type: text/html" not in headers or "Content-Length: 9" not in headers:
        fail("index.html headers: %r" % headers)
    code = curl(base + "/missing", "-o", "/dev/null", "-w", "%{http_code}")
    if code != b"404":
        fail("missing file gave %r" % code)
    code = curl(base + "/../etc/passwd", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}")
    if code != b"404":
        fail("path escape gave %r" % code)
    pipelined = raw(host, port, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 3, want_close=False)
    if pipelined.count(b"HTTP/1.1 200 OK") != 3:
        fail("pipelining: %r" % pipelined[:200])
    answered = half_close(host, port, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 3,
                          "http_server")
    if answered.count(b"HTTP/1.1 200 OK") != 3 or not answered.endswith(b"Hello, world!"):
        fail("half-closed pipelining: %r" % answered[:300])
    if not raw(host, port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400"):
        fail("malformed request not answered 400")
    big = b"GET /hello HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
    if not raw(host, port, big).startswith(b"HTTP/1.1 431"):
        fail("oversized request not refused")
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "-t1", "-c10", "-d2s", base + "/hello"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0 or "Requests/sec" not in out.stdout:
            fail("wrk: %s %s" % (out.stdout, out.stderr))
        if "Non-2xx" in out.stdout or "Socket errors" in out.stdout:
            fail("wrk saw errors: %s" % out.stdout)
        print(out.stdout.strip().splitlines()[-2])
finally:
    stop_server(proc)


def closed_within(s, lo, hi, what, start=None):
    """Reads `s` until EOF; fails unless EOF comes between lo and hi seconds
    after `start` (default: now). Returns what was read."""
    start = time.monotonic() if start is None else start
    got = b""
    s.settimeout(hi)
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            fail("%s: still open after %.1f s" % (what, hi))
        if not chunk:
            break
        got += chunk
    took = time.monotonic() - start
    if took < lo:
        fail("%s: closed after %.2f s, before its %.2f s timeout" % (what, took, lo))
    return got


HEADER, KEEPALIVE = 0.4, 0.6
proc, host, port = start_server(sys.argv[1], "--root", root, "--header-timeout", str(HEADER),
                                "--keepalive-timeout", str(KEEPALIVE))
try:
    # Connects and says nothing: closed silently after the header timeout.
    # The server may accept before connect() returns here: timed from before.
    connecting_at = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as s:
        if closed_within(s, HEADER, HEADER + 5, "a silent client", start=connecting_at) != b"":
            fail("a silent client was sent a reply")
    # Slowloris: a head begun, then one byte every 100 ms, forever; each
    # byte is well within any per-read bound, but the head is never whole.
    start = time.monotonic()  # before the connect: the head's countdown starts at the accept
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nX-Slow: ")
        s.setblocking(False)
        reply = b""
        while time.monotonic() - start < 5:
            try:
                s.send(b"a")
            except OSError:
                break  # the server closed: writing fails
            time.sleep(0.1)  # the dribble itself, not a synchronisation
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
            except BlockingIOError:
                pass
        took = time.monotonic() - start
        s.setblocking(True)
        s.settimeout(5)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            pass
        if not reply.startswith(b"HTTP/1.1 408 Request Timeout"):
            fail("slowloris: got %r instead of 408" % reply[:100])
        if took < HEADER or took > HEADER + 3:
            fail("slowloris: dropped after %.2f s (header timeout %.2f s)" % (took, HEADER))
    # Keep-alive: one request answered, then idle until the keep-alive
    # timeout closes it; a request sent in time on a second connection is
    # answered, twice.
    with socket.create_connection((host, port), timeout=10) as s:
        # The server's countdown starts once it has sent the answer, which
        # is after this send and before this client has read it all: timed
        # from here, the close can never look early.
        sent_at = time.monotonic()
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"Hello, world!"):
            answer += s.recv(65536)
        if closed_within(s, KEEPALIVE, KEEPALIVE + 5, "an idle keep-alive connection",
                         start=sent_at) != b"":
            fail("an idle keep-alive connection got bytes it did not ask for")
    with socket.create_connection((host, port), timeout=10) as s:
        for _ in range(2):
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"Hello, world!"):
                chunk = s.recv(65536)
                if not chunk:
                    fail("a keep-alive client within the timeout was closed")
                answer += chunk
            time.sleep(KEEPALIVE / 3)  # idle, but less than the timeout
finally:
    stop_server(proc)
    shutil.rmtree(root)
print("ok: curl, pipelining, 400/404/431, wrk; silent, slowloris and idle keep-alive clients closed")
