"""Helpers for the task-layer smoke tests: start a server with --port 0,
read its 'listening on HOST:PORT' line, stop it and check it exits 0."""

import signal
import subprocess
import sys
import threading
import time


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def start_server(exe, *args):
    proc = subprocess.Popen([exe, "--port", "0", *args], stdout=subprocess.PIPE, text=True)
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
    proc.log = []
    proc.reader = threading.Thread(target=lambda: proc.log.extend(proc.stdout), daemon=True)
    proc.reader.start()
    return proc, host.strip("[]"), int(port)


def stop_server(proc, sig=signal.SIGTERM):
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("server did not exit within 10 s of %s" % sig.name)
    proc.reader.join(timeout=5)
    if rc != 0:
        fail("server exited with %d after %s" % (rc, sig.name))
