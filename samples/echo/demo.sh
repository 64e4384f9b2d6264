#!/usr/bin/env bash
# echo: echo_server on an ephemeral port, driven by echo_client with 100
# concurrent connections, then stopped with SIGTERM.
set -euo pipefail
build=${1:?usage: demo.sh BUILD_DIR}
out=$(mktemp)
. "$(dirname "$0")/../demo_lib.sh"
trap 'demo_cleanup; rm -f "$out"' EXIT
start_server "$out" "$build/samples/echo/echo_server" --port 0
echo "echo_server listening on $addr"
echo "echo_client: 100 connections x 200 messages of 1 KiB, every byte verified"
"$build/samples/echo/echo_client" --port "${addr##*:}" --conns 100 --messages 200 --size 1024
kill -TERM $server
wait $server && echo "echo_server exited 0 on SIGTERM"
