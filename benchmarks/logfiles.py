"""Logfile throughput: parse only, parse + enrich, end to end into Postgres — and GoAccess
(Debian package `goaccess`) on the same file in the same run.

    .venv/bin/python benchmarks/logfiles.py --lines 1000000 5000000 --load-formats parquet csv

The logs come from the demo simulator (combined format); each size is generated once under
--workdir and reused. End to end is `siteline import-logs` in its own process against its own
embedded warehouse, once per load format (parquet: binary COPY through ADBC, the default;
csv: text COPY; insert_values: dlt's INSERT statements), with the peak memory of that process.
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

from ingestion.core.sites import IpPolicy, LogSource
from ingestion.demo_traffic.simulator import SimulationConfig
from ingestion.demo_traffic.writer import write_simulation
from ingestion.logfiles.columnar import Enricher, parse_batch
from ingestion.logfiles.parsers import make_parser
from ingestion.logfiles.pull import PullStats, line_batches


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


def timed(fn, *args) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def batches(path: Path):
    def chunks():
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk

    for raws, _ in line_batches(chunks(), 0, True, PullStats("bench", "", 0, 0)):
        yield raws


def parse_only(path: Path) -> int:
    parser = make_parser("combined")
    return sum(parse_batch(parser, raws)[0].num_rows for raws in batches(path))


def parse_enrich(path: Path) -> int:
    parser = make_parser("combined")
    enricher = Enricher("demo", LogSource(name="bench", url="file:///x"), IpPolicy(), b"k")
    return sum(enricher.enrich(parse_batch(parser, raws)[0])[0].num_rows for raws in batches(path))


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy (all cores, every process: the import's,
    PostgreSQL's, GoAccess's), from /proc/stat."""
    with open("/proc/stat") as fh:
        ticks = [int(v) for v in fh.readline().split()[1:9]]
    idle, iowait = ticks[3], ticks[4]
    return (sum(ticks) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def max_rss_mb(output: str) -> float:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", output)
    return int(match.group(1)) / 1024 if match else float("nan")


def end_to_end(path: Path, workdir: Path, load_format: str) -> tuple[float, float]:
    home = Path(tempfile.mkdtemp(prefix="siteline-bench-home-", dir=workdir))
    env = {k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_URL", "DAGSTER_PG_URL")}
    env["SITELINE_HOME"] = str(home)
    env["SITELINE_LOGS_LOAD_FORMAT"] = load_format
    siteline = [sys.executable, "-m", "orchestration.cli"]
    subprocess.run([*siteline, "warehouse", "start"], env=env, check=True, capture_output=True)
    try:
        started, cpu = time.perf_counter(), machine_cpu()
        result = subprocess.run(
            ["/usr/bin/time", "-v", *siteline, "import-logs", str(path), "--site", "demo",
             "--format", "combined", "--source", "bench"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        elapsed, cpu = time.perf_counter() - started, machine_cpu() - cpu
        if result.returncode != 0:
            raise SystemExit(f"import failed: {result.stderr[-2000:]}")
        return elapsed, max_rss_mb(result.stderr), cpu
    finally:
        subprocess.run([*siteline, "warehouse", "stop"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def goaccess(path: Path, workdir: Path) -> tuple[float, float, float]:
    started, cpu = time.perf_counter(), machine_cpu()
    result = subprocess.run(
        ["/usr/bin/time", "-v", "goaccess", str(path), "--log-format=COMBINED",
         "-o", str(workdir / "goaccess.html")],
        capture_output=True, text=True,
    )  # fmt: skip
    elapsed, cpu = time.perf_counter() - started, machine_cpu() - cpu
    if result.returncode != 0:
        raise SystemExit(f"goaccess failed: {result.stderr[-500:]}")
    return elapsed, max_rss_mb(result.stderr), cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--load-formats", nargs="+", default=["parquet", "csv"],
                        choices=["parquet", "csv", "insert_values"])  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/siteline-bench-logs"))
    args = parser.parse_args()
    if not shutil.which("goaccess"):
        sys.exit("goaccess is not installed: apt-get install goaccess")
    args.workdir.mkdir(parents=True, exist_ok=True)
    for size in args.lines:
        path = make_log(args.workdir, size)
        with open(path, "rb") as fh:
            lines = sum(1 for _ in fh)
        rows = [
            ("siteline parse only", timed(parse_only, path)[0], None, None),
            ("siteline parse + enrich", timed(parse_enrich, path)[0], None, None),
        ]
        for fmt in args.load_formats:
            rows.append((f"siteline end to end ({fmt})", *end_to_end(path, args.workdir, fmt)))
        rows.append(("goaccess (HTML report)", *goaccess(path, args.workdir)))
        print(f"\nlog: {path} ({lines:,} combined lines, {path.stat().st_size / 1e6:,.0f} MB)")
        print(f"{'stage':36} {'seconds':>8} {'lines/s':>10} {'peak MB':>8} {'CPU s':>6}")
        for name, seconds, rss, cpu in rows:
            peak = f"{rss:>8.0f}" if rss else f"{'':>8}"
            used = f"{cpu:>6.1f}" if cpu is not None else ""
            print(f"{name:36} {seconds:>8.1f} {lines / seconds:>10,.0f} {peak} {used}")
        t_goaccess = rows[-1][1]
        for name, seconds, _, _ in rows[2:-1]:
            print(f"{name}: ratio to GoAccess {t_goaccess / seconds:.2f} (target >= 2.0)")
        print(f"(CPU s: busy seconds of the whole machine, {os.cpu_count()} cores, while it ran)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"benchmark process peak RSS: {peak:.0f} MB")


if __name__ == "__main__":
    main()
