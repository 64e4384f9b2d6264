#!/usr/bin/env bash
# smtp_server: start it with a throwaway certificate, send one message with
# Python's smtplib over STARTTLS, show the mbox.
set -euo pipefail
. "$(dirname "$0")/../demo_lib.sh"
build=${1:?usage: demo.sh BUILD_DIR}
dir=$(mktemp -d)
out="$dir/stdout"
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT

make_demo_pki "$dir"
"$build/samples/smtp/smtp_server" --port 0 --mbox "$dir/demo.mbox" \
    --cert "$dir/server.pem" --key "$dir/server.key" >"$out" &
pid=$!
for _ in $(seq 50); do grep -q '^listening on ' "$out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$out")
echo "smtp_server listening on $addr (STARTTLS with a throwaway CA);"
echo "smtplib: ehlo, starttls, ehlo, sendmail (the commands after STARTTLS are encrypted):"
python3 - "$addr" "$dir/ca.pem" <<'PY'
import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port), timeout=10) as s:
    s.set_debuglevel(1)
    s.ehlo("demo.example")
    s.starttls(context=ssl.create_default_context(cafile=sys.argv[2]))
    print("--- TLS:", s.sock.version(), file=sys.stderr)
    s.ehlo("demo.example")
    s.sendmail("alice@example.com", ["bob@example.com"],
               "Subject: hello from the demo\n\nHi Bob,\n.a line starting with a dot\nFrom here on, mbox escapes this line.\n")
PY
echo
echo "--- $dir/demo.mbox:"
cat "$dir/demo.mbox"
kill -TERM "$pid"
wait "$pid" && echo "--- smtp_server exited 0 on SIGTERM"
pid=
