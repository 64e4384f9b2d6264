#!/usr/bin/env bash
# chat: chat_server with two chat_client terminals, alice and bob, talking
# for about two seconds; prints what each of them saw. Then the same over
# TLS (chat_server --tls, chat_client --tls --cafile) with a throwaway CA.
set -euo pipefail
. "$(dirname "$0")/../demo_lib.sh"
build=$(cd "${1:?usage: demo.sh BUILD_DIR}" && pwd)
bin="$build/samples/chat"
out=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT

# Starts chat_server with the given options; sets server_pid and port.
start_server() {
    "$bin/chat_server" --port 0 "$@" >"$out/server.log" &
    server_pid=$!
    for _ in $(seq 50); do
        grep -q '^listening on' "$out/server.log" && break
        sleep 0.1
    done
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out/server.log")
}

start_server
echo "chat_server listening on 127.0.0.1:$port"

{ echo "/nick alice"; sleep 0.5; echo "hi bob"; sleep 1.5; echo "/quit"; sleep 1; } |
    timeout 10 "$bin/chat_client" --port "$port" >"$out/alice.txt" 2>/dev/null &
alice=$!
sleep 0.2
{ echo "/nick bob"; sleep 0.8; echo "hello alice, bye"; sleep 0.8; } |
    timeout 10 "$bin/chat_client" --port "$port" >"$out/bob.txt" 2>/dev/null &
bob=$!
wait "$alice" "$bob" || true

echo "--- alice's terminal:"
sed 's/^/    /' "$out/alice.txt"
echo "--- bob's terminal:"
sed 's/^/    /' "$out/bob.txt"
kill -TERM "$server_pid"
wait "$server_pid" && echo "chat_server exited 0 on SIGTERM"
server_pid=

make_demo_pki "$out"
start_server --tls --cert "$out/server.pem" --key "$out/server.key"
echo
echo "chat_server --tls listening on 127.0.0.1:$port (a throwaway CA in ca.pem)"
tls_client=("$bin/chat_client" --port "$port" --tls --cafile "$out/ca.pem")
{ echo "/nick carol"; sleep 0.4; echo "hello dave, over TLS"; sleep 0.4; } |
    timeout 10 "${tls_client[@]}" >"$out/carol.txt" 2>/dev/null &
carol=$!
sleep 0.2
{ echo "/nick dave"; sleep 0.6; } | timeout 10 "${tls_client[@]}" >"$out/dave.txt" 2>/dev/null &
dave=$!
wait "$carol" "$dave" || true
echo "--- dave's terminal:"
sed 's/^/    /' "$out/dave.txt"
echo "--- chat_client --tls trusting only the system CA store:"
echo hi | timeout 10 "$bin/chat_client" --port "$port" --tls 2>&1 | sed 's/^/    /' || true
kill -TERM "$server_pid"
wait "$server_pid" && echo "chat_server --tls exited 0 on SIGTERM"
server_pid=
