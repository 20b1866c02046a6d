#!/usr/bin/env python3
"""Cross-checks occasional's External Term Format codec against a real
Erlang runtime (Debian erlang-base), both ways:

  occasional -> erl   etf_tool encodes a table of values; erl's
                      binary_to_term must give the term each case expects
                      (written in Erlang, checked by etf_peer.escript).
  erl -> occasional   erl's term_to_binary writes a table of terms (pids and
                      references erl made itself, floats, big integers, maps,
                      atoms, things outside the subset); etf_tool must print
                      the value (or the refusal) each case expects.

  etf_erlang_test.py --tool build/release/tests/workers/etf_tool
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "etf_peer.escript")


def run(cmd):
    result = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", timeout=120)
    return result.returncode, result.stdout, result.stderr


def occasional_to_erlang(tool, work):
    directory = os.path.join(work, "from_occasional")
    os.mkdir(directory)
    code, out, err = run([tool, "encode", directory])
    if code != 0:
        print(f"etf_tool encode failed ({code}): {err}")
        return False
    code, out, err = run(["escript", PEER, "check", directory])
    print(out, end="")
    if code != 0:
        print(f"erl refused or misread what occasional encoded (exit {code}) {err}")
        return False
    return True


def erlang_to_occasional(tool, work):
    directory = os.path.join(work, "from_erlang")
    os.mkdir(directory)
    code, out, err = run(["escript", PEER, "write", directory])
    if code != 0:
        print(f"etf_peer.escript write failed ({code}): {out} {err}")
        return False
    names = sorted(f[:-4] for f in os.listdir(directory) if f.endswith(".etf"))
    if len(names) < 40:
        print(f"only {len(names)} cases from erl")
        return False
    code, out, err = run([tool, "decode"] + [os.path.join(directory, n + ".etf") for n in names])
    lines = out.split("\n")
    if code != 0 or len(lines) != len(names) + 1:
        print(f"etf_tool decode failed ({code}): {err}")
        return False
    ok = True
    for name, got in zip(names, lines):
        with open(os.path.join(directory, name + ".expected"), encoding="utf-8") as f:
            expected = f.read().rstrip("\n")
        if got == expected:
            print(f"ok {name}")
        else:
            ok = False
            print(f"FAIL {name}: expected {expected[:200]!r}, got {got[:200]!r}")
    if not ok:
        print(err)
    return ok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", required=True)
    args = parser.parse_args()
    if shutil.which("escript") is None:
        print("escript not found: install erlang-base (scripts/dev.sh deps)")
        return 1
    with tempfile.TemporaryDirectory() as work:
        a = occasional_to_erlang(args.tool, work)
        b = erlang_to_occasional(args.tool, work)
    print("occasional -> erl:", "ok" if a else "FAILED")
    print("erl -> occasional:", "ok" if b else "FAILED")
    return 0 if a and b else 1


if __name__ == "__main__":
    sys.exit(main())
