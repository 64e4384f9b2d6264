"""http_client fetches a known file from python3 -m http.server."""

import os
import re
import subprocess
import sys
import tempfile
import time


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


client = sys.argv[1]
body = "Hello from asyncore-cpp's http_client smoke test.\n" * 20
with tempfile.TemporaryDirectory() as root:
    with open(os.path.join(root, "hello.txt"), "w") as f:
        f.write(body)
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind",
                               "127.0.0.1", "--directory", root],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "port" not in line:
            line = server.stdout.readline()
        m = re.search(r"port (\d+)", line)
        if not m:
            fail("http.server did not report its port (got %r)" % line)
        url = "http://127.0.0.1:%s/hello.txt" % m.group(1)
        out = subprocess.run([client, url], capture_output=True, timeout=30)
        text = out.stdout.decode("latin-1")
        if out.returncode != 0:
            fail("http_client exited %d: %s" % (out.returncode, out.stderr.decode()))
        if not re.match(r"HTTP/1\.[01] 200 ", text):
            fail("no 200 status line in %r" % text[:200])
        head, _, got = text.partition("\r\n\r\n")
        if got != body:
            fail("body differs: %r" % got[:200])
        missing = subprocess.run([client, url.replace("hello", "missing")],
                                 capture_output=True, timeout=30)
        if b" 404 " not in missing.stdout.split(b"\r\n", 1)[0]:
            fail("a missing file did not give a 404 status line")
        refused = subprocess.run([client, "http://127.0.0.1:1/"], capture_output=True, timeout=30)
        if refused.returncode == 0:
            fail("http_client exited 0 for a refused connection")
    finally:
        server.terminate()
        server.wait(timeout=10)
print("ok: http_client fetched %d bytes and saw 404 and a refused connection" % len(body))
