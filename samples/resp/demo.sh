#!/usr/bin/env bash
# resp_server demo: start it, talk to it with redis-cli, run a short
# redis-benchmark (when Debian's redis-tools are installed).
set -euo pipefail
build=${1:?usage: demo.sh BUILD_DIR}
out=$(mktemp)
. "$(dirname "$0")/../demo_lib.sh"
trap 'demo_cleanup; rm -f "$out"' EXIT
start_server "$out" "$build/samples/resp/resp_server" --port 0
echo "resp_server: listening on $addr"
if ! command -v redis-cli >/dev/null; then
    echo "(redis-cli not installed: skipping the client part)"
    exit 0
fi
run() {
    echo "\$ redis-cli $(printf "%q " "$@")"
    redis-cli -p "$port" "$@"
}
run SET greeting "hello, asyncore"
run GET greeting
run INCRBY visits 41
run INCR visits
run SET session abc EX 60
run TTL session
run MSET k1 v1 k2 v2
run KEYS 'k?'
run NOSUCHCOMMAND arg
if command -v redis-benchmark >/dev/null; then
    echo "\$ redis-benchmark -t ping,set,get -P 16 -n 100000 -q"
    timeout 60 redis-benchmark -p "$port" -t ping,set,get -P 16 -n 100000 -q | tr '\r' '\n' |
        grep 'requests per second'
fi
