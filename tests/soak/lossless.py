#!/usr/bin/env python3
"""Soak: 1 GiB (by default) through each echo server over 100 concurrent
connections, every byte verified as it comes back (tests/smoke/lossless.py
with tests/stress/lossless_client), and the throughput of each.

usage: tests/soak/lossless.py --build build/release [--bytes 1G] [--conns 100]
                              [--only raw,msg,tls] [--seed N]

raw is echo_server, msg is msg_echo_server (pycos framing), tls is
tls_echo_server. Prints one line per server and a summary in MB/s (10^6
bytes of stream echoed per second). Exits non-zero at the first failure,
with the seed to replay it."""
import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "smoke"))
from lossless import run, size  # noqa: E402

SERVERS = {"raw": "samples/echo/echo_server",
           "msg": "samples/msg_echo/msg_echo_server",
           "tls": "samples/tls_echo/tls_echo_server"}


def main():
    ap = argparse.ArgumentParser(description="1 GiB through each echo server, every byte checked")
    ap.add_argument("--build", required=True, help="a build directory, e.g. build/release")
    ap.add_argument("--bytes", type=size, default=1 << 30)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--only", default="raw,msg,tls")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--timeout", type=int, default=1800)
    a = ap.parse_args()
    client = os.path.join(a.build, "tests/stress/lossless_client")
    rates = []
    for mode in a.only.split(","):
        server = os.path.join(a.build, SERVERS[mode])
        line = run(mode, server, client, a.bytes, a.conns, a.seed, a.timeout)
        m = re.search(r"([\d.]+) MB/s", line)
        rates.append("%s %s MB/s" % (os.path.basename(server), m.group(1) if m else "?"))
    print("lossless soak: %d bytes per server, %d connections: %s"
          % (a.bytes, a.conns, "; ".join(rates)))


if __name__ == "__main__":
    main()
