#!/usr/bin/env python3
"""Smoke test for resp_server against the real thing.

1. Differential: the same scripted raw RESP traffic (every command, its
   options and error replies, inline and multibulk requests, pipelined
   batches, binary values, protocol errors) goes to resp_server and to a
   redis-server started here; the raw reply bytes must be identical.
2. redis-cli, a real client, runs a few commands against resp_server.
3. redis-benchmark completes its ping/set/get/incr/mset tests against
   resp_server, pipelined (-P 16) and not, with every request answered.
4. redis' "timeout" (idle clients): CONFIG GET/SET timeout replies,
   diffed against redis-server too; without --timeout silent clients stay
   open; CONFIG SET timeout 1 closes those already open (on every thread),
   silently, and CONFIG SET timeout 0 spares clients it had doomed; a
   second server started with --timeout 1 closes a silent client after
   1 s but keeps one that sends a PING every 0.3 s.

Usage: resp_smoke.py PATH/TO/resp_server [SERVER ARGS...]
(e.g. --threads 2: the same checks against a sharded server).
Exits 77 (skipped) if redis-server is not installed.
"""

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

DEADLINE = 10  # seconds for any single wait
MARK = b"--resp-smoke-end-of-step--"
MARK_CMD = b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n" % (len(MARK), MARK)
MARK_REPLY = b"$%d\r\n%s\r\n" % (len(MARK), MARK)


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def cmd(*args):
    """A multibulk request."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


# ---------------------------------------------------------------------------
# Servers


def start_resp_server(exe, *args):
    proc = subprocess.Popen([exe, "--port", "0", *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # bounded: the server prints it or exits
    if not line.startswith("listening on "):
        proc.kill()
        fail("resp_server did not report 'listening on HOST:PORT' (got %r)" % line)
    host, port = line[len("listening on "):].strip().rsplit(":", 1)
    return proc, (host, int(port))


def start_redis(tmp):
    # A Unix socket rather than a TCP port: nothing else can take it, and the
    # bytes exchanged are the same. One database, so that SELECT's
    # out-of-range reply is comparable.
    path = os.path.join(tmp, "redis.sock")
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", path, "--save", "",
         "--appendonly", "no", "--databases", "1", "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.close()
            return proc, path
        except OSError:
            time.sleep(0.02)
    proc.kill()
    fail("redis-server did not start")


def stop(proc, name):
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("%s did not exit within %d s of SIGTERM" % (name, DEADLINE))
    return rc


class Peer:
    """One connection to one server."""

    def __init__(self, address):
        if isinstance(address, str):
            self.sock = socket.socket(socket.AF_UNIX)
        else:
            self.sock = socket.socket(socket.AF_INET)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(address)

    def send(self, chunks):
        for i, chunk in enumerate(chunks):
            if i:
                time.sleep(0.002)  # invite separate reads; the result must not depend on it
            self.sock.sendall(chunk)

    def step(self, chunks):
        """Sends the chunks and an end mark; returns the replies before the mark's."""
        self.send(list(chunks) + [MARK_CMD])
        buf = b""
        while not buf.endswith(MARK_REPLY):
            data = self.sock.recv(1 << 20)
            if not data:
                fail("connection closed before the end of step; got %r" % buf[-300:])
            buf += data
        return buf[:-len(MARK_REPLY)]

    def until_closed(self, chunks):
        """Sends the chunks; returns everything received until the server closes.

        The server may close before it has read everything (as redis does
        after a protocol error): a failed send, or a reset after the replies,
        ends the exchange like EOF."""
        try:
            self.send(chunks)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return buf
            if not data:
                return buf
            buf += data

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------
# RESP reply parsing, for steps whose replies are compared loosely


def parse_reply(buf, pos=0):
    kind, end = buf[pos:pos + 1], buf.index(b"\r\n", pos)
    line = buf[pos + 1:end]
    pos = end + 2
    if kind in (b"+", b"-", b":"):
        return (kind, line), pos
    n = int(line)
    if kind == b"$":
        if n < 0:
            return None, pos
        return buf[pos:pos + n], pos + n + 2
    if n < 0:
        return None, pos
    items = []
    for _ in range(n):
        item, pos = parse_reply(buf, pos)
        items.append(item)
    return items, pos


def parse_all(buf):
    out, pos = [], 0
    while pos < len(buf):
        item, pos = parse_reply(buf, pos)
        out.append(item)
    return out


def normalize_sets(buf):
    """Array replies as sorted lists: KEYS' order is the hash table's."""
    return [sorted(r) if isinstance(r, list) else r for r in parse_all(buf)]


