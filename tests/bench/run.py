#!/usr/bin/env python3
"""Side-by-side echo benchmarks: asyncore-cpp against raw libevent, asio,
libevent bufferevents and Python's asyncore; AsyncChat's line echo against
raw libevent's evbuffer_readln; resp_server against redis-server;
http_server against nginx; ping-pong as idle connections grow; how
echo_server and resp_server scale with --threads N; memory per idle
connection and per suspended Task; and, with --idle-scale, idle connections
up to the machine's limits. Charts of the run are drawn at the end
(charts.py).

    python3 tests/bench/run.py --build build/release [--only NAME[,NAME]]
        [--rounds R] [--duration S] [--quick]

Every contender runs the same loads, interleaved round by round, with the
server pinned to one core and the load generator to the other (except
the scaling runs on a machine too small to pin them apart). Each
measurement starts a fresh server. Traffic goes to 127.0.0.1 only; every
child process is killed on exit and every wait has a deadline.

See README.md beside this file for what each row measures and its caveats.
"""

import argparse
import contextlib
import copy
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BASELINE = "raw_libevent"
SECTIONS = ("throughput", "lines", "redis", "http", "idlecurve", "scaling", "memory",
            "idlescale")
DEFAULT_SECTIONS = SECTIONS[:-1]  # idlescale only when asked for (--idle-scale)
NOISY = 0.05  # share of the machine's CPU time used by others that makes a run noisy
LISTENING = re.compile(r"^listening on (\S+):(\d+)$", re.M)


class BenchError(Exception):
    """One measurement failed; the run goes on and reports it."""


# ---------------------------------------------------------------------------
# Contenders and loads


def find_binary(build, paths):
    """The first executable of paths (relative to the build directory).
    Samples live in a folder per area (samples/echo/echo_server), but a
    sample built straight into samples/ is found as well."""
    for rel in paths:
        path = os.path.join(build, rel)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


@dataclass
class Contender:
    name: str
    binaries: tuple = ()  # candidate paths relative to the build directory
    script: str = ""  # a Python server beside this file
    about: str = ""
    args: tuple = ()  # extra options, e.g. ("--threads", "2")
    lines: bool = False  # echoes whole lines only: load it with loadgen --lines 1

    def command(self, build, python):
        if self.script:
            return [python, "-W", "ignore", os.path.join(HERE, self.script)] + list(self.args)
        return [find_binary(build, self.binaries)] + list(self.args)

    def missing(self, build, python):
        """Why this contender cannot run, or None."""
        if self.script:
            return None if python else "no Python with asyncore (3.11 or older) found"
        if find_binary(build, self.binaries):
            return None
        return f"none of {', '.join(self.binaries)} is built in {build}"


CONTENDERS = [
    Contender("raw_libevent", ("tests/bench/raw_libevent_echo",),
              about="minimal raw libevent: the floor"),
    Contender("asio", ("tests/bench/asio_echo",), about="standalone asio, C++20 coroutines"),
    Contender("bufferevent", ("tests/bench/bufferevent_echo",), about="libevent bufferevents"),
    Contender("python_asyncore", script="asyncore_echo.py",
              about="Python 3.11 asyncore, dispatcher_with_send"),
    Contender("echo_server", ("samples/echo/echo_server", "samples/echo_server"),
              about="asyncore-cpp Dispatcher"),
    Contender("task_echo_server", ("tests/bench/task_echo_server",),
              about="asyncore-cpp Task + AsyncSocket"),
]
RESP_SERVER = ("samples/resp/resp_server", "samples/resp_server")
HTTP_SERVER = ("samples/http_server/http_server", "samples/http_server")

# The lines section: line-delimited echo (loadgen --lines 1), against its own
# floor, raw libevent with evbuffer_readln().
LINE_BASELINE = "raw_line_echo"
LINE_CONTENDERS = [
    Contender("raw_line_echo", ("tests/bench/raw_line_echo",),
              about="raw libevent line echo, evbuffer_readln: the floor", lines=True),
    Contender("chat_line_echo", ("tests/bench/chat_line_echo",),
              about="asyncore-cpp AsyncChat, \"\\n\" terminator", lines=True),
]
# The idle curve: ping-pong with more and more idle connections.
IDLE_CURVE = ("raw_libevent", "echo_server", "task_echo_server")


@dataclass
class Load:
    key: str
    label: str
    conns: int
    size: int
    pipeline: int
    idle: int = 0
    settle: float = 0.0  # extra warm-up, seconds
    threads: int = 1  # load generator threads
    lines: bool = False  # each message a line ending in "\n"


def make_loads(idle):
    # After ten thousand connects the kernel keeps its workers busy for a
    # second or so (kworker time, measured here): with a 0.5 s warm-up every
    # server, raw libevent included, lost a third of its throughput to that,
    # which says nothing about the server. Hence the extra settling time.
    return [
        Load("pingpong", "50 x 64 B ping-pong", 50, 64, 1),
        Load("pipelined", "50 x 64 B, 16 in flight", 50, 64, 16),
        Load("idle", f"ping-pong + {idle:,} idle", 50, 64, 1, idle, settle=1.0),
    ]


# ---------------------------------------------------------------------------
# Processes: every child is registered so that one finally clause kills them.

CHILDREN = []


def raise_nofile():
    """preexec_fn: lift the soft descriptor limit to the hard one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def spawn(argv, cpu, **kwargs):
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    proc = subprocess.Popen(argv, preexec_fn=raise_nofile, start_new_session=True,
                            stdin=subprocess.DEVNULL, **kwargs)
    CHILDREN.append(proc)
    return proc


def kill(proc, grace=5.0):
    """Stops proc: SIGTERM, then SIGKILL after grace seconds. Returns its status."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass
    if proc in CHILDREN:
        CHILDREN.remove(proc)
    return proc.wait(timeout=grace)


def kill_all():
    for proc in list(CHILDREN):
        try:
            kill(proc, grace=2.0)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


def wait_for(predicate, timeout, step=0.05):
    """Polls predicate until it holds or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def tail(path, lines=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])
    except OSError:
        return ""


class Server:
    """A contender started with the samples' CLI contract."""

    def __init__(self, argv, cpu, logdir, name):
        self.name = name
        self.out_path = os.path.join(logdir, f"{name}.out")
        self.err_path = os.path.join(logdir, f"{name}.err")
        # Files, not pipes: a server that logs a line per reset connection
        # must never block on a pipe nobody reads.
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = spawn(argv + ["--host", HOST, "--port", "0"], cpu,
                              stdout=out, stderr=err)
        self.pid = self.proc.pid
        try:
            self.port = self._wait_listening(deadline=time.monotonic() + 15)
        except BenchError:
            kill(self.proc)
            raise

    def _wait_listening(self, deadline):
        while time.monotonic() < deadline:
            with open(self.out_path, errors="replace") as f:
                m = LISTENING.search(f.read())
            if m:
                return int(m.group(2))
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} before "
                                 f"listening: {tail(self.err_path)}")
            time.sleep(0.02)
        raise BenchError(f"{self.name} printed no 'listening on HOST:PORT' within 15 s")

    def stop(self):
        """Stops the server; returns a note if it broke the exit contract."""
        if self.proc.poll() is not None:
            return f"{self.name} died during a run (status {self.proc.returncode})"
        status = kill(self.proc)
        if status != 0:
            return f"{self.name} exited with status {status} on SIGTERM, not 0"
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        note = self.stop()
        if note:
            NOTES.add(note)


NOTES = set()


# ---------------------------------------------------------------------------
# /proc readings


