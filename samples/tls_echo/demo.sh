#!/usr/bin/env bash
# Demo: tls_echo_server with a throwaway CA, and `openssl s_client` verifying
# it and getting two lines echoed. Gets the build directory as $1.
set -euo pipefail
. "$(dirname "$0")/../demo_lib.sh"
build=$(cd "$1" && pwd)
dir=$(mktemp -d)
server_pid=""
cleanup() {
    [[ -z $server_pid ]] || kill "$server_pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

cd "$dir"
make_demo_pki "$dir"
echo "made a throwaway CA and a certificate for localhost/127.0.0.1 in $dir"

"$build/samples/tls_echo/tls_echo_server" --cert server.pem --key server.key --port 0 >out.txt &
server_pid=$!
for _ in $(seq 50); do
    grep -q '^listening on' out.txt && break
    sleep 0.1
done
cat out.txt
port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' out.txt)

echo "openssl s_client -CAfile ca.pem -verify_return_error, sending two lines:"
{
    printf 'hello over TLS\n'
    printf 'second line\n'
    sleep 0.5
} | timeout 5 openssl s_client -connect "127.0.0.1:$port" -CAfile ca.pem \
    -verify_return_error -verify_ip 127.0.0.1 -quiet -no_ign_eof 2>/dev/null |
    sed 's/^/  echoed: /' || true

kill -TERM "$server_pid"
wait "$server_pid" && echo "server exited 0 on SIGTERM"
server_pid=""
