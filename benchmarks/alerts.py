"""Alert evaluation: 1,000 rule instances over 90 days of hourly data - reading the series
(fetch_series: one statement per rule) and judging every period (judge_all).

    .venv/bin/python benchmarks/alerts.py                 # 90 days, 300 visits a day
    .venv/bin/python benchmarks/alerts.py --instances 1000 --days 90

The data is the demo's: `siteline demo --no-serve --days N` once, in its own data directory
(--workdir) with the embedded warehouse, reused by later runs (delete the directory to
simulate again). The instances are hourly rules over the demo site - each metric of the
catalogue alone and split by channel, device, country and page label - under five
conditions (anomaly over 8 weeks, a decrease against the same hour last week, a rise
against the hour before, two thresholds),
until --instances are reached: every rule is fetched with its own statement, as the evaluator
does. Three passes: a backtest (every hour of the range fetched, and judged at once with judge_all)
and a cycle (each rule fetches the last hour and the history its condition needs -
history_needed: 8 weeks for the anomaly, a week for the comparison - and judges the last
hour; then again fetching only the periods the judgement reads, conditions.periods_read).
Printed per pass: the seconds to fetch and to judge, the periods read and judged.
A fourth pass runs the evaluator itself (orchestration.alerts.evaluate.run_cycle) with those
rules in sites.yml, on a fresh `alerts` schema: a first cycle creates the instances at the
hour before the last, then the steady-state cycle - the one timed - evaluates the last hour of
every instance: completeness, one fetch per rule (periods=), judging, the state machine and
the rows of every instance, as Dagster's evaluation does after each build of the marts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingestion.core.alert_config import AlertRule
from ingestion.core.metrics import METRICS
from ingestion.core.sites import load_sites
from ingestion.core.warehouse import connect
from orchestration.alerts.conditions import history_needed, judge, judge_all, periods_read
from orchestration.alerts.series import fetch_series

ROOT = Path(__file__).resolve().parents[1]
SITELINE = str(Path(sys.executable).with_name("siteline"))
CONDITIONS = [
    {"type": "anomaly", "weeks": 8, "min_volume": 5},
    {"type": "decrease", "by": 50, "compared_to": "same_period_last_week"},
    {"type": "above", "value": 1000},
    {"type": "increase", "by": 100, "compared_to": "previous_period"},
    {"type": "below", "value": 1},
]
SPLITS = [None, "channel", "device", "country", "page_label"]


def siteline(env: dict, *args: str) -> str:
    result = subprocess.run([SITELINE, *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"siteline {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr}")
    return result.stdout


def ensure_demo(home: Path, days: int, visits: int) -> str:
    """The warehouse URL of the benchmark's demo (simulated and built on the first run)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_URL", "DAGSTER_PG_URL")}
    env["SITELINE_HOME"] = str(home)
    marker = home / "alerts-bench.done"
    if not marker.exists():
        home.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        siteline(env, "demo", "--no-serve", "--days", str(days), "--visits-per-day", str(visits))
        marker.write_text(f"{days} days, {visits} visits a day\n")
        print(f"demo built in {time.perf_counter() - started:.0f} s ({days} days)")
    else:
        siteline(env, "warehouse", "start")
    return siteline(env, "warehouse", "url").strip().splitlines()[-1]


def rules():
    """Hourly rules: metric x split x condition, in that order, the splits a metric has."""
    metrics = [
        m
        for m in METRICS.values()
        if not m.realtime and m.name not in ("custom", "funnel_drop_off")
    ]
    n = 0
    for condition in CONDITIONS:
        for split in SPLITS:
            for m in metrics:
                if split and split not in m.dimensions:
                    continue
                n += 1
                yield AlertRule(
                    id=f"r{n}", metric=m.name, grain="hour", by=split, by_limit=20,
                    condition=condition,
                )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--visits-per-day", type=int, default=300)
    ap.add_argument("--workdir", type=Path, default=Path(__file__).with_name(".work") / "alerts")
    ap.add_argument("--cycle-only", action="store_true", help="Only the evaluator's cycle.")
    args = ap.parse_args()

    url = ensure_demo(args.workdir.resolve(), args.days, args.visits_per_day)
    sites = load_sites(ROOT / "sites.yml").sites
    with connect(url) as conn:
        first, last = conn.execute(
            "select min(kpi_date), max(kpi_date) from web.agg_daily_site_kpis"
        ).fetchone()
        start = datetime.combine(first, datetime.min.time())
        end = datetime.combine(last, datetime.min.time()) + timedelta(days=1)
        if args.cycle_only:
            n_rules = sum(1 for _ in rules())
            full = full_cycle(conn, url, args.workdir.resolve(), n_rules, end)
            print_cycle(full)
            return
        backtest = run(conn, sites, args.instances, lambda rule: start, end, every=True)
        cycle = run(
            conn, sites, args.instances,
            lambda rule: end - timedelta(hours=history_needed(rule.condition, "hour") + 1),
            end, every=False,
        )  # fmt: skip
        last = end - timedelta(hours=1)
        cycle_some = run(
            conn, sites, args.instances,
            lambda rule: end - timedelta(hours=history_needed(rule.condition, "hour") + 1),
            end, every=False,
            periods_of=lambda rule: periods_read(rule.condition, "hour", last),
        )  # fmt: skip
        n_rules = sum(1 for _ in rules())
        full = full_cycle(conn, url, args.workdir.resolve(), n_rules, end)
    print(f"{backtest['instances']:,} instances of {backtest['rules']} hourly rules; "
          f"{(end - start).days} days of hours ({start:%Y-%m-%d} .. {end:%Y-%m-%d})")  # fmt: skip
    for name, r in (("every hour of the 90 days (backtest)", backtest),
                    ("the last hour, with the history it needs (a cycle)", cycle),
                    ("the last hour, with the periods it reads (a cycle, periods=)",
                     cycle_some)):  # fmt: skip
        print(f"{name}:")
        per_rule = r["fetch"] / r["rules"] * 1000
        print(f"  fetch_series  {r['fetch']:6.2f} s  ({r['rules']} statements, "
              f"{per_rule:.0f} ms a rule, {r['periods']:,} periods)")  # fmt: skip
        print(f"  judge         {r['judge']:6.2f} s  ({r['judged']:,} periods judged, "
              f"{r['breaches']:,} breaches)")  # fmt: skip
        print(f"  total         {r['fetch'] + r['judge']:6.2f} s")
        top = sorted(r["slowest"], reverse=True)[:3]
        print("  slowest: " + ", ".join(f"{what} {sec * 1000:.0f} ms" for sec, what in top))
    print_cycle(full)


