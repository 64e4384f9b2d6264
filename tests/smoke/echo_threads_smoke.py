"""echo_server --threads 2 runs two loops on one port: 100 concurrent
echo_client connections, every byte verified, then SIGTERM ends both loops
and the server exits 0."""

import os
import subprocess
import sys

from echo_common import fail, start_server, stop_server


def own_threads(proc):
    """Threads of `proc` less ThreadSanitizer's background thread, which it
    starts with the program's second thread."""
    threads = len(os.listdir("/proc/%d/task" % proc.pid))
    with open("/proc/%d/maps" % proc.pid) as maps:
        if "libtsan" in maps.read() and threads > 1:
            threads -= 1
    return threads


server_exe, client_exe = sys.argv[1], sys.argv[2]
server, host, port = start_server(server_exe, "--threads", "2")
try:
    threads = own_threads(server)
    if threads != 2:
        fail("expected 2 threads in echo_server --threads 2, found %d" % threads)
    out = subprocess.run([client_exe, "--host", host, "--port", str(port), "--conns", "100",
                          "--messages", "50", "--size", "4096", "--timeout", "60"],
                         capture_output=True, text=True, timeout=90)
    print(out.stdout, end="")
    if out.returncode != 0:
        fail("echo_client exited %d: %s" % (out.returncode, out.stderr))
    if "100/100 connections" not in out.stdout:
        fail("unexpected echo_client output: %r" % out.stdout)
finally:
    stop_server(server)
print("ok: two loops on one port echoed 100 connections x 50 messages")
