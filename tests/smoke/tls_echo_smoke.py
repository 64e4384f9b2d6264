#!/usr/bin/env python3
"""Smoke test for tls_echo_server, with `openssl s_client` as the client.

Makes a throwaway CA and a server certificate for localhost/127.0.0.1 with
the openssl CLI in a temporary directory, starts the server on an ephemeral
port, and checks that:
  - s_client trusting only that CA, with -verify_return_error and the IP
    checked against the certificate, gets its line echoed back;
  - s_client trusting only the system store fails verification, so the
    certificate check is really on;
  - a Python ssl client that sends data and its close_notify, and keeps
    reading, gets every byte echoed, then the server's close_notify;
  - the server exits 0 on SIGTERM.

usage: tls_echo_smoke.py PATH/TO/tls_echo_server [PATH/TO/openssl]
"""

import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

TIMEOUT = 10.0


def run(openssl, *args, cwd):
    subprocess.run([openssl, *args], cwd=cwd, check=True, timeout=TIMEOUT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_pki(openssl, d):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run(openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=tls_echo smoke CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    run(openssl, "req", *ec, "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\n")
    run(openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem",
        "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "ext.cnf", "-out", "server.pem", cwd=d)


def read_until(proc, wanted, deadline):
    """Reads proc's stdout until `wanted` appears or the deadline; returns it all."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    data = b""
    while wanted not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            break
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        data += chunk
    sel.close()
    return data


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=TIMEOUT)


def s_client(openssl, port, cafile, d):
    args = [openssl, "s_client", "-connect", f"127.0.0.1:{port}",
            "-verify_return_error", "-verify_ip", "127.0.0.1", "-quiet"]
    if cafile:
        args += ["-CAfile", cafile]
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=d)


def check_echo(openssl, port, d):
    client = s_client(openssl, port, os.path.join(d, "ca.pem"), d)
    line = b"hello over TLS\n"
    try:
        client.stdin.write(line)
        client.stdin.flush()
        got = read_until(client, line, time.monotonic() + TIMEOUT)
    finally:
        stop(client)
    if line not in got:
        err = client.stderr.read().decode(errors="replace")
        sys.exit(f"FAIL: no echo from the server (got {got!r}); s_client said:\n{err}")
    print("ok: s_client verified the server and got its line echoed")


def check_untrusted(openssl, port, d):
    client = s_client(openssl, port, None, d)
    try:
        client.stdin.close()
        code = client.wait(timeout=TIMEOUT)
    finally:
        stop(client)
    err = client.stderr.read().decode(errors="replace")
    if code == 0 or "verify" not in err:
        sys.exit(f"FAIL: s_client without the CA did not fail verification ({code}):\n{err}")
    print("ok: s_client without the test CA refuses the certificate")


def check_half_close(port, d):
    """The TLS half-close: the client sends its data and its close_notify,
    then keeps reading. It must get every byte echoed, then the server's own
    close_notify (the connection's task ended and closed its socket)."""
    ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    payload = b"".join(b"line %d over TLS\n" % i for i in range(100))
    deadline = time.monotonic() + TIMEOUT
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        def flush():
            raw.sendall(outgoing.read())

        def pump():
            left = deadline - time.monotonic()
            if left <= 0:
                sys.exit("FAIL: the server did not close after the client's close_notify")
            raw.settimeout(left)
            try:
                data = raw.recv(65536)
            except socket.timeout:
                return
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                pump()
        tls.write(payload)
        try:
            tls.unwrap()  # sends close_notify, then wants the server's
        except ssl.SSLWantReadError:
            pass
        flush()
        got = b""
        while True:
            try:
                got += tls.read(65536)
            except ssl.SSLWantReadError:
                pump()
            except ssl.SSLZeroReturnError:
                break  # the server's close_notify
    if got != payload:
        sys.exit(f"FAIL: after a half-close got {len(got)} of {len(payload)} bytes echoed")
    print("ok: a client that sent close_notify got every byte echoed, then the server's")


def main():
    server_path = sys.argv[1]
    openssl = sys.argv[2] if len(sys.argv) > 2 else "openssl"
    with tempfile.TemporaryDirectory(prefix="tls-echo-smoke-") as d:
        make_pki(openssl, d)
        server = subprocess.Popen(
            [server_path, "--cert", os.path.join(d, "server.pem"),
             "--key", os.path.join(d, "server.key"), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            banner = read_until(server, b"\n", time.monotonic() + TIMEOUT).decode()
            if not banner.startswith("listening on 127.0.0.1:"):
                sys.exit(f"FAIL: unexpected banner {banner!r}")
            port = int(banner.strip().rsplit(":", 1)[1])
            check_echo(openssl, port, d)
            check_untrusted(openssl, port, d)
            check_echo(openssl, port, d)  # the refused client left the server serving
            check_half_close(port, d)
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=TIMEOUT)
            if code != 0:
                sys.exit(f"FAIL: server exited {code} on SIGTERM")
            print("ok: server exited 0 on SIGTERM")
        finally:
            stop(server)


if __name__ == "__main__":
    main()
