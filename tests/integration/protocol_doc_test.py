#!/usr/bin/env python3
"""docs/protocol.md's Python worker, run exactly as the page prints it.

Two parts. Under the real coordinator (`occasional run --listen
127.0.0.1:0 -- python3 worker.py`): real clients get their answers, the
`closed` messages bring every worker's open connections back to 0, a
SIGTERM drains the workers, and their `exit` reaches the exit record. Under
a scripted coordinator (this file, on the other end of the socketpair):
what this coordinator never sends or never sends on demand -- `ping`, a
`conns` batch, another protocol version, an unknown type, more fds than a
message may carry, a `conn` without its fd -- and what the page promises
about the fds: received close-on-exec, none left open.

  protocol_doc_test.py --bin build/release/gateway/occasional --doc docs/protocol.md
"""
import argparse
import array
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

ARGS = None
DEADLINE = 20.0  # seconds for anything to happen; a pass takes about one


def extract_example(doc_path):
    text = open(doc_path, encoding="utf-8").read()
    section = text.split("## Example: a Python worker", 1)
    if len(section) != 2:
        raise AssertionError(f"{doc_path}: no '## Example: a Python worker' section")
    match = re.search(r"```python\n(.*?)```", section[1], re.S)
    if not match:
        raise AssertionError(f"{doc_path}: no ```python block in the example section")
    return match.group(1)


def open_fds(pid):
    return {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}


