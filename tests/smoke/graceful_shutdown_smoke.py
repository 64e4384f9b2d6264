"""SIGTERM shuts the task servers down gracefully: what a connection's task
is sending when the signal arrives reaches the client whole, then the
server closes its side, and an idle connection is closed at once; the
server exits 0 well before its 5 s grace period would force it.

  - msg_echo_server: a 16 MiB message is being echoed to a client that has
    read only its first bytes;
  - http_server: a 10 MiB file is being downloaded by a client that has
    read only the response head.

usage: graceful_shutdown_smoke.py MSG_ECHO_SERVER HTTP_SERVER"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from half_close import read_to_eof
from server_process import fail, start_server

GRACE = 5.0


def recv_exactly(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            fail("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def wait_exit(proc, since):
    """Waits for the server to exit 0; returns the seconds since `since`."""
    try:
        rc = proc.wait(timeout=GRACE + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("server did not exit within %.0f s of SIGTERM" % (GRACE + 5))
    if rc != 0:
        fail("server exited with %d after SIGTERM" % rc)
    return time.monotonic() - since


def msg_echo(exe):
    proc, host, port = start_server(exe, "--max-message", str(32 << 20))
    try:
        busy = socket.create_connection((host, port), timeout=20)
        idle = socket.create_connection((host, port), timeout=20)
        # A small receive buffer keeps most of the echo in the server's
        # sendall while the client does not read.
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        msg = os.urandom(16 << 20)
        busy.sendall(struct.pack(">L", len(msg)) + msg)
        head = recv_exactly(busy, 4 + 1024)  # the server is echoing now
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rest = read_to_eof(busy, "msg_echo_server during shutdown", deadline=GRACE + 5)
        echo = head + rest
        if echo != struct.pack(">L", len(msg)) + msg:
            fail("the echo in flight at SIGTERM came back as %d of %d bytes"
                 % (len(echo) - 4, len(msg)))
        if read_to_eof(idle, "an idle msg_echo connection", deadline=GRACE) != b"":
            fail("an idle connection was sent bytes at shutdown")
        took = wait_exit(proc, sent_at)
    finally:
        if proc.poll() is None:
            proc.kill()
    print("ok: msg_echo_server finished a 16 MiB echo after SIGTERM and exited %.2f s after it" % took)


def http_download(exe):
    root = tempfile.mkdtemp(prefix="graceful-")
    data = os.urandom(10 << 20)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(data)
    proc, host, port = start_server(exe, "--root", root)
    try:
        s = socket.create_connection((host, port), timeout=20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk:
                fail("no response head")
            head += chunk
        if b"Content-Length: %d" % len(data) not in head:
            fail("unexpected head %r" % head)
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        body = read_to_eof(s, "http_server during shutdown", deadline=GRACE + 5)
        if body != data:
            fail("the download in flight at SIGTERM got %d of %d bytes" % (len(body), len(data)))
        took = wait_exit(proc, sent_at)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(root)
    print("ok: http_server finished a 10 MiB download after SIGTERM and exited %.2f s after it" % took)


msg_echo(sys.argv[1])
http_download(sys.argv[2])
