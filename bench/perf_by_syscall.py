#!/usr/bin/env python3
"""Splits a `perf record -g` profile of one process name by the syscall each
sample was in, as microseconds per request.

    python3 bench/perf_by_syscall.py PERF_DATA COMM REQUESTS SECONDS

Each sample is put under the outermost syscall entry (`__x64_sys_*` or
`__sys_*`) of its call chain, so that softirq work done inside a syscall
(loopback delivery inside `sendmsg` or `shutdown`) counts with that syscall;
samples in user space count as `user`, kernel samples outside any syscall
as `kernel-other`. SECONDS is how long the recording ran, REQUESTS what was
served meanwhile; the sampling rate comes from the samples of every process
in the file (perf record -C CPU covers the whole CPU, idle included).
bench/NOTES.md uses it for the per-request profiles ("Reproducing the profiles").
"""
import collections
import re
import subprocess
import sys

SYSCALL = re.compile(r"\s(__x64_sys_\w+|__sys_\w+)[+\s]")


def samples(data):
    """(comm, call chain innermost first) for every sample in the file."""
    cmd = ["perf", "script", "-i", data, "-F", "comm,ip,sym,dso"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    for block in out.split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        if lines:
            yield lines[0].strip(), lines[1:]


def classify(frames):
    if not frames or "kernel.kallsyms" not in frames[0]:
        return "user"
    name = None
    for frame in frames:  # innermost first: the last match is the outermost
        m = SYSCALL.search(" " + frame.strip() + " ")
        if m:
            name = m.group(1)
    if name is None:
        return "kernel-other"
    return name.replace("__x64_sys_", "").replace("__sys_", "")


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    data, comm, requests, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    total = 0
    counts = collections.Counter()
    for sample_comm, frames in samples(data):
        total += 1
        if sample_comm == comm:
            counts[classify(frames)] += 1
    if total == 0 or requests <= 0:
        sys.exit(f"perf_by_syscall: no samples in {data}, or no requests")
    us_per_sample = seconds * 1e6 / total / requests
    print(f"{comm}: {sum(counts.values()) * us_per_sample:.2f} us per request")
    for name, n in counts.most_common():
        print(f"  {n * us_per_sample:6.2f} us  {name}")


if __name__ == "__main__":
    main()
