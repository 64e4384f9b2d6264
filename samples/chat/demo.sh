#!/usr/bin/env bash
# chat: chat_server with two chat_client terminals, alice and bob, talking
# for about two seconds; prints what each of them saw.
set -euo pipefail
build=$(cd "${1:?usage: demo.sh BUILD_DIR}" && pwd)
bin="$build/samples/chat"
out=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT

"$bin/chat_server" --port 0 >"$out/server.log" &
server_pid=$!
for _ in $(seq 50); do
    grep -q '^listening on' "$out/server.log" && break
    sleep 0.1
done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out/server.log")
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
