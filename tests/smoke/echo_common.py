"""Shared helpers for the echo smoke tests (server start/stop comes from
server_process)."""

import os

from server_process import fail, start_server, stop_server  # noqa: F401 (re-exported)


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
