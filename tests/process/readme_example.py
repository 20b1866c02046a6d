#!/usr/bin/env python3
"""Writes README.md's C++ example (the ```cpp block under "## Processes and
messages") to a source file, exactly as the README prints it, for the
readme_example target to build.

  readme_example.py README.md build/release/tests/process/readme_example.cpp
"""
import re
import sys


def main(readme, out):
    text = open(readme, encoding="utf-8").read()
    section = text.split("\n## Processes and messages\n", 1)
    if len(section) != 2:
        sys.exit(f"{readme}: no '## Processes and messages' section")
    match = re.search(r"```cpp\n(.*?)```", section[1].split("\n## ", 1)[0], re.S)
    if not match:
        sys.exit(f"{readme}: no ```cpp block under '## Processes and messages'")
    with open(out, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "README.md (Processes and messages)"\n{match.group(1)}')


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
