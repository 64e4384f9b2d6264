"""tut_sock_client --count N against tut_sock_server: every message arrives,
intact, and the server counts them all when stopped."""

import re
import signal
import subprocess
import sys
import time

from half_close import half_close
from server_process import fail, start_server, stop_server

server_exe, client_exe = sys.argv[1], sys.argv[2]
N = 200
proc, host, port = start_server(server_exe)
try:
    out = subprocess.run([client_exe, "--port", str(port), "--count", str(N)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        fail("client exited %d: %s" % (out.returncode, out.stderr))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sum(l.startswith("received: ") for l in proc.log) >= N:
            break
        time.sleep(0.05)
    # The tutorial server replies nothing: after a half-close the client must
    # see the server close its side once the connection's task has ended.
    if half_close(host, port, b"half-closed/", "tut_sock_server") != b"":
        fail("tut_sock_server sent data to a client")
    N += 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("half-closed/" in l for l in proc.log):
        time.sleep(0.05)
finally:
    stop_server(proc, signal.SIGINT)

received = [l.strip()[len("received: "):] for l in proc.log if l.startswith("received: ")]
if len(received) != N:
    fail("server received %d messages, expected %d" % (len(received), N))
ids = set()
for msg in received:
    if msg == "half-closed/":
        continue
    m = re.fullmatch(r"(\d+): (-+)/", msg)
    if not m or not 100 <= len(m.group(2)) <= 300:
        fail("malformed message %r" % msg)
    ids.add(int(m.group(1)))
if ids != set(range(N - 1)):
    fail("missing messages: %s" % sorted(set(range(N - 1)) - ids)[:10])
if not any(l.strip() == "messages received: %d" % N for l in proc.log):
    fail("server did not print its count: %r" % proc.log[-3:])
print("ok: %d messages delivered; a half-closed connection was closed" % N)
