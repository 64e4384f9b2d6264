# Sourced by the samples' demo.sh fragments: start a sample server on an
# ephemeral port and stop every server started, whatever happens.

demo_pids=()

# Kills what start_server started; fragments call it from their EXIT trap.
demo_cleanup() {
    local pid
    for pid in "${demo_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}

# start_server OUT CMD...: runs CMD in the background with its stdout in file
# OUT and waits (5 s at most) for its "listening on HOST:PORT" line. Sets
# server (the pid), addr (HOST:PORT) and port.
start_server() {
    local out=$1
    shift
    "$@" >"$out" &
    server=$!
    demo_pids+=("$server")
    for _ in $(seq 100); do
        grep -q '^listening on ' "$out" && break
        sleep 0.05
    done
    addr=$(sed -n 's/^listening on //p' "$out")
    if [ -z "$addr" ]; then
        echo "demo: $1 did not start" >&2
        return 1
    fi
    port=${addr##*:}
}

# make_demo_pki DIR: a throwaway CA (DIR/ca.pem) and a certificate for
# localhost and 127.0.0.1 signed by it (DIR/server.pem, DIR/server.key),
# valid for one day. Uses the openssl command; prints nothing on success.
make_demo_pki() {
    (
        cd "$1"
        local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
        openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 1 -subj "/CN=demo CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
        openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=localhost
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
            -extfile ext.cnf -out server.pem
    ) >/dev/null 2>&1
}
