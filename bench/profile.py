"""Summarise a py-spy `--format raw` profile (collapsed stacks): samples per thread, and the
functions with the most samples, inclusive and self.

    python -m bench.profile bench/.out/prof/FILE.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^():]*?)(?::\d+)?\)$")


def _function(frame: str) -> str:
    """`name (file:line)` -> `name (file)`: lines of one function add up."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"].split("site-packages/")[-1]
    return f"{match['name']} ({path})"


def summarise(path: Path, top: int = 25) -> str:
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = re.sub(r"\s*\(\d+\)", "", frames[0])
        functions = [_function(f) for f in frames[1:]]
        total += count
        threads[thread] += count
        for function in set(functions):
            inclusive[function] += count
        if functions:
            own[functions[-1]] += count
    lines = [f"{total} samples"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in threads.most_common()]
    lines.append("inclusive:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    lines.append("self:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.profile, args.top))


if __name__ == "__main__":
    main()
