#!/usr/bin/env python3
"""workers/examples/service_peers under the real coordinator, from a config
file: service workers are processes of the coordinator's system, named
service/replica (docs/messages.md, "Workers are processes").

The `asker` worker finds `peers/1` by name, pings it, has it square 7 in a
process it spawns, and monitors it. SIGKILL of peers/1 from outside must
reach the asker as DOWN with the signal; the replacement the service starts
must take the name and answer. Every exit is counted in /metrics, the
spawned process is reaped, the coordinator's fds return to what they were
after each restart, and every process is gone after SIGTERM. A Python
worker joins the same system through occasional_port, and a service with
"process": false gets no channel.

  service_peers_test.py OCCASIONAL SERVICE_PEERS"""
import json
import os
import signal
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_acceptor_test import Coordinator, wait_until  # noqa: E402
from tcp_echo_server_test import WAIT, fail, gone  # noqa: E402


def wait_lines(path, wanted):
    """Waits (with a deadline) until the file holds `wanted` lines."""
    end = time.monotonic() + WAIT
    while True:
        with open(path) as f:
            lines = f.read().splitlines()
        if len(lines) >= wanted:
            return lines
        if time.monotonic() > end:
            fail("%s has %d lines, not %d: %s" % (path, len(lines), wanted, lines))
        time.sleep(0.01)  # the asker appends; polled with a deadline


def fds(pid):
    """What kinds of fd `pid` holds, and how many of each (fd numbers and
    inodes change with every restart). TCP sockets are left out: the admin
    endpoint's connection to this test may be open or closing."""
    with open("/proc/%d/net/unix" % pid) as f:
        unix = {line.split()[6] for line in f.read().splitlines()[1:]}
    kinds = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except FileNotFoundError:
            continue
        kind = link.split(":[")[0]
        if kind == "socket":
            if link[len("socket:["):-1] not in unix:
                continue
            kind = "unix socket"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return sorted(int(p) for p in f.read().split())


def state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


# A service worker in Python: finds peers/0 by name, pings it, writes the
# reply and its own address, and stays up.
PY_WORKER = r"""
import os
import sys
import time

import occasional_port


def main(port):
    deadline = time.monotonic() + 30
    peer = port.whereis("peers/0")
    while peer is None and time.monotonic() < deadline:
        port.receive(lambda m: False, timeout=0.02)
        peer = port.whereis("peers/0")
    port.send(peer, ("ping", port.self))
    reply = port.receive(lambda m: isinstance(m, tuple) and m[0] == "pong", timeout=10)
    with open(sys.argv[1], "w") as f:
        f.write("%r\n%r\n" % (reply, os.environ.get("OCCASIONAL_PROCESS_FD")))
    while True:
        port.receive()


occasional_port.run(main)
"""


