"""Soak: connection churn and many clients at once, one summary line each.

Every server sample through load_smoke.py at full size: 20,000
connect/close cycles (a mix of resets, FINs and answered requests) and
5,000 clients connected at once, checking that none crashes, leaks a
descriptor, or keeps RSS grown. `./dev test` runs a short slice of each.

usage: tests/soak/load.py --build DIR [--only SAMPLE]... [--cycles N] [--concurrent N]
Exits 1 if any run failed.
"""

import argparse
import os
import subprocess
import sys
import time

SERVERS = {
    "echo": "echo/echo_server",
    "chat": "chat/chat_server",
    "smtp": "smtp/smtp_server",
    "resp": "resp/resp_server",
    "http": "http_server/http_server",
    "msg_echo": "msg_echo/msg_echo_server",
    "tut_sock": "tut_sock/tut_sock_server",
    "tls_echo": "tls_echo/tls_echo_server",
}

parser = argparse.ArgumentParser()
parser.add_argument("--build", required=True)
parser.add_argument("--only", action="append", choices=sorted(SERVERS))
parser.add_argument("--cycles", type=int, default=20000)
parser.add_argument("--concurrent", type=int, default=5000)
args = parser.parse_args()

here = os.path.dirname(os.path.abspath(__file__))
failed = 0
runs = args.only or list(SERVERS)
for name in runs:
    exe = os.path.join(args.build, "samples", SERVERS[name])
    start = time.monotonic()
    out = subprocess.run([sys.executable, os.path.join(here, "..", "smoke", "load_smoke.py"), name, exe,
                          "--cycles", str(args.cycles), "--concurrent", str(args.concurrent),
                          "--summary"], capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - start
    lines = out.stdout.strip().splitlines()
    if out.returncode == 0 and lines:
        print("PASS %s (%.0f s)" % (lines[-1], took), flush=True)
        continue
    failed += 1
    reason = [l for l in out.stderr.splitlines() if l.startswith("FAIL")] or \
        out.stderr.strip().splitlines()[-1:] or ["exit %d" % out.returncode]
    print("FAIL %s: %s (%.0f s)" % (name, reason[0], took), flush=True)
    sys.stderr.write(out.stderr[-4000:])
print("%d passed, %d failed" % (len(runs) - failed, failed))
sys.exit(1 if failed else 0)
