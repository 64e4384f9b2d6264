"""Bad input (issue 11 section 5): the machinery every sample server's
stress test shares.

A run starts the server, on a CPU of its own, and a decoy instance of it
beside the clients, then repeats rounds of three phases: quiet (only the
good clients), decoy (the bad clients, in separate processes so that they
do not share the good clients' interpreter lock, aimed at the decoy) and
bad (the same bad clients aimed at the server).
Good clients make requests in a loop and time each one; any error in a good
client fails the run. Bad clients draw a case (random bytes, an oversized
line, an absurd length, a protocol-violating sequence, ...) and check what
the server does with it: each case has an expectation, typically "a clear
protocol error, then the server's close" or "closed".

Everything random comes from one seed, printed first: each bad case runs
with its own generator seeded from (seed, worker, case number), and a failed
case prints that number so that `--seed S` replays the run (timing aside).

At the end: the p99 of the good clients' requests in each phase, and the
ratio bad/decoy (issue 11's target: within 2x): what bad input costs the
server's good clients, with the bad clients' own load on this one machine
in both terms (see run()). Speed is never a
unit-test assertion on a shared machine: the smoke run prints the ratio,
and --max-ratio (the soak) asserts it.
"""
import argparse
import multiprocessing
import os
import random
import select
import signal
import socket
import subprocess
import threading
import time
import traceback

DEADLINE = 10.0  # seconds, for any single wait on the server


class CaseFailed(Exception):
    """A bad client's expectation did not hold."""


def expect(cond, what):
    if not cond:
        raise CaseFailed(what)


# -- Random input --------------------------------------------------------------


class Fuzz(random.Random):
    """random.Random with the shapes of bad input the cases draw from."""

    def junk(self, n):
        """n uniformly random bytes."""
        return self.randbytes(n)

    def junk_size(self, small=1, large=64 << 10):
        """A length biased to small values, sometimes large."""
        return int(small + (large - small) * self.random() ** 3)

    def text_junk(self, n, alphabet=b"abcdefghijklmnopqrstuvwxyz0123456789 :-_/."):
        """n random bytes of `alphabet` (not quite uniform: fast)."""
        table = bytes(alphabet[i % len(alphabet)] for i in range(256))
        return self.junk(n).translate(table)

    def line_junk(self, n, newline=b"\r\n"):
        """Random bytes with no newline in them, then `newline`."""
        return self.junk(n).replace(b"\n", b"x").replace(b"\r", b"y") + newline

    def pick(self, options):
        return options[self.randrange(len(options))]


# -- A bad client's connection -------------------------------------------------


