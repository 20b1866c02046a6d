#!/usr/bin/env python3
"""docs/messages.md's Python codec, run exactly as the page prints it,
against occasional's own (etf_tool):

- every value of etf_tool's table: Python decodes occasional's bytes and
  encodes them back byte for byte, and occasional reads that back the same;
- Python values encoded by the page's codec decode in occasional to the
  expected value;
- the page's >>> examples hold, and bad input raises ValueError.

  messages_doc_test.py --tool build/release/tests/workers/etf_tool --doc docs/messages.md
"""
import argparse
import doctest
import os
import re
import subprocess
import sys
import tempfile
import unittest

ARGS = None


def python_blocks(doc_path):
    text = read(doc_path)
    section = text.split("\n## Python\n", 1)
    if len(section) != 2:
        raise AssertionError(f"{doc_path}: no '## Python' section")
    body = section[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.S)


def load_codec():
    blocks = python_blocks(ARGS.doc)
    namespace = {"__name__": "messages_doc_codec"}
    exec(compile(blocks[0], "docs/messages.md", "exec"), namespace)
    return namespace, blocks


def read(path, mode="r"):
    with open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def occasional_decode(paths):
    result = subprocess.run([ARGS.tool, "decode"] + paths, capture_output=True,
                            encoding="utf-8", errors="replace", timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"etf_tool decode: {result.stderr}")
    return result.stdout.split("\n")[:-1]


class MessagesDoc(unittest.TestCase):
    def setUp(self):
        self.codec, self.blocks = load_codec()
        self.work = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.work.cleanup()

    def test_round_trip_through_python_is_byte_exact(self):
        d = self.work.name
        subprocess.run([ARGS.tool, "encode", d], check=True, timeout=60)
        names = sorted(f[:-4] for f in os.listdir(d) if f.endswith(".etf"))
        self.assertGreater(len(names), 30)
        paths = []
        for name in names:
            original = read(os.path.join(d, name + ".etf"), "rb")
            value = self.codec["decode"](original)
            again = b"\x83" + self.codec["encode"](value)
            self.assertEqual(again, original, name)
            path = os.path.join(d, name + ".py.etf")
            write(path, again)
            paths.append(path)
        got = occasional_decode(paths)
        for name, line in zip(names, got):
            expected = read(os.path.join(d, name + ".txt")).rstrip("\n")
            self.assertEqual(line, expected, name)

    def test_python_values_reach_occasional(self):
        cases = [
            (None, "undefined"),
            ([True, False, []], "[true,false,[]]"),
            (-2**63, "-9223372036854775808"),
            (2**63 - 1, "9223372036854775807"),
            (2**31, "2147483648"),
            (-0.0, "-0.0"),
            ("héllo", '<<"héllo">>'),
            (b"text", "<<116,101,120,116>>"),
            (b"", "<<>>"),
            ({"b": (1, 2.5), "a": {}}, '#{<<"a">> => #{},<<"b">> => {1,2.5}}'),
            (tuple(range(256))[:3], "{0,1,2}"),
        ]
        paths = []
        for i, (value, _) in enumerate(cases):
            path = os.path.join(self.work.name, f"{i}.etf")
            framed = self.codec["frame"](value)
            length = int.from_bytes(framed[:4], "big")
            self.assertEqual(length, len(framed) - 4)
            write(path, framed[4:])
            paths.append(path)
        self.assertEqual(occasional_decode(paths), [expected for _, expected in cases])

    def test_bad_input_raises_value_error(self):
        decode, encode = self.codec["decode"], self.codec["encode"]
        whole = b"\x83" + encode(("foo", [1, 2**40], {"k": b"\x00"}))
        for n in range(len(whole)):
            with self.assertRaises(ValueError, msg=n):
                decode(whole[:n])
        with self.assertRaises(ValueError):
            decode(whole + b"j")
        with self.assertRaises(ValueError):
            encode(2**63)
        for bad in (b"\x83w\x02ok", b"\x84a\x01", b"\x83p", b"\x83l\x00\x00\x00\x01a\x01a\x02"):
            with self.assertRaises(ValueError, msg=bad):
                decode(bad)

    def test_examples_hold(self):
        self.assertGreaterEqual(len(self.blocks), 2)
        parser = doctest.DocTestParser()
        test = parser.get_doctest(self.blocks[1], dict(self.codec), "messages.md", "docs/messages.md", 0)
        self.assertTrue(test.examples)
        runner = doctest.DocTestRunner()
        runner.run(test)
        self.assertEqual(runner.failures, 0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", required=True)
    parser.add_argument("--doc", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
