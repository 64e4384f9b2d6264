"""A Python client framing with struct.pack('>L') round-trips messages of
0 B, 1 B and 16 MiB through msg_echo_server; an oversized length is refused;
a client that sends ten messages and half-closes gets ten echoes, then EOF."""

import os
import socket
import struct
import sys

from half_close import half_close
from server_process import fail, start_server, stop_server


def recvall(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            fail("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def roundtrip(s, msg):
    s.sendall(struct.pack('>L', len(msg)) + msg)
    n = struct.unpack('>L', recvall(s, 4))[0]
    return recvall(s, n)


proc, host, port = start_server(sys.argv[1], "--max-message", str(32 << 20))
try:
    with socket.create_connection((host, port), timeout=20) as s:
        for msg in [b"", b"x", os.urandom(16 << 20), b"after"]:
            back = roundtrip(s, msg)
            if back != msg:
                fail("message of %d bytes came back as %d bytes" % (len(msg), len(back)))
    with socket.create_connection((host, port), timeout=20) as s:
        s.sendall(struct.pack('>L', 0xffffffff))
        if s.recv(1) != b"":
            fail("an oversized message was not refused by closing")
    msgs = [b"message %d" % i for i in range(10)]
    framed = b"".join(struct.pack('>L', len(m)) + m for m in msgs)
    back = half_close(host, port, framed, "msg_echo_server")
    if back != framed:
        fail("after a half-close the client got %r, expected the ten echoes" % back[:200])
finally:
    stop_server(proc)
print("ok: 0 B, 1 B and 16 MiB round-tripped; oversized refused; half-close answered and closed")
