#!/usr/bin/env python3
"""Smoke test for resp_server --threads N: keys sharded over threads.

Connections land on the threads' SO_REUSEPORT listeners as the kernel
hashes them, so with 40 connections both threads serve some, and every
key's shard is reached from connections on both threads. Checked:

1. The process runs exactly N threads (no hidden ones; one for N = 1).
2. A value SET on one connection is what GET returns on any other.
3. INCR from 20 connections at once ends at the exact total, and each
   connection sees its own INCR replies increase.
4. Pipelined MGETs of keys spread over the shards return values in the
   order asked; DEL, EXISTS, KEYS, DBSIZE, FLUSHDB combine every shard.
5. A long pipeline of requests alternating between shards is answered in
   request order.
6. redis-benchmark -t set,get -P 16 completes, every request answered.
7. SIGINT while connections have requests in flight to other shards: the
   server exits 0 promptly (no thread left blocked).

Usage: resp_threads_smoke.py PATH/TO/resp_server
Step 6 is left out when redis-benchmark is not installed.
"""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from resp_smoke import DEADLINE, Peer, cmd, fail, parse_all, run, start_resp_server, stop

THREADS = 2


def thread_count(proc):
    """Threads of `proc` less ThreadSanitizer's background thread, which it
    starts with the program's second thread."""
    threads = len(os.listdir("/proc/%d/task" % proc.pid))
    with open("/proc/%d/maps" % proc.pid) as maps:
        if "libtsan" in maps.read() and threads > 1:
            threads -= 1
    return threads


def exchange(peer, requests):
    """Sends the requests pipelined; returns their parsed replies."""
    return parse_all(peer.step(requests))


def check_threads(exe):
    for n in (1, 3):
        proc, addr = start_resp_server(exe, "--threads", str(n))
        p = Peer(addr)
        p.step([cmd("PING")])  # every thread is serving by now
        got = thread_count(proc)
        p.close()
        if stop(proc, "resp_server") != 0:
            fail("resp_server --threads %d exited non-zero" % n)
        if got != n:
            fail("resp_server --threads %d runs %d threads" % (n, got))
    print("threads: --threads 1 and 3 run exactly 1 and 3 threads")


def set_then_get(peers):
    for i in range(400):
        key, value = "sg:%d" % i, "value-%d" % i
        writer, reader = peers[i % len(peers)], peers[(i * 7 + 3) % len(peers)]
        if exchange(writer, [cmd("SET", key, value)]) != [(b"+", b"OK")]:
            fail("SET %s failed" % key)
        got = exchange(reader, [cmd("GET", key)])
        if got != [value.encode()]:
            fail("GET %s on another connection: %r, want %r" % (key, got, value))
    print("set/get: 400 keys SET on one connection read back on another")


def concurrent_incr(peers):
    keys, rounds, per_round = ["ctr:a", "ctr:b", "ctr:c"], 10, 30
    errors = []

    def client(peer):
        last = {k: 0 for k in keys}
        for r in range(rounds):
            batch = [cmd("INCR", keys[(r + j) % len(keys)]) for j in range(per_round)]
            for j, reply in enumerate(exchange(peer, batch)):
                key = keys[(r + j) % len(keys)]
                if not isinstance(reply, tuple) or reply[0] != b":" or int(reply[1]) <= last[key]:
                    errors.append("INCR %s replied %r after %d" % (key, reply, last[key]))
                    return
                last[key] = int(reply[1])

    workers = [threading.Thread(target=client, args=(p,)) for p in peers[:20]]
    for w in workers:
        w.start()
    for w in workers:
        w.join(DEADLINE * 3)
    if any(w.is_alive() for w in workers) or errors:
        fail("concurrent INCR: %s" % (errors[:3] or "a client did not finish"))
    total = 20 * rounds * per_round // len(keys)
    got = exchange(peers[0], [cmd("GET", k) for k in keys])
    if got != [str(total).encode()] * len(keys):
        fail("after concurrent INCRs: %r, want %d each" % (got, total))
    print("incr: 20 connections x %d INCRs over %d keys, each at exactly %d"
          % (rounds * per_round, len(keys), total))


