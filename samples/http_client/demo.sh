#!/usr/bin/env bash
# http_client: asyncore's HTTP client example fetching a file from
# python3 -m http.server on an ephemeral port.
set -euo pipefail
build=${1:?usage: demo.sh BUILD_DIR}
root=$(mktemp -d)
log=$(mktemp)
echo "Hello from asyncore-cpp!" >"$root/hello.txt"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$root" >"$log" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$root" "$log"' EXIT
for _ in $(seq 100); do
    grep -q 'port [0-9]*' "$log" && break
    sleep 0.05
done
port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$log" | head -1)
echo "\$ http_client http://127.0.0.1:$port/hello.txt"
"$build/samples/http_client/http_client" "http://127.0.0.1:$port/hello.txt"
