#!/usr/bin/env python3
"""occasional's processes and messages (issue 24) against their peers,
every figure from the same run.

  bench/messages.py            the full run (about 3-5 minutes on an idle machine)
  bench/messages.py --smoke    a few seconds of each part (ctest bench_messages_smoke)

Peers, each measured with 8-byte values (an int64) between two processes:
the kernel alone (bench/msg_floor: a unix socketpair, blocking read/write),
ZeroMQ over ipc:// (bench/msg_zmq: REQ/REP, PUSH/PULL), two Erlang nodes on
this machine over distribution on loopback (bench/msg_erlang.erl, compiled
here with erlc). occasional itself is bench/process_bench (built when
workers/process.hpp exists). Side A (the one that times: the ping-pong
client, the stream's receiver) runs on CPU 0, side B (the echo, the
stream's sender) on CPU 1. The parts run one after the other in each
repetition; the tables show medians. Builds nothing itself (scripts/dev.sh
build does); see docs/performance.md.
"""
import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_A, CPU_B = "0", "1"


def pinned(cpu, cmd):
    return ["taskset", "-c", cpu] + cmd


def run_json(name, cmd, timeout):
    """Runs one measurement, returns the JSON object on its last stdout line."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"bench: {name} did not finish in {timeout} s: {' '.join(cmd)}")
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        raise SystemExit(f"bench: {name} failed (exit {p.returncode}): {' '.join(cmd)}\n"
                         f"{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return json.loads(lines[-1])


class ErlangNodes:
    """Node B (echo and sink) lives for the whole run; each measurement
    starts a client node A. epmd starts with the first node; stopped at the
    end if this run started it."""

    def __init__(self, tmp):
        self.erl = shutil.which("erl")
        if not self.erl or not shutil.which("erlc"):
            raise SystemExit("bench: erl/erlc not found (Debian erlang-base, scripts/dev.sh deps)")
        self.ebin = os.path.join(tmp, "ebin")
        os.makedirs(self.ebin)
        subprocess.run(["erlc", "-o", self.ebin, os.path.join(ROOT, "bench", "msg_erlang.erl")],
                       check=True)
        self.epmd_was_running = subprocess.run(["epmd", "-names"], capture_output=True).returncode == 0
        self.cookie = secrets.token_hex(8)
        self.tag = f"msgbench{os.getpid()}"
        self.server = f"{self.tag}b@127.0.0.1"
        self.clients = 0
        # -name with 127.0.0.1 keeps distribution on loopback; +S 1: one
        # scheduler, as each side has one CPU.
        self.proc = subprocess.Popen(
            pinned(CPU_B, [self.erl, "-name", self.server, "-setcookie", self.cookie, "-noshell",
                           "-noinput", "+S", "1", "-pa", self.ebin, "-s", "msg_erlang", "server"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def client_cmd(self, mode, n):
        self.clients += 1
        return pinned(CPU_A, [self.erl, "-name", f"{self.tag}a{self.clients}@127.0.0.1",
                              "-setcookie", self.cookie, "-noshell", "-noinput", "+S", "1",
                              "-pa", self.ebin, "-run", "msg_erlang", "client", self.server,
                              mode, str(n)])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.epmd_was_running:
            # Refuses while other nodes are registered: then it is not ours alone.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                names = subprocess.run(["epmd", "-names"], capture_output=True, text=True)
                if names.returncode != 0 or self.tag not in names.stdout:
                    break
                time.sleep(0.05)
            subprocess.run(["epmd", "-kill"], capture_output=True)


def parts(args, erlang):
    """(name, command) for every measurement, in the order of a repetition."""
    b = lambda prog: os.path.join(args.build_dir, "bench", prog)
    cpus = [CPU_A, CPU_B]
    out = [
        ("floor_pingpong", [b("msg_floor"), "pingpong", str(args.round_trips)] + cpus),
        ("floor_stream", [b("msg_floor"), "stream", str(args.messages_single), "1"] + cpus),
        ("floor_stream_batched",
         [b("msg_floor"), "stream", str(args.messages), str(args.batch)] + cpus),
        ("floor_spawn", [b("msg_floor"), "spawn", str(args.spawns)] + cpus),
        ("zmq_reqrep", [b("msg_zmq"), "reqrep", str(args.round_trips)] + cpus),
        ("zmq_pushpull", [b("msg_zmq"), "pushpull", str(args.messages)] + cpus),
        ("erlang_pingpong", erlang.client_cmd("pingpong", args.round_trips)),
        ("erlang_stream", erlang.client_cmd("stream", args.messages)),
    ]
    if args.occasional:
        out += [
            ("occasional_pingpong", [b("process_bench"), "pingpong", str(args.round_trips)] + cpus),
            ("occasional_stream", [b("process_bench"), "stream", str(args.messages)] + cpus),
            ("occasional_spawn", [b("process_bench"), "spawn", str(args.spawns)] + cpus),
            ("occasional_rss", [b("process_bench"), "rss", str(args.processes)] + cpus),
        ]
    return out


def medians(runs):
    return {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for name, rs in runs.items()}


def table(args, runs, command):
    med = medians(runs)
    lines = []
    w = lines.append
    w(f"command: {command}")
    w(f"machine: {os.cpu_count()} cores, {os.uname().release}, load average "
      f"{os.getloadavg()[0]:.2f} at the end; side A on CPU {CPU_A}, side B on CPU {CPU_B}; "
      f"{args.reps} interleaved reps; medians; 8-byte values (int64)")
    w("")
    w(f"ping-pong ({args.round_trips} round trips after {max(100, args.round_trips // 10)} "
      f"of warm-up):")
    w("| setup | p50 | p99 | mean | round trips/s |")
    w("|---|---|---|---|---|")
    pp = [("floor_pingpong", "raw unix socket (floor)"), ("zmq_reqrep", "ZeroMQ REQ/REP ipc://"),
          ("erlang_pingpong", "Erlang distribution (loopback)"),
          ("occasional_pingpong", "occasional send/receive")]
    for key, label in pp:
        if key in med:
            m = med[key]
            w(f"| {label} | {m['p50_us']:.1f} us | {m['p99_us']:.1f} us | {m['mean_us']:.1f} us | "
              f"{m['round_trips_per_s']:.0f} |")
    w("")
    w("one-way stream (timed by the receiver, first message to last):")
    w("| setup | messages | msgs/s |")
    w("|---|---|---|")
    st = [("floor_stream", "raw unix socket, one write per message"),
          ("floor_stream_batched", f"raw unix socket, {args.batch} per write"),
          ("zmq_pushpull", "ZeroMQ PUSH/PULL ipc://"), ("erlang_stream", "Erlang distribution"),
          ("occasional_stream", "occasional send")]
    for key, label in st:
        if key in med:
            w(f"| {label} | {med[key]['n']:.0f} | {med[key]['msgs_per_s']:.0f} |")
    w("")
    if not args.occasional:
        w("occasional: skipped, workers/process.hpp is not in this tree (bench/process_bench "
          "not built); no targets checked")
        return "\n".join(lines)
    sp, rss = med["occasional_spawn"], med["occasional_rss"]
    fl = med["floor_spawn"]
    w(f"spawn_monitor -> DOWN of a function that returns at once ({args.spawns} after warm-up): "
      f"p50 {sp['p50_us']:.0f} us, p99 {sp['p99_us']:.0f} us; the kernel's floor (fork, the "
      f"child _exits, pidfd poll, waitid; bench/msg_floor spawn): p50 {fl['p50_us']:.0f} us, "
      f"p99 {fl['p99_us']:.0f} us")
    w(f"coordinator RSS with {rss['processes']:.0f} live processes, each with a channel to "
      f"process zero: {rss['coordinator_rss_mib']:.2f} MiB (before spawning them "
      f"{rss['coordinator_rss_before_mib']:.2f} MiB; process zero {rss['zero_rss_mib']:.2f} MiB; "
      f"spawning and connecting them took {rss['spawn_and_connect_s']:.2f} s)")
    w("")
    # Each repetition gives its own ratio too (the parts run back to back);
    # their median is printed beside the ratio of medians, which is what
    # the targets are checked against.
    def paired(a, b, field, inverse=False):
        rs = [x[field] / y[field] for x, y in zip(runs[a], runs[b])]
        return statistics.median(rs)

    occ_p50 = med["occasional_pingpong"]["p50_us"]
    occ_rate = med["occasional_stream"]["msgs_per_s"]
    rows = [
        ("ping-pong p50 / raw floor p50", occ_p50 / med["floor_pingpong"]["p50_us"],
         paired("occasional_pingpong", "floor_pingpong", "p50_us"), "<= 1.5", lambda r: r <= 1.5),
        ("ping-pong p50 / ZeroMQ REQ/REP p50", occ_p50 / med["zmq_reqrep"]["p50_us"],
         paired("occasional_pingpong", "zmq_reqrep", "p50_us"), "< 1", lambda r: r < 1),
        ("ping-pong p50 / Erlang p50", occ_p50 / med["erlang_pingpong"]["p50_us"],
         paired("occasional_pingpong", "erlang_pingpong", "p50_us"), "< 1", lambda r: r < 1),
        ("stream msgs/s / ZeroMQ PUSH/PULL", occ_rate / med["zmq_pushpull"]["msgs_per_s"],
         paired("occasional_stream", "zmq_pushpull", "msgs_per_s"), ">= 1", lambda r: r >= 1),
        ("stream msgs/s / Erlang", occ_rate / med["erlang_stream"]["msgs_per_s"],
         paired("occasional_stream", "erlang_stream", "msgs_per_s"), "-", None),
        ("stream msgs/s / raw floor, batched", occ_rate / med["floor_stream_batched"]["msgs_per_s"],
         paired("occasional_stream", "floor_stream_batched", "msgs_per_s"), "-", None),
        ("spawn -> DOWN p50 / fork floor p50", sp["p50_us"] / med["floor_spawn"]["p50_us"],
         paired("occasional_spawn", "floor_spawn", "p50_us"), "-", None),
    ]
    w("| ratio | median of runs | per-rep median | target |")
    w("|---|---|---|---|")
    verdicts = []
    for label, r, p, target, ok in rows:
        mark = "" if ok is None else (" ok" if ok(r) else " MISSED")
        if ok is not None:
            verdicts.append(ok(r))
        w(f"| {label} | {r:.2f}{mark} | {p:.2f} | {target} |")
    w("")
    absolute = [
        (f"stream {occ_rate / 1e6:.2f} M msgs/s", ">= 2.5 M msgs/s", occ_rate >= 2.5e6),
        (f"spawn_monitor -> DOWN p50 {sp['p50_us']:.0f} us", "<= 500 us", sp["p50_us"] <= 500),
        (f"coordinator RSS {rss['coordinator_rss_mib']:.2f} MiB with "
         f"{rss['processes']:.0f} processes", "<= 16 MiB with 1000",
         rss["coordinator_rss_mib"] <= 16 and rss["processes"] >= 1000),
    ]
    for figure, target, ok in absolute:
        verdicts.append(ok)
        w(f"{figure} (target {target}){' ok' if ok else ' MISSED'}")
    w("")
    w("all targets met" if all(verdicts) else "some targets missed (see above; reported, not enforced)")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--smoke", action="store_true", help="seconds, not minutes: checks it runs")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--round-trips", type=int, default=50000)
    ap.add_argument("--messages", type=int, default=2000000, help="per stream")
    ap.add_argument("--messages-single", type=int, default=500000,
                    help="for the raw stream with one write per message (slow: a wakeup each)")
    ap.add_argument("--batch", type=int, default=64, help="values per write, batched raw stream")
    ap.add_argument("--spawns", type=int, default=2000)
    ap.add_argument("--processes", type=int, default=1000)
    ap.add_argument("--json", help="also write every run's figures here")
    args = ap.parse_args()
    command = " ".join(["bench/messages.py"] + sys.argv[1:])
    if args.smoke:
        args.reps, args.round_trips, args.messages = 1, 2000, 100000
        args.messages_single, args.spawns, args.processes = 20000, 50, 100
    if os.cpu_count() < 2:
        raise SystemExit("bench: needs two CPUs (one per side)")

    have_api = os.path.exists(os.path.join(ROOT, "workers", "process.hpp"))
    args.occasional = have_api
    needed = ["msg_floor", "msg_zmq"] + (["process_bench"] if have_api else [])
    missing = [p for p in needed if not os.access(os.path.join(args.build_dir, "bench", p), os.X_OK)]
    if missing:
        raise SystemExit(f"bench: not built in {args.build_dir}/bench: {', '.join(missing)} "
                         f"(msg_zmq needs libzmq3-dev; scripts/dev.sh deps build)")
    if not have_api:
        print("occasional: skipped, workers/process.hpp is not in this tree", flush=True)

    timeout = 120 if args.smoke else 900
    runs = {}
    with tempfile.TemporaryDirectory(prefix="occasional-msgbench-") as tmp:
        erlang = ErlangNodes(tmp)
        try:
            for rep in range(args.reps):
                print(f"rep {rep + 1}/{args.reps}:", end="", flush=True)
                for name, cmd in parts(args, erlang):
                    print(f" {name}", end="", flush=True)
                    runs.setdefault(name, []).append(run_json(name, cmd, timeout))
                print(flush=True)
        finally:
            erlang.stop()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    # Every figure must be real; targets are reported, not enforced (the
    # machine is noisy).
    broken = [n for n, rs in runs.items() for r in rs
              if not (r.get("p50_us", 0) > 0 or r.get("msgs_per_s", 0) > 0
                      or r.get("coordinator_rss_mib", 0) > 0)]
    print()
    print(table(args, runs, command))
    if broken:
        print(f"bench: no figure from {sorted(set(broken))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
