"""A client sends 8 MiB to echo_server without reading: the server stops
reading at its 1 MiB high-water mark (the rest waits in the server's kernel
receive queue, which we check in /proc/net/tcp) so its memory stays bounded;
then the client reads everything back intact."""

import selectors
import socket
import sys
import time

from echo_common import fail, pattern, rss_kib, start_server, stop_server

TOTAL = 8 << 20
data = pattern(TOTAL, 3)


def server_rx_queue(server_port, client_port):
    """Bytes waiting unread in the server's receive queue for this connection."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if (int(local.split(":")[1], 16) == server_port
                    and int(remote.split(":")[1], 16) == client_port):
                return int(queues.split(":")[1], 16)
    fail("connection not found in /proc/net/tcp")

server, host, port = start_server(sys.argv[1])
try:
    before = rss_kib(server.pid)
    s = socket.socket()
    # A small receive buffer on our side: the echo path cannot hide 8 MiB in
    # kernel buffers, so the server's own queue must fill and trip backpressure.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(10)
    s.connect((host, port))
    s.setblocking(False)
    sent = 0
    # Phase 1: push without reading until the server stops taking data.
    stalled_since = None
    deadline = time.monotonic() + 30
    while sent < TOTAL and time.monotonic() < deadline:
        try:
            sent += s.send(data[sent:sent + 65536])
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    time.sleep(0.5)  # let the server drain what it is going to drain
    growth = rss_kib(server.pid) - before
    unread = server_rx_queue(port, s.getsockname()[1])
    print("sent %d bytes without reading; server RSS grew by %d KiB; %d bytes left unread "
          "in its receive queue" % (sent, growth, unread))
    if unread == 0:
        fail("the server kept reading from a peer that does not read: no backpressure")
    if growth > 16 * 1024:
        fail("server RSS grew by %d KiB (> 16 MiB) for a peer that does not read" % growth)

    # Phase 2: read everything back while sending the rest.
    got = bytearray()
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    deadline = time.monotonic() + 60
    while len(got) < TOTAL and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=1):
            if ev & selectors.EVENT_READ:
                chunk = s.recv(1 << 20)
                if not chunk:
                    fail("server closed after echoing %d bytes" % len(got))
                got += chunk
            if ev & selectors.EVENT_WRITE and sent < TOTAL:
                try:
                    sent += s.send(data[sent:sent + 65536])
                except BlockingIOError:
                    pass
            if sent >= TOTAL:
                sel.modify(s, selectors.EVENT_READ)
    if len(got) != TOTAL:
        fail("got %d of %d bytes back" % (len(got), TOTAL))
    if got != data:
        fail("echoed bytes differ from what was sent")
    s.close()
finally:
    stop_server(server)
print("ok: 8 MiB echoed intact with bounded server memory")