def print_cycle(full: dict) -> None:
    print("the evaluator's cycle (run_cycle), the last hour of every instance:")
    print(f"  {full['instances']:,} instances of {full['rules']} rules, "
          f"{full['periods']:,} periods evaluated: {full['seconds']:.2f} s "
          f"(the first cycle, creating the instances: {full['first']:.2f} s)")  # fmt: skip


def full_cycle(conn, url: str, home: Path, n_rules: int, end: datetime) -> dict:
    """run_cycle over the first ``n_rules`` rules: once at the hour before the last (the
    instances are created), then - timed - at the last hour."""
    from zoneinfo import ZoneInfo

    from ingestion.collector_events import Landing
    from ingestion.core.alert_config import AlertsConfig
    from orchestration.alerts.evaluate import run_cycle

    base = load_sites(ROOT / "sites.yml")
    chosen = [r for _, r in zip(range(n_rules), rules(), strict=False)]
    config = base.model_copy(update={"alerts": AlertsConfig(rules=chosen)})
    zone = ZoneInfo(base.site("demo").timezone)
    landing = Landing(str(home / "landing"))
    # The demo's traffic may run past today (it starts on a fixed day); its data is complete
    # only up to when it was loaded: the cycles are at the last hours before now.
    now = datetime.now(zone).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    end = min(end, now - timedelta(hours=1))
    with connect(url, autocommit=True) as cycle_conn:
        cycle_conn.execute("drop schema if exists alerts cascade")
        t0 = time.perf_counter()
        run_cycle(cycle_conn, config, now=(end - timedelta(minutes=30)).replace(tzinfo=zone),
                  landing=landing, deliver=False)  # fmt: skip
        t1 = time.perf_counter()
        result = run_cycle(cycle_conn, config, now=(end + timedelta(minutes=30)).replace(
            tzinfo=zone), landing=landing, deliver=False)  # fmt: skip
        t2 = time.perf_counter()
    if result.errors:
        sys.exit(f"rules in error: {result.errors}")
    return {"instances": sum(o.instances for o in result.outcomes), "rules": len(chosen),
            "periods": sum(o.periods for o in result.outcomes), "seconds": t2 - t1,
            "first": t1 - t0}  # fmt: skip


def run(conn, sites, wanted: int, start_of, end: datetime, every: bool, periods_of=None) -> dict:
    """Fetch and judge rules until ``wanted`` instances: every period (judge_all) or the
    last one (judge), from ``start_of(rule)`` to ``end`` (only ``periods_of(rule)``)."""
    r = {"instances": 0, "rules": 0, "periods": 0, "judged": 0, "breaches": 0, "fetch": 0.0,
         "judge": 0.0, "slowest": []}  # fmt: skip
    while r["instances"] < wanted:
        before = r["instances"]
        for rule in rules():
            if r["instances"] >= wanted:
                break
            t0 = time.perf_counter()
            periods = periods_of(rule) if periods_of else None
            series = fetch_series(conn, rule, sites, start_of(rule), end, periods=periods)
            t1 = time.perf_counter()
            for s in series.values():
                if every:
                    verdicts = judge_all(rule.condition, s, rule.grain).verdicts
                else:
                    verdicts = [judge(rule.condition, s, rule.grain, len(s.periods) - 1).verdict]
                r["judged"] += len(verdicts)
                r["breaches"] += sum(1 for v in verdicts if v == "breach")
                r["periods"] += len(s.periods)
            t2 = time.perf_counter()
            r["fetch"] += t1 - t0
            r["judge"] += t2 - t1
            r["slowest"].append((t1 - t0, f"{rule.metric} by {rule.by or '-'}"))
            r["instances"] += len(series)
            r["rules"] += 1
        if r["instances"] == before:
            sys.exit("the rules give no instances: is the demo built?")
    return r


if __name__ == "__main__":
    main()
