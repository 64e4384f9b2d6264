#!/usr/bin/env python3
"""Build README.md's echo server (echo.cpp) as an outside project would, then
run it against a real client (echo_check.py).

KIND is how the outside project finds asyncore-cpp:

  pkg-config  README's `g++ -std=c++20 echo.cpp $(pkg-config ...)` line
              against a staged install, and a fully static link with
              `pkg-config --static`
  cmake       cmake/CMakeLists.txt: find_package(asyncore CONFIG) against a
              staged install; asyncore::asyncore and asyncore::asyncore_static
  meson       meson/meson.build with a copy of this source tree under
              subprojects/asyncore; only the library may be compiled there

Every project is copied to a fresh temporary directory first, so that nothing
can reach the source or build tree by a relative path. Exits 0 on success, 1
on failure, 77 (skipped) when port 8080 is in use.

Usage: run_consumer.py KIND --source-root DIR --build-root DIR --prefix DIR
           --libdir DIR --version X.Y.Z --soname NAME
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import echo_check
from staging import pkg_config_env, stage_install

HERE = os.path.dirname(os.path.abspath(__file__))
SKIPPED = 77
BUILD_TIMEOUT = 480  # seconds for any one configure or compile step
# One compile at a time: meson test already runs two tests at once, and the
# machine has two cores (the timing tests beside a consumer need their share).
JOBS = "1"


class Failure(Exception):
    pass


def run(cmd, cwd, env=None, shell=False):
    """Run a step; its output is shown only when it fails. Returns stdout."""
    shown = cmd if shell else " ".join(cmd)
    print("+", shown, flush=True)
    done = subprocess.run(cmd, cwd=cwd, env=env, shell=shell, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=BUILD_TIMEOUT, executable="/bin/bash" if shell else None)
    if done.returncode != 0:
        raise Failure(f"`{shown}` exited with {done.returncode}:\n{done.stdout}")
    return done.stdout


def dynamic_needs(binary):
    """The NEEDED entries of an ELF file ([] for a static executable)."""
    out = run(["readelf", "-d", binary], cwd=os.path.dirname(binary))
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def soname(library):
    out = run(["readelf", "-d", library], cwd=os.path.dirname(library))
    found = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
    return found.group(1) if found else None


def loaded_from(binary, name, env=None):
    """The path the dynamic loader picks for library `name`."""
    out = run(["ldd", binary], cwd=os.path.dirname(binary), env=env)
    found = re.search(r"^\s*" + re.escape(name) + r" => (\S+)", out, re.MULTILINE)
    if not found:
        raise Failure(f"ldd does not resolve {name} for {binary}:\n{out}")
    return found.group(1)


def new_project(work, kind):
    """A copy of the project folder for KIND (if any) with echo.cpp in it."""
    project = os.path.join(work, "project")
    if os.path.isdir(os.path.join(HERE, kind)):
        shutil.copytree(os.path.join(HERE, kind), project)
    else:
        os.mkdir(project)
    shutil.copy(os.path.join(HERE, "echo.cpp"), project)
    return project


def check_shared(binary, args, stage, env=None):
    """Linked to the staged library by its soname, and loaded from the stage."""
    if soname(os.path.join(stage.libdir, "libasyncore.so")) != args.soname:
        raise Failure(f"the staged libasyncore.so's soname is not {args.soname}")
    if args.soname not in dynamic_needs(binary):
        raise Failure(f"{binary} does not need {args.soname}: {dynamic_needs(binary)}")
    path = loaded_from(binary, args.soname, env)
    if not stage.holds(path):
        raise Failure(f"{binary} loads {path}, outside the staged install {stage.root}")
    check_echo(binary, env)


def check_static(binary, env=None):
    """No libasyncore.so among its dependencies."""
    needs = dynamic_needs(binary)
    if any(lib.startswith("libasyncore.so") for lib in needs):
        raise Failure(f"{binary} still needs the shared library: {needs}")
    check_echo(binary, env)


def check_echo(binary, env):
    echo_check.check_echo_server(binary, env)
    print(f"{os.path.basename(binary)} echoed two clients on "
          f"{echo_check.HOST}:{echo_check.PORT} and printed nothing")


def consume_with_pkg_config(args, work):
    stage = stage_install(args.build_root, os.path.join(work, "stage"), args.prefix, args.libdir)
    project = new_project(work, "pkg-config")
    env = pkg_config_env(stage, os.path.join(work, "stage"))
    flags = run(["pkg-config", "--static", "--cflags", "--libs", "asyncore"], project, env)
    paths = re.findall(r"-([IL])(\S+)", flags)
    staged = {flag for flag, path in paths if stage.holds(path)}
    leaks = [path for _, path in paths if path.startswith(args.prefix) and not stage.holds(path)]
    if staged != {"I", "L"} or leaks:
        raise Failure(f"pkg-config's paths are not those of {stage.root}: {flags}")

    run("g++ -std=c++20 echo.cpp $(pkg-config --cflags --libs asyncore)", project, env, shell=True)
    run_env = dict(env, LD_LIBRARY_PATH=stage.libdir)
    check_shared(os.path.join(project, "a.out"), args, stage, run_env)

    run("g++ -std=c++20 -static echo.cpp $(pkg-config --static --cflags --libs asyncore)"
        " -o echo_static", project, env, shell=True)
    check_static(os.path.join(project, "echo_static"))


def consume_with_cmake(args, work):
    stage = stage_install(args.build_root, os.path.join(work, "stage"), args.prefix, args.libdir)
    project = new_project(work, "cmake")
    build = os.path.join(project, "build")
    out = run(["cmake", "-S", project, "-B", build, "-G", "Ninja",
               "-DCMAKE_PREFIX_PATH=" + stage.root], project)
    found = re.search(r"^-- asyncore (\S*) in (\S+)$", out, re.MULTILINE)
    if not found:
        raise Failure(f"CMakeLists.txt did not report the package it found:\n{out}")
    version, config_dir = found.groups()
    if version != args.version:
        raise Failure(f"find_package found asyncore {version!r}, not {args.version}")
    if not stage.holds(config_dir):
        raise Failure(f"find_package used {config_dir}, outside {stage.root}")
    run(["cmake", "--build", build, "--parallel", JOBS], project)
    # CMake gives the programs it builds an RPATH to the imported library.
    check_shared(os.path.join(build, "echo"), args, stage)
    check_static(os.path.join(build, "echo_static"))


def copy_source_tree(source_root, destination):
    """The project as a user would vendor it: no build directories or git data."""

    def ignored(directory, names):
        skip = {"__pycache__"}
        if os.path.samefile(directory, source_root):
            skip |= {n for n in names if n.startswith((".git", "build"))}
        return skip

    shutil.copytree(source_root, destination, symlinks=True, ignore=ignored)


def consume_as_subproject(args, work):
    project = new_project(work, "meson")
    copy_source_tree(args.source_root, os.path.join(project, "subprojects", "asyncore"))
    build = os.path.join(project, "build")
    # Forced, so that an installed asyncore-cpp (./dev install) is not used.
    run(["meson", "setup", build, "--buildtype=plain", "--force-fallback-for=asyncore"], project)
    with open(os.path.join(build, "meson-info", "intro-tests.json")) as f:
        tests = [t["name"] for t in json.load(f)]
    if tests:
        raise Failure(f"the subproject defines tests: {tests}")
    with open(os.path.join(build, "compile_commands.json")) as f:
        compiled = {os.path.relpath(os.path.join(c["directory"], c["file"]), project)
                    for c in json.load(f)}
    library = {p for p in compiled if p.startswith("subprojects/asyncore/lib/")}
    if compiled - library != {"echo.cpp"} or not library:
        raise Failure(f"the build compiles more than the library and echo.cpp: "
                      f"{sorted(compiled - library)}")
    print(f"compiles echo.cpp and {len(library)} library sources, nothing else")
    run(["ninja", "-C", build, "-j", JOBS], project)
    check_static(os.path.join(build, "echo"))


CONSUMERS = {
    "pkg-config": consume_with_pkg_config,
    "cmake": consume_with_cmake,
    "meson": consume_as_subproject,
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(CONSUMERS))
    for option in ("--source-root", "--build-root", "--prefix", "--libdir", "--version",
                   "--soname"):
        parser.add_argument(option, required=True)
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix=f"asyncore-consumer-{args.kind}-") as work:
        try:
            CONSUMERS[args.kind](args, work)
        except echo_check.Skip as why:
            print("SKIP:", why)
            return SKIPPED
        except (Failure, echo_check.Failure) as why:
            print("FAIL:", why)
            return 1
        except subprocess.CalledProcessError as error:
            print(f"FAIL: {' '.join(error.cmd)} exited with {error.returncode}:\n{error.output}")
            return 1
        except subprocess.TimeoutExpired as error:
            print(f"FAIL: {error.cmd} took more than {error.timeout} s")
            return 1
    print(f"{args.kind} consumer: built, linked and echoed as README.md says")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
