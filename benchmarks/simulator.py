"""Demo traffic simulator throughput and memory: prints events/s and peak RSS.

.venv/bin/python benchmarks/simulator.py --events 10000000 --days 30 --out /tmp/sim
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

from ingestion.demo_traffic.simulator import SimulationConfig
from ingestion.demo_traffic.writer import write_simulation


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("/tmp/siteline-bench-sim"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    cfg = SimulationConfig(
        days=args.days, visits_per_day=max(1, round(args.events / 13 / args.days))
    )
    started = time.perf_counter()
    summary = write_simulation(cfg, args.out, progress=False)
    elapsed = time.perf_counter() - started
    stats = summary["stats"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"visits           {stats['visits']:>12,}")
    print(f"tracker events   {stats['events']:>12,}")
    print(f"log lines        {stats['log_lines']:>12,}")
    print(f"elapsed s        {elapsed:>12.1f}")
    print(f"events/s         {stats['events'] / elapsed:>12,.0f}")
    print(f"outputs/s        {(stats['landing_records'] + stats['log_lines']) / elapsed:>12,.0f}")
    print(f"peak RSS MB      {peak_mb:>12.0f}")


if __name__ == "__main__":
    main()
