"""Where a profiled process spent its time: the top frames of a py-spy raw profile.

Run a benchmark with ``SIGNOFF_BENCH_PROFILE=DIR`` (py-spy installed in .venv) to get one
profile per server process, then:

    .venv/bin/python -m bench.hotspots DIR/signoff-1234.txt [--top 25] [--within TEXT]

Prints the functions most often on top of the stack (self time: where the CPU was) and the
functions most often anywhere on it (inclusive time: what it was doing), as shares of the
samples; ``--within`` keeps only the stacks with a frame containing TEXT (for example
``create_approval`` or ``process_due``), leaving out start-up and other work.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def read_profile(path: Path, within: str = "") -> tuple[Counter[str], Counter[str], int]:
    """Self and inclusive sample counts per function, and the total samples (of the stacks
    with a frame containing ``within``)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";") if frame]
        if not frames or not any(within in frame for frame in frames):
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return own, inclusive, total


def _function(frame: str) -> str:
    """``function (file)``, without the line number: lines of one function add up."""
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match.group('function')} ({match.group('file')})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--within", default="", help="only stacks with a frame containing this")
    args = parser.parse_args(argv)
    own, inclusive, total = read_profile(args.profile, args.within)
    if not total:
        print("no samples")
        return
    for title, counts in (("self", own), ("inclusive", inclusive)):
        print(f"\nTop {args.top} functions by {title} time ({total} samples)")
        for function, count in counts.most_common(args.top):
            print(f"  {100 * count / total:5.1f}%  {function}")


if __name__ == "__main__":
    main()
