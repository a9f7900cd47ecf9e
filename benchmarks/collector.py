"""Collector throughput and latency on loopback, durability on, beside a no-op ceiling.

Starts `siteline collector` (one process, fsync group commit on, rate limit off) with the
benchmark-only no-op endpoint enabled, then drives it with wrk (Debian package `wrk`):
single-event and 20-event batch requests against /collect, and the same bodies against
/noop on the same server — the ceiling of the HTTP stack on this machine.

    .venv/bin/python benchmarks/collector.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from ingestion.core.landing import read_manifest
from tests.integration.servers import free_port, start_collector, stop

LUA = Path(__file__).with_name("collect.lua")


def to_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, seconds: int, connections: int, script: Path, env: dict) -> dict:
    """One wrk run (1 thread) with a Lua script: requests/s, p50/p99 in ms, non-2xx."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": to_ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
        "p99": to_ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
        "non2xx": int(errors.group(1)) if errors else 0,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, events: int, seconds: int, connections: int, script: Path, pid: int) -> dict:
    """One run, with the server process's CPU time per request (µs): near 1e6 / req/s when
    the server is CPU-bound, lower when it waits (for fsyncs, or on the load generator)."""
    before = cpu_seconds(pid)
    result = run_wrk(url, seconds, connections, script, {"EVENTS": str(events)})
    busy = cpu_seconds(pid) - before
    return {
        **result,
        "eps": result["rps"] * events,
        "cpu_us": 1e6 * busy / (result["rps"] * seconds),
        "cpu_share": busy / seconds,
    }


def settle(base: str, limit: float = 120) -> None:
    """Wait until the real-time engine has applied what the last run queued, so every run
    starts from the same quiet server."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        engine = httpx.get(f"{base}/health").json().get("engine")
        if not engine or engine["backlog"] == 0:
            return
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="siteline-bench-collector-"))
    script = LUA
    port = free_port()
    env = {
        **os.environ,
        "SITELINE_LANDING_DIR": str(work / "landing"),
        "SITELINE_RATE_LIMIT": "0",
        "SITELINE_COLLECTOR_NOOP": "1",
        "SITELINE_COLLECTOR_ID": "bench",
    }
    proc = start_collector(port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        pid = proc.pid
        wrk(f"{base}/collect", 1, 2, args.connections, script, pid)  # warm-up
        rows = []
        for events in (1, 20):
            settle(base)
            collect = wrk(f"{base}/collect", events, args.seconds, args.connections, script, pid)
            settle(base)
            noop = wrk(f"{base}/noop", events, args.seconds, args.connections, script, pid)
            rows.append((events, collect, noop))
        health = httpx.get(f"{base}/health").json()
        engine = health["engine"]
    finally:
        stop(proc)
    landed = sum(s.events for s in read_manifest(work / "landing" / "events"))
    print(f"collector benchmark: {args.seconds}s per run, {args.connections} connections, "
          f"1 wrk thread, 1 collector process, fsync group commit on")  # fmt: skip
    print(f"{'events/req':>10} {'endpoint':>9} {'req/s':>9} {'events/s':>10} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8} {'CPU µs/req':>10} {'CPU':>5} "
          f"{'% of no-op':>10}")  # fmt: skip
    for events, collect, noop in rows:
        for name, r in (("/collect", collect), ("/noop", noop)):
            share = f"{100 * collect['rps'] / noop['rps']:.0f}%" if name == "/collect" else ""
            print(f"{events:>10} {name:>9} {r['rps']:>9,.0f} {r['eps']:>10,.0f} "
                  f"{r['p50']:>7.2f} {r['p99']:>7.2f} {r['non2xx']:>8} {r['cpu_us']:>10.1f} "
                  f"{r['cpu_share']:>5.0%} {share:>10}")  # fmt: skip
    accepted = health["counters"]["accepted"]
    print(f"events landed (fsynced) during the runs: {landed:,} of {accepted:,} accepted, "
          f"in {health['commits']:,} group commits")  # fmt: skip
    if engine:
        print(
            f"real-time engine in the process: applied {engine['events']:,} events, shed "
            f"{engine['shed']:,} under the saturating load (it yields to requests; "
            f"SITELINE_ENGINE=0 runs the collector without it)"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
