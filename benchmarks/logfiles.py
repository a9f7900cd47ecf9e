"""Logfile throughput: parse only, parse + enrich, end to end into Postgres — and GoAccess
(Debian package `goaccess`) on the same file in the same run.

    .venv/bin/python benchmarks/logfiles.py --lines 1000000

The log comes from the demo simulator (combined format); it is generated once under
--workdir and reused. End to end is `siteline import-logs` in its own process against its own
embedded warehouse (peak memory of that process is reported).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingestion.demo_traffic.simulator import SimulationConfig
from ingestion.demo_traffic.writer import write_simulation
from ingestion.logfiles.parsers import decode, make_parser
from ingestion.logfiles.pull import Enricher
from ingestion.site_config.schema import IpPolicy, LogSource


def make_log(workdir: Path, lines: int) -> Path:
    target = workdir / f"access-{lines}.log"
    if target.exists():
        return target
    events = int(lines / 0.66) + 50_000  # the simulator writes ≈ 0.66 log lines per event
    sim = workdir / "sim"
    write_simulation(SimulationConfig(days=30, visits_per_day=max(1, events // 13 // 30)), sim,
                     progress=False)  # fmt: skip
    with open(sim / "logs" / "access.log", "rb") as src, open(target, "wb") as out:
        out.writelines(itertools.islice(src, lines))
    return target


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def parse_only(path: Path) -> int:
    parser = make_parser("combined")
    n = 0
    with open(path, "rb") as fh:
        for raw in fh:
            parser.parse(decode(raw).rstrip("\n"))
            n += 1
    return n


def parse_enrich(path: Path) -> int:
    parser = make_parser("combined")
    enricher = Enricher("demo", LogSource(name="bench", url="file:///x"), IpPolicy(), b"k")
    n = 0
    with open(path, "rb") as fh:
        for raw in fh:
            hit = parser.parse(decode(raw).rstrip("\n"))
            enricher.row(hit)
            n += 1
    return n


def max_rss_mb(output: str) -> float:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", output)
    return int(match.group(1)) / 1024 if match else float("nan")


def end_to_end(path: Path, workdir: Path) -> tuple[float, float]:
    home = Path(tempfile.mkdtemp(prefix="siteline-bench-home-", dir=workdir))
    env = {k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_URL", "DAGSTER_PG_URL")}
    env["SITELINE_HOME"] = str(home)
    siteline = [sys.executable, "-m", "orchestration.cli"]
    subprocess.run([*siteline, "warehouse", "start"], env=env, check=True, capture_output=True)
    try:
        started = time.perf_counter()
        result = subprocess.run(
            ["/usr/bin/time", "-v", *siteline, "import-logs", str(path), "--site", "demo",
             "--format", "combined", "--source", "bench"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"import failed: {result.stderr[-2000:]}")
        return elapsed, max_rss_mb(result.stderr)
    finally:
        subprocess.run([*siteline, "warehouse", "stop"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def goaccess(path: Path, workdir: Path) -> tuple[float, float]:
    started = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-v", "goaccess", str(path), "--log-format=COMBINED",
         "-o", str(workdir / "goaccess.html")],
        capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"goaccess failed: {result.stderr[-500:]}")
    return elapsed, max_rss_mb(result.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/siteline-bench-logs"))
    args = parser.parse_args()
    if not shutil.which("goaccess"):
        sys.exit("goaccess is not installed: apt-get install goaccess")
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = make_log(args.workdir, args.lines)
    with open(path, "rb") as fh:
        lines = sum(1 for _ in fh)
    t_parse, _ = timed(lambda: parse_only(path))
    t_enrich, _ = timed(lambda: parse_enrich(path))
    t_e2e, rss_e2e = end_to_end(path, args.workdir)
    t_goaccess, rss_goaccess = goaccess(path, args.workdir)
    print(f"log: {path} ({lines:,} combined lines, {path.stat().st_size / 1e6:,.0f} MB)")
    print(f"{'stage':34} {'seconds':>8} {'lines/s':>10} {'peak MB':>8}")
    rows = [
        ("siteline parse only", t_parse, None),
        ("siteline parse + enrich", t_enrich, None),
        ("siteline end to end (import-logs)", t_e2e, rss_e2e),
        ("goaccess 1.7 (report)", t_goaccess, rss_goaccess),
    ]
    for name, seconds, rss in rows:
        peak = f"{rss:>8.0f}" if rss else f"{'':>8}"
        print(f"{name:34} {seconds:>8.1f} {lines / seconds:>10,.0f} {peak}")
    print(f"end-to-end ratio to GoAccess: {t_goaccess / t_e2e:.2f} (target >= 2.0)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"benchmark process peak RSS: {peak:.0f} MB")


if __name__ == "__main__":
    main()
