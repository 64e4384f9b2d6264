"""echo_server serves 100 concurrent Python asyncore clients, each checking
every byte it gets back."""

import asyncore
import sys
import time

from echo_common import fail, pattern, start_server, stop_server

CLIENTS = 100
SIZE = 200_000


class Client(asyncore.dispatcher):
    def __init__(self, host, port, seed):
        super().__init__()
        self.data = pattern(SIZE, seed)
        self.out = memoryview(self.data)
        self.got = bytearray()
        self.done = False
        self.create_socket()
        self.connect((host, port))

    def handle_connect(self):
        pass

    def writable(self):
        return len(self.out) > 0

    def handle_write(self):
        self.out = self.out[self.send(self.out[:65536]):]

    def handle_read(self):
        self.got += self.recv(65536)
        if len(self.got) > SIZE or self.got != self.data[:len(self.got)]:
            fail("client got wrong bytes at offset ~%d" % len(self.got))
        if len(self.got) == SIZE:
            self.done = True
            self.close()

    def handle_close(self):
        if not self.done:
            fail("server closed early after %d bytes" % len(self.got))
        self.close()

    def handle_error(self):
        fail("client error: %r" % (sys.exc_info()[1],))


server, host, port = start_server(sys.argv[1])
try:
    clients = [Client(host, port, i) for i in range(CLIENTS)]
    deadline = time.monotonic() + 60
    while asyncore.socket_map and time.monotonic() < deadline:
        asyncore.loop(timeout=0.5, count=1)
    finished = sum(c.done for c in clients)
    if finished != CLIENTS:
        fail("%d of %d clients finished" % (finished, CLIENTS))
finally:
    stop_server(server)
print("ok: %d asyncore clients x %d bytes echoed and verified" % (CLIENTS, SIZE))
