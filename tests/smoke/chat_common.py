"""Shared by the chat smoke tests: the server's welcome line and a line
reader for plain sockets, TLS sockets and pipes with every wait bounded."""
import re
import select
import ssl
import time

TIMEOUT = 10.0
WELCOME = re.compile(r"^\* welcome, you are (guest\d+) \(/nick NAME to rename, /quit to leave\)$")


class Lines:
    """Lines from a socket (plain or TLS) or a pipe, every wait bounded.
    A TLS socket may hold decrypted bytes that select() cannot see: those
    are read first."""

    def __init__(self, read, fileobj, pending=lambda: 0):
        self._read, self._fileobj, self._pending = read, fileobj, pending
        self.buf = b""
        self.eof = False

    def _fill(self, deadline):
        if not self._pending():
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._fileobj], [], [], left)[0]:
                raise TimeoutError("no data within %.1f s (have %r)" % (TIMEOUT, self.buf[-200:]))
        try:
            data = self._read()
        except (ConnectionResetError, ssl.SSLEOFError):
            data = b""
        if not data:
            self.eof = True
        self.buf += data

    def line(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if self.eof:
                raise EOFError("closed; pending %r" % self.buf)
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def wait_eof(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while not self.eof:
            self._fill(deadline)
        return self.buf

    def nothing_pending(self, wait=0.3):
        if b"\n" in self.buf:
            return False
        try:
            self._fill(time.monotonic() + wait)
        except TimeoutError:
            return True
        return b"\n" not in self.buf
