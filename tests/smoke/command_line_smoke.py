"""Every sample parses its command line with samples/common/command_line.hpp:
an unknown option, a malformed or out-of-range number, a missing value or a
wrong count of positional arguments prints the program's usage text on
stderr and exits 2, before the program listens or connects; smtp_server's
--help and -h print it on stdout and exit 0.

usage: command_line_smoke.py PATH/TO/SAMPLE...
(each program is recognised by its file name; those without cases fail)
"""

import os
import subprocess
import sys

from server_process import fail

# Each case: the arguments, then the status and the stream the usage goes to.
USAGE_ERRORS = {
    "echo_server": [["--bogus"], ["--port", "x"], ["--threads", "0"], ["--port"]],
    "echo_client": [["--port", "1", "--conns", "1x"], ["--port", "1", "stray"],
                    ["--port", "1", "--timeout", "1e999"]],
    "chat_server": [["--bogus"], ["--port", "12ab"], ["--tls"]],
    "chat_client": [["--port", "x"], ["--port", "1", "--cafile", "ca.pem"]],
    "smtp_server": [["--bogus"], ["--port", "x"], ["--port", "65536"],
                    ["--data-size-limit", "-1"], ["--data-size-limit", "1k"],
                    ["--cert", "c.pem"], ["--mbox"], ["stray"], ["--timeout-scale", "-1"],
                    ["--timeout-scale", "nan"], ["--timeout-scale", "1001"],
                    ["--timeout-scale", "0.5s"]],
    "resp_server": [["--bogus", "1"], ["--port", "x"], ["--port", "-1"],
                    ["--threads", "0"], ["--threads", "257"], ["--host"], ["--timeout", "-1"],
                    ["--timeout", "2147483648"], ["--timeout", "1.5"]],
    "tut_sock_server": [["--bogus", "1"], ["--port", "x"], ["--port", "70000"]],
    "tut_sock_client": [["--port", "1", "--count", "ten"], ["--port", "1", "--bogus", "1"]],
    "http_server": [["--root", "/", "--max-request", "8k"], ["--bogus", "1"], ["--port", "p"]],
    "msg_echo_server": [["--max-message", "1M"], ["--bogus", "1"], ["--port", "1.5"]],
    "tls_echo_server": [["--bogus", "1"], ["--port", "0"], ["--cert", "c.pem", "--port", "0"]],
    "http_client": [[], ["http://127.0.0.1:1/", "http://127.0.0.1:1/"], ["--bogus"]],
}
HELP = {"smtp_server": [["--help"], ["-h"], ["--port", "0", "--help"]]}


def run(exe, args):
    try:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail("%s %s did not exit within 10 s" % (exe, args))


def check(exe, args, status, usage_on):
    name = os.path.basename(exe)
    out = run(exe, args)
    text = out.stdout if usage_on == "stdout" else out.stderr
    if out.returncode != status or ("usage: " + name) not in text:
        fail("%s %s: exit %d, stdout %r, stderr %r (wanted exit %d and the usage on %s)"
             % (name, args, out.returncode, out.stdout, out.stderr, status, usage_on))
    if usage_on == "stderr" and out.stdout:
        fail("%s %s printed on stdout: %r" % (name, args, out.stdout))


def main():
    if len(sys.argv) < 2:
        fail(__doc__)
    cases = 0
    for exe in sys.argv[1:]:
        name = os.path.basename(exe)
        if name not in USAGE_ERRORS:
            fail("no cases for %s" % name)
        for args in USAGE_ERRORS[name]:
            check(exe, args, 2, "stderr")
            cases += 1
        for args in HELP.get(name, []):
            check(exe, args, 0, "stdout")
            cases += 1
    print("%d programs, %d command lines checked" % (len(sys.argv) - 1, cases))


main()
