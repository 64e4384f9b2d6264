"""A staged install of the build under test, as a distribution package would
make it: `meson install --destdir DIR`, so that DIR + PREFIX holds what
`./dev install PREFIX` would put in PREFIX.

The consumer tests run in parallel and all stage the same build; meson writes
its install log inside the build directory, so the installs take turns.
"""

import fcntl
import os
import subprocess


class Stage:
    """Where the files of a staged install are."""

    def __init__(self, destdir, prefix, libdir):
        self.root = os.path.join(destdir, prefix.lstrip("/"))
        self.libdir = os.path.join(self.root, libdir)
        self.pkgconfig_dir = os.path.join(self.libdir, "pkgconfig")

    def holds(self, path):
        """True when `path` (after resolving ../ and links) is in the stage."""
        real = os.path.realpath(path)
        return os.path.commonpath([real, os.path.realpath(self.root)]) == os.path.realpath(
            self.root
        )


def stage_install(build_root, destdir, prefix, libdir):
    """Install build_root into destdir; return the Stage."""
    lock_path = os.path.join(build_root, "meson-private", "consumer-install.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(
            ["meson", "install", "-C", build_root, "--no-rebuild", "--quiet",
             "--destdir", destdir],
            check=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
        )
    return Stage(destdir, prefix, libdir)


def pkg_config_env(stage, sysroot):
    """The environment in which pkg-config finds the staged asyncore.pc.
    A build directory set up before meson.build asked for
    pkgconfig.relocatable keeps absolute paths in asyncore.pc; pkg-config
    then needs the staging directory (`sysroot`) as its sysroot."""
    env = dict(os.environ, PKG_CONFIG_PATH=stage.pkgconfig_dir)
    prefix = subprocess.run(["pkg-config", "--variable=prefix", "asyncore"], env=env, text=True,
                            stdout=subprocess.PIPE, check=True).stdout.strip()
    if not stage.holds(prefix):
        print("asyncore.pc is not relocatable (build directory predates the option)")
        env["PKG_CONFIG_SYSROOT_DIR"] = sysroot
    return env
