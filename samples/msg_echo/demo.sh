#!/usr/bin/env bash
# msg_echo: a Python client framing with struct.pack('>L') round-trips
# messages of 0 B, 1 B and 1 MiB through msg_echo_server.
set -euo pipefail
build=${1:?usage: demo.sh BUILD_DIR}
out=$(mktemp)
. "$(dirname "$0")/../demo_lib.sh"
trap 'demo_cleanup; rm -f "$out"' EXIT
start_server "$out" "$build/samples/msg_echo/msg_echo_server" --port 0
echo "msg_echo_server listening on $addr"
timeout 20 python3 - "${addr##*:}" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
def recvall(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit("closed early")
        b += c
    return b
for m in [b"", b"x", b"\x00" * (1 << 20)]:
    s.sendall(struct.pack(">L", len(m)) + m)
    back = recvall(struct.unpack(">L", recvall(4))[0])
    print("  %8d bytes sent, %8d bytes echoed, equal: %s" % (len(m), len(back), back == m))
PY
kill -TERM $server
wait $server && echo "msg_echo_server exited 0 on SIGTERM"
