#!/usr/bin/env python3
"""workers/examples/gateway_acceptor under the real coordinator, in handoff
mode: each connection the gateway hands over is served by a process of its
own. SIGKILL of one connection's process closes that connection only: the
other connections keep echoing, the worker is not restarted, the gateway's
open-connection count follows (gateway_finished on DOWN), new connections
are served, the killed process is reaped, and SIGTERM drains the worker to a
clean exit.

  gateway_acceptor_test.py OCCASIONAL GATEWAY_ACCEPTOR"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tcp_echo_server_test import (WAIT, connect, echo, fail, gone, kill_second,  # noqa: E402
                                  open_three, others_still_echo)


class Coordinator:
    """`occasional run`, its JSON event log read line by line from stderr."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.events, self.lines = [], []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            try:
                event = json.loads(line)
            except ValueError:
                event = None  # a worker's own stderr shares the stream
            with self.cond:
                self.lines.append(line)
                if isinstance(event, dict):
                    self.events.append(event)
                self.cond.notify_all()

    def wait_event(self, name):
        end = time.monotonic() + WAIT
        with self.cond:
            while True:
                for e in self.events:
                    if e.get("event") == name:
                        return e
                if end - time.monotonic() <= 0:
                    fail("no '%s' event; log:\n%s" % (name, "\n".join(self.lines[-40:])))
                self.cond.wait(end - time.monotonic())

    def end(self):
        """Kills the coordinator if a test left it running, and reaps it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def named(self, name):
        with self.cond:
            return [e for e in self.events if e.get("event") == name]


def wait_until(what, predicate):
    end = time.monotonic() + WAIT
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            fail("timed out waiting for " + what)
        time.sleep(0.01)  # polling the admin endpoint or /proc, with a deadline


def main():
    occasional, acceptor = sys.argv[1], sys.argv[2]
    c = Coordinator([occasional, "run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                     "--log-format", "json", "--name", "acceptor", "--mode", "handoff",
                     "--grace", "10", "--", acceptor])
    try:
        port = c.wait_event("listening")["port"]
        admin = c.wait_event("admin_listening")["port"]
        c.wait_event("ready")
        worker = c.named("spawn")[0]["pid"]

        def status():
            with urllib.request.urlopen("http://127.0.0.1:%d/v1/status" % admin, timeout=5) as r:
                return json.load(r)["services"][0]["workers"][0]

        def open_connections(n):
            return lambda: status()["open_connections"] == n

        conns = open_three(port, worker)
        pids = [pid for _, pid in conns]
        wait_until("3 open connections", open_connections(3))

        victim = kill_second(conns)
        # Its DOWN reached process zero, which told the gateway.
        wait_until("2 open connections after the kill", open_connections(2))

        others_still_echo(conns)

        s4, pid4 = connect(port)
        echo(s4, b"new connection\n")
        print("a new connection is served by pid %d" % pid4)
        wait_until("pid %d reaped" % victim, lambda: gone(victim))

        w = status()
        if w["pid"] != worker or c.named("exit") or len(c.named("spawn")) != 1:
            fail("the worker was restarted: status %s, exits %s" % (w, c.named("exit")))
        print("worker %d never restarted" % worker)

        for s, _ in conns + [(s4, pid4)]:
            s.close()
        wait_until("0 open connections", open_connections(0))

        # SIGTERM: `drain` reaches process zero, which returns once every
        # connection's process is DOWN; the worker exits 0 and so does occasional.
        held = connect(port)
        c.proc.send_signal(signal.SIGTERM)
        echo(held[0], b"still served while draining\n")
        held[0].close()
        e = c.wait_event("exit")
        if e.get("outcome") != "exited" or e.get("code") != 0:
            fail("the worker did not drain to exit 0: %s" % e)
        if c.proc.wait(WAIT) != 0:
            fail("occasional exited %s" % c.proc.returncode)
        for pid in pids + [pid4, held[1], worker]:
            wait_until("pid %d gone" % pid, lambda pid=pid: gone(pid))
        print("OK")
    finally:
        c.end()


if __name__ == "__main__":
    main()
