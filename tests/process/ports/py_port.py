# A Python port for tests/process/port_test.cpp: each command is a tuple
# whose first element names it; the reply goes to the address it carries.
import os
import signal
import struct

import occasional_port


def is_down(ref):
    return lambda m: isinstance(m, tuple) and len(m) == 4 and m[0] == "DOWN" and m[1] == ref


def main(port):
    while True:
        m = port.receive()
        cmd = m[0]
        if cmd == "echo":
            port.send(m[1], ("echoed", m[2], port.self))
        elif cmd == "forward":  # to any address it was given
            port.send(m[1], m[2])
        elif cmd == "raise":
            raise ValueError(m[1])
        elif cmd == "exit":
            port.exit(m[1])
        elif cmd == "return":
            return m[1]
        elif cmd == "killed_after_report":
            port.report({"kind": "normal", "value": "reported"})
            os.kill(os.getpid(), signal.SIGKILL)
        elif cmd == "register":
            port.send(m[1], ("registered", port.register(m[2])))
        elif cmd == "send_name":
            port.send(m[1], m[2])
        elif cmd == "env":
            port.send(m[1], ("env", os.getcwd(), os.environ.get(m[2])))
        elif cmd == "monitor":
            ref = port.monitor(m[2])
            port.send(m[1], ("monitoring",))
            down = port.receive(is_down(ref))
            port.send(m[1], ("port_saw", down[3]))
        elif cmd == "selective":
            b = port.receive(lambda x: isinstance(x, tuple) and x[0] == "b", timeout=m[2])
            never = port.receive(lambda x: x == "never", timeout=0.05)
            a = port.receive(lambda x: isinstance(x, tuple) and x[0] == "a", timeout=0)
            port.send(m[1], ("selected", b, never, a))
        elif cmd == "bad_frame":  # a buggy port: a frame whose term does not decode
            c = port._channel_to(m[1])
            c.sock.setblocking(True)
            c.sock.sendall(struct.pack(">I", 3) + b"\x83zz")
        elif cmd == "bad_control":  # a buggy port: a control message that is not ETF
            port._control.send(b"not a term")
        elif cmd == "values":  # every kind of the subset, back as it came
            port.send(m[1], ("values", m[2]))


occasional_port.run(main)
