#!/usr/bin/env bash
# http_server: curl fetches /hello and a file, then wrk runs for 2 seconds
# over 10 keep-alive connections.
set -euo pipefail
build=${1:?usage: demo.sh BUILD_DIR}
out=$(mktemp)
root=$(mktemp -d)
echo "<h1>served by asyncore-cpp tasks</h1>" >"$root/index.html"
. "$(dirname "$0")/../demo_lib.sh"
trap 'demo_cleanup; rm -rf "$out" "$root"' EXIT
start_server "$out" "$build/samples/http_server/http_server" --port 0 --root "$root"
echo "http_server listening on $addr"
echo "curl /hello: $(curl -sS --max-time 5 "http://$addr/hello")"
echo "curl /index.html: $(curl -sS --max-time 5 "http://$addr/index.html")"
if command -v wrk >/dev/null; then
    wrk -t1 -c10 -d2s "http://$addr/hello" | sed 's/^/  /'
fi
kill -TERM $server
wait $server && echo "http_server exited 0 on SIGTERM"
