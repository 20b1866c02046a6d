"""A Python program as an occasional port (docs/messages.md, "Ports").

Standard library only, Python >= 3.9. A port is an executable that the
coordinator starts with its control channel as fd 3 (Process::spawn_port);
this module speaks the control messages there and the {packet, 4} channels
to other processes, so the program is a process like any other:

    import occasional_port

    def main(port):
        while True:
            msg = port.receive()
            if msg == "stop":
                return "done"                      # exit reason: normal, value "done"
            sender, text = msg
            port.send(sender, ("hello " + text, port.self))

    occasional_port.run(main)

Values map as in docs/messages.md: None, bool, int (int64), float, str
(UTF-8 text), bytes (binary), list, tuple, dict; addresses and references
are Opaque bytes, to be sent back as they came. An uncaught exception ends
the process with the reason {"kind": "error", "type": ..., "what": ...}.
"""

import atexit
import os
import selectors
import socket
import struct
import sys
import time

__all__ = ["Opaque", "Port", "attach", "run", "encode", "decode", "frame", "ProtocolError"]

MAX_FRAME = 16 * 1024 * 1024  # etf::kMaxFrameBytes
MAX_CONTROL = 64 * 1024  # one control datagram


class ProtocolError(Exception):
    """The coordinator broke the protocol, or a term does not decode."""


class Opaque(bytes):
    """An address (pid) or a reference: kept as its exact ETF bytes."""

    def __repr__(self):
        return "Opaque(%s)" % bytes.__repr__(self)


# --- the External Term Format, the subset of docs/messages.md ---

_ATOMS = {b"undefined": None, b"nil": None, b"true": True, b"false": False}


def _enc(v, out):
    if v is None or isinstance(v, bool):
        a = b"undefined" if v is None else (b"true" if v else b"false")
        out += bytes([119, len(a)]) + a
    elif isinstance(v, Opaque):
        out += v
    elif isinstance(v, int):
        if 0 <= v <= 255:
            out += bytes([97, v])
        elif -(2**31) <= v < 2**31:
            out += struct.pack(">Bi", 98, v)
        elif -(2**63) <= v < 2**63:
            m = abs(v).to_bytes(8, "little").rstrip(b"\0")
            out += bytes([110, len(m), v < 0]) + m
        else:
            raise ValueError("integer outside int64: %d" % v)
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("NaN and infinities have no ETF form")
        out += struct.pack(">Bd", 70, v)
    elif isinstance(v, str):
        b = v.encode("utf-8")
        out += struct.pack(">BI", 109, len(b)) + b
    elif isinstance(v, (bytes, bytearray)):
        out += struct.pack(">BIB", 77, len(v), 8 if v else 0) + v
    elif isinstance(v, list):
        if not v:
            out.append(106)
            return
        out += struct.pack(">BI", 108, len(v))
        for x in v:
            _enc(x, out)
        out.append(106)
    elif isinstance(v, tuple):
        out += bytes([104, len(v)]) if len(v) < 256 else struct.pack(">BI", 105, len(v))
        for x in v:
            _enc(x, out)
    elif isinstance(v, dict):
        out += struct.pack(">BI", 116, len(v))
        for k, x in v.items():
            _enc(k, out)
            _enc(x, out)
    else:
        raise TypeError("no ETF form for %s" % type(v).__name__)


def encode(v):
    """The term's bytes, version byte 131 first."""
    out = bytearray(b"\x83")
    _enc(v, out)
    return bytes(out)


def frame(v):
    """{packet, 4}: a 4-byte big-endian length, then the term."""
    t = encode(v)
    if len(t) > MAX_FRAME:
        raise ValueError("term of %d bytes is over the %d-byte frame limit" % (len(t), MAX_FRAME))
    return struct.pack(">I", len(t)) + t


def decode(b):
    """One whole term (no frame length). Raises ValueError on bad input."""
    b = bytes(b)
    if b[:1] != b"\x83":
        raise ValueError("not ETF version 131")
    v, i = _dec(b, 1, 0)
    if i != len(b):
        raise ValueError("trailing bytes at %d" % i)
    return v


def _take(b, i, n):
    if i + n > len(b):
        raise ValueError("truncated at byte %d" % i)
    return b[i : i + n], i + n


def _int(b, i, n):
    s, i = _take(b, i, n)
    return int.from_bytes(s, "big"), i


