#!/usr/bin/env python3
"""Nothing lost: tests/stress/lossless_client streams a seeded pattern
through an echo server over 100 concurrent connections, half-closes each
one, and checks every byte that comes back, then the server's close.

usage: lossless.py --mode raw|msg|tls SERVER CLIENT [--bytes 64M] [--conns 100]
                   [--seed N] [--timeout SECONDS]

  raw  echo_server            (Dispatcher + DispatcherWithSend)
  msg  msg_echo_server        (pycos framing: 4-byte big-endian length + payload)
  tls  tls_echo_server        (TLS; a throwaway CA from tls_pki.py)

--bytes is the total over all connections. The seed is printed first (a
fresh one unless --seed is given): the same seed replays the same streams.
The server must then exit 0 on SIGTERM. tests/soak/lossless.py runs this
with 1 GiB per server."""

import argparse
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_process import fail, start_server, stop_server  # noqa: E402
from tls_pki import make_pki  # noqa: E402


def size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def run(mode, server, client, nbytes, conns=100, seed=None, timeout=600, prefix=()):
    """Runs one server under the client; returns the client's summary line."""
    if seed is None:
        seed = random.SystemRandom().randrange(1, 1 << 48)
    print("lossless: mode %s, seed %d (replay with --seed %d)" % (mode, seed, seed), flush=True)
    with tempfile.TemporaryDirectory(prefix="lossless-") as d:
        args = []
        cargs = []
        if mode == "tls":
            pki = make_pki(d, name="lossless")
            args = ["--cert", pki["cert"], "--key", pki["key"]]
            cargs = ["--cafile", pki["ca"]]
        proc, host, port = start_server(server, *args, prefix=prefix)
        try:
            out = subprocess.run(
                [client, "--host", host, "--port", str(port), "--mode", mode,
                 "--conns", str(conns), "--bytes", str(nbytes), "--seed", str(seed),
                 "--timeout", str(timeout), "--stall", str(min(60, timeout)), *cargs],
                capture_output=True, text=True, timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            fail("lossless_client did not finish within %d s (seed %d)" % (timeout + 30, seed))
        except BaseException:
            proc.kill()
            raise
        if out.returncode != 0:
            proc.kill()
            fail("lossless_client exited %d (seed %d):\n%s%s"
                 % (out.returncode, seed, out.stdout, out.stderr))
        stop_server(proc)
    line = out.stdout.strip()
    print(line, flush=True)
    return line


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["raw", "msg", "tls"], required=True)
    ap.add_argument("server")
    ap.add_argument("client")
    ap.add_argument("--bytes", type=size, default=64 << 20)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--timeout", type=int, default=240)
    a = ap.parse_args()
    run(a.mode, a.server, a.client, a.bytes, a.conns, a.seed, a.timeout)
    print("ok: every byte came back, in order, then the server's close")


if __name__ == "__main__":
    main()
