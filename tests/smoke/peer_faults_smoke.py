"""Peers that misbehave, against one sample server (issue 11, faults 1).

A bystander connects first and is answered after each fault, and a new
client is served after each: the server keeps serving the others. Then:

  reset      a peer resets the connection (SO_LINGER 0, then close) in the
             middle of a large reply (tut_sock: of a large upload);
  half-close a peer sends requests with a large reply, shuts down its
             sending side, and gets every reply, then the server's close;
  no-read    a peer keeps sending requests and never reads: the server
             stops reading it (it is paused, not closed: afterwards it
             reads every reply and is answered again) and its RSS stays
             within a bound meanwhile; chat_server and tut_sock_server
             instead close such a peer, as they document;
  vanish     a peer stops reading and writing in the middle of a request
             (a client gone without FIN). Where the sample has an idle
             timeout (chat_server, smtp_server, http_server, resp_server
             --timeout) a second server with a short one drops the peer
             once it expires, telling it so where the protocol does,
             while a client speaking within the timeout stays.

usage: peer_faults_smoke.py SAMPLE SERVER_EXE
"""

import os
import selectors
import subprocess
import sys
import time

from hostile import (SAMPLES, TIMEOUT, Closed, Conn, Server, check, fail, pattern, served)

name, exe = sys.argv[1], sys.argv[2]
sample = SAMPLES[name]()

# The no-read peer sends at most this much; a server that neither pauses
# nor drops it would take it all and grow by about as much.
FLOOD_CAP = 256 << 20
# A peer whose socket stays unwritable this long is taken as paused by the
# server (this wait is the behaviour under test: the server not reading).
PAUSED_AFTER = 1.5
# How much the server's RSS may grow while the peer floods it: well above
# what the samples queue per peer (about 1 MiB of replies, plus one read
# of requests), far below what an unbounded queue would reach.
RSS_BOUND_KIB = 24 << 10


def server_env():
    """Under AddressSanitizer, freed memory is quarantined (256 MiB by
    default) and RSS grows with churn, bounded queue or not: a small
    quarantine keeps the RSS check meaningful there too."""
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":quarantine_size_mb=4:thread_local_quarantine_size_kb=64"
    return env


class Bystander:
    """A client connected before the faults, answered after each one."""

    def __init__(self, server):
        self.server = server
        self.n = 1000
        if sample.replies:
            self.conn = sample.connect(server)
        else:
            self.conn = Conn(server.host, server.port)
            self.conn.wait_ready()
            self.conn.send(b"bystander/")

    def check(self, what):
        self.server.check_alive(what)
        self.n += 1
        if sample.replies:
            try:
                sample.ping(self.conn, self.n)
            except (Closed, TimeoutError) as e:
                fail("%s: a client connected before was not answered %s: %s"
                     % (name, what, e))
        else:
            self.conn.send(b"%d/" % self.n)
        served(sample, self.server, self.n)

    def finish(self):
        if not sample.replies:
            # tut_sock: the bystander's whole message is printed at its close.
            self.conn.shutdown_write()
            self.conn.read_to_eof()
            want = "received: bystander/" + "".join("%d/" % i for i in range(1001, self.n + 1))
            deadline = time.monotonic() + TIMEOUT
            while want not in self.server.stdout():
                if time.monotonic() > deadline:
                    fail("tut_sock_server did not print the bystander's message %r" % want)
                time.sleep(0.02)  # polling the server's log file
        self.conn.close()


