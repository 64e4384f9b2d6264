"""Running a consumer's build of README.md's echo server against a client.

The example listens on 127.0.0.1:8080, a fixed port. Every consumer check on
this machine (any worktree, any build) takes one lock file before using it,
so they queue instead of failing; a port held by something else is reported
as a skip (Skip), never as a failure.

What a passing check means: the program listened on 127.0.0.1:8080 itself
(seen in /proc, so a stray server on that port is never mistaken for it),
echoed what two clients sent, and printed nothing.
"""

import errno
import fcntl
import os
import signal
import socket
import subprocess
import tempfile
import time

HOST = "127.0.0.1"
PORT = 8080
LOCK_PATH = os.path.join(tempfile.gettempdir(), "asyncore-cpp-consumer-port-8080.lock")
LOCK_WAIT = 120  # seconds; each holder keeps the port for about a second
START_WAIT = 10  # seconds for the program to listen
ECHO_WAIT = 10  # seconds for each client's echo
# More than the example reads at once (8 KiB), less than loopback buffers
# hold; lines ending in CRLF, every other byte value in them, so that the
# README's line echo (AsyncChat) echoes it whole too.
_LINE = bytes(b for b in range(256) if b not in b"\r\n") + b"\r\n"
MESSAGE = b"hello from a consumer\r\n" + _LINE * 256


class Skip(Exception):
    """The check could not run here (the port is in use); not a failure."""


class Failure(Exception):
    """The program did not behave as the README says."""


def check_echo_server(exe, env=None):
    """Run `exe`, echo MESSAGE through it twice, stop it; raise on trouble."""
    with _port_lock():
        _check_port_free()
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen([exe], stdout=out, stderr=subprocess.STDOUT, env=env)
            try:
                _wait_listening(proc, out)
                for _ in range(2):
                    _echo_once()
            finally:
                _stop(proc)
            out.seek(0)
            printed = out.read()
    if printed:
        raise Failure(f"{exe} printed {printed[:400]!r}")


class _port_lock:
    """An exclusive lock on LOCK_PATH, waited for at most LOCK_WAIT seconds."""

    def __enter__(self):
        self.file = open(LOCK_PATH, "a")
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.file.close()
                    raise Skip(f"another check held {LOCK_PATH} for {LOCK_WAIT} s")
                time.sleep(0.1)

    def __exit__(self, *exc):
        self.file.close()  # releases the lock
        return False


def _check_port_free():
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, PORT))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise Skip(f"port {PORT} is in use by another program") from None
            raise


def _listening_inodes():
    """Socket inodes listening on HOST:PORT, from /proc/net/tcp."""
    wanted = "%08X:%04X" % (int.from_bytes(socket.inet_aton(HOST), "little"), PORT)
    inodes = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


def _socket_inodes(pid):
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _wait_listening(proc, out):
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out.seek(0)
            printed = out.read().decode(errors="replace")
            if "Address already in use" in printed:
                raise Skip(f"port {PORT} was taken before the program could listen")
            raise Failure(f"exited with {proc.returncode} before listening: {printed[:400]}")
        if _listening_inodes() & _socket_inodes(proc.pid):
            return
        time.sleep(0.02)
    raise Failure(f"not listening on {HOST}:{PORT} after {START_WAIT} s")


def _echo_once():
    received = bytearray()
    try:
        with socket.create_connection((HOST, PORT), timeout=ECHO_WAIT) as client:
            client.sendall(MESSAGE)
            while len(received) < len(MESSAGE):
                chunk = client.recv(65536)
                if not chunk:
                    break
                received += chunk
    except OSError as error:  # refused, reset, timed out
        raise Failure(f"client: {error}") from None
    if received != MESSAGE:
        raise Failure(f"echoed {len(received)} bytes that differ from the {len(MESSAGE)} sent")


def _stop(proc):
    """The example has no signal handling: SIGTERM ends it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
