#!/usr/bin/env python3
"""exe::run (docs/exe.md) of /bin/true per second against posix_spawn +
waitpid directly, in the same run (issue 22: goal >= 0.8x).

  bench/exe_run.py            the full run (about a minute on an idle machine)
  bench/exe_run.py --smoke    a few seconds (ctest bench_exe_smoke)

Each repetition is one bench/exe_bench process, which alternates the two
in blocks of 20 runs (so both see the same load) after a warm-up, pinned
to one CPU with its children (--cpu -1: not pinned). The table shows
medians over the repetitions; the ratio is exe::run's runs/s over
posix_spawn's, as the ratio of the medians and as the median of the
per-repetition ratios. Builds nothing itself (scripts/dev.sh build or
cmake --build build/release --target exe_bench does).
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from messages import ROOT, run_json  # noqa: E402

GOAL = 0.8
VARIANTS = [("exe", "occasional::exe::run (stdout, stderr captured)"),
            ("spawn", "posix_spawn + waitpid (floor)")]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--smoke", action="store_true", help="seconds, not minutes: checks it runs")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--runs", type=int, default=1000, help="of each, per repetition")
    ap.add_argument("--cpu", type=int, default=0, help="-1: not pinned")
    ap.add_argument("--program", default="/bin/true")
    ap.add_argument("--json", help="also write every repetition's figures here")
    args = ap.parse_args()
    command = " ".join(["bench/exe_run.py"] + sys.argv[1:])
    if args.smoke:
        args.reps, args.runs = 1, 100
    exe_bench = os.path.join(args.build_dir, "bench", "exe_bench")
    if not os.access(exe_bench, os.X_OK):
        raise SystemExit(f"bench: not built: {exe_bench} "
                         f"(cmake --build {args.build_dir} --target exe_bench)")

    reps = []
    for rep in range(args.reps):
        print(f"rep {rep + 1}/{args.reps}", flush=True)
        reps.append(run_json("exe_bench", [exe_bench, str(args.runs), str(args.cpu), args.program],
                             120 if args.smoke else 900))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(reps, f, indent=1)

    med = {v: {k: statistics.median(r[v][k] for r in reps) for k in reps[0][v]}
           for v, _ in VARIANTS}
    ratio = med["exe"]["runs_per_s"] / med["spawn"]["runs_per_s"]
    per_rep = statistics.median(r["exe"]["runs_per_s"] / r["spawn"]["runs_per_s"] for r in reps)
    print()
    print(f"command: {command}")
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}, load average "
          f"{os.getloadavg()[0]:.2f} at the end; "
          f"{'CPU ' + str(args.cpu) if args.cpu >= 0 else 'not pinned'}; {args.reps} reps of "
          f"{args.runs} runs of each of {args.program}; medians")
    print()
    print("| setup | runs/s | p50 per run | p99 per run |")
    print("|---|---|---|---|")
    for v, label in VARIANTS:
        m = med[v]
        print(f"| {label} | {m['runs_per_s']:.0f} | {m['p50_us']:.0f} us | {m['p99_us']:.0f} us |")
    print()
    verdict = "ok" if ratio >= GOAL else "MISSED"
    print(f"exe::run / posix_spawn, runs/s: {ratio:.2f} {verdict} (per-rep median {per_rep:.2f}; "
          f"goal >= {GOAL})")
    if not all(r[v]["runs_per_s"] > 0 for r in reps for v, _ in VARIANTS):
        print("bench: a repetition gave no figure", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