def _dec(b, i, depth):
    if depth > 128:
        raise ValueError("nesting over 128 at byte %d" % i)
    t, i = _int(b, i, 1)
    if t == 97:
        return _int(b, i, 1)
    if t == 98:
        s, i = _take(b, i, 4)
        return struct.unpack(">i", s)[0], i
    if t == 70:
        s, i = _take(b, i, 8)
        return struct.unpack(">d", s)[0], i
    if t in (110, 111):
        n, i = _int(b, i, 1 if t == 110 else 4)
        sign, i = _int(b, i, 1)
        m, i = _take(b, i, n)
        v = (-1 if sign else 1) * int.from_bytes(m, "little")
        if not -(2**63) <= v < 2**63:
            raise ValueError("integer outside int64 at byte %d" % i)
        return v, i
    if t in (100, 115, 118, 119):
        n, i = _int(b, i, 1 if t in (115, 119) else 2)
        a, i = _take(b, i, n)
        if a not in _ATOMS:
            raise ValueError("atom %r is not a value" % a.decode("utf-8", "replace"))
        return _ATOMS[a], i
    if t in (109, 77):  # BINARY: a str if it is UTF-8; BIT_BINARY: bytes
        n, i = _int(b, i, 4)
        if t == 77:
            bits, i = _int(b, i, 1)
            if n and bits != 8:
                raise ValueError("bitstring at byte %d" % i)
        raw, i = _take(b, i, n)
        if t == 77:
            return bytes(raw), i
        try:
            return raw.decode("utf-8"), i
        except UnicodeDecodeError:
            return bytes(raw), i
    if t == 106:
        return [], i
    if t == 107:  # STRING_EXT: erl's short list of small integers
        n, i = _int(b, i, 2)
        s, i = _take(b, i, n)
        return list(s), i
    if t in (104, 105, 108, 116):  # SMALL_TUPLE, LARGE_TUPLE, LIST, MAP
        n, i = _int(b, i, 1 if t == 104 else 4)
        count = n * 2 if t == 116 else n
        if count > len(b) - i:
            raise ValueError("truncated at byte %d" % i)
        items = []
        for _ in range(count):
            v, i = _dec(b, i, depth + 1)
            items.append(v)
        if t == 108:
            tail, i = _take(b, i, 1)
            if tail != b"j":
                raise ValueError("improper list at byte %d" % (i - 1))
            return items, i
        if t == 116:
            d = {}
            for k, v in zip(items[::2], items[1::2]):
                try:
                    d[k] = v
                except TypeError:
                    raise ValueError("map key %r is not hashable in Python" % (k,))
            return d, i
        return tuple(items), i
    if t in (88, 90):  # NEW_PID, NEWER_REFERENCE: opaque, sent back as they came
        start = i - 1
        words, j = _int(b, i, 2) if t == 90 else (0, i)
        a, j = _int(b, j, 1)
        if a not in (100, 115, 118, 119):
            raise ValueError("node is not an atom at byte %d" % (j - 1))
        n, j = _int(b, j, 1 if a in (115, 119) else 2)
        _, j = _take(b, j, n + (12 if t == 88 else 4 + 4 * words))
        return Opaque(b[start:j]), j
    raise ValueError("tag %d at byte %d is not in the subset" % (t, i - 1))


# --- the process ---


class _Channel:
    __slots__ = ("sock", "peer", "buf", "open", "reported")

    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.buf = bytearray()
        self.open = True
        self.reported = False


def _is_tuple(m, name, size):
    return isinstance(m, tuple) and len(m) == size and m[0] == name