class Peer:
    """A client socket with every wait bounded. Sends ignore a server that
    already closed (it may close as soon as it has seen enough)."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=DEADLINE)
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    @classmethod
    def adopt(cls, sock):
        """A Peer on a socket already connected."""
        p = cls.__new__(cls)
        p.sock, p.buf, p.eof, p.reset = sock, bytearray(), False, False
        return p

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except ConnectionError:  # reset, broken pipe
            self.reset = True
            return False

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise CaseFailed("no reply within %.0f s (have %r)" % (DEADLINE, self.buf[-120:]))
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            return
        except ConnectionError:  # a reset is a close too
            chunk, self.reset = b"", True
        if not chunk:
            self.eof = True
        self.buf += chunk

    def until(self, pred, what):
        """Reads until pred(buf) is true; fails at EOF or the deadline."""
        deadline = time.monotonic() + DEADLINE
        while not pred(self.buf):
            if self.eof:
                raise CaseFailed("closed before %s (got %r)" % (what, self.buf[-160:]))
            self._fill(deadline)

    def line(self, sep=b"\r\n"):
        self.until(lambda b: sep in b, "a line")
        i = self.buf.index(sep)
        line = bytes(self.buf[:i])
        del self.buf[:i + len(sep)]
        return line

    def exactly(self, n):
        self.until(lambda b: len(b) >= n, "%d bytes" % n)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def to_eof(self, limit=8 << 20):
        """Everything until the server closes (EOF or reset); fails if it
        has not closed within the deadline or sends more than `limit`."""
        deadline = time.monotonic() + DEADLINE
        while not self.eof:
            self._fill(deadline)
            expect(len(self.buf) <= limit, "more than %d bytes and no close" % limit)
        return bytes(self.buf)

    def half_close(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server already closed
            self.reset = True

    def abort(self):
        """Closes with a reset (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# -- The server ----------------------------------------------------------------


class Server:
    """A sample on --port 0; its output (bytes: a bad client's junk may be
    printed) is drained by a thread and kept for inspection."""

    def __init__(self, argv, cpus=None):
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen([*argv, "--port", "0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=pin)
        line = b""
        deadline = time.monotonic() + DEADLINE
        while not line.startswith(b"listening on "):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.proc.kill()
                raise SystemExit("FAIL: %s did not print 'listening on'" % argv[0])
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("FAIL: %s exited at start-up" % argv[0])
        host, port = line[len(b"listening on "):].decode().strip().rsplit(":", 1)
        self.host, self.port = host.strip("[]"), int(port)
        self.out = []
        self.err = []
        self.readers = [threading.Thread(target=self._drain, args=(f, sink), daemon=True)
                        for f, sink in ((self.proc.stdout, self.out),
                                        (self.proc.stderr, self.err))]
        for t in self.readers:
            t.start()

    @staticmethod
    def _drain(f, sink):
        for line in f:
            sink.append(line)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM; the samples exit 0."""
        if self.proc.poll() is not None:
            raise SystemExit("FAIL: the server died during the run (status %s); stderr:\n%s"
                             % (self.proc.returncode, b"".join(self.err[-20:]).decode(
                                 errors="replace")))
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise SystemExit("FAIL: the server did not exit within %.0f s of SIGTERM" % DEADLINE)
        for t in self.readers:
            t.join(DEADLINE)
        if rc != 0:
            raise SystemExit("FAIL: the server exited %d after SIGTERM" % rc)


# -- Latency -------------------------------------------------------------------


def percentile(samples, q):
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- The bad clients' process --------------------------------------------------


def _bad_worker(cases, targets, target, seed, worker, active, idle, stop, results, niceness):
    """Runs cases while `active` is set, against targets[target.value]
    (the decoy, 0, or the server, 1); reports (counts, failures, slowest,
    extras, decoy cases) where counts and extras are the server's only."""
    # Bad clients would run on other machines: here they should take less
    # of the CPU than the server and the good clients, whose latency is
    # measured.
    os.nice(niceness)
    counts, failures = {}, []
    slowest = [0.0, ""]
    extras = []  # what cases return, for the final check (e.g. log lines owed)
    at_decoy = 0
    n = 0
    try:
        while not stop.is_set():
            if not active.is_set():
                idle.set()
                active.wait(0.1)
                continue
            idle.clear()
            case_seed = (seed * 1000003 + worker) * 1000003 + n
            rng = Fuzz(case_seed)
            name, fn = cases[rng.randrange(len(cases))]
            aim = target.value
            host, port = targets[aim]
            t0 = time.monotonic()
            try:
                extra = fn(host, port, rng)
                if aim == DECOY_TARGET:
                    at_decoy += 1
                    continue
                if extra:
                    extras.extend(extra)
                counts[name] = counts.get(name, 0) + 1
                took = time.monotonic() - t0
                if took > slowest[0]:
                    slowest[:] = [took, name]
            except Exception as e:  # any failure of a case is reported, with its seed
                failures.append("%s (worker %d, case %d, case seed %d): %s: %s"
                                % (name, worker, n, case_seed, type(e).__name__, e))
                if aim == DECOY_TARGET:
                    failures[-1] = "(at the decoy) " + failures[-1]
                if not isinstance(e, CaseFailed):
                    failures[-1] += "\n" + traceback.format_exc()
            finally:
                n += 1
    finally:
        idle.set()
        results.put((counts, failures, slowest, extras, at_decoy))


# -- The good clients' processes -----------------------------------------------

QUIET, DECOY, BAD, SETTLING, DONE = 0, 1, 2, 3, 4
DECOY_TARGET, SERVER_TARGET = 0, 1


def _good_worker(good_client, host, port, seed, phase, failed, results):
    """One good client in its own process (no interpreter lock shared with
    the others): requests in a loop until DONE; reports its latencies per
    phase, what it kept for the final check, or its error."""
    lat = {QUIET: [], DECOY: [], BAD: []}
    g = None
    try:
        g = good_client(host, port, Fuzz(seed))
        while phase.value != DONE and not failed.is_set():
            p = phase.value
            t0 = time.perf_counter()
            timed = g.request() is not False  # False: a request not to time
            t1 = time.perf_counter()
            if timed and p in lat and phase.value == p:
                lat[p].append(t1 - t0)
        results.put(("ok", lat, getattr(g, "report", lambda: None)()))
    except Exception as e:  # a good client must never see an error
        failed.set()
        results.put(("error", "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()),
                     None))
    finally:
        if g is not None:
            try:
                g.close()
            except OSError:
                pass


# -- A run ---------------------------------------------------------------------


def run(name, argv, good_client, cases, seed, rounds=2, round_seconds=0.6, good=2,
        bad_workers=2, max_ratio=None, server_check=None, niceness=10, pin=True,
        decoy_argv=None):
    """Runs the server `argv` with `good` good clients and, during the bad
    rounds, the bad `cases` [(name, fn(host, port, rng))] in `bad_workers`
    processes. A good client is made by good_client(host, port, rng); its
    .request() makes one request, checks the reply, raises on any error and
    returns False for a request not to time; .close(); and optionally
    .report(). server_check(server, reports, extras) runs last, with the
    good clients' reports and what the bad cases returned (lists).

    Each round has three phases: quiet (the good clients alone), decoy (the
    bad clients against a second instance of the server, `decoy_argv`,
    default `argv`, on the clients' CPUs) and bad (the bad clients against
    the server). The bad clients are on this machine, not other machines:
    their processes and the kernel's work for their traffic take CPU time
    the good clients then wait for, whatever the server does. The decoy
    phase puts exactly that load on the machine while the server sees no
    bad input, so bad/decoy is what bad input costs the server's good
    clients; bad/quiet, printed too, is that plus the machine's share."""
    print("%s: seed %d (replay with --seed %d)" % (name, seed, seed), flush=True)
    ctx = multiprocessing.get_context("fork")
    server_cpus, client_cpus = split_cpus() if pin else (None, None)
    if server_cpus:
        print("%s: the server runs on CPU %s, the clients and the decoy on %s" % (
            name, ",".join(map(str, sorted(server_cpus))),
            ",".join(map(str, sorted(client_cpus)))), flush=True)
    servers = []
    own_cpus = os.sched_getaffinity(0)
    try:
        servers.append(Server(argv, server_cpus))
        servers.append(Server(decoy_argv or argv, client_cpus))
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)  # the clients' processes inherit it
        return _run(name, servers[0], servers[1], good_client, cases, seed, rounds,
                    round_seconds, good, bad_workers, max_ratio, server_check, niceness, ctx)
    finally:
        os.sched_setaffinity(0, own_cpus)
        for server in servers:
            if server.alive():
                server.proc.kill()  # a failed run: never leave a server behind
                server.proc.wait()


def split_cpus():
    """The server's CPUs and the clients': with two or more, the server gets
    one to itself. The clients would be other machines; on one, a load
    generator that shares the server's CPU measures the scheduler, not the
    server. With one CPU, no split."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def _run(name, server, decoy, good_client, cases, seed, rounds, round_seconds, good,
         bad_workers, max_ratio, server_check, niceness, ctx):
    active, stop, failed = ctx.Event(), ctx.Event(), ctx.Event()
    idles = [ctx.Event() for _ in range(bad_workers)]
    phase = ctx.Value("i", QUIET)
    target = ctx.Value("i", DECOY_TARGET)
    targets = {DECOY_TARGET: (decoy.host, decoy.port), SERVER_TARGET: (server.host, server.port)}
    bad_results, good_results = ctx.Queue(), ctx.Queue()
    rng = Fuzz(seed)
    procs = [ctx.Process(target=_bad_worker,
                         args=(cases, targets, target, seed, w, active, idles[w], stop,
                               bad_results, niceness), daemon=True)
             for w in range(bad_workers)]
    goods = [ctx.Process(target=_good_worker,
                         args=(good_client, server.host, server.port, rng.getrandbits(64), phase,
                               failed, good_results), daemon=True)
             for _ in range(good)]
    for p in procs + goods:
        p.start()
    start = time.monotonic()
    try:
        for _ in range(rounds):
            for p in (QUIET, DECOY, BAD):
                # Every phase starts with no bad case running: one still at
                # work from the phase before would count against this one.
                active.clear()
                phase.value = SETTLING
                for ev in idles:
                    ev.wait(DEADLINE)
                if p != QUIET:
                    target.value = SERVER_TARGET if p == BAD else DECOY_TARGET
                    active.set()
                phase.value = p
                if failed.wait(round_seconds):
                    break
            if failed.is_set():
                break
    finally:
        phase.value = DONE
        active.clear()
        stop.set()
    elapsed = time.monotonic() - start
    lat = {QUIET: [], DECOY: [], BAD: []}
    errors, reports = [], []
    for _ in goods:
        try:
            kind, value, report = good_results.get(timeout=DEADLINE * 2)
        except Exception:
            errors.append("a good client did not report")
            continue
        if kind == "error":
            errors.append(value)
        else:
            for k in lat:
                lat[k] += value[k]
            reports.append(report)
    counts, failures, slowest, extras, at_decoy = {}, [], [0.0, ""], [], 0
    for _ in procs:
        try:
            c, f, slow, extra, decoyed = bad_results.get(timeout=DEADLINE * 2)
        except Exception:
            failures.append("a bad-client worker did not report")
            continue
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
        failures += f
        extras += extra
        at_decoy += decoyed
        slowest = max(slowest, slow)
    for p in procs + goods:
        p.join(DEADLINE)
    if errors:
        raise SystemExit("FAIL: %s: a good client failed (seed %d): %s" % (name, seed, errors[0]))
    if server_check is not None and server.alive():
        server_check(server, reports, extras)
    server.stop()
    decoy.stop()
    if failures:
        raise SystemExit("FAIL: %s: %d bad cases failed (seed %d):\n  %s"
                         % (name, len(failures), seed, "\n  ".join(failures[:10])))
    p99 = {k: percentile(v, 0.99) * 1e3 for k, v in lat.items()}
    ratio = p99[BAD] / p99[DECOY] if p99[DECOY] > 0 else float("inf")
    to_quiet = p99[BAD] / p99[QUIET] if p99[QUIET] > 0 else float("inf")
    total = sum(counts.values())
    print("%s: %d good clients made %d requests (%d quiet, %d beside bad clients at a decoy, "
          "%d beside bad clients), no errors"
          % (name, good, sum(map(len, lat.values())), len(lat[QUIET]), len(lat[DECOY]),
             len(lat[BAD])))
    print("%s: %d bad connections (and %d at the decoy): %s" % (name, total, at_decoy, "; ".join(
        "%s: %d" % kv for kv in sorted(counts.items()))))
    missing = [n for n, _ in cases if n not in counts]
    if missing:
        print("%s: cases not drawn in this run: %s" % (name, "; ".join(missing)))
    if slowest[1]:
        print("%s: the slowest bad case took %.2f s: %s" % (name, slowest[0], slowest[1]))
    print("%s: good p99 %.2f ms quiet, %.2f ms beside bad clients at a decoy, %.2f ms beside "
          "bad clients: ratio %.2f (%.2f to quiet) (%.1f s)"
          % (name, p99[QUIET], p99[DECOY], p99[BAD], ratio, to_quiet, elapsed), flush=True)
    if max_ratio is not None and ratio > max_ratio:
        raise SystemExit("FAIL: %s: p99 ratio %.2f above %.2f (seed %d)"
                         % (name, ratio, max_ratio, seed))
    return ratio


def main(name, argv_of, good_client, cases, server_check=None, defaults=None,
         decoy_argv_of=None):
    """Command line shared by the per-server tests:
    SCRIPT SERVER [--seed N] [--rounds R] [--round-seconds S] [--max-ratio X]
    The decoy runs the server's own command line unless decoy_argv_of says
    otherwise (a server that owns a file, as smtp_server its mbox)."""
    d = dict(rounds=2, round_seconds=0.6, good=2, bad_workers=2)
    d.update(defaults or {})
    ap = argparse.ArgumentParser(description="%s under bad input" % name)
    ap.add_argument("server")
    ap.add_argument("extra", nargs="*", help="more arguments for the test")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--rounds", type=int, default=d["rounds"])
    ap.add_argument("--round-seconds", type=float, default=d["round_seconds"])
    ap.add_argument("--good", type=int, default=d["good"])
    ap.add_argument("--bad-workers", type=int, default=d["bad_workers"])
    ap.add_argument("--bad-nice", type=int, default=10,
                    help="niceness of the bad clients' processes (default 10)")
    ap.add_argument("--max-ratio", type=float,
                    help="fail if the good clients' p99 beside bad clients exceeds their "
                         "p99 beside the same bad clients aimed at a decoy by more than this "
                         "factor (the soak uses 2)")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 1 << 32)
    argv = argv_of(a.server, a.extra)
    decoy_argv = decoy_argv_of(a.server, a.extra) if decoy_argv_of else argv
    run(name, argv, good_client, cases, seed, a.rounds, a.round_seconds, a.good,
        a.bad_workers, a.max_ratio, server_check, a.bad_nice, decoy_argv=decoy_argv)
    print("ok: %s kept serving its good clients through bad input" % name)