def read_proc(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:  # the process is gone
        raise BenchError(f"cannot read {path}: {e.strerror}") from None


def cpu_ticks(pid):
    """(utime, stime) of pid in clock ticks, all threads included."""
    fields = read_proc(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def machine_ticks():
    """(busy, total) clock ticks of all CPUs together, from /proc/stat.
    Stolen time counts as busy: the hypervisor gave that time to another guest."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def snapshot(server_pid, loadgen_pid):
    """Everything sampled at a window boundary: the server's (user, system)
    ticks, and the ticks that neither the server, the load generator nor
    this script spent, to tell a quiet machine from a shared one."""
    server = cpu_ticks(server_pid)
    ours = sum(server) + sum(cpu_ticks(loadgen_pid)) + sum(cpu_ticks(os.getpid()))
    busy, total = machine_ticks()
    return server, busy - ours, total


def rss_bytes(pid):
    return int(read_proc(f"/proc/{pid}/statm").split()[1]) * PAGE_SIZE


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError as e:
        raise BenchError(f"cannot list /proc/{pid}/fd: {e.strerror}") from None


# ---------------------------------------------------------------------------
# The load generator


def loadgen_argv(cfg, port, load, duration, warmup):
    return [os.path.join(cfg.build, "tests/bench/loadgen"), "--host", HOST, "--port", str(port),
            "--conns", str(load.conns), "--size", str(load.size), "--pipeline",
            str(load.pipeline), "--idle", str(load.idle), "--duration", str(duration),
            "--warmup", str(warmup), "--connect-timeout", "30", "--threads", str(load.threads),
            "--lines", "1" if load.lines else "0"]


def run_loadgen(argv, cpu, server_pid, timeout):
    """Runs loadgen to completion; samples the server's CPU time when loadgen
    says the measured window starts and ends. Returns (result, cpu delta)."""
    proc = spawn(argv, cpu, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    lines = {out_fd: [], err_fd: []}
    partial = {fd: b"" for fd in lines}
    marks = {}
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    for fd in lines:
        sel.register(fd, selectors.EVENT_READ)
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"loadgen still running after {timeout:.0f} s")
            for key, _ in sel.select(timeout=min(left, 1.0)):
                # Raw reads, not readline(): a buffered reader could sit on a
                # marker that select() no longer reports, and the CPU sample
                # must be taken the moment the marker arrives.
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                *done, partial[key.fd] = (partial[key.fd] + chunk).split(b"\n")
                for line in done:
                    text = line.decode(errors="replace")
                    lines[key.fd].append(text)
                    if text in ("loadgen: measuring", "loadgen: done"):
                        marks[text.split()[1]] = snapshot(server_pid, proc.pid)
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        sel.close()
        kill(proc)
        proc.stdout.close()
        proc.stderr.close()
    return parse_loadgen(lines[out_fd], lines[err_fd], status, marks)


def parse_loadgen(out, err, status, marks):
    markers = {f"loadgen: {m}" for m in ("connected", "measuring", "done")}
    errors = " | ".join(line for line in err if line not in markers)
    if status != 0 or not out:
        raise BenchError(f"loadgen exited with {status}: {errors or 'no output'}")
    result = json.loads(out[-1])
    if "measuring" not in marks or "done" not in marks:
        raise BenchError("loadgen never reported its measured window")
    (u0, s0), other0, total0 = marks["measuring"]
    (u1, s1), other1, total1 = marks["done"]
    result["other_cpu"] = max(0, other1 - other0) / max(1, total1 - total0)
    return result, (u1 - u0, s1 - s0)


# ---------------------------------------------------------------------------
# Section 1: echo throughput, latency and CPU per message


@dataclass
class Sample:
    msgs_per_s: float
    p99_us: float
    msgs: int
    user_ticks: int
    sys_ticks: int
    other_cpu: float  # share of the machine used by other processes meanwhile


@dataclass
class Row:
    samples: dict = field(default_factory=dict)  # round -> Sample
    failures: list = field(default_factory=list)


def measure(cfg, contender, load, logdir, cpus=None):
    """One fresh server under one load. cpus: (server, client) CPU lists for
    taskset, by default the pinned pair (cfg.server_cpu, cfg.client_cpu)."""
    server_cpu, client_cpu = cpus or (cfg.server_cpu, cfg.client_cpu)
    cmd = contender.command(cfg.build, cfg.python)
    with Server(cmd, server_cpu, logdir, contender.name) as server:
        warmup = cfg.warmup + load.settle
        argv = loadgen_argv(cfg, server.port, load, cfg.duration, warmup)
        result, (user, system) = run_loadgen(argv, client_cpu, server.pid,
                                             timeout=cfg.duration + warmup + 90)
    if result["msgs"] == 0:
        raise BenchError("no message was echoed in the measured window")
    return Sample(result["msgs_per_s"], result["p99_us"], result["msgs"], user, system,
                  result["other_cpu"])


def prime(cfg, contender, logdir, cpus=None, lines=False):
    """One unrecorded run first: a virtual CPU that has been idle runs the
    first second of load markedly slower, which would penalise whichever
    contender happens to go first."""
    progress("priming the machine")
    try:
        measure(cfg, contender, Load("prime", "prime", 50, 64, 1, lines=lines), logdir, cpus)
    except BenchError as e:
        NOTES.add(f"priming run failed: {e}")


def throughput_section(cfg, contenders, loads, logdir, rounds=None, cpus=None):
    """rows[(contender, load key)] over interleaved rounds (cfg.rounds by
    default); cpus as for measure()."""
    rounds = rounds or cfg.rounds
    rows = {(c.name, l.key): Row() for c in contenders for l in loads}
    prime(cfg, contenders[0], logdir, cpus, lines=any(l.lines for l in loads))
    for rnd in range(rounds):
        # Rotating the order each round spreads any drift (thermal, page
        # cache, a noisy neighbour) evenly over the contenders.
        order = contenders[rnd % len(contenders):] + contenders[:rnd % len(contenders)]
        for load in loads:
            for c in order:
                progress(f"round {rnd + 1}/{rounds}: {c.name:<17} {load.label}")
                row = rows[(c.name, load.key)]
                try:
                    row.samples[rnd] = measure(cfg, c, load, logdir, cpus)
                except BenchError as e:
                    row.failures.append(f"round {rnd + 1}: {e}")
    progress("")
    return rows


def paired_ratio(rows, a, b, attr="msgs_per_s"):
    """Median over rounds of a/b, pairing the samples of the same round."""
    ra, rb = rows.get(a), rows.get(b)
    if not ra or not rb:
        return None
    ratios = [getattr(ra.samples[r], attr) / getattr(rb.samples[r], attr)
              for r in ra.samples if r in rb.samples and getattr(rb.samples[r], attr) > 0]
    return statistics.median(ratios) if ratios else None


def summarize(rows, contenders, loads, baseline=BASELINE):
    table = []
    for c in contenders:
        for l in loads:
            row = rows[(c.name, l.key)]
            entry = {"contender": c.name, "load": l.label, "key": l.key,
                     "rounds": len(row.samples), "failures": row.failures}
            if row.samples:
                s = list(row.samples.values())
                msgs = sum(x.msgs for x in s)
                entry.update(
                    msgs_per_s=statistics.median(x.msgs_per_s for x in s),
                    p99_us=statistics.median(x.p99_us for x in s),
                    ratio=paired_ratio(rows, (c.name, l.key), (baseline, l.key)),
                    p99_ratio=paired_ratio(rows, (c.name, l.key), (baseline, l.key), "p99_us"),
                    # Pooled over rounds, not a median: the kernel samples
                    # user/system time per tick, so the small user share of a
                    # single short window is noisy.
                    user_us=sum(x.user_ticks for x in s) * 1e6 / CLK_TCK / msgs,
                    sys_us=sum(x.sys_ticks for x in s) * 1e6 / CLK_TCK / msgs,
                    idle_self=(paired_ratio(rows, (c.name, "idle"), (c.name, "pingpong"))
                               if l.key == "idle" else None),
                    other_cpu=[round(x.other_cpu, 3) for x in s])
            table.append(entry)
    return table


def fmt(value, spec, width):
    return f"{'-' if value is None else format(value, spec):>{width}}"


def print_throughput(table):
    print(f"{'contender':<17} {'load':<26} {'msgs/s':>10} {'p99 us':>8} {'ratio':>6} "
          f"{'p99 x':>6} {'user us/msg':>11} {'sys us/msg':>10} {'idle/self':>9}")
    for e in table:
        head = f"{e['contender']:<17} {e['load']:<26}"
        if "msgs_per_s" not in e:
            print(f"{head} {'FAILED':>10}  ({e['failures'][0] if e['failures'] else ''})")
            continue
        print(f"{head} {e['msgs_per_s']:>10,.0f} {e['p99_us']:>8.0f} "
              f"{fmt(e['ratio'], '.2f', 6)} {fmt(e['p99_ratio'], '.2f', 6)} "
              f"{e['user_us']:>11.2f} {e['sys_us']:>10.2f} {fmt(e['idle_self'], '.2f', 9)}")


# ---------------------------------------------------------------------------
# Lines section: AsyncChat against libevent's evbuffer_readln, line echo


def line_loads():
    return [Load("pingpong", "64 B lines, ping-pong", 50, 64, 1, lines=True),
            Load("pipelined", "64 B lines, 16 in flight", 50, 64, 16, lines=True)]


def lines_section(cfg, contenders, logdir):
    """The throughput machinery on line-delimited messages; every ratio is
    against raw_line_echo in the same round."""
    loads = [l for l in line_loads() if not cfg.load or l.key in cfg.load.split(",")]
    rows = throughput_section(cfg, contenders, loads, logdir)
    return summarize(rows, contenders, loads, LINE_BASELINE)


# ---------------------------------------------------------------------------
# Idle curve: ping-pong on 50 connections with 0 .. 10,000 idle ones


def idle_curve_section(cfg, contenders, logdir):
    """Each contender under 50-connection ping-pong with each count of idle
    connections of cfg.idle_steps, interleaved rounds, a fresh server per
    run. vs_zero is the median of per-round ratios to the same server with
    0 idle (the first step), vs_raw the same against raw_libevent."""
    steps = cfg.idle_steps
    loads = [Load(f"idle{n}", f"ping-pong + {n:,} idle", 50, 64, 1, n,
                  settle=1.0 if n else 0.0) for n in steps]
    short = copy.copy(cfg)
    short.duration = cfg.curve_duration
    rows = throughput_section(short, contenders, loads, logdir, cfg.curve_rounds)
    out = []
    for c in contenders:
        entry = {"contender": c.name, "msgs_per_s": [], "p99_us": [], "vs_zero": [],
                 "vs_raw": [], "failures": [], "other_cpu": []}
        for l in loads:
            row = rows[(c.name, l.key)]
            entry["failures"] += [f"{l.idle:,} idle, {f}" for f in row.failures]
            samples = list(row.samples.values())
            entry["other_cpu"] += [round(x.other_cpu, 3) for x in samples]
            entry["msgs_per_s"].append(
                statistics.median(x.msgs_per_s for x in samples) if samples else None)
            entry["p99_us"].append(statistics.median(x.p99_us for x in samples) if samples
                                   else None)
            entry["vs_zero"].append(paired_ratio(rows, (c.name, l.key), (c.name, loads[0].key)))
            entry["vs_raw"].append(paired_ratio(rows, (c.name, l.key), (BASELINE, l.key)))
        out.append(entry)
    return {"steps": steps, "rounds": cfg.curve_rounds, "duration": cfg.curve_duration,
            "rows": out}


def print_idle_curve(report):
    steps = report["steps"]
    print(f"idle curve: 50 x 64 B ping-pong with N idle connections, {report['rounds']} rounds "
          f"x {report['duration']} s")
    print(f"{'contender':<17} {'figure':<15}" + "".join(f"{f'N={n:,}':>10}" for n in steps))
    for r in report["rows"]:
        for label, key, spec in (("msgs/s", "msgs_per_s", ",.0f"), ("p99 us", "p99_us", ",.0f"),
                                 (f"x N={steps[0]:,}", "vs_zero", ".2f"),
                                 ("x raw_libevent", "vs_raw", ".2f")):
            if key == "vs_raw" and r["contender"] == BASELINE:
                continue
            print(f"{r['contender'] if key == 'msgs_per_s' else '':<17} {label:<15}"
                  + "".join(fmt(v, spec, 10) for v in r[key]))


# ---------------------------------------------------------------------------
# Section 2: resp_server against redis-server under redis-benchmark


def free_port():
    """An ephemeral port for redis-server, which cannot pick its own and say
    which. Another process could take it before redis binds: unlikely on a
    benchmark machine, and it would show as a start-up failure, not a figure."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_redis(cfg, logdir):
    port = free_port()
    log = open(os.path.join(logdir, "redis-server.log"), "w")
    proc = spawn(["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                  "--appendonly", "no", "--daemonize", "no"], cfg.server_cpu,
                 stdout=log, stderr=subprocess.STDOUT)
    log.close()
    if not wait_for(lambda: proc.poll() is not None or accepts(port), timeout=15):
        kill(proc)
        raise BenchError("redis-server did not accept connections within 15 s")
    if proc.poll() is not None:
        kill(proc)
        raise BenchError(f"redis-server exited with {proc.returncode}: {tail(log.name)}")
    return proc, port


def accepts(port):
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False


# "MSET (10 keys): 81234.56 requests per second, p50=..." is reported as MSET.
REQUESTS = re.compile(r"^([A-Z_]+)(?: \(\d+ keys\))?: ([\d.]+) requests per second", re.M)
# The commands of issue 14's table; -t ping runs PING_INLINE and PING_MBULK.
REDIS_TESTS = "ping,set,get,incr,mset"
SCALING_REDIS_TESTS = "ping,set,get"


def redis_benchmark(port, pipeline, requests, cpu, tests=REDIS_TESTS):
    # Never with --threads: redis-benchmark 7.0's threaded mode rounds each
    # test's elapsed time up to a timer tick (here every test of a 20,000
    # request run "took" 0.502 s), so its requests/s are quantised.
    argv = ["redis-benchmark", "-h", HOST, "-p", str(port), "-t", tests, "-c", "50",
            "-n", str(requests), "-P", str(pipeline), "-q"]
    proc = spawn(argv, cpu, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        raise BenchError("redis-benchmark still running after 120 s") from None
    finally:
        kill(proc)
    text = out.decode(errors="replace").replace("\r", "\n")
    found = {m.group(1): float(m.group(2)) for m in REQUESTS.finditer(text)}
    if not found:
        raise BenchError(f"redis-benchmark reported nothing: {text.strip()[-200:]}")
    return found


def redis_section(cfg, logdir):
    resp = find_binary(cfg.build, RESP_SERVER)
    if not resp:
        return None, "resp_server not built: skipped the redis-benchmark section"
    if not (shutil.which("redis-server") and shutil.which("redis-benchmark")):
        return None, "redis-server or redis-benchmark not installed: skipped"
    redis_proc, redis_port = start_redis(cfg, logdir)
    try:
        with Server([resp], cfg.server_cpu, logdir, "resp_server") as ours:
            targets = [("redis-server", redis_port), ("resp_server", ours.port)]
            results = redis_rounds(cfg, targets, cfg.client_cpu)
    finally:
        kill(redis_proc)
        progress("")
    return results, None


def redis_rounds(cfg, targets, cpu, tests=REDIS_TESTS):
    """redis-benchmark (tests at -P 1 and -P 16, 50 clients) against
    each (name, port) of targets for cfg.redis_rounds rounds, the targets'
    order rotating each round; the client runs on cpu.
    Returns {(name, pipeline, test): [requests/s, one per round]}."""
    results = {}
    for rnd in range(cfg.redis_rounds):
        order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
        for pipeline in (1, 16):
            n = cfg.redis_requests * (5 if pipeline > 1 else 1)
            for name, port in order:
                progress(f"redis round {rnd + 1}: {name} -P {pipeline}")
                for test, rps in redis_benchmark(port, pipeline, n, cpu, tests).items():
                    results.setdefault((name, pipeline, test), []).append(rps)
    return results


def redis_tests(results):
    """The tests redis-benchmark reported, in its own order."""
    known = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET"]
    return sorted({t for (_, _, t) in results},
                  key=lambda t: (known.index(t) if t in known else len(known), t))


def print_redis(results):
    tests = redis_tests(results)
    print(f"{'test':<12} {'-P':>3} {'redis-server req/s':>19} {'resp_server req/s':>18} "
          f"{'ratio':>6}")
    rows = []
    for pipeline in (1, 16):
        for test in tests:
            theirs = results.get(("redis-server", pipeline, test))
            ours = results.get(("resp_server", pipeline, test))
            ratio = None
            if theirs and ours:
                ratio = statistics.median(o / t for o, t in zip(ours, theirs))
            rows.append({"test": test, "pipeline": pipeline, "ratio": ratio,
                         "redis": theirs and statistics.median(theirs),
                         "resp": ours and statistics.median(ours)})
            print(f"{test:<12} {pipeline:>3} {fmt(rows[-1]['redis'], ',.0f', 19)} "
                  f"{fmt(rows[-1]['resp'], ',.0f', 18)} {fmt(ratio, '.2f', 6)}")
    return rows


# ---------------------------------------------------------------------------
# HTTP section: samples/http_server against nginx under wrk


HTTP_FILES = (("1k.bin", 1024), ("1m.bin", 1024 * 1024))
NGINX_CONF = """\
# Written by tests/bench/run.py for one run; nothing outside {tmp} is used.
daemon off;
master_process on;
worker_processes 1;
{user}pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {host}:{port};
        root {root};
    }}
}}
"""


def make_docroot():
    """A world-readable directory with the served files (nginx's worker runs
    as nobody when run.py is root, and must read them)."""
    root = tempfile.mkdtemp(prefix="asyncore-bench-www-")
    os.chmod(root, 0o755)
    for name, size in HTTP_FILES:
        path = os.path.join(root, name)
        with open(path, "wb") as f:
            f.write(bytes((i * 7 + 3) & 0xFF for i in range(size)))
        os.chmod(path, 0o644)
    return root


def nginx_user_line():
    """nginx's master switches its workers to `user` only when it runs as
    root; then nobody, whatever its group is called here."""
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd
    try:
        nobody = pwd.getpwnam("nobody")
        return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};\n"
    except KeyError:
        return ""


class Nginx:
    """nginx with a configuration written for this run: one worker, in the
    foreground (daemon off), pid, logs and temp paths in a temp directory."""

    def __init__(self, cpu, root, logdir):
        self.tmp = tempfile.mkdtemp(prefix="nginx-", dir=logdir)
        os.chmod(self.tmp, 0o755)
        self.port = free_port()
        conf = os.path.join(self.tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=self.tmp, user=nginx_user_line(), host=HOST,
                                      port=self.port, root=root))
        self.err_path = os.path.join(self.tmp, "stderr")
        with open(self.err_path, "w") as err:
            self.proc = spawn(["nginx", "-p", self.tmp, "-e", os.path.join(self.tmp, "error.log"),
                               "-c", conf], cpu, stdout=err, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        if not wait_for(lambda: self.proc.poll() is not None or accepts(self.port), timeout=15):
            kill(self.proc)
            raise BenchError("nginx did not accept connections within 15 s")
        if self.proc.poll() is not None:
            why = tail(self.err_path) or tail(os.path.join(self.tmp, "error.log"))
            kill(self.proc)
            raise BenchError(f"nginx exited with {self.proc.returncode}: {why}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        kill(self.proc)


WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
WRK_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
WRK_BAD = re.compile(r"^\s*(Non-2xx or 3xx responses: \d+|Socket errors: .*)$", re.M)


def run_wrk(port, path, duration, cpu):
    """wrk -c 50 (one thread) for whole seconds; (requests/s, p99 us)."""
    argv = ["wrk", "-t", "1", "-c", "50", "-d", f"{duration}s", "--timeout", "5s", "--latency",
            f"http://{HOST}:{port}/{path}"]
    proc = spawn(argv, cpu, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk still running after {duration + 60} s") from None
    finally:
        kill(proc)
    text = out.decode(errors="replace")
    rps, p99, bad = WRK_RPS.search(text), WRK_P99.search(text), WRK_BAD.search(text)
    if proc.returncode != 0 or not rps or not p99:
        raise BenchError(f"wrk exited with {proc.returncode}: {text.strip()[-200:]}")
    if bad:
        raise BenchError(f"wrk: {bad.group(1).strip()}")
    scale = {"us": 1.0, "ms": 1e3, "s": 1e6}[p99.group(2)]
    return float(rps.group(1)), float(p99.group(1)) * scale


def check_files(port, root):
    """One plain GET per file, compared with the file: a server answering
    wrong bodies fast must not make the table."""
    for name, _ in HTTP_FILES:
        with open(os.path.join(root, name), "rb") as f:
            want = f.read()
        with socket.create_connection((HOST, port), timeout=10) as s:
            s.sendall(f"GET /{name} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
                      .encode())
            data = b""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or body != want:
            raise BenchError(f"GET /{name} did not return the file ({head[:40]!r}, "
                             f"{len(body)} of {len(want)} bytes)")


def http_section(cfg, logdir):
    """nginx and http_server, a fresh server per run, each file under wrk
    -c 50 in interleaved rounds (order rotating); ratios are medians of
    per-round http_server/nginx pairs."""
    ours = find_binary(cfg.build, HTTP_SERVER)
    if not ours:
        return None, "http_server not built: skipped the HTTP section"
    if not (shutil.which("nginx") and shutil.which("wrk")):
        return None, "nginx or wrk not installed (./dev bench installs nginx-light, wrk): skipped"
    root = make_docroot()
    duration = max(1, round(cfg.duration))
    names = ("nginx", "http_server")
    samples = {}  # (server, file) -> {round: (rps, p99)}
    failures = []
    try:
        for rnd in range(cfg.rounds):
            order = names[rnd % 2:] + names[:rnd % 2]
            for name, _ in HTTP_FILES:
                for server in order:
                    progress(f"http round {rnd + 1}/{cfg.rounds}: {server} /{name}")
                    try:
                        if server == "nginx":
                            srv = Nginx(cfg.server_cpu, root, logdir)
                        else:
                            srv = Server([ours, "--root", root], cfg.server_cpu, logdir,
                                         "http_server")
                        with srv:
                            if rnd == 0:
                                check_files(srv.port, root)
                            samples.setdefault((server, name), {})[rnd] = run_wrk(
                                srv.port, name, duration, cfg.client_cpu)
                    except BenchError as e:
                        failures.append(f"{server} /{name}, round {rnd + 1}: {e}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        progress("")
    rows = []
    for name, size in HTTP_FILES:
        theirs, mine = samples.get(("nginx", name), {}), samples.get(("http_server", name), {})
        paired = [r for r in mine if r in theirs]
        row = {"file": name, "bytes": size, "rounds": len(paired), "duration": duration}
        for key, runs in (("nginx", theirs), ("http_server", mine)):
            row[f"{key}_rps"] = statistics.median(v[0] for v in runs.values()) if runs else None
            row[f"{key}_p99_us"] = statistics.median(v[1] for v in runs.values()) if runs else None
        row["ratio"] = statistics.median(mine[r][0] / theirs[r][0] for r in paired) \
            if paired else None
        row["p99_ratio"] = statistics.median(mine[r][1] / theirs[r][1] for r in paired) \
            if paired else None
        rows.append(row)
    return {"rows": rows, "failures": failures, "duration": duration}, None


def print_http(report):
    print(f"http: wrk -t 1 -c 50 --latency, {report['duration']} s per run; ratio = "
          "http_server / nginx, paired per round")
    print(f"{'file':<8} {'nginx req/s':>12} {'ours req/s':>11} {'ratio':>6} "
          f"{'nginx p99 us':>13} {'ours p99 us':>12} {'p99 x':>6}")
    for r in report["rows"]:
        print(f"{r['file']:<8} {fmt(r['nginx_rps'], ',.0f', 12)} "
              f"{fmt(r['http_server_rps'], ',.0f', 11)} {fmt(r['ratio'], '.2f', 6)} "
              f"{fmt(r['nginx_p99_us'], ',.0f', 13)} {fmt(r['http_server_p99_us'], ',.0f', 12)} "
              f"{fmt(r['p99_ratio'], '.2f', 6)}")


# ---------------------------------------------------------------------------
# Section 3: scaling with threads, one loop per thread (SO_REUSEPORT)


ECHO_SERVER = next(c for c in CONTENDERS if c.name == "echo_server")


def cpu_list(cpus):
    return ",".join(map(str, cpus))


def scaling_cpus(cfg, most):
    """((server, client) taskset CPU lists, one-line note) for the scaling
    runs. The client runs as many threads as the largest server, so pinning
    both apart takes twice that many CPUs; with fewer, everything shares."""
    cpus = cfg.all_cpus
    if len(cpus) >= 2 * most:
        server, client = cpu_list(cpus[most:]), cpu_list(cpus[:most])
        return (server, client), f"server on CPUs {server}, load generator on CPUs {client}"
    every = cpu_list(cpus)
    return (every, every), (
        f"not pinned: {most} server threads and a {most}-thread load generator would need "
        f"{2 * most} CPUs and there are {len(cpus)}, so all share them; the load generator "
        f"competes with the server's threads, which makes the ratios lower bounds")


def scaling_row(server, load, unit, threads, values, ratios, failures=()):
    return {"server": server, "load": load, "unit": unit, "values": dict(zip(threads, values)),
            "ratios": dict(zip(threads[1:], ratios)), "failures": list(failures)}


def scaling_echo(cfg, threads, cpus, logdir):
    """echo_server --threads N under the ping-pong and pipelined loads,
    through the throughput machinery: fresh server per run, interleaved
    rounds, ratios as medians of per-round pairs."""
    servers = [Contender(f"echo_server-t{n}", ECHO_SERVER.binaries, about=ECHO_SERVER.about,
                         args=("--threads", str(n))) for n in threads]
    loads = [Load(l.key, l.label, l.conns, l.size, l.pipeline, threads=max(threads))
             for l in make_loads(0) if l.key in ("pingpong", "pipelined")]
    short = copy.copy(cfg)
    short.duration = cfg.scaling_duration
    rows = throughput_section(short, servers, loads, logdir, cfg.scaling_rounds, cpus)
    out = []
    for l in loads:
        per_n = [rows[(s.name, l.key)] for s in servers]
        values = [statistics.median(x.msgs_per_s for x in r.samples.values()) if r.samples
                  else None for r in per_n]
        ratios = [paired_ratio(rows, (s.name, l.key), (servers[0].name, l.key))
                  for s in servers[1:]]
        failures = [f"--threads {n}: {f}" for n, r in zip(threads, per_n) for f in r.failures]
        out.append(scaling_row("echo_server", l.label, "msgs/s", threads, values, ratios,
                               failures))
    return out


def scaling_resp(cfg, threads, cpus, logdir, resp):
    """resp_server --threads N under redis-benchmark, one server per N kept
    running while the others are measured, rounds interleaved. The client
    is single-threaded, as in the redis section (see redis_benchmark)."""
    server_cpu, client_cpu = cpus
    names = [f"resp_server-t{n}" for n in threads]
    with contextlib.ExitStack() as servers:
        targets = []
        for n, name in zip(threads, names):
            srv = servers.enter_context(Server([resp, "--threads", str(n)], server_cpu, logdir,
                                               name))
            targets.append((name, srv.port))
        results = redis_rounds(cfg, targets, client_cpu, SCALING_REDIS_TESTS)
    out = []
    for pipeline in (1, 16):
        for test in redis_tests(results):
            runs = [results.get((name, pipeline, test)) for name in names]
            values = [r and statistics.median(r) for r in runs]
            ratios = [statistics.median(o / b for o, b in zip(r, runs[0]))
                      if r and runs[0] else None for r in runs[1:]]
            out.append(scaling_row("resp_server", f"{test} -P {pipeline}", "req/s", threads,
                                   values, ratios))
    return out


def scaling_section(cfg, logdir):
    threads = cfg.scaling_threads
    cpus, note = scaling_cpus(cfg, max(threads))
    report = {"threads": threads, "note": note, "rows": [], "rounds": cfg.scaling_rounds,
              "duration": cfg.scaling_duration}
    if find_binary(cfg.build, ECHO_SERVER.binaries):
        report["rows"] += scaling_echo(cfg, threads, cpus, logdir)
    else:
        NOTES.add("echo_server not built: no echo rows in the scaling section")
    resp = find_binary(cfg.build, RESP_SERVER)
    if not resp:
        NOTES.add("resp_server not built: no redis-benchmark rows in the scaling section")
    elif not shutil.which("redis-benchmark"):
        NOTES.add("redis-benchmark not installed: no resp_server rows in the scaling section")
    else:
        try:
            report["rows"] += scaling_resp(cfg, threads, cpus, logdir, resp)
        except BenchError as e:
            report["rows"].append(scaling_row("resp_server", "redis-benchmark", "req/s", threads,
                                              [None] * len(threads), [None] * len(threads[1:]),
                                              [str(e)]))
    progress("")
    return report


def print_scaling(report):
    threads = report["threads"]
    print(f"scaling, --threads N, {report['rounds']} rounds x {report['duration']} s per echo "
          f"run: {report['note']}")
    print(f"{'server':<12} {'load':<26} {'unit':<6}"
          + "".join(f"{f'N={n}':>11}" for n in threads)
          + "".join(f"{f'N={n}/N={threads[0]}':>10}" for n in threads[1:]))
    for r in report["rows"]:
        print(f"{r['server']:<12} {r['load']:<26} {r['unit']:<6}"
              + "".join(fmt(r["values"][n], ",.0f", 11) for n in threads)
              + "".join(fmt(r["ratios"][n], ".2f", 10) for n in threads[1:])
              + (f"  ({r['failures'][0]})" if r["failures"] else ""))


# ---------------------------------------------------------------------------
# Section 4: memory per idle connection and per suspended Task


def settle_rss(pid, timeout=3.0):
    """RSS once it stops growing (two equal readings 100 ms apart)."""
    last = rss_bytes(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = rss_bytes(pid)
        if now == last:
            break
        last = now
    return last


def closed_since(pid, fds, timeout=5.0):
    """Waits (up to timeout) until pid holds no more descriptors than
    `fds`, counted before a load: the load's connections are reset when it
    exits, but a busy server may take a moment to see that, and a count taken
    meanwhile would make the idle connections look one short forever."""
    wait_for(lambda: fd_count(pid) <= fds, timeout)
    return fd_count(pid)


def memory_one(cfg, contender, logdir):
    cmd = contender.command(cfg.build, cfg.python)
    lg_bin = os.path.join(cfg.build, "tests/bench/loadgen")
    with Server(cmd, cfg.server_cpu, logdir, contender.name) as server:
        start_fds = fd_count(server.pid)
        # One short exchange first, so the baseline already holds whatever
        # the first connection initialises lazily (buffers, pools, code).
        warm = Load("warm", "warm", 1, 64, 1, lines=contender.lines)
        run_loadgen(loadgen_argv(cfg, server.port, warm, 0.2, 0), cfg.client_cpu, server.pid, 30)
        base_fds = closed_since(server.pid, start_fds)
        base_rss = settle_rss(server.pid)
        hold = spawn([lg_bin, "--host", HOST, "--port", str(server.port), "--conns", "0",
                      "--idle", str(cfg.idle), "--duration", "120", "--warmup", "0",
                      "--connect-timeout", "30"], cfg.client_cpu,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not wait_for(lambda: fd_count(server.pid) >= base_fds + cfg.idle or
                            hold.poll() is not None, timeout=60):
                raise BenchError(f"server did not accept {cfg.idle} connections in 60 s")
            if hold.poll() is not None:
                raise BenchError(f"loadgen exited with {hold.returncode} while connecting")
            rss = settle_rss(server.pid)
        finally:
            kill(hold)
    return {"contender": contender.name, "base_rss": base_rss, "rss": rss,
            "per_conn": (rss - base_rss) / cfg.idle, "held": f"{cfg.idle:,} idle connections"}


TASK_MEMORY = ("tests/bench/task_memory",)
TASK_MEMORY_LINE = re.compile(
    r"^tasks (\d+) rss_before (\d+) rss_after (\d+) per_task ([\d.-]+)$", re.M)


def task_memory_row(cfg):
    """RSS per Task suspended in a mailbox receive, from task_memory, which
    exits non-zero unless every task suspended and then ended as terminated."""
    binary = find_binary(cfg.build, TASK_MEMORY)
    if not binary:
        NOTES.add(f"{TASK_MEMORY[0]} not built: no row for memory per suspended Task")
        return None
    row = {"contender": "task_memory", "held": f"{cfg.tasks:,} Tasks suspended in receive()"}
    proc = spawn([binary, "--tasks", str(cfg.tasks)], cfg.server_cpu, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        return dict(row, error="task_memory still running after 60 s")
    finally:
        kill(proc)
    m = TASK_MEMORY_LINE.search(out.decode(errors="replace"))
    if proc.returncode != 0 or not m:
        why = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return dict(row, error=f"task_memory exited with {proc.returncode}: {why[0]}")
    return dict(row, base_rss=int(m.group(2)), rss=int(m.group(3)), per_task=float(m.group(4)))


def memory_section(cfg, contenders, logdir):
    rows = []
    for c in contenders:
        progress(f"memory: {c.name} with {cfg.idle:,} idle connections")
        try:
            rows.append(memory_one(cfg, c, logdir))
        except BenchError as e:
            rows.append({"contender": c.name, "error": str(e)})
    progress(f"memory: task_memory with {cfg.tasks:,} suspended Tasks")
    task_row = task_memory_row(cfg)
    if task_row:
        rows.append(task_row)
    progress("")
    return rows


def print_memory(rows):
    print(f"{'row':<17} {'baseline RSS':>13} {'RSS holding':>13} {'bytes each':>11}  held")
    for r in rows:
        if "error" in r:
            print(f"{r['contender']:<17} {'FAILED':>13}  ({r['error']})")
            continue
        each = r["per_conn"] if "per_conn" in r else r["per_task"]
        print(f"{r['contender']:<17} {r['base_rss'] / 2**20:>9.1f} MiB "
              f"{r['rss'] / 2**20:>9.1f} MiB {each:>11,.0f}  {r['held']}")


# ---------------------------------------------------------------------------
# Idle scale (--idle-scale): idle connections 1k .. the limits, per step the
# server's RSS and the kernel's socket memory per connection, the time to
# open them, and what they cost the active connections.

IDLE_SCALE_STEPS = (1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000, 1000000)
SERVER_FD_MARGIN = 500  # the server's own descriptors and the 50 active connections
CLIENT_FD_MARGIN = 1000  # per holder process: below its descriptor limit
# Of the ephemeral range, the share one source address opens: connect()
# looks for a free port among half the range first (one parity; the other
# is bind()'s), and past that half every connect() scans the first half in
# vain (opening 19,000 from one address took 10 s, 10,000 took 0.8 s).
PORT_SHARE = 0.45
MEMORY_SHARE = 0.5  # of MemAvailable at the start that the connections may take


def read_first_ints(path):
    """The integers on the first line of a /proc or /sys file, or None."""
    try:
        with open(path) as f:
            return [int(x) for x in f.readline().split()]
    except (OSError, ValueError):
        return None


def meminfo(field):
    """A /proc/meminfo field in bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def sockstat():
    """/proc/net/sockstat: all sockets in use, TCP sockets (in use and
    allocated) and the pages of TCP buffer memory, system-wide."""
    text = read_proc("/proc/net/sockstat")
    used = re.search(r"sockets: used (\d+)", text)
    tcp = re.search(r"TCP: inuse (\d+) orphan \d+ tw (\d+) alloc (\d+) mem (\d+)", text)
    return {"sockets_used": int(used.group(1)), "tcp_inuse": int(tcp.group(1)),
            "tcp_tw": int(tcp.group(2)), "tcp_alloc": int(tcp.group(3)),
            "tcp_mem_pages": int(tcp.group(4)), "slab": meminfo("Slab")}


def machine_limits():
    """Every limit that bounds how many idle connections this machine can
    hold, as read now; None where the kernel has no such knob (conntrack
    not loaded)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = hard if hard != resource.RLIM_INFINITY else 1 << 30
    ports = read_first_ints("/proc/sys/net/ipv4/ip_local_port_range") or [32768, 60999]
    file_nr = read_first_ints("/proc/sys/fs/file-nr") or [0, 0, 0]
    return {
        "nofile_hard": hard,
        "nr_open": (read_first_ints("/proc/sys/fs/nr_open") or [None])[0],
        "file_max": (read_first_ints("/proc/sys/fs/file-max") or [None])[0],
        "files_open": file_nr[0],
        "ephemeral_ports": ports[1] - ports[0] + 1,
        "port_range": ports,
        "somaxconn": (read_first_ints("/proc/sys/net/core/somaxconn") or [None])[0],
        "tcp_max_syn_backlog":
            (read_first_ints("/proc/sys/net/ipv4/tcp_max_syn_backlog") or [None])[0],
        "tcp_mem_pages": read_first_ints("/proc/sys/net/ipv4/tcp_mem"),
        "conntrack_max": (read_first_ints("/proc/sys/net/netfilter/nf_conntrack_max")
                          or [None])[0],
        "conntrack_count": (read_first_ints("/proc/sys/net/netfilter/nf_conntrack_count")
                            or [None])[0],
        "mem_available": meminfo("MemAvailable"),
        "page_size": PAGE_SIZE,
    }


def idle_cap(limits, per_conn_bytes):
    """(most idle connections this machine allows, the limit that says so,
    every limit's own bound)."""
    bounds = {}
    bounds["server descriptors (RLIMIT_NOFILE hard limit "
           f"{limits['nofile_hard']:,}, one server process)"] = \
        limits["nofile_hard"] - SERVER_FD_MARGIN
    if limits["file_max"]:
        # Both ends of each loopback connection are open files.
        bounds[f"fs.file-max {limits['file_max']:,} (two files per loopback connection)"] = \
            (limits["file_max"] - limits["files_open"]) // 2 - 1000
    if limits["conntrack_max"]:
        bounds[f"nf_conntrack_max {limits['conntrack_max']:,}"] = \
            int((limits["conntrack_max"] - (limits["conntrack_count"] or 0)) * 0.9)
    bounds[f"memory ({MEMORY_SHARE:.0%} of MemAvailable "
           f"{limits['mem_available'] / 2**30:.1f} GiB at {per_conn_bytes:,.0f} B "
           "per connection, both ends)"] = \
        int(limits["mem_available"] * MEMORY_SHARE / max(1.0, per_conn_bytes))
    name = min(bounds, key=bounds.get)
    return max(0, bounds[name]), name, bounds


def source_address(k):
    """The k-th holder's source address: 127.0.0.2, 127.0.0.3, ... across
    127.0.0.0/8, so no address runs out of ephemeral ports."""
    n = k + 2
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def hold_idle(cfg, port, count, limits, logdir):
    """Holder processes (loadgen --conns 0 --idle K) that together open
    `count` idle connections: each within its descriptor limit and within
    one source address's share of the ephemeral ports, each from its own
    address. Returns the processes and their stderr paths."""
    per_proc = min(limits["nofile_hard"] - CLIENT_FD_MARGIN,
                   int(limits["ephemeral_ports"] * PORT_SHARE))
    if per_proc < 1:
        raise BenchError("no room for a holder process: descriptor limit or port range too small")
    lg_bin = os.path.join(cfg.build, "tests/bench/loadgen")
    procs = []
    k = 0
    left = count
    while left > 0:
        n = min(per_proc, left)
        err = os.path.join(logdir, f"holder-{k}.err")
        with open(err, "w") as f:
            proc = spawn([lg_bin, "--host", HOST, "--port", str(port), "--conns", "0", "--idle",
                          str(n), "--duration", str(cfg.scale_hold), "--warmup", "0",
                          "--connect-timeout", "60", "--bind", source_address(k)],
                         cfg.client_cpu, stdout=subprocess.DEVNULL, stderr=f)
        procs.append((proc, err))
        left -= n
        k += 1
    return procs


def pingpong_once(cfg, port, pid, duration, warmup):
    """50 x 64 B ping-pong against a running server: msgs/s."""
    load = Load("pingpong", "ping-pong", 50, 64, 1)
    result, _ = run_loadgen(loadgen_argv(cfg, port, load, duration, warmup), cfg.client_cpu, pid,
                            timeout=duration + warmup + 60)
    return result["msgs_per_s"]


def idle_scale_one(cfg, contender, count, limits, logdir):
    """One step for one server: a fresh server, its ping-pong with 0 idle,
    then `count` idle connections opened and measured, then the ping-pong
    again with them held."""
    cmd = contender.command(cfg.build, cfg.python)
    row = {"contender": contender.name, "idle": count}
    with Server(cmd, cfg.server_cpu, logdir, contender.name) as server:
        start_fds = fd_count(server.pid)
        row["msgs_0"] = pingpong_once(cfg, server.port, server.pid, cfg.scale_duration,
                                      cfg.warmup)
        base_fds = closed_since(server.pid, start_fds)
        base_rss = settle_rss(server.pid)
        before = sockstat()
        holders = hold_idle(cfg, server.port, count, limits, logdir)
        try:
            start = time.monotonic()
            deadline = start + 60 + count / 500

            def ready():
                for proc, _ in holders:
                    if proc.poll() is not None:
                        raise BenchError(f"a holder exited with {proc.returncode} while "
                                         f"connecting: {tail(holders[0][1], 2)}")
                return fd_count(server.pid) >= base_fds + count

            while not ready():
                if time.monotonic() > deadline:
                    raise BenchError(f"server had {fd_count(server.pid) - base_fds:,} of "
                                     f"{count:,} connections after {deadline - start:.0f} s")
                time.sleep(0.02)
            row["connect_s"] = time.monotonic() - start
            # Right after a burst of connects the kernel's workers stay busy
            # for about a second: let them finish before anything is read.
            time.sleep(1.0)
            rss = settle_rss(server.pid)
            after = sockstat()
            row["msgs_n"] = pingpong_once(cfg, server.port, server.pid, cfg.scale_duration,
                                          cfg.warmup + 1.0)
        finally:
            for proc, _ in holders:
                kill(proc)
    row.update(
        user_per_conn=(rss - base_rss) / count,
        slab_per_conn=(after["slab"] - before["slab"]) / count,
        sockets_added=after["sockets_used"] - before["sockets_used"],
        tcp_mem_pages=after["tcp_mem_pages"] - before["tcp_mem_pages"],
        tcp_mem_pages_total=after["tcp_mem_pages"],
        active_ratio=row["msgs_n"] / row["msgs_0"] if row["msgs_0"] else None)
    return row


def idle_scale_section(cfg, contenders, logdir):
    limits = machine_limits()
    report = {"target": cfg.idle_max, "limits": limits, "rows": [], "steps": [],
              "stopped_by": None, "duration": cfg.scale_duration}
    steps = sorted({n for n in IDLE_SCALE_STEPS if n < cfg.idle_max} | {cfg.idle_max})
    for want in steps:
        # Memory per connection (user + kernel), the largest measured so
        # far; 16 KiB, more than any server here takes, before the first.
        measured = [r["user_per_conn"] + max(0.0, r["slab_per_conn"]) for r in report["rows"]
                    if "error" not in r]
        per_conn = max(measured) if measured else 16384.0
        cap, limit, bounds = idle_cap(machine_limits(), per_conn)
        count = min(want, cap)
        if count < want:
            report["stopped_by"] = (f"{limit}: at most {cap:,} idle connections, "
                                    f"{want:,} wanted")
        report["bounds"] = bounds
        if count <= (report["steps"][-1] if report["steps"] else 0):
            break
        report["steps"].append(count)
        for c in contenders:
            progress(f"idle scale: {c.name} with {count:,} idle connections")
            try:
                row = idle_scale_one(cfg, c, count, limits, logdir)
            except BenchError as e:
                row = {"contender": c.name, "idle": count, "error": str(e)}
            report["rows"].append(row)
        if report["stopped_by"]:
            break
    if not report["stopped_by"]:
        report["stopped_by"] = f"the target, --idle-max {cfg.idle_max:,}"
    progress("")
    return report


def print_idle_scale(report):
    lim = report["limits"]
    print(f"idle scale: up to --idle-max {report['target']:,}; stopped by {report['stopped_by']}")
    print(f"  limits: RLIMIT_NOFILE hard {lim['nofile_hard']:,}, fs.nr_open {lim['nr_open']}, "
          f"fs.file-max {lim['file_max']}, ephemeral ports {lim['ephemeral_ports']:,} "
          f"per source address, somaxconn {lim['somaxconn']}, nf_conntrack_max "
          f"{lim['conntrack_max'] if lim['conntrack_max'] else 'n/a (conntrack not loaded)'}, "
          f"tcp_mem {lim['tcp_mem_pages']} pages")
    print(f"{'contender':<17} {'idle':>7} {'connect s':>9} {'conn/s':>8} {'user B/conn':>11} "
          f"{'kernel B/conn':>13} {'sockets +':>9} {'TCP mem pg':>10} {'active x':>8}")
    for r in report["rows"]:
        head = f"{r['contender']:<17} {r['idle']:>7,}"
        if "error" in r:
            print(f"{head} FAILED ({r['error']})")
            continue
        print(f"{head} {r['connect_s']:>9.2f} {r['idle'] / r['connect_s']:>8,.0f} "
              f"{r['user_per_conn']:>11,.0f} {r['slab_per_conn']:>13,.0f} "
              f"{r['sockets_added']:>9,} {r['tcp_mem_pages']:>10,} "
              f"{fmt(r['active_ratio'], '.2f', 8)}")
    print("  kernel B/conn: growth of the kernel's slab (/proc/meminfo Slab) per connection, "
          "both loopback ends and the holders' epoll entries included; system-wide, so other "
          "processes' allocations show in it")


# ---------------------------------------------------------------------------
# Set-up and main


def progress(text):
    """One self-overwriting status line on a terminal; nothing otherwise."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{text}")
        sys.stderr.flush()


def find_python():
    """An interpreter that still has asyncore (removed in Python 3.12)."""
    for cand in [sys.executable, shutil.which("python3.11"), shutil.which("python3")]:
        if cand and subprocess.run([cand, "-W", "ignore", "-c", "import asyncore"],
                                   capture_output=True, timeout=30).returncode == 0:
            return cand
    return None


def pick_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        NOTES.add("fewer than two CPUs available: server and load generator are not pinned")
        return None, None
    # The load generator and this script share one core; the server has the
    # other to itself, so its CPU time is its own.
    return cpus[1], cpus[0]


def fit_idle(wanted, conns):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = (hard if hard != resource.RLIM_INFINITY else 1 << 20) - conns - 64
    if wanted > room:
        NOTES.add(f"RLIMIT_NOFILE hard limit is {hard}: idle connections cut to {room}")
        return room
    return wanted


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", required=True, help="meson build directory, e.g. build/release")
    p.add_argument("--only", default="", help="comma-separated contenders to run "
                   f"({BASELINE} always runs too: it is every ratio's reference)")
    p.add_argument("--load", default="", help="comma-separated loads: pingpong,pipelined,idle")
    p.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                   help=f"comma-separated, from {','.join(SECTIONS)} "
                   f"(default {','.join(DEFAULT_SECTIONS)})")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 4, --quick 2)")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 1.5)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run (default 0.5)")
    p.add_argument("--idle", type=int, default=10000, help="idle connections (default 10000)")
    p.add_argument("--tasks", type=int, default=10000,
                   help="suspended Tasks for the memory section (default 10000)")
    p.add_argument("--scaling-threads", default="1,2",
                   help="server thread counts for the scaling section (default 1,2)")
    p.add_argument("--idle-steps", default="0,1000,2000,5000,10000",
                   help="idle connection counts of the idlecurve section")
    p.add_argument("--idle-scale", action="store_true",
                   help="add the idlescale section (idle connections up to the limits)")
    p.add_argument("--idle-max", type=int, default=1000000,
                   help="idlescale's target; it stops earlier at the first limit it meets "
                   "(default 1000000)")
    p.add_argument("--charts", help="directory for the PNG and SVG charts (default: beside "
                   "the JSON, tests/bench/results/bench-TIMESTAMP/)")
    p.add_argument("--no-charts", action="store_true", help="do not draw charts")
    p.add_argument("--quick", action="store_true", help="a short sanity run (~30 s)")
    p.add_argument("--json", help="also write the results here "
                   "(default: tests/bench/results/bench-TIMESTAMP.json)")
    cfg = p.parse_args()
    try:
        cfg.scaling_threads = sorted({int(n) for n in cfg.scaling_threads.split(",")})
    except ValueError:
        p.error("--scaling-threads takes comma-separated numbers, e.g. 1,2")
    if cfg.scaling_threads[0] < 1 or cfg.tasks < 1:
        p.error("--scaling-threads and --tasks take positive numbers")
    try:
        cfg.idle_steps = sorted({int(n) for n in cfg.idle_steps.split(",")})
    except ValueError:
        p.error("--idle-steps takes comma-separated numbers, e.g. 0,1000,10000")
    if cfg.idle_steps[0] < 0 or cfg.idle_max < 1:
        p.error("--idle-steps and --idle-max take non-negative and positive numbers")
    # Fewer and shorter scaling runs than throughput runs by default: the
    # section measures four servers per round and should stay well under a
    # minute. An explicit --rounds or --duration applies to it as well.
    cfg.scaling_rounds = cfg.rounds or (2 if cfg.quick else 3)
    cfg.scaling_duration = cfg.duration or (0.5 if cfg.quick else 1.0)
    # The idle curve runs 5 loads per contender: as the scaling section.
    cfg.curve_rounds = cfg.scaling_rounds
    cfg.curve_duration = cfg.scaling_duration
    cfg.scale_duration = cfg.duration or (0.5 if cfg.quick else 1.0)
    cfg.scale_hold = 900  # seconds a holder of idle connections lives at most
    cfg.rounds = cfg.rounds or (2 if cfg.quick else 4)
    cfg.duration = cfg.duration or (0.5 if cfg.quick else 1.5)
    cfg.warmup = cfg.warmup if cfg.warmup is not None else (0.2 if cfg.quick else 0.5)
    cfg.redis_rounds = 1 if cfg.quick else 2
    cfg.redis_requests = 20000 if cfg.quick else 50000
    cfg.build = os.path.abspath(cfg.build)
    return cfg


def select_contenders(cfg, candidates=CONTENDERS, baseline=BASELINE):
    """The contenders of `candidates` to run: all, or those --only names
    plus the baseline; none when --only names none of them."""
    wanted = {n for n in cfg.only.split(",") if n}
    unknown = wanted - {c.name for c in CONTENDERS + LINE_CONTENDERS}
    if unknown:
        sys.exit(f"run.py: unknown contender(s): {', '.join(sorted(unknown))}")
    if wanted and not wanted & {c.name for c in candidates}:
        return []
    chosen = []
    for c in candidates:
        if wanted and c.name not in wanted and c.name != baseline:
            continue
        why = c.missing(cfg.build, cfg.python)
        if why:
            NOTES.add(f"skipped {c.name}: {why}")
        else:
            chosen.append(c)
    return chosen


def busy_share(seconds=1.0):
    """Share of the machine's CPU time in use while this script waits."""
    busy0, total0 = machine_ticks()
    time.sleep(seconds)
    busy1, total1 = machine_ticks()
    return (busy1 - busy0) / max(1, total1 - total0)


def machine_line():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} CPUs, Linux {os.uname().release}"


def main():
    cfg = parse_args()
    if not os.access(os.path.join(cfg.build, "tests/bench/loadgen"), os.X_OK):
        sys.exit(f"run.py: {cfg.build}/tests/bench/loadgen not found: build with -Dbench=true")
    cfg.python = find_python()
    cfg.all_cpus = sorted(os.sched_getaffinity(0))
    cfg.server_cpu, cfg.client_cpu = pick_cpus()
    if cfg.client_cpu is not None:
        os.sched_setaffinity(0, {cfg.client_cpu})
    cfg.idle = fit_idle(cfg.idle, 50)
    sections = set(cfg.sections.split(","))
    if cfg.idle_scale:
        sections.add("idlescale")
    unknown = sections - set(SECTIONS)
    if unknown:
        sys.exit(f"run.py: unknown section(s): {', '.join(sorted(unknown))}")
    contenders = select_contenders(cfg)
    line_contenders = select_contenders(cfg, LINE_CONTENDERS, LINE_BASELINE)
    curve_contenders = [c for c in contenders if c.name in IDLE_CURVE]
    cfg.idle_steps = sorted({fit_idle(n, 50) for n in cfg.idle_steps})
    loads = [l for l in make_loads(cfg.idle) if not cfg.load or l.key in cfg.load.split(",")]
    report = {"machine": machine_line(), "clk_tck": CLK_TCK,
              "date": time.strftime("%Y-%m-%d %H:%M"),
              "contenders": {c.name: c.about for c in contenders + line_contenders}, "config": {
        k: v for k, v in vars(cfg).items() if isinstance(v, (int, float, str, type(None)))}}
    failed = False
    logdir = tempfile.mkdtemp(prefix="asyncore-bench-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        print(f"machine: {report['machine']}; server on CPU {cfg.server_cpu}, load generator "
              f"on CPU {cfg.client_cpu}; {cfg.rounds} rounds x {cfg.duration} s "
              f"(+{cfg.warmup} s warm-up)", flush=True)
        report["busy_before"] = busy = busy_share()
        if busy > NOISY:
            print(f"warning: {busy:.0%} of the machine's CPU is already in use by other "
                  "processes; the figures will be noisy", flush=True)
        if "throughput" in sections and contenders:
            rows = throughput_section(cfg, contenders, loads, logdir)
            report["throughput"] = summarize(rows, contenders, loads)
            print()
            print_throughput(report["throughput"])
            failed |= any(e["failures"] for e in report["throughput"])
        if "lines" in sections and line_contenders:
            report["lines"] = lines_section(cfg, line_contenders, logdir)
            print()
            print_throughput(report["lines"])
            failed |= any(e["failures"] for e in report["lines"])
        if "redis" in sections:
            try:
                results, skipped = redis_section(cfg, logdir)
            except BenchError as e:
                results, skipped, failed = None, f"redis section failed: {e}", True
            if skipped:
                NOTES.add(skipped)
            if results:
                print()
                report["redis"] = print_redis(results)
        if "http" in sections:
            try:
                results, skipped = http_section(cfg, logdir)
            except BenchError as e:
                results, skipped, failed = None, f"http section failed: {e}", True
            if skipped:
                NOTES.add(skipped)
            if results:
                report["http"] = results
                print()
                print_http(results)
                failed |= bool(results["failures"])
        if "idlecurve" in sections and curve_contenders:
            report["idle_curve"] = idle_curve_section(cfg, curve_contenders, logdir)
            print()
            print_idle_curve(report["idle_curve"])
            failed |= any(r["failures"] for r in report["idle_curve"]["rows"])
        if "scaling" in sections:
            report["scaling"] = scaling_section(cfg, logdir)
            print()
            print_scaling(report["scaling"])
            failed |= any(r["failures"] for r in report["scaling"]["rows"])
        if "memory" in sections and contenders + line_contenders:
            report["memory"] = memory_section(cfg, contenders + line_contenders, logdir)
            print()
            print_memory(report["memory"])
            failed |= any("error" in r for r in report["memory"])
        if "idlescale" in sections and curve_contenders:
            report["idle_scale"] = idle_scale_section(cfg, curve_contenders, logdir)
            print()
            print_idle_scale(report["idle_scale"])
            failed |= any("error" in r for r in report["idle_scale"]["rows"])
    finally:
        kill_all()
    for e in report.get("throughput", []):
        for f in e["failures"]:
            NOTES.add(f"{e['contender']} / {e['load']}: {f}")
    for e in report.get("lines", []):
        for f in e["failures"]:
            NOTES.add(f"lines, {e['contender']} / {e['load']}: {f}")
    for f in report.get("http", {}).get("failures", []):
        NOTES.add(f"http, {f}")
    for r in report.get("idle_curve", {}).get("rows", []):
        for f in r["failures"]:
            NOTES.add(f"idle curve, {r['contender']}: {f}")
    for r in report.get("scaling", {}).get("rows", []):
        for f in r["failures"]:
            NOTES.add(f"scaling, {r['server']} / {r['load']}: {f}")
    note_noise(report.get("throughput", []) + report.get("lines", []) +
               report.get("idle_curve", {}).get("rows", []))
    report["notes"] = sorted(NOTES)
    if NOTES:
        print("\nnotes:")
        for n in sorted(NOTES):
            print(f"  - {n}")
    path = save(report, cfg.json)
    shutil.rmtree(logdir, ignore_errors=True)
    if not cfg.no_charts:
        draw_charts(path, cfg.charts or os.path.splitext(path)[0])
    return 1 if failed else 0


def draw_charts(json_path, outdir):
    """charts.py on this run's JSON; a missing matplotlib is a note, not a
    failure (./dev bench installs python3-matplotlib)."""
    proc = subprocess.run([sys.executable, os.path.join(HERE, "charts.py"), json_path, outdir],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        print(proc.stdout.strip())
    else:
        print(f"charts not drawn: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")


def note_noise(table):
    shares = [x for e in table for x in e.get("other_cpu", [])]
    noisy = [x for x in shares if x > NOISY]
    if noisy:
        NOTES.add(f"{len(noisy)} of {len(shares)} runs shared the machine: other processes or "
                  f"the hypervisor took up to {max(noisy):.0%} of all CPU time during the "
                  "measured window; those figures are noisy, rerun on a quiet machine")


def save(report, path):
    if not path:
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        path = os.path.join(HERE, "results", time.strftime("bench-%Y%m%d-%H%M%S.json"))
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nresults: {path}")
    return path


if __name__ == "__main__":
    sys.exit(main())
