"""What bench/port_peer.py and bench/pipe_peer.py share, so that their
figures are taken as bench/msg_timing.hpp takes the C++ ones: one sample
per round trip (time.monotonic_ns, CLOCK_MONOTONIC), percentiles of the
sorted samples, the same JSON fields."""
import json


def percentile(sorted_ns, q):
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1e3


def round_trip_json(ns):
    ns = sorted(ns)
    total = sum(ns)
    return json.dumps({"n": len(ns), "p50_us": percentile(ns, 0.5), "p99_us": percentile(ns, 0.99),
                       "mean_us": total / len(ns) / 1e3,
                       "round_trips_per_s": len(ns) / (total / 1e9)})


def stream_json(n, go_ns, last_ns):
    """n values timed by the receiver from its "go" to the last one."""
    secs = (last_ns - go_ns) / 1e9
    return json.dumps({"n": n, "seconds": secs, "msgs_per_s": n / secs if secs > 0 else 0})
