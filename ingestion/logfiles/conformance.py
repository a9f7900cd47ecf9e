"""Run the parsers over a folder of sample logs and report what each file yields.

.venv/bin/python -m ingestion.logfiles.conformance /path/to/logs
"""

from __future__ import annotations

import bz2
import collections
import gzip
import sys
from pathlib import Path

from ingestion.logfiles.parsers import Rejected, decode, detect_format, make_parser


def open_lines(path: Path) -> list[bytes]:
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix, open)
    with opener(path, "rb") as fh:
        return fh.read().splitlines()


def check(path: Path) -> tuple[str, int, int, int, collections.Counter]:
    lines = [decode(raw) for raw in open_lines(path)]
    try:
        name = detect_format(lines)
    except ValueError:
        return "undetected", len(lines), 0, 0, collections.Counter()
    parser = make_parser(name)
    hits = skipped = 0
    reasons: collections.Counter = collections.Counter()
    for line in lines:
        try:
            if parser.parse(line) is None:
                skipped += 1
            else:
                hits += 1
        except Rejected as exc:
            reasons[str(exc)] += 1
    return name, len(lines), hits, skipped, reasons


def main() -> None:
    folder = Path(sys.argv[1])
    print(f"{'file':34} {'format':14} {'lines':>6} {'hits':>6} {'skipped':>7} {'rejected':>8}")
    for path in sorted(folder.iterdir()):
        name, total, hits, skipped, reasons = check(path)
        rejected = sum(reasons.values())
        print(f"{path.name:34} {name:14} {total:>6} {hits:>6} {skipped:>7} {rejected:>8}"
              + (f"  {reasons.most_common(1)[0][0][:60]}" if reasons else ""))  # fmt: skip


if __name__ == "__main__":
    main()
