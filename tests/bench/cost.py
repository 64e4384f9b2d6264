#!/usr/bin/env python3
"""Per-message cost of an echo server, deterministic enough to compare small
changes on a busy machine: instructions (callgrind) and syscalls (strace -c)
per echoed message.

Each figure is a difference between a short and a long run of the same load,
so start-up, connection set-up and shutdown cancel out:

    cost = (total(long) - total(short)) / (msgs(long) - msgs(short))

Usage:
    tests/bench/cost.py --build build/rel [--tool callgrind,strace]
        [--pipeline 1] [--conns 50] [--server echo_server,raw_libevent]
        (servers: echo_server, echo_server_idle, task_echo_server, raw_libevent,
         asio, bufferevent, and the line echoes raw_line_echo, chat_line_echo,
         which get 64-byte lines: loadgen --lines 1)
        [--annotate N]   # top N functions of the long callgrind run
        [--setup]        # also: instructions per accepted connection
        [--keep DIR]     # keep the outputs (callgrind_annotate them)

The servers run under valgrind or strace, so msgs/s here means nothing; only
the ratios per message do.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = {
    "echo_server": ["samples/echo/echo_server"],
    "echo_server_idle": ["samples/echo/echo_server", "--idle-timeout", "60"],
    "task_echo_server": ["tests/bench/task_echo_server"],
    "raw_libevent": ["tests/bench/raw_libevent_echo"],
    "asio": ["tests/bench/asio_echo"],
    "bufferevent": ["tests/bench/bufferevent_echo"],
    "raw_line_echo": ["tests/bench/raw_line_echo"],
    "chat_line_echo": ["tests/bench/chat_line_echo"],
}
# Line echo servers get line-delimited messages (loadgen --lines 1).
LINE_SERVERS = {"raw_line_echo", "chat_line_echo"}
LISTENING = re.compile(r"listening on (\S+):(\d+)")


def start(argv, out_path):
    out = open(out_path, "w")
    proc = subprocess.Popen(argv + ["--host", "127.0.0.1", "--port", "0"], stdout=out,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(out_path) as f:
            m = LISTENING.search(f.read())
        if m:
            return proc, int(m.group(2))
        if proc.poll() is not None:
            sys.exit(f"cost.py: {argv[0]} exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    sys.exit(f"cost.py: {argv[0]} is not listening after 60 s")


def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def loadgen(cfg, port, duration, conns, lines=False):
    argv = [os.path.join(cfg.build, "tests/bench/loadgen"), "--port", str(port), "--conns",
            str(conns), "--size", str(cfg.size), "--pipeline", str(cfg.pipeline),
            "--duration", str(duration), "--warmup", "0.2", "--connect-timeout", "60",
            "--lines", "1" if lines else "0"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
    if out.returncode != 0:
        sys.exit(f"cost.py: loadgen exited with {out.returncode}: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])["verified_msgs"]


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    sys.exit(f"cost.py: no totals in {path}")


def strace_total(path):
    calls = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                # % time, seconds, usecs/call, calls, [errors], syscall
                n_errors = int(parts[4]) if len(parts) == 6 else 0
                calls[parts[-1]] = (int(parts[3]), n_errors)
    return calls


def one_run(cfg, server, tool, duration, conns, tmp):
    binary = [os.path.join(cfg.build, SERVERS[server][0])] + SERVERS[server][1:]
    out_file = os.path.join(tmp, f"{server}-{tool}-{duration}-{conns}.out")
    if tool == "callgrind":
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"] + binary
    else:
        argv = ["strace", "-c", "-f", "-o", out_file] + binary
    proc, port = start(argv, out_file + ".stdout")
    msgs = loadgen(cfg, port, duration, conns, server in LINE_SERVERS)
    stop(proc)
    if tool == "callgrind":
        return msgs, callgrind_total(out_file), out_file
    return msgs, strace_total(out_file), out_file


def report_callgrind(cfg, server, tmp):
    m1, t1, _ = one_run(cfg, server, "callgrind", cfg.short, cfg.conns, tmp)
    m2, t2, path = one_run(cfg, server, "callgrind", cfg.long, cfg.conns, tmp)
    per_msg = (t2 - t1) / max(1, m2 - m1)
    print(f"{server:<14} callgrind: {per_msg:8.0f} instructions/msg "
          f"({m2 - m1} msgs, {t2 - t1:,} Ir)")
    if cfg.setup:
        m0, t0, _ = one_run(cfg, server, "callgrind", cfg.short, cfg.conns * 5, tmp)
        extra = (t0 - t1 - per_msg * (m0 - m1)) / (cfg.conns * 4)
        print(f"{server:<14} callgrind: {extra:8.0f} instructions/connection (accept to close)")
    if cfg.annotate:
        out = subprocess.run(["callgrind_annotate", "--inclusive=no", path],
                             capture_output=True, text=True)
        lines = [ln for ln in out.stdout.splitlines() if re.match(r"\s*[\d,]+ \(", ln)]
        for ln in lines[:cfg.annotate]:
            print("    " + ln.strip())


def report_strace(cfg, server, tmp):
    m1, c1, _ = one_run(cfg, server, "strace", cfg.short, cfg.conns, tmp)
    m2, c2, _ = one_run(cfg, server, "strace", cfg.long, cfg.conns, tmp)
    n = max(1, m2 - m1)
    parts = []
    total = 0.0
    for name in sorted(c2, key=lambda k: -c2[k][0]):
        calls = (c2[name][0] - c1.get(name, (0, 0))[0]) / n
        errors = (c2[name][1] - c1.get(name, (0, 0))[1]) / n
        if calls < 0.005:
            continue
        total += calls
        parts.append(f"{name} {calls:.2f}" + (f" ({errors:.2f} failed)" if errors >= 0.005 else ""))
    print(f"{server:<14} strace:    {total:8.2f} syscalls/msg: " + ", ".join(parts))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", required=True)
    p.add_argument("--server", default="echo_server,raw_libevent")
    p.add_argument("--tool", default="callgrind,strace")
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--pipeline", type=int, default=1)
    p.add_argument("--short", type=float, default=1.0, help="seconds of the short run")
    p.add_argument("--long", type=float, default=4.0, help="seconds of the long run")
    p.add_argument("--annotate", type=int, default=0)
    p.add_argument("--setup", action="store_true")
    p.add_argument("--keep", help="keep the callgrind/strace outputs in this directory")
    cfg = p.parse_args()
    cfg.build = os.path.abspath(cfg.build)
    with tempfile.TemporaryDirectory(prefix="cost-") as tmp:
        if cfg.keep:
            os.makedirs(cfg.keep, exist_ok=True)
            tmp = cfg.keep
        for server in cfg.server.split(","):
            for tool in cfg.tool.split(","):
                if tool == "callgrind":
                    report_callgrind(cfg, server, tmp)
                else:
                    report_strace(cfg, server, tmp)


if __name__ == "__main__":
    main()
