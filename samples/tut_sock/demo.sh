#!/usr/bin/env bash
# tut_sock: pycos' socket tutorial. tut_sock_server prints what each
# connection sent; tut_sock_client --count 5 sends five messages.
set -euo pipefail
build=${1:?usage: demo.sh BUILD_DIR}
out=$(mktemp)
. "$(dirname "$0")/../demo_lib.sh"
trap 'demo_cleanup; rm -f "$out"' EXIT
start_server "$out" "$build/samples/tut_sock/tut_sock_server" --port 0
echo "tut_sock_server listening on $addr"
"$build/samples/tut_sock/tut_sock_client" --port "${addr##*:}" --count 5
for _ in $(seq 100); do
    [ "$(grep -c '^received: ' "$out")" -ge 5 ] && break
    sleep 0.05
done
kill -INT $server
wait $server && echo "tut_sock_server exited 0 on SIGINT; it printed:"
cut -c1-60 "$out" | sed 's/^/  /'