def main():
    occasional, peers_binary = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="service_peers_")
    out = os.path.join(tmp, "asker.out")
    open(out, "w").close()
    bare_out = os.path.join(tmp, "bare.out")
    open(bare_out, "w").close()
    py_out = os.path.join(tmp, "py.out")
    open(py_out, "w").close()
    py_worker = os.path.join(tmp, "py_worker.py")
    with open(py_worker, "w") as f:
        f.write(PY_WORKER)
    ports_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "workers",
                             "ports")
    config = os.path.join(tmp, "occasional.json")
    with open(config, "w") as f:
        json.dump({
            "listeners": [],
            "services": {
                "peers": {"command": [peers_binary, "serve"], "mode": "plain", "replicas": 2},
                "asker": {"command": [peers_binary, "ask", "peers/1", out], "mode": "plain"},
                # "process": false: no channel, no name, nothing counted.
                "bare": {"command": ["/bin/sh", "-c",
                                     'exec > %s; echo "${OCCASIONAL_PROCESS_FD-none}"; '
                                     'ls /proc/self/fd | tr "\\n" " "; echo; exec sleep 1000'
                                     % bare_out],
                         "mode": "plain", "process": False},
                # A Python worker joins through occasional_port.run.
                "py": {"command": ["python3", py_worker, py_out], "mode": "plain",
                       "env": {"PYTHONPATH": os.path.abspath(ports_dir)}},
            },
            "admin": {"address": "127.0.0.1:0"},
        }, f)
    c = Coordinator([occasional, "run", "--config", config, "--log-format", "json"])
    try:
        admin = c.wait_event("admin_listening")["port"]
        coordinator = c.wait_event("coordinator_start")["pid"]

        def get(path):
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (admin, path), timeout=5) as r:
                return r.read().decode()

        def worker_pid(service, replica):
            for s in json.loads(get("/v1/status"))["services"]:
                if s["name"] == service:
                    return s["workers"][replica]["pid"]
            fail("no service " + service)

        def metric(line_start):
            for line in get("/metrics").splitlines():
                if line.startswith(line_start + " "):
                    return float(line.split()[-1])
            fail("no metric " + line_start)

        # ls sees its own fds: 0-2 and 3, the directory it reads.
        bare = wait_lines(bare_out, 2)
        if bare[0] != "none" or bare[1].split() != ["0", "1", "2", "3"]:
            fail('the "process": false worker says %s, not none and fds 0-3' % bare)
        py = wait_lines(py_out, 2)
        if py[0] != "('pong', 'peers/0')":
            fail("the Python worker got %s from peers/0" % py[0])
        if py[1] != "None":  # attach took the channel the variable named, and removed it
            fail("OCCASIONAL_PROCESS_FD is still %s after attach" % py[1])
        print("python worker: " + py[0])
        lines = wait_lines(out, 3)
        if lines[:3] != ['pong from {<<"pong">>,<<"peers/1">>}', "square 49", "monitoring peers/1"]:
            fail("the asker said: %s" % lines)
        print("asker: " + "; ".join(lines[:3]))

        victim = worker_pid("peers", 1)
        os.kill(victim, signal.SIGKILL)
        lines = wait_lines(out, 5)
        down = lines[3]
        if not (down.startswith("down ") and '<<"kind">> => <<"signal">>' in down
                and '<<"signal">> => <<"SIGKILL">>' in down):
            fail("the DOWN of peers/1 does not say SIGKILL: " + down)
        if lines[4] != 'replacement pong from {<<"pong">>,<<"peers/1">>}':
            fail("the replacement did not answer as peers/1: " + lines[4])
        wait_until("peers/1 replaced", lambda: worker_pid("peers", 1) not in (None, victim))
        print("asker: " + "; ".join(lines[3:5]))

        # The peers, the asker and the Python worker, and nothing else, are
        # processes now (not `bare`); the square process exited normal,
        # peers/1 by a signal.
        wait_until("4 processes", lambda: metric("occasional_processes") == 4)
        if metric('occasional_process_exits_total{reason="normal"}') < 1:
            fail("the square process's normal exit is not counted")
        if metric('occasional_process_exits_total{reason="signal"}') < 1:
            fail("the SIGKILL of peers/1 is not counted")

        # Restarts leak nothing in the coordinator: its fds come back, and
        # its only children are the guardian and the three workers.
        workers = lambda: sorted(worker_pid(s, r) for s, r in (("peers", 0), ("peers", 1),
                                                                ("asker", 0), ("bare", 0),
                                                                ("py", 0)))
        baseline = fds(coordinator)
        for round in range(3):
            before = worker_pid("peers", 0)
            os.kill(before, signal.SIGKILL)
            wait_until("peers/0 replaced",
                       lambda: worker_pid("peers", 0) not in (None, before))
            wait_until("4 processes again", lambda: metric("occasional_processes") == 4)
            wait_until("the coordinator's fds back to %s, not %s" % (baseline, fds(coordinator)),
                       lambda: fds(coordinator) == baseline)
        kids = children(coordinator)
        if not set(workers()) <= set(kids) or len(kids) != 6:
            fail("the coordinator's children are %s; workers %s" % (kids, workers()))
        if any(state(k) == "Z" for k in kids):
            fail("a zombie among %s" % kids)
        print("3 restarts: coordinator fds %s before and after, children %s" % (baseline, kids))

        pids = workers()
        c.proc.send_signal(signal.SIGTERM)
        c.proc.wait(WAIT)
        for pid in pids:
            wait_until("pid %d gone" % pid, lambda pid=pid: gone(pid))
        print("OK")
    finally:
        c.end()


if __name__ == "__main__":
    main()
