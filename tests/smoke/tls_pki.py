"""A throwaway PKI for the TLS smoke tests, made with the openssl CLI: a CA
and a server certificate for localhost/127.0.0.1 signed by it. Every file
lands in the directory given (a temporary one: nothing is ever committed).
"""
import os
import subprocess

TIMEOUT = 30.0


def _run(openssl, args, cwd):
    subprocess.run([openssl, *args], cwd=cwd, check=True, timeout=TIMEOUT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_pki(directory, openssl="openssl", name="smoke"):
    """Writes ca.pem, server.pem and server.key into `directory`; returns
    their paths as a dict with keys "ca", "cert" and "key"."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _run(openssl, ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
                   "-days", "2", "-subj", "/CN=%s test CA" % name,
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"], directory)
    _run(openssl, ["req", *ec, "-keyout", "server.key", "-out", "server.csr",
                   "-subj", "/CN=localhost"], directory)
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\n")
    _run(openssl, ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem",
                   "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                   "-extfile", "ext.cnf", "-out", "server.pem"], directory)
    return {k: os.path.join(directory, f)
            for k, f in (("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server.key"))}