def reset_mid_response(server):
    if not sample.replies:
        c = Conn(server.host, server.port)
        c.wait_ready()
        c.queue(pattern(8 << 20))
        c.pump(time.monotonic() + TIMEOUT, lambda: len(c.out) < (7 << 20))
        c.rst()
        return "reset after sending 1 MiB of an 8 MiB message"
    request, reply = sample.big()
    c = sample.connect(server, rcvbuf=65536)
    c.queue(request)
    want = min(len(reply) // 4, 1 << 20)
    c.pump(time.monotonic() + TIMEOUT, lambda: len(c.inbox) >= want)
    got = bytes(c.inbox)
    if not sample.noisy:
        check(reply.startswith(got), "%s: the large reply came back wrong before the reset" % name)
    c.rst()
    return "reset after %d KiB of a %d KiB reply" % (len(got) >> 10, len(reply) >> 10)


def half_close(server):
    if not sample.replies:
        c = Conn(server.host, server.port)
        c.wait_ready()
        c.send(b"half-closed/")
        c.shutdown_write()
        check(c.read_to_eof() == b"", "tut_sock_server sent data to a client")
        c.close()
        return "closed after the half-close"
    request, reply = sample.big()
    # The client reads only when the server stops taking its requests, and
    # then only what is there, so that when the FIN (right behind the last
    # request) arrives, replies fill the kernel's buffers and queue up in
    # the server: they must all be sent still, and only then the close.
    c = sample.connect(server, rcvbuf=16384)
    c.queue(request)
    deadline = time.monotonic() + 60
    while c.out:
        check(time.monotonic() < deadline, "%s: the server stopped taking requests" % name)
        before = len(c.out)
        c.on_writable()
        if len(c.out) == before and not wait_writable(c, 0.2):
            c.on_readable()
    c.shutdown_write()
    try:
        got = c.read_to_eof(timeout=60)
    except TimeoutError:
        fail("%s: after a half-close the server did not close its side (%d of %d bytes)"
             % (name, len(c.inbox), len(reply)))
    c.close()
    if sample.noisy:
        got = b"".join(l for l in got.splitlines(True) if not l.startswith(b"* guest"))
    if got != reply:
        fail("%s: after a half-close the client got %d of %d reply bytes%s"
             % (name, len(got), len(reply),
                "" if reply.startswith(got) else " (and they differ)"))
    return "%d KiB of replies, then the close" % (len(reply) >> 10)


def wait_writable(c, timeout):
    sel = selectors.DefaultSelector()
    sel.register(c.sock, selectors.EVENT_WRITE)
    ready = sel.select(timeout)
    sel.close()
    return bool(ready)


def never_reads(server):
    c = sample.connect(server, rcvbuf=65536)
    sample.prepare_flood(c)
    served(sample, server, 1)
    rss0 = server.rss_kib()
    replies = []
    i = sent = 0
    paused = dropped = False
    while sent < FLOOD_CAP:
        if not c.out:
            chunk = sample.flood(i)
            c.queue(chunk)
            replies.append(sample.flood_reply(i))
            sent += len(chunk)
            i += 1
        before = len(c.out)
        c.on_writable()  # writes only: this peer never reads
        if c.reset or c.eof:
            dropped = True
            break
        if len(c.out) == before and not wait_writable(c, PAUSED_AFTER):
            paused = True
            break
    rss1 = server.rss_kib()
    server.check_alive("while a peer sent requests without reading")
    growth = rss1 - rss0
    if growth > RSS_BOUND_KIB:
        fail("%s: RSS grew by %d KiB (bound %d KiB) while a peer sent %d KiB of requests "
             "without reading" % (name, growth, RSS_BOUND_KIB, sent >> 10))
    bystander.check("while a peer does not read")
    if sample.drops_non_readers:
        if not dropped:
            # Its requests may still be in flight: the drop follows.
            try:
                c.pump(time.monotonic() + TIMEOUT, lambda: c.eof)
            except (Closed, TimeoutError) as e:
                fail("%s: a peer that does not read was not closed: %s" % (name, e))
        c.close()
        return "dropped after %d KiB of requests; RSS +%d KiB" % (sent >> 10, growth)
    check(paused and not dropped,
          "%s: %s while a peer sent %d KiB of requests without reading"
          % (name, "it closed the peer" if dropped else "it never stopped reading", sent >> 10))
    # Paused, not closed: the peer reads now and gets every reply.
    total = 0
    for reply in replies:
        for want in (reply if isinstance(reply, list) else [reply]):
            got = c.recv_exactly(len(want), timeout=60)
            check(got == want, "%s: the paused peer's replies came back wrong after %d bytes"
                  % (name, total))
            total += len(want)
    sample.ping(c, 7)
    c.close()
    return "paused after %d KiB of requests; RSS +%d KiB; then all %d KiB of replies" % (
        sent >> 10, growth, total >> 10)


def vanish_unbounded(server):
    """A peer that stops in the middle of a large reply, never reads or
    writes again, and stays connected: the others are still served."""
    c = sample.connect(server, rcvbuf=65536) if sample.replies else Conn(server.host, server.port)
    c.wait_ready()
    if sample.replies:
        request, reply = sample.big()
        c.queue(request[:len(request) // 2 + 1])
    else:
        c.queue(pattern(1 << 20))
    c.pump(time.monotonic() + TIMEOUT, lambda: not c.out or len(c.inbox) > 0)
    return c  # left as it is until the server stops


def supports(option):
    """Whether the server accepts `option` (resp_server --timeout is newer
    than this test): a usage error exits at once."""
    proc = subprocess.Popen([exe, "--port", "0", *sample.args(), *option],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        first = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return first.startswith(b"listening on ")


def partial_request():
    if name == "chat":
        return b"I was saying"
    if name == "smtp":
        return b"NOO"
    if name == "http":
        return b"GET /hello HTTP/1.1\r\nHo"
    return b"*2\r\n$4\r\nECHO\r\n$5\r\nhel"  # resp


def vanish_with_idle_timeout():
    """A second server with a short idle timeout: the peer that vanished in
    the middle of a request is dropped, a client within the timeout stays."""
    timeout = 1.0 if name != "smtp" else 1.2
    server = Server(sample, exe, *sample.idle_args, env=server_env())
    try:
        lively = sample.connect(server)
        gone = sample.connect(server)
        gone.send(partial_request())
        start = time.monotonic()
        n = 0
        # The lively client speaks every 0.3 s, within the timeout; the
        # other says nothing more and reads nothing.
        while not gone.eof:
            if time.monotonic() - start > timeout + 15:
                fail("%s: a peer silent for %.0f s past its %.1f s idle timeout was not dropped"
                     % (name, time.monotonic() - start - timeout, timeout))
            n += 1
            sample.ping(lively, n)
            try:
                gone.pump(time.monotonic() + 0.3, lambda: gone.eof)
            except (TimeoutError, Closed):
                pass
        took = time.monotonic() - start
        told = bytes(gone.inbox)
        gone.close()
        check(took >= timeout * 0.75,
              "%s: the silent peer was dropped after %.2f s, before its %.1f s timeout"
              % (name, took, timeout))
        if name == "http":
            check(told.startswith(b"HTTP/1.1 408 "), "http: the silent peer got %r, not 408" % told)
        elif sample.idle_notice:
            check(told.startswith(sample.idle_notice) or sample.idle_notice in told,
                  "%s: the silent peer was told %r" % (name, told))
        sample.ping(lively, n + 1)
        lively.close()
        server.check_alive("after dropping an idle peer")
    finally:
        if server.alive():
            server.stop()
    return "dropped %.2f s after it went silent (timeout %.1f s), the lively client kept" % (
        took, timeout)


server = Server(sample, exe, env=server_env())
try:
    bystander = Bystander(server)
    report = []
    for what, fault in (("reset", reset_mid_response), ("half-close", half_close),
                        ("no-read", never_reads)):
        result = fault(server)
        bystander.check("after the %s peer" % what)
        report.append("%s: %s" % (what, result))
    vanished = vanish_unbounded(server)
    bystander.check("while a peer has vanished")
    report.append("vanish: the others served while it hangs")
    bystander.finish()
    server.check_alive("at the end")
    vanished.close()
finally:
    if server.alive():
        server.stop()
    else:
        server.check_alive("at the end")

if sample.idle_args and (name != "resp" or supports(sample.idle_args)):
    report.append("vanish (idle timeout): " + vanish_with_idle_timeout())
elif name == "resp":
    report.append("vanish (idle timeout): skipped, this resp_server has no --timeout")

for line in report:
    print("ok: %s %s" % (name, line))
