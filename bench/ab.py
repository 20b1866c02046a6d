#!/usr/bin/env python3
"""Interleaved A/B of occasional builds or settings against (c), HTTP only.

  bench/ab.py before@/tmp/old/build after             two builds, fresh connections
  bench/ab.py --quota 0.5 a                           the servers held to half a core
  bench/ab.py --smoke a                               seconds: checks it runs
  bench/ab.py spread+--burst+spread runs+--burst+runs  two settings of one build

Each variant is NAME[@BUILD_DIR][+ARG...][=VAR:VALUE,...]: an occasional
`handoff` setup (4 http_hello_worker replicas, TCP_DEFER_ACCEPT unless
--no-defer) from BUILD_DIR (default --build-dir), with the extra
`occasional run` arguments given (each after a +) and started with the
environment variables given. (c), the same workers on SO_REUSEPORT, runs in every
repetition too, and each variant's req/s is divided by (c)'s of the same
repetition. Per request it also reports the CPU time of every server
process, the coordinator's share, and the context switches, from /proc.
Servers on CPU 0, wrk on CPU 1, as in bench/run.py (docs/performance.md).
"""
import argparse
import os
import resource
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: the setups, wrk, the quota)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def switches(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
    return total


def cpu(pids):
    return sum(run.proc_cpu_seconds(p) for p in pids)


def parse_variant(text, default_build):
    name, _, env = text.partition("=")
    name, *args = name.split("+")
    name, _, build = name.partition("@")
    if not name:
        raise SystemExit(f"ab: variant '{text}' has no name: "
                         "use NAME[@BUILD_DIR][+ARG...][=VAR:VALUE,...]")
    variables = {}
    for item in filter(None, env.split(",")):
        var, sep, value = item.partition(":")
        if not var or not sep:
            raise SystemExit(f"ab: variant '{text}': '{item}' is not VAR:VALUE")
        variables[var] = value
    return name, os.path.abspath(build or default_build), args, variables


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help="NAME[@BUILD_DIR][=VAR:VALUE,...]")
    ap.add_argument("--build-dir", default="build/release")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--quota", type=float, help="servers' CPU quota, a share of one core")
    ap.add_argument("--no-defer", action="store_true", help="without TCP_DEFER_ACCEPT")
    ap.add_argument("--keep-alive", action="store_true", help="keep-alive, not fresh connections")
    ap.add_argument("--smoke", action="store_true", help="1 repetition of 1 s")
    a = ap.parse_args()
    if a.smoke:
        a.reps, a.duration = 1, 1
    variants = [parse_variant(v, a.build_dir) for v in a.variants]
    names = [v[0] for v in variants] + ["c"]
    if len(set(names)) != len(names):
        raise SystemExit("ab: variant names must differ from each other and from 'c'")

    os.sched_setaffinity(0, {int(run.CLIENT_CPU)})  # off the servers' CPU
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    b = run.Bench(argparse.Namespace(build_dir=a.build_dir, connections=a.connections,
                                     duration=a.duration))
    b.defer = not a.no_defer
    if a.quota:
        b.quota = run.CpuQuota(a.quota)
    try:
        setups = {}  # name -> (server pids, coordinator pid or None, port)
        for name, build, args, variables in variants:
            occasional = b.occasional
            b.occasional = os.path.join(build, "gateway", "occasional")
            worker = os.path.join(build, "workers", "http_hello_worker")
            saved = dict(os.environ)
            os.environ.update(variables)
            try:
                p, port, _ = b.coordinator(name, "handoff", [worker], 4, extra=args)
            finally:
                os.environ.clear()
                os.environ.update(saved)
                b.occasional = occasional
            run.wait_until(f"{name}'s 4 workers", lambda: len(children(p.pid)) >= 4)
            setups[name] = ([p.pid] + children(p.pid), p.pid, port)
        c_port = run.free_port()
        first = len(b.procs.procs)
        b.standalone("c", c_port, 4)
        setups["c"] = ([p.pid for p in b.procs.procs[first:]], None, c_port)

        rps = {n: [] for n in setups}
        per_req = {n: [] for n in setups}
        coord = {n: [] for n in setups}
        sws = {n: [] for n in setups}
        for rep in range(a.reps):
            line = []
            for n, (pids, coordinator, port) in setups.items():
                c0, k0, s0 = cpu(pids), cpu([coordinator] if coordinator else []), switches(pids)
                r = b.wrk(port, a.keep_alive)
                c1, k1, s1 = cpu(pids), cpu([coordinator] if coordinator else []), switches(pids)
                requests = r["rps"] * a.duration
                rps[n].append(r["rps"])
                per_req[n].append((c1 - c0) / requests * 1e6)
                coord[n].append((k1 - k0) / requests * 1e6)
                sws[n].append((s1 - s0) / requests)
                line.append(f"{n} {r['rps']:.0f} ({per_req[n][-1]:.1f} us, {sws[n][-1]:.2f} sw)")
            print(f"rep {rep + 1}: " + "  ".join(line), flush=True)
        print(f"medians of {a.reps} x {a.duration} s, {a.connections} connections, "
              f"{'keep-alive' if a.keep_alive else 'fresh'}"
              f"{', quota ' + str(a.quota) if a.quota else ''}"
              f"{'' if a.no_defer else ', TCP_DEFER_ACCEPT'}:")
        print("| setup | req/s | / (c), per-repetition median | server CPU per request "
              "| coordinator CPU per request | context switches per request |")
        print("|---|---|---|---|---|---|")
        for n in setups:
            ratio = statistics.median(x / y for x, y in zip(rps[n], rps["c"]))
            k = f"{statistics.median(coord[n]):.2f} us" if n != "c" else "-"
            print(f"| {n} | {statistics.median(rps[n]):.0f} | {ratio:.3f} "
                  f"| {statistics.median(per_req[n]):.2f} us | {k} "
                  f"| {statistics.median(sws[n]):.2f} |")
    finally:
        b.procs.stop_all()
        if b.quota:
            b.quota.remove()


if __name__ == "__main__":
    main()