def wait_until(what, predicate, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling /proc or a log with a deadline, not a wait for time


class Coordinator:
    """`occasional run` with its JSON event log read line by line from stderr."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.events = []
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

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

    def wait_events(self, name, count=1, where=lambda e: True):
        end = time.monotonic() + DEADLINE
        with self.cond:
            while True:
                found = [e for e in self.events if e.get("event") == name and where(e)]
                if len(found) >= count:
                    return found
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {count} '{name}' events; log:\n" +
                                         "\n".join(self.lines[-40:]))
                self.cond.wait(left)

    def named(self, name):
        with self.cond:
            return [e for e in self.events if e.get("event") == name]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(DEADLINE)
        self.proc.stderr.close()


def ask(port, line):
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        s.sendall(line)
        answer = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return answer
            answer += chunk


class UnderTheCoordinator(unittest.TestCase):
    def test_serves_reports_closed_and_drains(self):
        c = Coordinator([ARGS.bin, "run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                         "--log-format", "json", "--name", "pydoc", "--replicas", "2",
                         "--grace", "5", "--", sys.executable, ARGS.worker])
        try:
            port = c.wait_events("listening")[0]["port"]
            admin = c.wait_events("admin_listening")[0]["port"]
            c.wait_events("ready", 2)
            pids = [e["pid"] for e in c.named("spawn")]
            self.assertEqual(len(pids), 2)

            for i in range(10):
                self.assertEqual(ask(port, b"one %d\n" % i), b"hello one %d\n" % i)
            # Several at once: the balancer sends to the worker that is not busy,
            # or queues; every client is answered.
            answers = [None] * 12

            def client(i):
                answers[i] = ask(port, b"many %d\n" % i)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(DEADLINE)
            self.assertEqual(answers, [b"hello many %d\n" % i for i in range(12)])

            # Every connection came back with `closed`: no worker counts as busy.
            def status():
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/v1/status",
                                            timeout=5) as r:
                    return json.load(r)

            def all_closed():
                workers = status()["services"][0]["workers"]
                return all(w["open_connections"] == 0 for w in workers) and workers

            wait_until("open_connections 0 on every worker", all_closed)
            # No fd leaked: the standard three, the control socket and the
            # process channel (fd 4, OCCASIONAL_PROCESS_FD; docs/messages.md).
            for pid in pids:
                wait_until(f"worker {pid} back to fds 0-4",
                           lambda: open_fds(pid) == {0, 1, 2, 3, 4})
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
                metrics = r.read().decode()
            self.assertNotRegex(metrics, r"occasional_worker_protocol_errors_total\{[^}]*\} [1-9]")
            handed = re.search(r"^occasional_connections_handed_off_total(\{[^}]*\})? (\d+)",
                               metrics, re.M)
            self.assertIsNotNone(handed, metrics)
            self.assertEqual(int(handed.group(2)), 22)

            # SIGTERM: each worker gets `drain`, answers `exit` "drained", exits 0.
            c.proc.send_signal(signal.SIGTERM)
            exits = c.wait_events("exit", 2)
            for e in exits:
                self.assertEqual(e.get("stated_reason"), "drained", e)
                self.assertEqual(e.get("outcome"), "exited", e)
                self.assertEqual(e.get("code"), 0, e)
            self.assertEqual(c.proc.wait(DEADLINE), 0)
            self.assertEqual(c.named("protocol_error"), [])
        finally:
            c.stop()


class Scripted:
    """The coordinator's end of a worker's control socket, driven by hand."""

    def __init__(self, test):
        self.test = test
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ctl = ours
        self.ctl.settimeout(DEADLINE)
        env = dict(os.environ, OCCASIONAL_CONTROL_FD=str(theirs.fileno()),
                   OCCASIONAL_SERVICE="scripted", OCCASIONAL_REPLICA="0")
        self.proc = subprocess.Popen([sys.executable, ARGS.worker], env=env,
                                     pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.control_fd = theirs.fileno()
        theirs.close()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.next_id = 1
        self.hello = {}

    def send(self, message, fds=()):
        data = json.dumps(message).encode()
        if fds:
            self.ctl.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                       array.array("i", fds).tobytes())])
        else:
            self.ctl.send(data)

    def receive(self):
        data = self.ctl.recv(65536)
        self.test.assertTrue(data, "the worker closed its control socket")
        return json.loads(data)

    def expect(self, kind):
        m = self.receive()
        self.test.assertEqual(m["type"], kind, m)
        self.test.assertEqual(next(iter(m)), "type", "type must be the first field")
        return m

    def handshake(self, version=1):
        """Our hello; the worker's (optional) hello and its ready."""
        self.send({"type": "hello", "version": version, "role": "coordinator"})
        m = self.receive()
        if m["type"] == "hello":
            self.test.assertEqual(m["version"], 1)
            self.test.assertEqual(m["role"], "worker")
            self.test.assertEqual(m["pid"], self.proc.pid)
            self.hello = m
            m = self.receive()
        self.test.assertEqual(m["type"], "ready", m)

    def connection(self):
        """A client and the coordinator's side of it, as accept4 gives it."""
        client = socket.create_connection(self.listener.getsockname(), timeout=DEADLINE)
        server, peer = self.listener.accept()
        server.setblocking(False)
        header = {"id": self.next_id, "peer": "%s:%d" % peer,
                  "local": "%s:%d" % self.listener.getsockname(), "listener": "main",
                  "service": "scripted", "route": "default",
                  "accepted_at_ns": time.monotonic_ns()}
        self.next_id += 1
        return client, server, header

    def expect_exit_error(self):
        m = self.expect("exit")
        self.test.assertEqual(m.get("error"), "protocol_error", m)
        self.test.assertTrue(m.get("detail"), m)
        self.test.assertNotEqual(self.proc.wait(DEADLINE), 0)

    def close(self):
        self.ctl.close()
        self.listener.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()


def read_answer(client):
    answer = b""
    while True:
        chunk = client.recv(4096)
        if not chunk:
            return answer
        answer += chunk


class UnderAScriptedCoordinator(unittest.TestCase):
    def setUp(self):
        self.w = Scripted(self)
        self.addCleanup(self.w.close)

    def test_ping_batch_cloexec_and_drain(self):
        w = self.w
        w.handshake()
        w.send({"type": "ping", "seq": 2**64 - 1})
        self.assertEqual(w.expect("pong")["seq"], 2**64 - 1)

        # One `conn`; while the worker waits for the client's line, its copy
        # of the socket is close-on-exec (fdinfo flags, octal, O_CLOEXEC 02000000).
        client, server, header = w.connection()
        w.send(dict({"type": "conn"}, **header), [server.fileno()])
        server.close()
        base = {0, 1, 2, w.control_fd}
        extra = wait_until("the connection's fd in the worker",
                           lambda: open_fds(w.proc.pid) - base)
        self.assertEqual(len(extra), 1)
        with open(f"/proc/{w.proc.pid}/fdinfo/{extra.pop()}") as f:
            flags = int(re.search(r"^flags:\s+([0-7]+)", f.read(), re.M).group(1), 8)
        self.assertTrue(flags & 0o2000000, "the received fd is not close-on-exec")
        client.sendall(b"single\n")
        self.assertEqual(read_answer(client), b"hello single\n")
        client.close()
        self.assertEqual(w.expect("closed")["id"], header["id"])

        # A `conns` batch of three, served in order, each reported.
        self.assertIs(w.hello.get("conn_batches"), True, "the example takes batches")
        batch = [w.connection() for _ in range(3)]
        w.send({"type": "conns", "conns": [h for _, _, h in batch]},
               [s.fileno() for _, s, _ in batch])
        for client, server, _ in batch:
            server.close()
        for i, (client, _, header) in enumerate(batch):
            client.sendall(b"batch %d\n" % i)
            self.assertEqual(read_answer(client), b"hello batch %d\n" % i)
            client.close()
            self.assertEqual(w.expect("closed")["id"], header["id"])
        wait_until("no fd left open", lambda: open_fds(w.proc.pid) == base)

        w.send({"type": "drain", "deadline_ms": 5000})
        self.assertEqual(w.expect("exit"), {"type": "exit", "reason": "drained"})
        self.assertEqual(w.proc.wait(DEADLINE), 0)

    def test_another_version_is_refused(self):
        self.w.handshake(version=2)
        self.w.expect_exit_error()

    def test_an_unknown_type_is_refused(self):
        self.w.handshake()
        self.w.send({"type": "frobnicate"})
        self.w.expect_exit_error()

    def test_fds_cut_off_are_refused(self):
        # 17 fds, one more than the receive buffer holds (MSG_CTRUNC), for 16
        # entries: only the MSG_CTRUNC check sees that 16 fds arrived.
        w = self.w
        w.handshake()
        conns = [w.connection() for _ in range(17)]
        w.send({"type": "conns", "conns": [h for _, _, h in conns[:16]]},
               [s.fileno() for _, s, _ in conns])
        w.expect_exit_error()
        for client, server, _ in conns:
            client.close()
            server.close()

    def test_a_conn_without_its_fd_is_refused(self):
        client, server, header = self.w.connection()
        self.w.handshake()
        self.w.send(dict({"type": "conn"}, **header))
        self.w.expect_exit_error()
        client.close()
        server.close()

    def test_an_fd_on_another_message_is_refused(self):
        w = self.w
        w.handshake()
        r, wr = os.pipe()
        w.send({"type": "ping", "seq": 1}, [r])
        os.close(r)
        os.close(wr)
        w.expect_exit_error()

    def test_end_of_file_ends_the_worker(self):
        self.w.handshake()
        self.w.ctl.shutdown(socket.SHUT_RDWR)
        self.assertEqual(self.w.proc.wait(DEADLINE), 0)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the occasional binary")
    ap.add_argument("--doc", required=True, help="docs/protocol.md")
    ARGS, rest = ap.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        ARGS.worker = os.path.join(tmp, "worker.py")
        with open(ARGS.worker, "w") as f:
            f.write(extract_example(ARGS.doc))
        unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