def multi_key(peers):
    rng = random.Random(6)
    keys = ["mk:%d" % i for i in range(100)]
    values = {k: "v-%s-%d" % (k, rng.randrange(10 ** 6)) for k in keys}
    p, q = peers[0], peers[1]
    exchange(p, [cmd("FLUSHDB"), cmd("MSET", *[x for k in keys for x in (k, values[k])])])
    batch, want = [], []
    for _ in range(50):
        ask = rng.sample(keys, 20) + ["missing:%d" % rng.randrange(100)]
        rng.shuffle(ask)
        batch.append(cmd("MGET", *ask))
        want.append([values[k].encode() if k in values else None for k in ask])
    if exchange(q, batch) != want:
        fail("pipelined MGETs over shards returned values out of order")
    if exchange(q, [cmd("DBSIZE"), cmd("EXISTS", *keys[:30], "nope", keys[0])]) != \
            [(b":", b"100"), (b":", b"31")]:
        fail("DBSIZE/EXISTS over shards")
    got = exchange(p, [cmd("KEYS", "mk:*")])[0]
    if sorted(got) != sorted(k.encode() for k in keys):
        fail("KEYS over shards: %d keys, want 100" % len(got))
    if exchange(q, [cmd("DEL", *keys[:40], "nope"), cmd("DBSIZE"), cmd("FLUSHDB"),
                    cmd("DBSIZE")]) != [(b":", b"40"), (b":", b"60"), (b"+", b"OK"),
                                        (b":", b"0")]:
        fail("DEL/DBSIZE/FLUSHDB over shards")
    print("multi-key: 50 pipelined MGETs of 21 keys in order; DBSIZE, EXISTS, KEYS, DEL, "
          "FLUSHDB over every shard")


def pipeline_order(peer):
    batch, want = [], []
    for i in range(2000):
        key = "po:%d" % (i % 97)
        if i % 3 == 2:
            batch.append(cmd("GET", key))
            want.append(("get", key))
        else:
            batch.append(cmd("SET", key, "%d" % i))
            want.append(("set", key, str(i).encode()))
    model = {}
    for req, reply in zip(want, exchange(peer, batch)):
        if req[0] == "set":
            model[req[1]] = req[2]
            ok = reply == (b"+", b"OK")
        else:
            ok = reply == model.get(req[1])
        if not ok:
            fail("pipelined SET/GET over shards: %r replied %r" % (req, reply))
    print("pipeline: 2000 SET/GET over 97 keys answered in request order")


def benchmark(host, port):
    for extra in ([], ["-r", "100000"]):
        argv = ["redis-benchmark", "-h", host, "-p", str(port), "-c", "50", "-t", "set,get",
                "-P", "16", "-n", "100000", "-q"] + extra
        rc, out, err = run(argv, timeout=60)
        lines = [l.strip() for l in re.split(r"[\r\n]", out) if "requests per second" in l]
        if rc != 0 or [l.split(":")[0] for l in lines] != ["SET", "GET"] or \
                re.search(r"(?i)error", out + err):
            fail("redis-benchmark %s: rc=%d\n%s\n%s" % (" ".join(extra), rc, out, err))
        print("redis-benchmark -P 16 %s: %s" % (" ".join(extra), "; ".join(lines)))


def shutdown_in_flight(exe):
    proc, addr = start_resp_server(exe, "--threads", str(THREADS))
    socks = []
    for i in range(10):
        s = socket.create_connection(addr, timeout=DEADLINE)
        s.sendall(b"".join(cmd("SET", "sd:%d:%d" % (i, j), "x" * 100) for j in range(5000)))
        socks.append(s)
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("resp_server --threads %d did not exit within %d s of SIGINT" % (THREADS, DEADLINE))
    for s in socks:
        s.close()
    if rc != 0:
        fail("resp_server exited with %d after SIGINT with requests in flight" % rc)
    print("shutdown: SIGINT with 10 connections mid-pipeline, exit 0")


def main():
    if len(sys.argv) != 2:
        fail("usage: resp_threads_smoke.py PATH/TO/resp_server")
    exe = sys.argv[1]
    check_threads(exe)
    proc, addr = start_resp_server(exe, "--threads", str(THREADS))
    watchdog = threading.Timer(170, proc.kill)
    watchdog.start()
    try:
        peers = [Peer(addr) for _ in range(40)]
        set_then_get(peers)
        concurrent_incr(peers)
        multi_key(peers)
        pipeline_order(peers[5])
        for p in peers:
            p.close()
        if shutil.which("redis-benchmark"):
            benchmark(*addr)
    finally:
        watchdog.cancel()
        rc = stop(proc, "resp_server")
    if rc != 0:
        fail("resp_server --threads %d exited with %d after SIGTERM" % (THREADS, rc))
    shutdown_in_flight(exe)
    print("PASS")


if __name__ == "__main__":
    main()