def ttls_match(a, b):
    """Replies equal but for time-to-live integers, which may differ by 1 %
    (at least 2): the two servers read their clocks at different moments,
    and a TTL in whole seconds can cross a second boundary between them."""
    ra, rb = parse_all(a), parse_all(b)
    if len(ra) != len(rb):
        return False
    for x, y in zip(ra, rb):
        if x == y:
            continue
        ints = all(isinstance(r, tuple) and r[0] == b":" for r in (x, y))
        if not ints:
            return False
        u, v = int(x[1]), int(y[1])
        if min(u, v) < 0 or abs(u - v) > max(2, min(u, v) // 100):
            return False
    return True


# ---------------------------------------------------------------------------
# The script: (name, chunks, compare) with compare one of "exact",
# "sets", "ttls"; closing steps open a fresh connection and read to EOF.

BIN_KEY = b"bin\r\nkey\x00with\xffbytes"
BIN_VAL = b"\x00\r\n\r\n$3\r\n*1\r\n\xfe\xff\x00end"
BIG_VAL = bytes((i * 7 + i // 251) & 0xff for i in range(300000))
LONG = b"x" * 200


def steps():
    s = []

    def add(name, *chunks, compare="exact"):
        s.append((name, chunks, compare))

    add("ping", cmd("PING"), cmd("ping", "hello"), cmd("PING", "a", "b"), b"PING\r\n",
        b"ping hi\n")
    add("echo", cmd("ECHO", "x y"), cmd("ECHO"), cmd("ECHO", "a", "b"), cmd("echo", b""))
    add("set/get", cmd("SET", "k", "v"), cmd("GET", "k"), cmd("GET", "missing"),
        cmd("SET", "k"), cmd("GET"), cmd("GET", "a", "b"), cmd("set", "k", "v2"),
        cmd("get", "k"), cmd("SET", "empty", b""), cmd("GET", "empty"))
    add("binary values", cmd("SET", BIN_KEY, BIN_VAL), cmd("GET", BIN_KEY),
        cmd("STRLEN", BIN_KEY), cmd("EXISTS", BIN_KEY), cmd("APPEND", BIN_KEY, b"\r\n\x00"),
        cmd("GET", BIN_KEY), cmd("MGET", BIN_KEY, "nope", BIN_KEY))
    add("big value", cmd("SET", "big", BIG_VAL), cmd("STRLEN", "big"), cmd("GET", "big"))
    add("set options", cmd("SET", "o", "1", "NX"), cmd("SET", "o", "2", "NX"), cmd("GET", "o"),
        cmd("SET", "o", "3", "XX"), cmd("SET", "nx-missing", "3", "XX"), cmd("GET", "o"),
        cmd("SET", "o", "4", "GET"), cmd("SET", "o", "5", "nx", "GET"),
        cmd("SET", "o2", "5", "NX", "GET"), cmd("SET", "o", "6", "EX", "100"),
        cmd("TTL", "o"), cmd("SET", "o", "7", "KEEPTTL"), cmd("TTL", "o"),
        cmd("SET", "o", "8"), cmd("TTL", "o"), cmd("SET", "o", "9", "px", "100000"),
        cmd("TTL", "o"), cmd("SET", "o", "9", "EXAT", "4102444800"), cmd("TTL", "o"),
        cmd("SET", "o", "9", "PXAT", "4102444800000"), cmd("TTL", "o"),
        cmd("SET", "o", "9", "EX", "10", "EX", "20"), cmd("TTL", "o"),
        cmd("SET", "o", "1", "NX", "NX"), cmd("SET", "o", "1", "xx", "xx"), compare="ttls")
    add("set option errors", cmd("SET", "o", "1", "NX", "XX"), cmd("SET", "o", "1", "XX", "NX"),
        cmd("SET", "o", "1", "EX"), cmd("SET", "o", "1", "EX", "abc"),
        cmd("SET", "o", "1", "EX", "0"), cmd("SET", "o", "1", "PX", "-5"),
        cmd("SET", "o", "1", "EX", "9223372036854775807"),
        cmd("SET", "o", "1", "EX", "9223372036854775"),
        cmd("SET", "o", "1", "PX", "9223372036854775807"),
        cmd("SET", "o", "1", "EXAT", "0"), cmd("SET", "o", "1", "EX", "10", "PX", "10"),
        cmd("SET", "o", "1", "KEEPTTL", "EX", "10"), cmd("SET", "o", "1", "EX", "10", "KEEPTTL"),
        cmd("SET", "o", "1", "FOO"), cmd("SET", "o", "1", "PERSIST"),
        cmd("SET", "o", "1", "EX", "1.5"), cmd("SET", "o", "1", "EX", " 10"),
        cmd("SET", "o", "1", "EX", "010"), cmd("GET", "o"))
    add("getset", cmd("GETSET", "gs", "a"), cmd("GETSET", "gs", "b"), cmd("GET", "gs"),
        cmd("SET", "gs", "c", "EX", "100"), cmd("GETSET", "gs", "d"), cmd("TTL", "gs"),
        cmd("GETSET", "gs"))
    add("del/exists", cmd("MSET", "d1", "1", "d2", "2", "d3", "3"),
        cmd("EXISTS", "d1", "d1", "d2", "nope"), cmd("DEL", "d1", "d2", "nope", "d1"),
        cmd("EXISTS", "d1"), cmd("DEL"), cmd("EXISTS"), cmd("del", "d3"))
    add("incr family", cmd("INCR", "n"), cmd("INCR", "n"), cmd("INCRBY", "n", "10"),
        cmd("DECR", "n"), cmd("DECRBY", "n", "5"), cmd("GET", "n"), cmd("INCRBY", "n", "-100"),
        cmd("DECRBY", "n", "-7"), cmd("SET", "n", "abc"), cmd("INCR", "n"),
        cmd("SET", "n", " 1"), cmd("INCR", "n"), cmd("SET", "n", "007"), cmd("INCR", "n"),
        cmd("SET", "n", "-0"), cmd("INCR", "n"), cmd("SET", "n", "0"), cmd("DECR", "n"),
        cmd("INCRBY", "n", "x"), cmd("INCRBY", "n", "1.5"),
        cmd("INCRBY", "n", "99999999999999999999"),
        cmd("SET", "n", "9223372036854775807"), cmd("INCR", "n"), cmd("INCRBY", "n", "0"),
        cmd("SET", "n", "-9223372036854775808"), cmd("DECR", "n"),
        cmd("DECRBY", "n", "-9223372036854775808"), cmd("DECRBY", "m", "-9223372036854775808"),
        cmd("INCRBY", "n", "-1"), cmd("INCR"), cmd("INCRBY", "n"), cmd("DECR", "a", "b"),
        cmd("DECRBY", "n"), cmd("SET", "t", "5", "EX", "100"), cmd("INCR", "t"),
        cmd("TTL", "t"))
    add("append/strlen", cmd("APPEND", "ap", "hello"), cmd("APPEND", "ap", " world"),
        cmd("GET", "ap"), cmd("STRLEN", "ap"), cmd("STRLEN", "nope"), cmd("APPEND", "ap"),
        cmd("STRLEN"), cmd("SET", "ap", "x", "EX", "100"), cmd("APPEND", "ap", "y"),
        cmd("TTL", "ap"))
    add("mget/mset", cmd("MSET", "m1", "a", "m2", "b"), cmd("MGET", "m1", "m2", "m3"),
        cmd("MSET", "m1"), cmd("MSET", "m1", "a", "m2"), cmd("MGET"),
        cmd("MSET", "m1", "x", "m1", "y"), cmd("GET", "m1"),
        cmd("SET", "m1", "z", "EX", "100"), cmd("MSET", "m1", "w"), cmd("TTL", "m1"))
    add("expire", cmd("SET", "e", "v"), cmd("EXPIRE", "e", "100"), cmd("TTL", "e"),
        cmd("EXPIRE", "nope", "100"), cmd("EXPIRE", "e", "100", "NX"),
        cmd("EXPIRE", "e", "200", "XX"), cmd("TTL", "e"), cmd("EXPIRE", "e", "50", "GT"),
        cmd("EXPIRE", "e", "300", "GT"), cmd("TTL", "e"), cmd("EXPIRE", "e", "400", "LT"),
        cmd("EXPIRE", "e", "100", "lt"), cmd("TTL", "e"), cmd("PERSIST", "e"),
        cmd("PERSIST", "e"), cmd("PERSIST", "nope"), cmd("TTL", "e"),
        cmd("EXPIRE", "e", "100", "XX"), cmd("EXPIRE", "e", "100", "GT"),
        cmd("EXPIRE", "e", "100", "LT"), cmd("TTL", "e"), cmd("EXPIRE", "e", "100", "NX"),
        cmd("EXPIRE", "e", "10", "NX", "XX"), cmd("EXPIRE", "e", "10", "GT", "LT"),
        cmd("EXPIRE", "e", "10", "NX", "GT"), cmd("EXPIRE", "e", "10", "FOO"),
        cmd("EXPIRE", "e", "abc"), cmd("EXPIRE", "e", "abc", "FOO"),
        cmd("EXPIRE", "e", "9223372036854775807"), cmd("EXPIRE", "e", "-9223372036854775808"),
        cmd("PEXPIRE", "e", "9223372036854775807"), cmd("EXPIRE", "e"),
        cmd("PEXPIRE", "e", "100000"), cmd("TTL", "e"), cmd("EXPIRE", "e", "0"),
        cmd("EXISTS", "e"), cmd("SET", "e", "v"), cmd("PEXPIRE", "e", "-1"), cmd("GET", "e"),
        cmd("TTL", "nope"), cmd("PTTL", "nope"), cmd("SET", "p", "1"), cmd("PTTL", "p"),
        cmd("TTL"), cmd("PTTL", "a", "b"), cmd("PERSIST"))
    add("pttl", cmd("SET", "pt", "1", "PX", "100000"), cmd("PTTL", "pt"),
        cmd("PEXPIRE", "pt", "50000"), cmd("PTTL", "pt"), compare="ttls")
    add("keys setup", cmd("FLUSHDB"),
        cmd("MSET", "hello", "1", "hallo", "1", "hxllo", "1", "hllo", "1", "heeeello", "1",
            "h*llo", "1", "a[b", "1", "a\\b", "1", "a-b", "1", "abc", "1", "x", "1", "", "1",
            "k:1", "1", "k:2", "1", "k:10", "1", b"n\x00ul", "1"))
    for pattern in ["*", "h?llo", "h*llo", "h[ae]llo", "h[^e]llo", "h[a-b]llo", "h[b-a]llo",
                    "h\\*llo", "a\\[b", "a[\\[]b", "a[", "a[b", "a\\", "k:*", "k:?",
                    "k:[0-9]", "k:[0-9]*", "*l*l*", "**", "?", "", "[]", "[", "a[^", "n*",
                    "a[-]b", "a[a-]b", "*o", "h*", "nomatch*", "[!a]*"]:
        add("keys " + pattern, cmd("KEYS", pattern), compare="sets")
    add("keys errors", cmd("KEYS"), cmd("KEYS", "a", "b"))
    add("dbsize/flush", cmd("DBSIZE"), cmd("FLUSHDB"), cmd("DBSIZE"), cmd("SET", "a", "1"),
        cmd("DBSIZE"), cmd("FLUSHALL"), cmd("DBSIZE"), cmd("FLUSHDB", "ASYNC"),
        cmd("FLUSHDB", "sync"), cmd("FLUSHALL", "async"), cmd("FLUSHDB", "foo"),
        cmd("FLUSHALL", "SYNC", "ASYNC"), cmd("DBSIZE", "x"))
    add("select", cmd("SELECT", "0"), cmd("SELECT", "1"), cmd("SELECT", "-1"),
        cmd("SELECT", "x"), cmd("SELECT", "99999999999"), cmd("SELECT"),
        cmd("SELECT", "0", "1"), b"select 0\r\n")
    add("config", cmd("CONFIG", "GET", "save"), cmd("CONFIG", "GET", "appendonly"),
        cmd("config", "get", "APPENDONLY"), cmd("CONFIG", "GET", "no-such-param"),
        cmd("CONFIG", "GET"), cmd("CONFIG"), cmd("CONFIG", "FOO"), cmd("CONFIG", "foo", "bar"),
        cmd("CONFIG", LONG))
    add("unknown commands", cmd("FOO"), cmd("FOO", "a", "b"), cmd("foo", "a b", "c"),
        cmd("NOPE", LONG, "x"), cmd("NOPE", *(["abcdefghij"] * 20)), cmd(LONG),
        cmd("FOO", "a\r\nb", "c\nd"), cmd(b"GE\x00T", b"a\x00b"), cmd("config|get", "save"),
        b"FOO bar baz\r\n")
    add("inline requests", b"SET il value\r\n", b"GET il\r\n", b"set  il2   \"a b\"  \r\n",
        b"get il2\r\n", b"SET q \"\\x41\\x4a\\n\\r\\t\\b\\a\\z\\\\\\\"\"\r\n", b"GET q\r\n",
        b"SET sq 'it\\'s \\n raw'\r\n", b"GET sq\r\n", b"\r\n", b"   \r\n", b"\n",
        b"PING\n", b"ECHO \"\"\r\n", b"ECHO ''\r\n", b"\tPING\t\r\n",
        b"ECHO \"x\\x4\"\r\n", b"ECHO \"\\x4g\\x\"\r\n", b"ECHO a\"b\"\r\n",
        b"EXISTS il il2 il3\r\n")
    add("empty multibulk", b"*0\r\n", b"*-1\r\n", b"*-100\r\n", cmd("PING"))
    batch = b"".join(cmd("INCR", "counter") for _ in range(50)) + cmd("GET", "counter")
    add("pipelined batch", batch, b"PING\r\n" * 10, batch + b"PING\r\n" + cmd("MGET", "counter"))
    whole = cmd("SET", "split", BIN_VAL) + cmd("GET", "split") + b"ECHO split-inline\r\n"
    add("split across reads", *[whole[i:i + 1] for i in range(len(whole))])
    add("split at every 7 bytes", *[batch[i:i + 7] for i in range(0, len(batch), 7)])
    return s


def closing_steps():
    """Requests after which redis closes the connection, replies compared to EOF."""
    big_line = b"x" * 70000  # over redis' 64 KiB line limit
    return [
        ("quit", [cmd("PING") + cmd("QUIT") + cmd("PING")]),
        ("quit inline pipelined", [b"PING\r\nQUIT\r\nPING\r\n"]),
        ("quit with args", [b"QUIT now please\r\n"]),
        ("invalid multibulk length", [cmd("PING") + b"*abc\r\n" + cmd("PING")]),
        ("multibulk length over INT_MAX", [b"*3000000000\r\n"]),
        ("multibulk length INT_MAX", [b"*2147483647\r\n$4\r\nPING\r\n" + b"*x\r\n"]),
        ("expected $", [b"*2\r\n$4\r\nECHO\r\nxyz\r\n"]),
        ("expected $ got CR", [b"*1\r\n\r\n"]),
        ("invalid bulk length", [b"*1\r\n$-1\r\n"]),
        ("bulk length not a number", [b"*1\r\n$abc\r\n"]),
        ("bulk length over proto-max-bulk-len", [b"*2\r\n$3\r\nSET\r\n$536870913\r\n"]),
        ("unbalanced double quotes", [b"PING\r\nSET a \"b\r\nPING\r\n"]),
        ("unbalanced single quotes", [b"SET a 'b\r\n"]),
        ("closing quote followed by text", [b"SET a \"b\"c\r\n"]),
        ("too big inline request", [big_line]),
        # redis finds line ends with strchr(), which stops at a NUL: such a
        # line never ends, and the line limit closes the connection.
        ("NUL inside an inline request", [cmd("PING") + b"ECHO a\x00b\r\nPING\r\n", big_line]),
        ("NUL inside a multibulk count", [b"*1\x00\r\n$4\r\nPING\r\n", big_line]),
        ("NUL inside a bulk count", [b"*1\r\n$4\x00\r\nPING\r\n", big_line]),
        ("multibulk count without CR", [b"*1\n$4\r\nPING\r\n"]),
        ("bulk count without CR", [b"*1\r\n$4\nPING\r\n"]),
        ("bulk count line without CR or $", [b"*1\r\nx4\nPING\r\n"]),
        ("bulk count line empty", [b"*1\r\n\n\r\n"]),
        ("too big multibulk count string", [b"*" + big_line]),
        ("too big bulk count string", [b"*1\r\n$" + big_line]),
    ]


def config_timeout_steps():
    """CONFIG GET/SET timeout, every error redis has for CONFIG SET; the
    timeout is 0 again at the end (values this large close nothing here)."""
    def config(*args):
        return cmd("CONFIG", *args)
    return [
        ("config get timeout", [config("GET", "timeout"), config("get", "TIMEOUT"),
                                config("GET", "time*"), config("GET", "timeout", "Timeout")]),
        ("config set timeout", [config("SET", "timeout", "1000"), config("GET", "timeout"),
                                config("set", "TIMEOUT", "2147483647"), config("GET", "timeout"),
                                config("SET", "timeout", "0"), config("GET", "timeout")]),
        ("config set timeout errors", [
            config("SET", "timeout", "-1"), config("SET", "Timeout", "2147483648"),
            config("SET", "timeout", "abc"), config("SET", "timeout", "1.5"),
            config("SET", "timeout", "010"), config("SET", "timeout", " 1"),
            config("SET", "timeout", "-0"), config("SET", "timeout", ""),
            config("SET", "timeout", b"1\x00"),
            config("SET", "timeout", "99999999999999999999"), config("GET", "timeout")]),
        ("config set arguments", [
            config("SET"), config("SET", "timeout"), config("SET", "timeout", "1", "x"),
            config("SET", "nope", "1"), config("SET", b"time\x00out", "1"),
            config("SET", "a\r\nb", "1"), config("SET", "DATABASES", "2"),
            config("SET", "timeout", "5", "TIMEOUT", "6"),
            config("SET", "nope", "1", "databases", "2"),
            config("SET", "databases", "2", "nope", "1"),
            config("SET", "timeout", "x", "databases", "1"),
            config("SET", "timeout", "5", "nope", "1"),
            config("SET", "timeout", "0", "timeout", "x"), config("GET", "timeout")]),
    ]


def config_differential(resp_addr, redis_path):
    """CONFIG GET/SET timeout: replies identical to redis-server's."""
    ours, theirs = Peer(resp_addr), Peer(redis_path)
    failures = 0
    for name, chunks in config_timeout_steps():
        a, b = ours.step(chunks), theirs.step(chunks)
        if a != b:
            failures += 1
            report(name, a, b)
    ours.close()
    theirs.close()
    if failures:
        fail("%d CONFIG timeout steps differ from redis-server" % failures)
    print("config timeout: %d steps, replies identical to redis-server"
          % len(config_timeout_steps()))


def report(name, ours, theirs):
    at = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y),
              min(len(ours), len(theirs)))
    start = max(0, at - 80)
    print("MISMATCH in step %r at byte %d:\n  resp_server:  ...%r\n  redis-server: ...%r"
          % (name, at, ours[start:at + 200], theirs[start:at + 200]), file=sys.stderr)


def differential(resp_addr, redis_path):
    ours, theirs = Peer(resp_addr), Peer(redis_path)
    failures = 0
    for name, chunks, compare in steps():
        try:
            a, b = ours.step(chunks), theirs.step(chunks)
        except OSError as e:
            fail("step %r: %s" % (name, e))
        if compare == "sets":
            a_cmp, b_cmp = normalize_sets(a), normalize_sets(b)
        elif compare == "ttls":
            a_cmp, b_cmp = a, (a if ttls_match(a, b) else b)
        else:
            a_cmp, b_cmp = a, b
        if a_cmp != b_cmp:
            failures += 1
            report(name, a, b)
    ours.close()
    theirs.close()
    for name, chunks in closing_steps():
        x, y = Peer(resp_addr), Peer(redis_path)
        try:
            a, b = x.until_closed(chunks), y.until_closed(chunks)
        except OSError as e:
            fail("closing step %r: %s" % (name, e))
        x.close()
        y.close()
        if a != b:
            failures += 1
            report(name, a, b)
    total = len(steps()) + len(closing_steps())
    if failures:
        fail("%d of %d differential steps differ" % (failures, total))
    print("differential: %d steps, replies identical to redis-server" % total)


def expiry(resp_addr, redis_path):
    """Keys given a short TTL are gone on both servers once it has passed."""
    peers = [Peer(resp_addr), Peer(redis_path)]
    for p in peers:
        p.step([cmd("SET", "short", "v", "PX", "50"), cmd("PEXPIRE", "k", "50")])
    time.sleep(0.2)  # lets the 50 ms TTLs run out; not synchronisation
    got = [p.step([cmd("GET", "short"), cmd("EXISTS", "short"), cmd("TTL", "short")])
           for p in peers]
    if got[0] != got[1] or got[0] != b"$-1\r\n:0\r\n:-2\r\n":
        fail("expired key still visible: %r vs %r" % tuple(got))
    for p in peers:
        p.close()


def active_expiry(resp_addr):
    """The periodic sweep removes expired keys nobody reads: DBSIZE drops."""
    p = Peer(resp_addr)
    p.step([cmd("FLUSHDB")] + [cmd("SET", "vol:%d" % i, "v", "PX", "30") for i in range(200)])
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if p.step([cmd("DBSIZE")]) == b":0\r\n":
            p.close()
            return
        time.sleep(0.05)
    fail("the active expiry sweep did not remove 200 expired keys within %d s" % DEADLINE)


# ---------------------------------------------------------------------------
# Idle timeout (redis' "timeout"). Several silent clients at a time, so that
# with --threads 2 both threads serve some of them: a CONFIG SET made on one
# thread must close or spare the clients of the other.

SILENT_CLIENTS = 16
PONG = b"+PONG\r\n"


def open_silent(addr):
    return [socket.create_connection(addr, timeout=DEADLINE) for _ in range(SILENT_CLIENTS)]


def stay_open(socks, until, what):
    """No socket gets a byte or EOF before `until` (checked at least once)."""
    while True:
        left = max(0.0, until - time.monotonic())
        ready, _, _ = select.select(socks, [], [], left)
        if ready:
            fail("%s: a connection was closed or got bytes (%r)" % (what, ready[0].recv(64)))
        if left == 0.0:
            return


def await_closed(socks, start, what, low=1.0, high=3.0):
    """Every socket sees EOF, with no byte before it, between `low` and
    `high` seconds after `start`."""
    pending = list(socks)
    while pending:
        left = start + high - time.monotonic()
        if left <= 0:
            fail("%s: %d of %d connections still open after %g s"
                 % (what, len(pending), len(socks), high))
        ready, _, _ = select.select(pending, [], [], left)
        elapsed = time.monotonic() - start
        for s in ready:
            data = s.recv(64)
            if data:
                fail("%s: an idle connection got %r" % (what, data))
            if elapsed < low:
                fail("%s: closed after %.3f s, before the %g s timeout" % (what, elapsed, low))
            pending.remove(s)
            s.close()


def ping(peer):
    if peer.step([cmd("PING")]) != PONG:
        fail("PING did not get PONG")


def default_timeout(silent, opened_at):
    """Without --timeout (redis' default, 0) silent clients are never closed:
    these were opened before every other check ran."""
    stay_open(silent, opened_at + 1.5, "timeout 0 (the default)")
    print("timeout 0: %d silent clients open through %.1f s"
          % (len(silent), time.monotonic() - opened_at))


def runtime_timeout(addr, silent):
    """CONFIG SET timeout reaches the connections already open."""
    control = Peer(addr)
    set_at = time.monotonic()
    if control.step([cmd("CONFIG", "SET", "timeout", "1")]) != b"+OK\r\n":
        fail("CONFIG SET timeout 1 failed")
    await_closed(silent + [control.sock], set_at, "CONFIG SET timeout 1")
    # Under timeout 1 from their first PING on; CONFIG SET timeout 0 (from
    # a new connection: the last one was idle too) must spare them.
    spared = [Peer(addr) for _ in range(SILENT_CLIENTS)]
    for p in spared:
        ping(p)
    control = Peer(addr)
    quiet_from = time.monotonic()
    if control.step([cmd("CONFIG", "SET", "timeout", "0")]) != b"+OK\r\n":
        fail("CONFIG SET timeout 0 failed")
    stay_open([p.sock for p in spared], quiet_from + 1.5, "CONFIG SET timeout 0")
    for p in spared + [control]:
        ping(p)
        p.close()
    print("CONFIG SET timeout: 1 closed %d idle clients within 1-3 s, then 0 spared %d"
          % (SILENT_CLIENTS + 1, SILENT_CLIENTS + 1))


def ping_every(peer, interval, seconds, replies):
    """PING every `interval` seconds for `seconds`; each reply (b"" at EOF)
    goes to `replies`. Runs in a thread of its own."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        peer.sock.sendall(cmd("PING"))
        reply = b""
        while len(reply) < len(PONG):
            data = peer.sock.recv(len(PONG) - len(reply))
            if not data:
                break
            reply += data
        replies.append(reply)
        if reply != PONG:
            return
        time.sleep(interval)  # the pace of a client that is slow, not idle


def command_line_timeout(exe, args):
    """--timeout 1: a silent client is closed, silently, after 1 s; one that
    sends a PING every 0.3 s is not, and gets every PONG."""
    proc, addr = start_resp_server(exe, *args, "--timeout", "1")
    try:
        start = time.monotonic()
        silent = open_silent(addr)
        pinger = Peer(addr)
        replies = []
        thread = threading.Thread(target=ping_every, args=(pinger, 0.3, 2.0, replies))
        thread.start()
        await_closed(silent, start, "--timeout 1")
        thread.join(DEADLINE)
        if thread.is_alive() or len(replies) < 6 or any(r != PONG for r in replies):
            fail("--timeout 1: a client sending PING every 0.3 s got %r" % replies)
        ping(pinger)
        pinger.close()
    finally:
        rc = stop(proc, "resp_server --timeout 1")
    if rc != 0:
        fail("resp_server --timeout 1 exited with %d after SIGTERM" % rc)
    print("--timeout 1: %d silent clients closed after 1-3 s, a PING every 0.3 s kept one "
          "open (%d PONGs)" % (SILENT_CLIENTS, len(replies)))


def in_background(fn, *args):
    """Runs fn(*args) in a thread; the function returned waits for it and
    fails unless fn completed (a fail() in fn has said why)."""
    completed = []
    thread = threading.Thread(target=lambda: completed.append(fn(*args)))
    thread.start()

    def join():
        thread.join(DEADLINE * 2)
        if not completed:
            fail("%s did not complete" % fn.__name__)
    return join


def run(argv, timeout=60, stdin=None):
    try:
        r = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail("%s did not finish within %d s" % (argv[0], timeout))
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def redis_cli(host, port):
    base = ["redis-cli", "-h", host, "-p", str(port)]
    expect = [
        (["PING"], "PONG"),
        (["SET", "cli", "hello world"], "OK"),
        (["GET", "cli"], "hello world"),
        (["INCRBY", "clin", "41"], "41"),
        (["MGET", "cli", "nope"], "hello world\n"),
        (["EXPIRE", "cli", "100"], "1"),
        (["TTL", "cli"], "100"),
        (["NOPE", "x"], "ERR unknown command 'NOPE', with args beginning with: 'x' "),
    ]
    for args, want in expect:
        rc, out, err = run(base + args, timeout=DEADLINE)
        if rc != 0 or out.rstrip("\n") != want.rstrip("\n"):
            fail("redis-cli %s: rc=%d out=%r err=%r, want %r" % (args, rc, out, err, want))
    rc, out, _ = run(base + ["--no-raw", "INCR", "clin"], timeout=DEADLINE)
    if out.strip() != "(integer) 42":
        fail("redis-cli --no-raw INCR: %r" % out)
    # Commands read from stdin, as a script would feed them.
    rc, out, _ = run(base, timeout=DEADLINE, stdin=b"SET piped 1\nINCR piped\nGET piped\n")
    if out.split() != ["OK", "2", "2"]:
        fail("redis-cli with commands on stdin: %r" % out)
    # redis-cli 7 asks COMMAND DOCS for its interactive help.
    rc, out, _ = run(base + ["COMMAND", "DOCS", "get"], timeout=DEADLINE)
    if "summary" not in out or "Get the value of a key" not in out:
        fail("COMMAND DOCS get: %r" % out)
    print("redis-cli: %d commands answered as expected" % (len(expect) + 3))


def redis_benchmark(host, port, pipeline, requests):
    tests = "ping,set,get,incr,mset"
    argv = ["redis-benchmark", "-h", host, "-p", str(port), "-c", "50", "-t", tests,
            "-P", str(pipeline), "-n", str(requests), "-q"]
    rc, out, err = run(argv, timeout=150)
    lines = [l.strip() for l in re.split(r"[\r\n]", out) if "requests per second" in l]
    names = [l.split(":")[0] for l in lines]
    want = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)"]
    if rc != 0 or names != want or re.search(r"(?i)error", out + err):
        fail("redis-benchmark -P %d: rc=%d\nstdout: %s\nstderr: %s" % (pipeline, rc, out, err))
    print("redis-benchmark -P %d -n %d: %s" % (pipeline, requests, "; ".join(lines)))


def main():
    if len(sys.argv) < 2:
        fail("usage: resp_smoke.py PATH/TO/resp_server [SERVER ARGS...]")
    if not shutil.which("redis-server"):
        print("SKIP: redis-server is not installed")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="resp_smoke.")
    ours, addr = start_resp_server(sys.argv[1], *sys.argv[2:])
    redis, redis_path = start_redis(tmp)
    watchdog = threading.Timer(170, lambda: (ours.kill(), redis.kill()))
    watchdog.start()
    try:
        silent, opened_at = open_silent(addr), time.monotonic()
        differential(addr, redis_path)
        expiry(addr, redis_path)
        active_expiry(addr)
        if shutil.which("redis-cli"):
            redis_cli(*addr)
        if shutil.which("redis-benchmark"):
            redis_benchmark(*addr, pipeline=16, requests=100000)
            redis_benchmark(*addr, pipeline=1, requests=10000)
        default_timeout(silent, opened_at)
        config_differential(addr, redis_path)
        # Two servers, two independent waits: side by side, to save time.
        command_line_timeout_done = in_background(command_line_timeout, sys.argv[1],
                                                  sys.argv[2:])
        runtime_timeout(addr, silent)
        command_line_timeout_done()
    finally:
        watchdog.cancel()
        stop(redis, "redis-server")
        rc = stop(ours, "resp_server")
        shutil.rmtree(tmp, ignore_errors=True)
    if rc != 0:
        fail("resp_server exited with %d after SIGTERM" % rc)
    print("PASS")


if __name__ == "__main__":
    main()