class Port:
    """This process: its inbox, its channels, its control channel."""

    def __init__(self, control_fd=None):
        if control_fd is None:
            # A service's worker joins its coordinator's system on
            # OCCASIONAL_PROCESS_FD (its OCCASIONAL_CONTROL_FD, in handoff
            # mode, is the worker protocol's); a port has fd 3. The variable
            # is removed: programs this one starts must not take the fd.
            named = os.environ.pop("OCCASIONAL_PROCESS_FD", None)
            if named is not None:
                if not named.isdigit():
                    raise ValueError("OCCASIONAL_PROCESS_FD=%r is not an fd number" % named)
                control_fd = int(named)
                os.set_inheritable(control_fd, False)
            else:
                control_fd = int(os.environ.get("OCCASIONAL_CONTROL_FD", "3"))
        self._control = socket.socket(fileno=control_fd)
        self._control.setblocking(True)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._control, selectors.EVENT_READ, None)
        self._inbox = []
        self._by_peer = {}
        self._next_tag = 1
        self._awaited = None
        self._reply = None
        self._reply_fd = None
        self._reported = False
        self.self = None
        self.coordinator_pid = None
        self.dropped_sends = 0
        while self.self is None:
            self._read_control(block=True)

    # --- control channel ---

    def _send_control(self, term, fds=()):
        data = encode(term)
        if len(data) > MAX_CONTROL:
            raise ValueError("control message of %d bytes is over 64 KiB" % len(data))
        if fds:
            socket.send_fds(self._control, [data], list(fds))
        else:
            self._control.send(data)

    def _read_control(self, block):
        """Handles the control messages waiting (at least one if block)."""
        self._control.setblocking(block)
        try:
            while True:
                try:
                    data, fds, flags, _ = socket.recv_fds(self._control, MAX_CONTROL, 1)
                except BlockingIOError:
                    return
                if not data:
                    _die("the coordinator closed the control channel")
                if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                    for fd in fds:
                        os.close(fd)
                    _die("a control message was truncated")
                self._handle_control(data, fds)
                self._control.setblocking(False)
        finally:
            self._control.setblocking(True)

    def _handle_control(self, data, fds):
        try:
            m = decode(data)
        except ValueError as e:
            _die("bad control message from the coordinator: %s" % e)
        if _is_tuple(m, "reply", 3) and m[1] == self._awaited and self._reply is None:
            self._reply = m[2]
            self._reply_fd = fds[0] if fds else None
        elif _is_tuple(m, "channel", 2) and isinstance(m[1], Opaque) and len(fds) == 1:
            self._add_channel(m[1], fds[0])
        elif _is_tuple(m, "DOWN", 4):
            self._drain(m[2])
            self._inbox.append(m)
        elif _is_tuple(m, "EXIT", 3):
            self._drain(m[1])
            self._inbox.append(m)
        elif _is_tuple(m, "hello", 3) and isinstance(m[1], Opaque):
            self.self = m[1]
            self.coordinator_pid = m[2]
        else:
            _die("unknown control message from the coordinator: %r" % (m,))

    def _request(self, name, *args):
        tag = self._next_tag
        self._next_tag += 1
        self._awaited = tag
        self._send_control((name, tag) + args)
        while self._reply is None:
            self._read_control(block=True)
        reply, fd = self._reply, self._reply_fd
        self._reply = self._reply_fd = self._awaited = None
        return reply, fd

    # --- channels ---

    def _add_channel(self, peer, fd):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        c = _Channel(sock, peer)
        self._sel.register(sock, selectors.EVENT_READ, c)
        # The first channel to a peer stays its channel: order is kept.
        self._by_peer.setdefault(peer, c)
        return c

    def _close_channel(self, c):
        if not c.open:
            return
        c.open = False
        self._sel.unregister(c.sock)
        if self._by_peer.get(c.peer) is c:
            del self._by_peer[c.peer]
        c.sock.close()

    def _read_channel(self, c):
        """One read; True if something was read."""
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return False
        except (ConnectionResetError, OSError):
            data = b""
        if not data:
            self._close_channel(c)
            return False
        c.buf += data
        while len(c.buf) >= 4:
            (n,) = struct.unpack_from(">I", c.buf)
            if n > MAX_FRAME:
                self._bad_frame(c, "a frame header over %d bytes" % MAX_FRAME)
                self._close_channel(c)
                return False
            if len(c.buf) < 4 + n:
                break
            term = bytes(c.buf[4 : 4 + n])
            del c.buf[: 4 + n]
            try:
                self._inbox.append(decode(term))
            except (ValueError, RecursionError) as e:
                self._bad_frame(c, str(e))
        return True

    def _bad_frame(self, c, why):
        if not c.reported:
            c.reported = True
            self._send_control(("bad_frame", c.peer, why))

    def _drain(self, who):
        c = self._by_peer.get(who)
        while c is not None and c.open and self._read_channel(c):
            pass

    def _channel_to(self, to):
        c = self._by_peer.get(to)
        if c is not None:
            return c
        reply, fd = self._request("connect", to)
        if fd is not None:
            return self._add_channel(to, fd)
        return self._by_peer.get(to)  # its channel notice came first, or noproc

    def _process_ready(self, timeout):
        for key, _ in self._sel.select(timeout):
            if key.data is None:
                self._read_control(block=False)
            elif key.data.open:
                self._read_channel(key.data)

    # --- the API ---

    def send(self, to, value):
        """Asynchronous; dropped (and counted) if `to` is not a live process.
        Returns whether it was written to a live process's channel. `to`
        may be an address or a registered name (str)."""
        if isinstance(to, str):
            to = self.whereis(to)
            if to is None:
                self.dropped_sends += 1
                return False
        data = frame(value)
        if to == self.self:
            self._inbox.append(decode(data[4:]))
            return True
        c = self._channel_to(to)
        view = memoryview(data)
        while c is not None and c.open and view:
            try:
                view = view[c.sock.send(view) :]
                continue
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                self._close_channel(c)
                break
            # The receiver is behind: read what comes to us meanwhile, so that
            # two processes flooding each other both progress.
            sel = selectors.DefaultSelector()
            sel.register(c.sock, selectors.EVENT_WRITE)
            ready = sel.select(0.05)
            sel.close()
            if not ready:
                self._process_ready(0)
        if c is None or view:
            self.dropped_sends += 1
            return False
        return True

    def receive(self, match=None, timeout=None):
        """The oldest message (that `match` accepts, if given); the others
        stay in the inbox, in order. None after `timeout` seconds (0 polls)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = 0
        polled = False
        while True:
            for i in range(seen, len(self._inbox)):
                if match is None or match(self._inbox[i]):
                    return self._inbox.pop(i)
            seen = len(self._inbox)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                if polled:
                    return None
                polled = True  # what has arrived is read even with timeout 0
                left = 0
            self._process_ready(left)

    def monitor(self, address):
        ref, _ = self._request("monitor", address)
        return ref

    def demonitor(self, ref):
        self._request("demonitor", ref)
        self._inbox = [m for m in self._inbox if not (_is_tuple(m, "DOWN", 4) and m[1] == ref)]

    def link(self, address):
        self._request("link", address)

    def unlink(self, address):
        self._request("unlink", address)

    def trap_exits(self, on=True):
        self._request("trap_exits", bool(on))

    def register(self, name):
        ok, _ = self._request("register", name)
        return ok is True

    def whereis(self, name):
        address, _ = self._request("whereis", name)
        return address

    def spawn_port(self, argv, env=(), cwd=None, link=False, monitor=False):
        """Starts another port; returns its address, or (address, ref) when monitored."""
        options = {"env": list(env), "link": link, "monitor": monitor}
        if cwd:
            options["cwd"] = cwd
        (address, ref), _ = self._request("spawn_port", list(argv), options)
        return (address, ref) if monitor else address

    def exit(self, reason=None):
        """Ends this process. An exception: the reason error (type, what),
        exit code 1. Anything else: normal with that value, exit code 0."""
        if isinstance(reason, BaseException):
            self.report({"kind": "error", "type": _type_name(reason), "what": str(reason)})
            code = 1
        else:
            self.report({"kind": "normal", "value": reason})
            code = 0
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def report(self, reason):
        """States the exit reason (a map with a "kind"); the kernel's status
        decides whether it holds (docs/messages.md "Exit reasons")."""
        self._reported = True
        try:
            self._send_control(("exit", reason))
        except (ValueError, TypeError) as e:
            value = {"kind": "error", "type": _type_name(e), "what": "exit reason: %s" % e}
            self._send_control(("exit", value))


def _type_name(e):
    t = type(e)
    return t.__qualname__ if t.__module__ == "builtins" else "%s.%s" % (t.__module__, t.__qualname__)


def _die(why):
    sys.stderr.write("occasional port %d: %s\n" % (os.getpid(), why))
    sys.stderr.flush()
    os._exit(70)


_port = None


def attach():
    """This process, once: reads the coordinator's hello on fd 3. From now
    on an uncaught exception is reported as the reason error, and a normal
    end of the program as normal (value None)."""
    global _port
    if _port is not None:
        return _port
    _port = Port()
    previous = sys.excepthook

    def hook(t, e, tb):
        if not _port._reported and not isinstance(e, KeyboardInterrupt):
            _port.report({"kind": "error", "type": _type_name(e), "what": str(e)})
        previous(t, e, tb)

    sys.excepthook = hook

    def at_exit():
        if not _port._reported:
            _port.report({"kind": "normal", "value": None})

    atexit.register(at_exit)
    return _port


def run(main):
    """Runs main(port) and ends the process with its result: normal with
    the returned value, or error with the uncaught exception."""
    port = attach()
    try:
        value = main(port)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - the reason says what it was
        import traceback

        traceback.print_exc()
        port.exit(e)
    port.exit(value)
