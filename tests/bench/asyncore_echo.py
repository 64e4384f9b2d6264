#!/usr/bin/env python3
"""Python's own asyncore echo server, the ease-of-use reference.

It is the echo handler from the asyncore documentation (a
dispatcher_with_send that sends back what it reads), run with
``python3 -W ignore`` on Python 3.11, the last release that ships asyncore.
It follows the samples' command-line contract: ``--host``, ``--port`` (0 picks
a free port), one ``listening on HOST:PORT`` line once bound, exit status 0 on
SIGINT or SIGTERM.

Two deliberate choices, both in asyncore's favour:

* ``asyncore.loop(use_poll=True)``: the default select() loop fails outright
  once a descriptor passes FD_SETSIZE (1024), and the idle-connection load
  opens ten thousand.
* ``handle_accept`` accepts up to 64 connections per wake-up instead of one,
  so opening the idle connections does not take one full poll pass over every
  registered socket per connection. The steady state is untouched.
"""

import argparse
import signal
import sys
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
import asyncore  # noqa: E402  (after the filter: importing it warns)

ACCEPT_BATCH = 64


class EchoHandler(asyncore.dispatcher_with_send):
    def handle_read(self):
        data = self.recv(8192)
        if data:
            self.send(data)


class EchoServer(asyncore.dispatcher):
    def __init__(self, host, port):
        super().__init__()
        self.create_socket()
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(4096)

    def handle_accept(self):
        for _ in range(ACCEPT_BATCH):
            pair = self.accept()
            if pair is None:
                return
            EchoHandler(pair[0])


def stop(signum, frame):
    # ExitNow is the one exception asyncore re-raises from inside a handler
    # instead of passing it to handle_error(), so the signal always ends loop().
    raise asyncore.ExitNow()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    server = EchoServer(args.host, args.port)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"listening on {args.host}:{server.socket.getsockname()[1]}", flush=True)
    try:
        asyncore.loop(timeout=30, use_poll=True)
    except asyncore.ExitNow:
        pass
    finally:
        asyncore.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
