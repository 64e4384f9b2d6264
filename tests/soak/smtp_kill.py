#!/usr/bin/env python3
"""Soak: smtp_server crash consistency with 1,000 messages and 50 SIGKILLs
(tests/smoke/smtp_kill.py, whose docstring says what is checked).

usage: tests/soak/smtp_kill.py --build build/release [--messages 1000] [--kills 50]
                               [--seed N] [--dir DIR]

--dir puts the mbox on another file system (the default is a temporary
directory). The seed is printed first; --seed replays the kill schedule."""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description="smtp_server under 50 SIGKILLs")
    ap.add_argument("--build", required=True, help="a build directory, e.g. build/release")
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--dir")
    a = ap.parse_args()
    cmd = [sys.executable, os.path.join(HERE, "..", "smoke", "smtp_kill.py"),
           os.path.join(a.build, "samples/smtp/smtp_server"),
           "--messages", str(a.messages), "--kills", str(a.kills)]
    if a.seed is not None:
        cmd += ["--seed", str(a.seed)]
    if a.dir:
        cmd += ["--dir", a.dir]
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
