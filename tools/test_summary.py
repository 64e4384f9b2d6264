#!/usr/bin/env python3
"""Summarise `meson test` results over several builds for `./dev test`.

Reads each build's meson-logs/testlog.json (one JSON object per line) and
counts results so that one number means the same thing across builds:

* A test whose output contains doctest's summary line
  ("[doctest] test cases: 12 | 12 passed | 0 failed | 0 skipped") counts its
  test cases. Cases skipped by the suite filter are not counted: every suite
  runs the same binary, so they are other suites' cases.
* A doctest run that did not end OK counts at least one failure even when its
  summary says otherwise: a sanitizer report or a crash after the summary
  (leaks are reported at exit) must not pass silently.
* A test without a summary (e.g. a smoke test driving a sample) counts as one
  passed or one failed test by meson's result; SKIP counts as neither.
* A step that failed before tests could run (format check, a build) is passed
  with --failed-step and counts as one failure.

The last line printed is exactly "N passed, N failed". The exit status is 1
when anything failed, else 0.

Usage:
  test_summary.py [--failed-step TEXT]... [--run NAME BUILDDIR RC]...
"""

import argparse
import json
import os
import re
import sys

DOCTEST_SUMMARY = re.compile(
    r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+)\s*passed\s*\|\s*(\d+)\s*failed"
)
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PASSING_RESULTS = {"OK", "EXPECTEDFAIL"}
SKIPPED_RESULTS = {"SKIP"}


class Tally:
    """Counts for one build: cases from doctest suites, tests from the rest."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.doctest_runs = 0
        self.other_tests = 0
        self.failures = []  # (test name, short reason)


def doctest_counts(output):
    """Return (passed, failed) from the last doctest summary line, or None."""
    matches = DOCTEST_SUMMARY.findall(ANSI_ESCAPE.sub("", output))
    if not matches:
        return None
    _, passed, failed = matches[-1]
    return int(passed), int(failed)


def failure_reason(record):
    """A few words on why meson did not count a test as passed."""
    result = record.get("result", "?")
    code = record.get("returncode")
    if isinstance(code, int) and code < 0:
        return f"{result}, killed by signal {-code}"
    if code is not None:
        return f"{result}, exit status {code}"
    return result


def count_record(tally, record):
    """Add one testlog.json record to the tally."""
    name = record.get("name", "?")
    result = record.get("result", "?")
    output = (record.get("stdout") or "") + (record.get("stderr") or "")
    counts = doctest_counts(output)
    ok = result in PASSING_RESULTS
    if counts is not None:
        passed, failed = counts
        tally.doctest_runs += 1
        tally.passed += passed
        if failed:
            tally.failures.append((name, f"{failed} failed case(s), {failure_reason(record)}"))
        elif not ok:
            failed = 1
            tally.failures.append((name, f"every case passed, then {failure_reason(record)}"))
        tally.failed += failed
        return
    if result in SKIPPED_RESULTS:
        tally.skipped += 1
        return
    tally.other_tests += 1
    if ok:
        tally.passed += 1
        return
    tally.failed += 1
    detail = "no doctest summary" if "[doctest]" in output else ""
    reason = failure_reason(record)
    tally.failures.append((name, f"{reason}, {detail}" if detail else reason))


def read_testlog(path, tally):
    """Tally every record of a testlog.json; return an error text or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            lines = [line for line in log if line.strip()]
    except OSError as error:
        return f"cannot read {path}: {error.strerror}"
    for number, line in enumerate(lines, 1):
        try:
            count_record(tally, json.loads(line))
        except (json.JSONDecodeError, AttributeError):
            return f"{path}:{number}: not a JSON test record"
    return None


def summarise_run(name, build_dir, returncode):
    """Tally one build's test run and print its breakdown; return the tally."""
    tally = Tally()
    # A run's log: BUILDDIR/meson-logs/testlog.json, or a .json path itself
    # (a second run of one build, meson test --logbase).
    log = build_dir if build_dir.endswith(".json") else os.path.join(build_dir, "meson-logs",
                                                                          "testlog.json")
    error = read_testlog(log, tally)
    if error:
        tally.failed += 1
        tally.failures.append(("meson test", error))
    elif returncode != 0 and tally.failed == 0:
        # meson itself failed (bad option, interrupted...) yet no test did.
        tally.failed += 1
        tally.failures.append(("meson test", f"exited {returncode} with no failing test"))
    print(
        f"  {name}: {tally.passed} passed, {tally.failed} failed"
        f" ({tally.doctest_runs} doctest run(s) counted by case,"
        f" {tally.other_tests} test(s) counted by result"
        + (f", {tally.skipped} skipped" if tally.skipped else "")
        + ")"
    )
    for test, reason in tally.failures:
        print(f"    FAILED {test}: {reason}")
    return tally


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--failed-step",
        action="append",
        default=[],
        metavar="TEXT",
        help="a step that failed before tests ran; counts as one failure",
    )
    parser.add_argument(
        "--run",
        action="append",
        nargs=3,
        default=[],
        metavar=("NAME", "BUILDDIR", "RC"),
        help="a build whose `meson test` ran, and that command's exit status",
    )
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    passed = failed = 0
    print("Test summary:")
    for step in args.failed_step:
        print(f"  FAILED {step}")
        failed += 1
    for name, build_dir, returncode in args.run:
        try:
            code = int(returncode)
        except ValueError:
            code = 1
        tally = summarise_run(name, build_dir, code)
        passed += tally.passed
        failed += tally.failed
    if not args.failed_step and not args.run:
        print("  nothing ran")
        failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
