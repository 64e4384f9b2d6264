"""A peer that half-closes: it sends its requests, shuts down its sending
side, and must then get every reply followed by the server's own close.

The server's close is what a task-based server owes such a peer once the
connection's task has ended; a server that kept the connection open would
leave it waiting here until the deadline, and the check fails."""

import socket
import time

from server_process import fail

DEADLINE = 10.0


def read_to_eof(sock, what, deadline=DEADLINE):
    """Everything `sock` receives until the peer closes; fails if the peer
    has not closed within `deadline` seconds."""
    end = time.monotonic() + deadline
    data = bytearray()
    while True:
        left = end - time.monotonic()
        if left <= 0:
            fail("%s: the server did not close its side within %.0f s after the "
                 "client half-closed (got %d bytes)" % (what, deadline, len(data)))
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 16)
        except socket.timeout:
            continue
        if not chunk:
            return bytes(data)
        data += chunk


def half_close(host, port, payload, what):
    """Connects, sends `payload`, shuts down the write side and returns all
    the server sent before closing its side."""
    with socket.create_connection((host, port), timeout=DEADLINE) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return read_to_eof(s, what)
