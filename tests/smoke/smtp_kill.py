#!/usr/bin/env python3
"""smtp_server crash consistency: smtplib sends MESSAGES messages one after
another while smtp_server is killed with SIGKILL at KILLS random moments and
restarted each time on the same --mbox. The client never sends a message
again: one that did not get its 250 is simply counted as unacknowledged.

Afterwards the mbox must hold every acknowledged message exactly once and
whole, an unacknowledged one at most once and whole, and nothing else: no
torn entry, no two entries run together. Each message carries a unique
X-Msg-Id and the SHA-256 of its body (X-Body-Sha256), checked against the
body Python's mailbox reads back. A restart that finds a torn tail must say
so in one line (the server's "info: mbox ...: cut ..."); the run reports how
many restarts cut something.

usage: smtp_kill.py SMTP_SERVER [--messages 100] [--kills 5] [--seed N] [--dir DIR]

The moments come from a seeded RNG (printed first; --seed replays the same
schedule): the kill points are drawn message numbers; half the kills come a
drawn 0-40 ms after their message starts (in the transfer, the append,
between messages or in a restart), the other half aim at the delivery of a
large message (formatting, write(), fdatasync(), the commit): they come a
drawn fraction of the delivery's expected length after its final dot went
out, that length measured on the run's earlier large messages. Timing still varies from run to run;
the schedule does not. tests/soak/smtp_kill.py runs
1,000 messages and 50 kills.
"""
import argparse
import hashlib
import mailbox
import os
import random
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

TIMEOUT = 30


LIVE = []  # every server process started, so that none outlives a failure


def kill_leftovers():
    for proc in LIVE:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def fail(msg):
    print("FAIL:", msg, file=sys.stderr, flush=True)
    kill_leftovers()
    sys.exit(1)


class Server:
    """smtp_server on --port 0 with a given mbox; a thread collects its
    stdout (the lines before 'listening on' are its start-up log)."""

    def __init__(self, exe, mbox):
        self.proc = subprocess.Popen([exe, "--port", "0", "--mbox", mbox],
                                     stdout=subprocess.PIPE, text=True)
        LIVE.append(self.proc)
        self.log = []
        self.port = None
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(TIMEOUT) or self.port is None:
            fail("smtp_server did not print 'listening on' within %d s (status %s): %r"
                 % (TIMEOUT, self.proc.poll(), self.log))
        self.log = self.log[:-1]  # the start-up log, without the listening line

    def _read(self):
        for line in self.proc.stdout:
            self.log.append(line.rstrip("\n"))
            if self.port is None and line.startswith("listening on "):
                self.port = int(line.rsplit(":", 1)[1])
                self.ready.set()
        self.ready.set()  # exited

    def wait_dead(self):
        self.proc.wait(timeout=TIMEOUT)
        self.reader.join(TIMEOUT)


class Client(smtplib.SMTP):
    """smtplib.SMTP that notes when the message text, final dot included,
    is handed to the kernel (smtplib sends it in one send()), and can start
    a timer then."""
    after_data = None
    dot_sent = None

    def send(self, s):
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.dot_sent = time.monotonic()
            if self.after_data is not None:
                self.after_data()
                self.after_data = None

    def sendmail(self, *args, **kwargs):
        self.dot_sent = None
        return super().sendmail(*args, **kwargs)


LINE_POOL = None


def body_for(rng, msg_id, size):
    """About `size` bytes of lines (some start with a dot, none with
    "From "), the first naming the message."""
    global LINE_POOL
    if LINE_POOL is None:
        r = random.Random(0)
        alphabet = "abcdefghijklmnopqrstuvwxyz .-=_0123456789"
        LINE_POOL = ["".join(r.choice(alphabet) for _ in range(n % 101)) for n in range(400)]
        LINE_POOL += [".", "..", ".leading dot", ""]
    lines = ["message %s" % msg_id]
    total = len(lines[0]) + 1
    while total < size:
        line = rng.choice(LINE_POOL)
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


def message_size(rng):
    r = rng.random()
    if r < 0.70:
        return rng.randint(200, 8 << 10)
    if r < 0.95:
        return rng.randint(8 << 10, 256 << 10)
    return rng.randint(256 << 10, 3 << 20)


