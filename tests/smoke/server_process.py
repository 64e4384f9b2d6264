"""Starting and stopping a sample server from a smoke test: run it with
--port 0, read its 'listening on HOST:PORT' line, keep draining its stdout,
and at the end check that a signal makes it exit 0 (the samples' contract)."""

import signal
import subprocess
import sys
import threading
import time


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def start_server(exe, *args, prefix=()):
    """Returns (proc, host, port); proc.log collects the server's later stdout."""
    proc = subprocess.Popen(list(prefix) + [exe, "--port", "0", *args],
                            stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("listening on ") or not line:
            break
    if not line.startswith("listening on "):
        proc.kill()
        fail("server did not report 'listening on HOST:PORT' (got %r)" % line)
    host, port = line[len("listening on "):].strip().rsplit(":", 1)
    # Keep reading the server's stdout so its log lines never fill the pipe.
    proc.log = []
    proc.reader = threading.Thread(target=lambda: proc.log.extend(proc.stdout), daemon=True)
    proc.reader.start()
    return proc, host.strip("[]"), int(port)


def stop_server(proc, sig=signal.SIGTERM):
    """Sends `sig` and fails unless the server exits 0 within 10 s."""
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("server did not exit within 10 s of %s" % sig.name)
    proc.reader.join(timeout=5)
    if rc != 0:
        fail("server exited with %d after %s" % (rc, sig.name))
