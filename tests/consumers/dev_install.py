#!/usr/bin/env python3
"""`./dev install` puts exactly the library, its headers, asyncore.pc and the
CMake package files under PREFIX, with the soname links.

It runs `DESTDIR=TMP ./dev install PREFIX` with the prefix build/release
already has, so nothing is reconfigured or rebuilt, and compares the staged
files with the expected list. Also checks that a relative PREFIX is refused.
Exits 77 (skipped) for a build directory other than build/release, the only
one ./dev install uses.

Usage: dev_install.py --source-root DIR --build-root DIR --prefix DIR
           --libdir DIR --includedir DIR --version X.Y.Z --soname NAME
"""

import argparse
import os
import subprocess
import sys
import tempfile

SKIPPED = 77


def expected_files(args):
    # Every public header, and the detail/ headers they include (the internals
    # under lib/detail/ stay private).
    top = os.path.join(args.source_root, "include", "asyncore")
    headers = [name for name in os.listdir(top) if name.endswith(".hpp")]
    headers += [os.path.join("detail", name) for name in os.listdir(os.path.join(top, "detail"))
                if name.endswith(".hpp")]
    lib = args.libdir
    return sorted(
        [os.path.join(args.includedir, "asyncore", h) for h in headers + ["version.hpp"]]
        + [os.path.join(lib, name) for name in (
            "libasyncore.a", "libasyncore.so", args.soname, "libasyncore.so." + args.version,
            "pkgconfig/asyncore.pc", "cmake/asyncore/asyncoreConfig.cmake",
            "cmake/asyncore/asyncoreConfigVersion.cmake")]
    )


def installed_files(root):
    found = []
    for directory, _, names in os.walk(root):
        found += [os.path.relpath(os.path.join(directory, n), root) for n in names]
    return sorted(found)


def dev_install(args, prefix, destdir):
    return subprocess.run([os.path.join(args.source_root, "dev"), "install", prefix],
                          env=dict(os.environ, DESTDIR=destdir), text=True, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ("--source-root", "--build-root", "--prefix", "--libdir", "--includedir",
                   "--version", "--soname"):
        parser.add_argument(option, required=True)
    args = parser.parse_args(argv)
    if not os.path.samefile(args.build_root, os.path.join(args.source_root, "build", "release")):
        print("SKIP: ./dev install installs build/release, not", args.build_root)
        return SKIPPED

    with tempfile.TemporaryDirectory(prefix="asyncore-dev-install-") as destdir:
        refused = dev_install(args, "relative/prefix", destdir)
        if refused.returncode == 0 or os.listdir(destdir):
            print("FAIL: ./dev install accepted a relative prefix:\n" + refused.stdout)
            return 1
        done = dev_install(args, args.prefix, destdir)
        if done.returncode != 0:
            print(f"FAIL: ./dev install exited with {done.returncode}:\n{done.stdout}")
            return 1
        root = os.path.join(destdir, args.prefix.lstrip("/"))
        installed, expected = installed_files(destdir), expected_files(args)
        staged = [os.path.relpath(os.path.join(root, f), destdir) for f in expected]
        if installed != sorted(staged):
            print("FAIL: ./dev install did not install exactly the expected files")
            print("  missing:", sorted(set(staged) - set(installed)))
            print("  unexpected:", sorted(set(installed) - set(staged)))
            return 1
        lib = os.path.join(root, args.libdir)
        links = {name: os.readlink(os.path.join(lib, name))
                 for name in ("libasyncore.so", args.soname)}
        if links != {"libasyncore.so": args.soname,
                     args.soname: "libasyncore.so." + args.version}:
            print("FAIL: unexpected library links:", links)
            return 1
    print(f"./dev install put {len(expected)} files under {args.prefix}, soname {args.soname}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
