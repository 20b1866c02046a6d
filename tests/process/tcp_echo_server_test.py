#!/usr/bin/env python3
"""workers/examples/tcp_echo_server: one process per connection; SIGKILL of
one connection's process closes that connection only. The others keep
echoing, new connections are served, and the killed process is reaped."""
import os
import signal
import socket
import subprocess
import sys
import time

WAIT = 20.0  # seconds: generous, CI runs under ASan on a loaded machine


def fail(why):
    print("FAIL:", why)
    sys.exit(1)


def read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            fail("connection closed before a whole line: %r" % data)
        data += chunk
    return data.decode()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    hello = read_line(s)
    if not hello.startswith("hello from pid "):
        fail("unexpected greeting %r" % hello)
    return s, int(hello.split()[-1])


def echo(s, text):
    s.sendall(text)
    got = b""
    while len(got) < len(text):
        chunk = s.recv(len(text) - len(got))
        if not chunk:
            fail("connection closed while echoing %r" % text)
        got += chunk
    if got != text:
        fail("echoed %r for %r" % (got, text))


def open_three(port, server_pid):
    """Three connections, each served by a process of its own (not the server's)."""
    conns = [connect(port) for _ in range(3)]
    pids = [pid for _, pid in conns]
    if len(set(pids)) != 3 or server_pid in pids:
        fail("connections not served by three processes of their own: %s" % pids)
    for i, (s, _) in enumerate(conns):
        echo(s, b"before %d\n" % i)
    return conns


def kill_second(conns):
    """SIGKILLs the second connection's process; its connection must close."""
    victim_sock, victim = conns[1]
    os.kill(victim, signal.SIGKILL)
    victim_sock.settimeout(WAIT)
    try:
        rest = victim_sock.recv(100)
    except ConnectionResetError:
        rest = b""
    if rest:
        fail("the killed process's connection still sent %r" % rest)
    print("killed pid %d: its connection closed" % victim)
    return victim


def others_still_echo(conns):
    for i in (0, 2):
        s, _ = conns[i]
        echo(s, b"after %d\n" % i)
        echo(s, os.urandom(100000).hex().encode())
    print("the other two connections still echo")


def gone(pid):
    """True once pid has exited and been reaped (a zombie is not gone)."""
    return not os.path.exists("/proc/%d" % pid)


def main():
    server = subprocess.Popen([sys.argv[1], "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on "):
            fail("unexpected first line %r" % line)
        port = int(line.split()[-1])

        conns = open_three(port, server.pid)
        victim = kill_second(conns)
        others_still_echo(conns)

        s4, pid4 = connect(port)
        echo(s4, b"new connection\n")
        print("a new connection is served by pid %d" % pid4)

        deadline = time.monotonic() + WAIT
        while not gone(victim):
            if time.monotonic() > deadline:
                fail("pid %d was not reaped" % victim)
            time.sleep(0.01)
        print("pid %d was reaped" % victim)

        if server.poll() is not None:
            fail("the server exited: %s" % server.returncode)
        for s, _ in conns + [(s4, pid4)]:
            s.close()
        print("OK")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
