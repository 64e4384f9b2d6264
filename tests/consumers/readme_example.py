#!/usr/bin/env python3
"""Check that tests/consumers/echo.cpp is README.md's echo server, verbatim.

The consumer tests build echo.cpp, so this check is what makes them test the
example readers copy. It takes the first ```cpp block under the heading
"## An echo server" and compares it with the file, byte for byte.

Usage: readme_example.py README.md echo.cpp
"""

import difflib
import sys

HEADING = "## An echo server"


def example_block(readme_lines):
    """The lines of the first ```cpp block under HEADING, or None."""
    try:
        start = readme_lines.index(HEADING + "\n")
    except ValueError:
        return None
    block = None
    for line in readme_lines[start + 1 :]:
        if block is None:
            if line.startswith("## "):
                return None
            if line.rstrip() == "```cpp":
                block = []
        elif line.rstrip() == "```":
            return block
        else:
            block.append(line)
    return None


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    readme_path, example_path = argv
    with open(readme_path, encoding="utf-8") as f:
        block = example_block(f.readlines())
    if block is None:
        print(f"{readme_path}: no ```cpp block under '{HEADING}'")
        return 1
    with open(example_path, encoding="utf-8") as f:
        example = f.readlines()
    if block == example:
        print(f"{example_path} is the example of {readme_path} ({len(block)} lines)")
        return 0
    print(f"{example_path} differs from the example under '{HEADING}' in {readme_path}:")
    sys.stdout.writelines(difflib.unified_diff(block, example, readme_path, example_path))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
