"""Shared helpers for the echo smoke tests: start echo_server, read its
'listening on HOST:PORT' line, stop it and check it exits 0."""

import os
import signal
import subprocess
import sys
import threading
import time


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def start_server(exe, *args, prefix=()):
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
    threading.Thread(target=lambda: proc.log.extend(proc.stdout), daemon=True).start()
    return proc, host.strip("[]"), int(port)


def stop_server(proc, sig=signal.SIGTERM):
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("server did not exit within 10 s of %s" % sig.name)
    if rc != 0:
        fail("server exited with %d after %s" % (rc, sig.name))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pattern(n, seed=0):
    return bytes(((i * 7 + seed * 131 + i // 251) & 0xff) for i in range(n))


def script_dir():
    return os.path.dirname(os.path.abspath(__file__))
