#!/usr/bin/env python3
"""Run one libFuzzer target for a fixed time and summarise the run.

The committed seed corpus is only read: libFuzzer writes the inputs it keeps
into the first corpus directory it is given, so that is a work directory,
seeded with copies of the seeds (a fresh temporary one unless --work names
one to keep between runs). A crashing input is written under --artifacts.

The last line printed sums the run up: executions, executions per second,
wall and CPU time, libFuzzer's coverage counters (cov: edges, ft: features)
and the size of the work corpus. The exit status is libFuzzer's: 0 when the
time ran out without a finding.

With --cpu, N is CPU seconds rather than wall seconds: on a shared machine
libFuzzer's -max_total_time (wall time) may buy much less fuzzing than it
says, so the target runs again on the same work corpus, for the CPU time
still owed, until it has had N seconds of CPU (or finds something).

Usage:
  run_fuzzer.py --fuzzer PATH --seeds DIR --seconds N [--cpu] [--dict FILE]
                [--work DIR] [--artifacts DIR] [-- EXTRA LIBFUZZER FLAGS...]
"""

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

# libFuzzer's status lines: "#1234  NEW    cov: 56 ft: 78 corp: 9/100b ...".
STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)")
# Its -print_final_stats=1 lines: "stat::number_of_executed_units: 1234".
STAT = re.compile(r"^stat::(\w+):\s+(\d+)")


def seed_work_corpus(seeds, work):
    """Copy the seed files into `work`, keeping what is already there."""
    os.makedirs(work, exist_ok=True)
    if not os.path.isdir(seeds):
        return
    for name in sorted(os.listdir(seeds)):
        src = os.path.join(seeds, name)
        dst = os.path.join(work, "seed-" + name)
        if os.path.isfile(src) and not os.path.exists(dst):
            shutil.copyfile(src, dst)


def corpus_size(work):
    files = [os.path.join(work, f) for f in os.listdir(work)]
    files = [f for f in files if os.path.isfile(f)]
    return len(files), sum(os.path.getsize(f) for f in files)


def child_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(args, work, artifacts, seconds):
    """One libFuzzer run of at most `seconds` wall seconds; returns its exit
    status, its last status line's match and its final stats."""
    name = os.path.basename(args.fuzzer)
    command = [
        args.fuzzer,
        work,
        f"-max_total_time={seconds}",
        "-print_final_stats=1",
        # An input that runs this long is a hang, not a slow case.
        "-timeout=10",
        f"-artifact_prefix={os.path.join(artifacts, name)}-",
        *([f"-dict={args.dict}"] if args.dict else []),
        *args.extra,
    ]
    print("running:", " ".join(command), flush=True)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    last_status = None
    stats = {}
    for line in proc.stdout:
        sys.stdout.write(line)
        m = STATUS.match(line)
        if m:
            last_status = m
        m = STAT.match(line)
        if m:
            stats[m.group(1)] = int(m.group(2))
    return proc.wait(), last_status, stats


def run(args, work):
    name = os.path.basename(args.fuzzer)
    artifacts = args.artifacts or work
    os.makedirs(artifacts, exist_ok=True)
    seed_work_corpus(args.seeds, work)
    start = time.monotonic()
    cpu_start = child_cpu_seconds()
    executions, rounds = 0, 0
    while True:
        owed = args.seconds - (child_cpu_seconds() - cpu_start) if args.cpu else args.seconds
        rc, last_status, stats = run_once(args, work, artifacts, max(1, int(owed + 0.5)))
        rounds += 1
        executions += stats.get("number_of_executed_units", 0)
        cpu = child_cpu_seconds() - cpu_start
        if rc != 0 or not args.cpu or cpu >= args.seconds - 1:
            break
    elapsed = time.monotonic() - start
    sys.stdout.flush()
    count, size = corpus_size(work)
    per_second = executions / cpu if cpu > 0 else 0
    cov = last_status.group(2) if last_status else "?"
    ft = last_status.group(3) if last_status else "?"
    verdict = "ok" if rc == 0 else f"FAILED (exit status {rc}; crash input under {artifacts})"
    print(f"{name}: {executions} executions in {elapsed:.0f} s wall, {cpu:.0f} s CPU "
          f"({per_second:.0f} exec per CPU s, {rounds} run(s)), "
          f"cov: {cov} ft: {ft}, corpus: {count} inputs ({size} bytes), {verdict}")
    return rc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzzer", required=True)
    parser.add_argument("--seeds", required=True)
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--cpu", action="store_true",
                        help="--seconds is CPU time: rerun until the target has had it")
    parser.add_argument("--dict", help="a libFuzzer dictionary of the format's tokens")
    parser.add_argument("--work", help="work corpus to keep (default: a temporary one)")
    parser.add_argument("--artifacts", help="where crashing inputs go (default: the work corpus)")
    parser.add_argument("extra", nargs="*", help="more libFuzzer flags, after --")
    args = parser.parse_args()
    if args.work:
        return run(args, args.work)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as work:
        if not args.artifacts:
            # A crash found by a short test run must outlive the temporary corpus.
            args.artifacts = os.path.join(os.getcwd(), "fuzz-artifacts")
        return run(args, work)


if __name__ == "__main__":
    sys.exit(main())
