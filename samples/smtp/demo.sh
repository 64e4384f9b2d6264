#!/usr/bin/env bash
# smtp_server: start it, send one message with Python's smtplib, show the mbox.
set -euo pipefail
build=${1:?usage: demo.sh BUILD_DIR}
dir=$(mktemp -d)
out="$dir/stdout"
"$build/samples/smtp/smtp_server" --port 0 --mbox "$dir/demo.mbox" >"$out" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do grep -q '^listening on ' "$out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$out")
echo "smtp_server listening on $addr; sending one message with smtplib:"
python3 - "$addr" <<'PY'
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port), timeout=10) as s:
    s.set_debuglevel(1)
    s.sendmail("alice@example.com", ["bob@example.com"],
               "Subject: hello from the demo\n\nHi Bob,\n.a line starting with a dot\nFrom here on, mbox escapes this line.\n")
PY
echo
echo "--- $dir/demo.mbox:"
cat "$dir/demo.mbox"
kill -TERM "$pid"
wait "$pid" && echo "--- smtp_server exited 0 on SIGTERM"
