#!/usr/bin/env python3
"""A handoff worker that misbehaves in one way, named by its first argument.

Each mode follows the protocol (docs/protocol.md) up to `ready` unless said
otherwise, then does the one hostile thing. It writes what it saw to stdout,
one line per fact, prefixed with "hostile:", for the test to read.

Modes:
  truncate_counter  asks for the closed counter, tries to ftruncate it to 0
                    (and to grow it), then writes an impossible value to it
                    after each connection it serves
  close_channel     closes its control socket after `ready` and stays alive
  burst N           sends N `pong` messages as fast as it can, then serves
  fd_attached       sends a `status` message with an fd attached
  garbage           sends datagrams that are not JSON
  exit_no_exit      sends `exit`, then stays alive, ignoring SIGTERM
  fork_bomb         forks children that sleep until fork fails, then serves
"""
import errno
import json
import mmap
import os
import signal
import socket
import struct
import sys
import time

ctl = socket.socket(fileno=int(os.environ["OCCASIONAL_CONTROL_FD"]))
ctl.setblocking(True)


def say(text):
    sys.stdout.write("hostile: " + text + "\n")
    sys.stdout.flush()


def send(obj):
    ctl.send(json.dumps(obj).encode())


def forever():
    while True:
        signal.pause()


def serve(on_conn=None):
    while True:
        msg, fds, _flags, _ = socket.recv_fds(ctl, 65536, 16)
        if not msg:
            return
        m = json.loads(msg)
        if m["type"] == "conn":
            conn = socket.socket(fileno=fds[0])
            conn.setblocking(True)
            try:
                conn.sendall(b"hostile\n")
            except OSError:
                pass
            conn.close()
            if on_conn:
                on_conn(m)
            else:
                send({"type": "closed", "id": m["id"]})
        elif m["type"] == "drain":
            send({"type": "exit", "reason": "drained"})
            return


def errno_name(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) else str(e)


def truncate_counter():
    send({"type": "hello", "version": 1, "role": "worker", "pid": os.getpid(),
          "closed_counter": True})
    counter = None
    while counter is None:
        msg, fds, _flags, _ = socket.recv_fds(ctl, 65536, 1)
        if not msg:
            return
        if json.loads(msg)["type"] == "closed_counter":
            page = mmap.mmap(fds[0], 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            for size in (1 << 20, 0):  # shrinking last leaves the page unbacked
                try:
                    os.ftruncate(fds[0], size)
                    say("ftruncate %d: ok" % size)
                except OSError as e:
                    say("ftruncate %d: %s" % (size, errno_name(e)))
            counter = page
    send({"type": "ready"})

    served = [0]

    def lie(m):
        # After the 1st connection far beyond what was handed to this worker,
        # after the 3rd back to 0; otherwise the truth.
        served[0] += 1
        n = served[0]
        value = 1 << 62 if n == 1 else 0 if n == 3 else n
        counter[0:8] = struct.pack("=Q", value)
        say("counter set to %d" % value)

    serve(lie)


def main():
    mode = sys.argv[1]
    if mode == "truncate_counter":
        return truncate_counter()
    if mode == "close_channel":
        # Read the coordinator's hello first: closing a SOCK_SEQPACKET socket
        # with unread messages makes the peer's next recv fail with
        # ECONNRESET before it sees the `ready` below.
        ctl.recv(65536)
        send({"type": "ready"})
        ctl.close()
        say("channel closed")
        forever()
    send({"type": "ready"})
    if mode == "burst":
        n = int(sys.argv[2])
        t0 = time.monotonic()
        for i in range(n):
            send({"type": "pong", "seq": i})
        say("burst of %d sent in %.3f s" % (n, time.monotonic() - t0))
        serve()
    elif mode == "fd_attached":
        r, w = os.pipe()
        socket.send_fds(ctl, [json.dumps({"type": "status", "text": "x"}).encode()], [r])
        forever()
    elif mode == "garbage":
        ctl.send(b"\x00\xffnot json at all")
        forever()
    elif mode == "exit_no_exit":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        send({"type": "exit", "reason": "leaving, honestly"})
        say("exit sent")
        forever()
    elif mode == "fork_bomb":
        children = 0
        while True:
            try:
                pid = os.fork()
            except OSError as e:
                say("fork failed after %d children: %s" % (children, errno_name(e)))
                break
            if pid == 0:
                forever()
            children += 1
        serve()
    else:
        raise SystemExit("unknown mode " + mode)


main()