def run(exe, messages, kills, seed, directory):
    rng = random.Random(seed)
    kill_points = sorted(rng.sample(range(messages), kills))
    # Half the kills come at a moment drawn over the whole message; the
    # other half aim at its delivery (format, write, fdatasync, commit),
    # which starts when the final dot arrives, and their messages are large
    # so that the write itself takes a while.
    aimed = {i: rng.random() < 0.5 for i in kill_points}
    # An aimed kill comes a drawn fraction of the delivery's expected length
    # after the final dot (measured on this run's earlier large messages).
    delays = {i: rng.random() if aimed[i] else rng.uniform(0, 0.040) for i in kill_points}
    per_byte = []  # seconds from the final dot to the 250, per byte, of large messages
    sizes = [message_size(rng) for _ in range(messages)]
    for i in kill_points:
        if aimed[i]:
            sizes[i] = rng.randint(1 << 20, 4 << 20)
    mbox = os.path.join(directory, "kill.mbox")
    acked, unacked = {}, {}
    reports = []
    restarts = 0
    server = Server(exe, mbox)
    client = None
    killed_at = [None]  # when the pending kill went out
    timer = None

    def kill(proc):
        killed_at[0] = time.monotonic()
        proc.kill()

    def settle():
        """Waits for a kill that is due; after one, restarts the server."""
        nonlocal server, client, timer, restarts, reports
        if timer is not None:
            if timer.ident is not None:  # an aimed timer starts only with its data
                timer.join(TIMEOUT)
            timer = None
        if killed_at[0] is None:
            return
        server.wait_dead()
        if client is not None:
            try:
                client.close()
            except OSError:
                pass
            client = None
        server = Server(exe, mbox)
        restarts += 1
        reports += [l for l in server.log if l.startswith("info: mbox ")]
        killed_at[0] = None

    start = time.monotonic()
    for i in range(messages):
        if i in delays:
            settle()  # the previous kill, if it is still due
            delay = delays[i]
            if aimed[i]:
                expected = sorted(per_byte)[len(per_byte) // 2] * sizes[i] if per_byte else 0.02
                delay *= expected
            timer = threading.Timer(delay, kill, args=(server.proc,))
            if not aimed[i]:
                timer.start()
        msg_id = "%d-%d" % (seed, i)
        body = body_for(rng, msg_id, sizes[i])
        digest = hashlib.sha256(body.encode()).hexdigest()
        text = ("Subject: kill test %d\nX-Msg-Id: %s\nX-Body-Sha256: %s\n\n%s"
                % (i, msg_id, digest, body))
        try:
            if client is None:
                client = Client("127.0.0.1", server.port, timeout=TIMEOUT)
            client.after_data = timer.start if i in aimed and aimed[i] else None
            client.sendmail("kill@example.com", ["box@example.com"], text)
            acked[msg_id] = digest
            if sizes[i] >= 256 << 10 and client.dot_sent is not None:
                per_byte.append((time.monotonic() - client.dot_sent) / sizes[i])
        except (smtplib.SMTPException, OSError) as e:
            failed_at = time.monotonic()
            unacked[msg_id] = digest
            client = None
            if timer is not None and timer.ident is not None:
                timer.join(TIMEOUT)
            if killed_at[0] is None or killed_at[0] > failed_at:
                fail("message %d failed while the server ran (seed %d): %r" % (i, seed, e))
            settle()
        if killed_at[0] is not None:
            settle()  # killed after this message's 250: restart before the next
    settle()  # a kill drawn late in the run may still be due
    if client is not None:
        client.quit()
    elapsed = time.monotonic() - start
    server.proc.terminate()
    if server.proc.wait(timeout=TIMEOUT) != 0:
        fail("smtp_server did not exit 0 on SIGTERM")
    server.reader.join(TIMEOUT)
    check(mbox, acked, unacked, seed)
    torn = [r for r in reports if ": cut a torn entry" in r]
    whole = [r for r in reports if ": cut an unacknowledged entry" in r]
    print("ok: seed %d: %d messages, %d acknowledged, %d not; %d kills, %d restarts, "
          "which cut %d torn entries and %d whole unacknowledged ones; mbox consistent (%.1f s)"
          % (seed, messages, len(acked), len(unacked), kills, restarts, len(torn), len(whole),
             elapsed))
    for r in reports:
        print("  server said: %s" % r)
    left = [r for r in reports if ": cut " not in r]
    if left:
        fail("a restart did not cut an interrupted append: %r" % left)


def check(path, acked, unacked, seed):
    with open(path, "rb") as f:
        raw = f.read()
    if raw and not (raw.startswith(b"From ") and raw.endswith(b"\n\n")):
        fail("the mbox does not start with 'From ' and end with a blank line (tail %r)"
             % raw[-200:])
    seen = {}
    box = mailbox.mbox(path, create=False)
    for n, m in enumerate(box):
        msg_id, digest = m["X-Msg-Id"], m["X-Body-Sha256"]
        if msg_id is None or digest is None:
            fail("entry %d has no X-Msg-Id/X-Body-Sha256: a torn or merged entry (seed %d): %r"
                 % (n, seed, m.as_string()[:300]))
        body = m.get_payload(decode=False)
        if hashlib.sha256(body.encode()).hexdigest() != digest:
            fail("entry %d (%s) is not whole: its body does not match its checksum (seed %d)"
                 % (n, msg_id, seed))
        if msg_id not in acked and msg_id not in unacked:
            fail("entry %d has an id nobody sent: %s" % (n, msg_id))
        expected = acked.get(msg_id) or unacked.get(msg_id)
        if digest != expected:
            fail("entry %d (%s) has another message's checksum" % (n, msg_id))
        seen[msg_id] = seen.get(msg_id, 0) + 1
    dups = [k for k, v in seen.items() if v > 1]
    if dups:
        fail("messages in the mbox more than once (seed %d): %s" % (seed, dups[:10]))
    missing = [k for k in acked if k not in seen]
    if missing:
        fail("acknowledged messages missing from the mbox (seed %d): %s" % (seed, missing[:10]))
    if raw.count(b"\nFrom ") + (1 if raw else 0) != len(seen):
        fail("the mbox has %d From lines for %d messages" % (raw.count(b"\nFrom ") + 1, len(seen)))


def main():
    ap = argparse.ArgumentParser(description="smtp_server SIGKILL consistency")
    ap.add_argument("server")
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--dir", help="where the mbox goes (default: a temporary directory)")
    a = ap.parse_args()
    if not 0 <= a.kills <= a.messages:
        ap.error("--kills is 0 to --messages")
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 1 << 32)
    print("smtp_kill: seed %d (replay with --seed %d)" % (seed, seed), flush=True)
    try:
        if a.dir:
            os.makedirs(a.dir, exist_ok=True)
            d = tempfile.mkdtemp(prefix="smtp-kill-", dir=a.dir)
            run(a.server, a.messages, a.kills, seed, d)
        else:
            with tempfile.TemporaryDirectory(prefix="smtp-kill-") as d:
                run(a.server, a.messages, a.kills, seed, d)
    finally:
        kill_leftovers()


if __name__ == "__main__":
    main()
