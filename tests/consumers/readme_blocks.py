#!/usr/bin/env python3
"""Every ```cpp block of README.md, compiled as copied and run against a client.

A reader copies an example into a file and builds it with the README's own
line, `g++ -std=c++20 example.cpp $(pkg-config --cflags --libs asyncore)`;
this does the same against a staged install of the build under test, so an
example that lacks an include, or no longer matches the API, fails here. Each
block must be a whole program; each is an echo server on 127.0.0.1:8080 (of
bytes or of lines) and gets echo_check.py's clients, whose message is lines
ending in CRLF, so it suits both. Exits 0 on success, 1 on failure, 77
(skipped) when port 8080 is in use.

Usage: readme_blocks.py README.md --build-root DIR --prefix DIR --libdir DIR
"""

import argparse
import os
import subprocess
import sys
import tempfile

import echo_check
from staging import pkg_config_env, stage_install

SKIPPED = 77
BUILD_TIMEOUT = 480  # seconds for one compile


def cpp_blocks(readme_lines):
    """[(heading, first line number, text)] of every ```cpp block."""
    blocks, heading, block, start = [], "(top)", None, 0
    for number, line in enumerate(readme_lines, 1):
        if block is None:
            if line.startswith("#"):
                heading = line.strip("# \n")
            elif line.rstrip() == "```cpp":
                block, start = [], number + 1
        elif line.rstrip() == "```":
            blocks.append((heading, start, "".join(block)))
            block = None
        else:
            block.append(line)
    return blocks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("readme")
    ap.add_argument("--build-root", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--libdir", required=True)
    args = ap.parse_args()
    with open(args.readme, encoding="utf-8") as f:
        blocks = cpp_blocks(f.readlines())
    if not blocks:
        print(f"FAIL: no ```cpp block in {args.readme}")
        return 1
    with tempfile.TemporaryDirectory(prefix="readme-blocks-") as work:
        stage = stage_install(args.build_root, os.path.join(work, "stage"), args.prefix,
                              args.libdir)
        env = pkg_config_env(stage, os.path.join(work, "stage"))
        run_env = dict(env, LD_LIBRARY_PATH=stage.libdir)
        failures = 0
        for i, (heading, line, text) in enumerate(blocks, 1):
            where = f"README.md:{line} ({heading})"
            if "int main(" not in text:
                print(f"FAIL: {where}: not a whole program (no main): a reader cannot run it")
                failures += 1
                continue
            source = os.path.join(work, f"example{i}.cpp")
            with open(source, "w", encoding="utf-8") as f:
                f.write(text)
            exe = os.path.join(work, f"example{i}")
            built = subprocess.run(
                f"g++ -std=c++20 {source} $(pkg-config --cflags --libs asyncore) -o {exe}",
                shell=True, executable="/bin/bash", env=env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
            if built.returncode != 0:
                print(f"FAIL: {where} does not compile as copied:\n{built.stdout[:4000]}")
                failures += 1
                continue
            try:
                echo_check.check_echo_server(exe, run_env)
            except echo_check.Skip as why:
                print(f"skipped: {why}")
                return SKIPPED
            except echo_check.Failure as why:
                print(f"FAIL: {where}: {why}")
                failures += 1
                continue
            print(f"ok: {where}: compiled as copied, echoed two clients on "
                  f"{echo_check.HOST}:{echo_check.PORT}")
    print(f"{len(blocks) - failures} of {len(blocks)} README examples compile and run")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
