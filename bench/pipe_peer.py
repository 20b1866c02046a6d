#!/usr/bin/env python3
"""The peer of bench/port_bench in plain Python: the same conversations
between two Python processes over multiprocessing.Pipe() (a duplex unix
socketpair, pickled values, conn.send / conn.recv), timed the same way
(bench/port_peer.py).

  pipe_peer.py pingpong N CPU_A CPU_B   A sends int64 i, B echoes it; N timed round
                                        trips after max(100, N/10) of warm-up
  pipe_peer.py stream N CPU_A CPU_B     B sends the int64s 0..N-1 to A, timed by A from
                                        its "go" to the last value

A is this process, B a child (fork). Prints one JSON line.
"""
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from py_timing import round_trip_json, stream_json  # noqa: E402


def pin(cpu):
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})


def echo(conn, cpu, rounds):
    pin(cpu)
    for _ in range(rounds):
        conn.send(conn.recv())


def sender(conn, cpu, n):
    pin(cpu)
    conn.send("ready")
    if conn.recv() != "go":
        raise SystemExit("pipe_peer: expected go")
    for i in range(n):
        conn.send(i)
    conn.recv()  # "done": exit once everything is read


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("pingpong", "stream"):
        raise SystemExit(__doc__)
    mode, n, cpu_a, cpu_b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ctx = multiprocessing.get_context("fork")
    a, b = ctx.Pipe()
    warmup = max(100, n // 10)
    if mode == "pingpong":
        child = ctx.Process(target=echo, args=(b, cpu_b, warmup + n))
    else:
        child = ctx.Process(target=sender, args=(b, cpu_b, n))
    child.start()
    b.close()
    pin(cpu_a)
    now = time.monotonic_ns
    if mode == "pingpong":
        samples = []
        for i in range(warmup + n):
            t0 = now()
            a.send(i)
            back = a.recv()
            t1 = now()
            if back != i:
                raise SystemExit("pipe_peer: echo of %d came back as %r" % (i, back))
            if i >= warmup:
                samples.append(t1 - t0)
        out = round_trip_json(samples)
    else:
        if a.recv() != "ready":
            raise SystemExit("pipe_peer: expected ready")
        go = now()
        a.send("go")
        for i in range(n):
            v = a.recv()
            if v != i:
                raise SystemExit("pipe_peer: value %d arrived as %r" % (i, v))
        out = stream_json(n, go, now())
        a.send("done")
    child.join()
    if child.exitcode != 0:
        raise SystemExit("pipe_peer: the child exited %s" % child.exitcode)
    print(out, flush=True)


if __name__ == "__main__":
    main()
