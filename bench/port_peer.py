# The Python side of bench/port_bench: a port (workers/ports/occasional_port.py)
# that takes one job from process zero and then exits normally.
#
#   port_peer.py CPU   pins itself to CPU (-1: left alone), then waits for
#
#   ("echo", back, n)                 sends each of the next n messages back to `back`
#   ("send", to, n)                   says "ready" to `to`, waits for its "go", sends the
#                                     int64s 0..n-1 to `to`, then waits for "done"
#   ("pingpong", report, peer, n, w)  w + n timed round trips with the echo `peer`;
#                                     the figures (JSON text) go to `report`
#   ("receive", report, sender, n)    waits for the sender's "ready", says "go" and times
#                                     until the n-th int64 arrived; the figures go to `report`
#
# Timing as in bench/msg_timing.hpp: CLOCK_MONOTONIC, one sample per round
# trip, percentiles of the sorted samples. A stream is timed by its receiver
# from its "go" to the last value (not from the first value: this module
# decodes a whole read, up to 64 KiB of values, before the first is
# returned, so the first value's time would leave that read out).
import os
import sys
import time

import occasional_port
from py_timing import round_trip_json, stream_json


def main(port):
    job = port.receive()
    kind = job[0]
    if kind == "echo":
        _, back, n = job
        for _ in range(n):
            port.send(back, port.receive())
    elif kind == "send":
        _, to, n = job
        port.send(to, "ready")
        port.receive(lambda m: m == "go")
        for i in range(n):
            port.send(to, i)
        port.receive(lambda m: m == "done")
    elif kind == "pingpong":
        _, report, peer, n, warmup = job
        now = time.monotonic_ns
        samples = []
        for i in range(warmup + n):
            t0 = now()
            port.send(peer, i)
            back = port.receive()
            t1 = now()
            if back != i:
                raise ValueError("echo of %d came back as %r" % (i, back))
            if i >= warmup:
                samples.append(t1 - t0)
        port.send(report, round_trip_json(samples))
    elif kind == "receive":
        _, report, sender, n = job
        port.receive(lambda m: m == "ready")
        go = time.monotonic_ns()
        port.send(sender, "go")
        for i in range(n):
            v = port.receive()
            if v != i:
                raise ValueError("value %d arrived as %r" % (i, v))
        port.send(report, stream_json(n, go, time.monotonic_ns()))
    else:
        raise ValueError("unknown job %r" % (job,))


if __name__ == "__main__":
    cpu = int(sys.argv[1]) if len(sys.argv) > 1 else -1
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    occasional_port.run(main)
