#!/usr/bin/env python3
"""A Python port (issue 22, workers/ports/occasional_port.py) talking to a
C++ process, side by side with two Python processes over
multiprocessing.Pipe, every figure from the same run.

  bench/ports.py            the full run (about 3 minutes on an idle machine)
  bench/ports.py --smoke    a few seconds (ctest bench_ports_smoke)

The setups, int64 values, side A (the one that times: the ping-pong
client, the stream's receiver) on CPU 0, side B (the echo, the sender) on
CPU 1:
  - C++ <-> Python port: process zero of bench/port_bench and a Python
    port (bench/port_peer.py), both directions for the stream;
  - Python port <-> Python port: two ports over occasional's channels;
  - Python <-> Python, multiprocessing.Pipe (bench/pipe_peer.py): the
    same conversation without occasional, what a Python user has today;
  - C++ <-> C++ (bench/process_bench), for reference.
The parts run one after the other in each repetition; the tables show
medians, the ratios both the ratio of the medians and the median of the
per-repetition ratios. Builds nothing itself (scripts/dev.sh build or
cmake --build build/release --target port_bench process_bench does).
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from messages import CPU_A, CPU_B, ROOT, run_json  # noqa: E402

PINGPONGS = [
    ("cpp_port_pingpong", "C++ <-> Python port"),
    ("port_port_pingpong", "Python port <-> Python port"),
    ("pipe_pingpong", "Python <-> Python, multiprocessing.Pipe"),
    ("cpp_cpp_pingpong", "C++ <-> C++, occasional (reference)"),
]
STREAMS = [
    ("port_to_cpp", "Python port -> C++"),
    ("cpp_to_port", "C++ -> Python port"),
    ("port_to_port", "Python port -> Python port"),
    ("pipe_stream", "Python -> Python, multiprocessing.Pipe"),
    ("cpp_to_cpp", "C++ -> C++, occasional (reference)"),
]


def parts(args):
    """(name, command) for every measurement, in the order of a repetition."""
    b = lambda prog: os.path.join(args.build_dir, "bench", prog)
    pipe = [sys.executable, os.path.join(ROOT, "bench", "pipe_peer.py")]
    cpus = [CPU_A, CPU_B]
    rt, n = str(args.round_trips), str(args.messages)
    return [
        ("cpp_port_pingpong", [b("port_bench"), "cpp_pingpong", rt] + cpus),
        ("port_port_pingpong", [b("port_bench"), "py_pingpong", rt] + cpus),
        ("pipe_pingpong", pipe + ["pingpong", rt] + cpus),
        ("cpp_cpp_pingpong", [b("process_bench"), "pingpong", rt] + cpus),
        ("port_to_cpp", [b("port_bench"), "port_to_cpp", n] + cpus),
        ("cpp_to_port", [b("port_bench"), "cpp_to_port", n] + cpus),
        ("port_to_port", [b("port_bench"), "py_stream", n] + cpus),
        ("pipe_stream", pipe + ["stream", n] + cpus),
        # The C++ stream is timed from its first value (process_bench):
        # reference only, and it needs more values to mean anything.
        ("cpp_to_cpp", [b("process_bench"), "stream", str(args.messages * 10)] + cpus),
    ]


def table(args, runs, command):
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for name, rs in runs.items()}

    def paired(a, b, field):
        return statistics.median(x[field] / y[field] for x, y in zip(runs[a], runs[b]))

    lines = []
    w = lines.append
    w(f"command: {command}")
    w(f"machine: {os.cpu_count()} cores, {os.uname().release}, load average "
      f"{os.getloadavg()[0]:.2f} at the end; side A on CPU {CPU_A}, side B on CPU {CPU_B}; "
      f"{args.reps} interleaved reps; medians; int64 values")
    w("")
    w(f"ping-pong ({args.round_trips} round trips after {max(100, args.round_trips // 10)} "
      f"of warm-up):")
    w("| setup | p50 | p99 | mean | round trips/s | p50 / Pipe p50 | per-rep median |")
    w("|---|---|---|---|---|---|---|")
    for key, label in PINGPONGS:
        m = med[key]
        w(f"| {label} | {m['p50_us']:.1f} us | {m['p99_us']:.1f} us | {m['mean_us']:.1f} us | "
          f"{m['round_trips_per_s']:.0f} | {m['p50_us'] / med['pipe_pingpong']['p50_us']:.2f} | "
          f"{paired(key, 'pipe_pingpong', 'p50_us'):.2f} |")
    w("")
    w(f"one-way stream ({args.messages} values; timed by the receiver from its \"go\" to the "
      f"last value; C++ -> C++ {args.messages * 10}, from the first value):")
    w("| setup | msgs/s | / Pipe | per-rep median |")
    w("|---|---|---|---|")
    for key, label in STREAMS:
        m = med[key]
        w(f"| {label} | {m['msgs_per_s']:.0f} | "
          f"{m['msgs_per_s'] / med['pipe_stream']['msgs_per_s']:.2f} | "
          f"{paired(key, 'pipe_stream', 'msgs_per_s'):.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--smoke", action="store_true", help="seconds, not minutes: checks it runs")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--round-trips", type=int, default=20000)
    ap.add_argument("--messages", type=int, default=200000, help="per stream")
    ap.add_argument("--json", help="also write every run's figures here")
    args = ap.parse_args()
    command = " ".join(["bench/ports.py"] + sys.argv[1:])
    if args.smoke:
        args.reps, args.round_trips, args.messages = 1, 200, 2000
    if os.cpu_count() < 2:
        raise SystemExit("bench: needs two CPUs (one per side)")
    missing = [p for p in ("port_bench", "process_bench")
               if not os.access(os.path.join(args.build_dir, "bench", p), os.X_OK)]
    if missing:
        raise SystemExit(f"bench: not built in {args.build_dir}/bench: {', '.join(missing)} "
                         f"(cmake --build {args.build_dir} --target port_bench process_bench)")

    timeout = 120 if args.smoke else 900
    runs = {}
    for rep in range(args.reps):
        print(f"rep {rep + 1}/{args.reps}:", end="", flush=True)
        for name, cmd in parts(args):
            print(f" {name}", end="", flush=True)
            runs.setdefault(name, []).append(run_json(name, cmd, timeout))
        print(flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    broken = sorted({n for n, rs in runs.items() for r in rs
                     if not (r.get("p50_us", 0) > 0 or r.get("msgs_per_s", 0) > 0)})
    print()
    print(table(args, runs, command))
    if broken:
        print(f"bench: no figure from {broken}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
