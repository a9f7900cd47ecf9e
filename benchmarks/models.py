"""Model build times: a full build over N simulated tracker events (and their access log),
then an incremental build after 1% more arrive (late and retried events included), and a
check that the incremental result equals a full refresh.

    .venv/bin/python benchmarks/models.py --events 10000000

Everything runs through `siteline` as a user runs it, in its own data directory (--workdir)
and its own databases on the warehouse server (the embedded one, or WAREHOUSE_URL's server).
The simulation is generated once and reused. The last 1% of the landing segments (by receive
time: they hold the offline queues that arrive hours late) and of the log lines are held back
and delivered before the incremental build. Times are wall-clock of `dbt build` (models and
their tests), as `siteline dbt build` prints them. Between the two builds the model tables are
vacuumed and a checkpoint is taken (settle(): what the server would otherwise do during the
incremental build), and how long that took is printed.

A load of 10M events takes about 40 minutes. To measure changed models again on the same
data, `--replay` takes the last run's increment (the newest dlt load of each raw schema) out
of the raw tables, builds from empty model schemas, puts the increment back and builds
incrementally: the same full and incremental builds, without loading again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingestion.core.landing import SEGMENTS, read_manifest, write_manifest
from ingestion.core.warehouse import connect, ensure_database, with_database
from ingestion.demo_traffic.simulator import SimulationConfig
from ingestion.demo_traffic.writer import write_simulation
from orchestration.dbt_paths import PIPELINE_BUILD
from orchestration.warehouse import ensure_warehouse

MARTS = [
    "web.fct_sessions", "web.fct_page_views", "web.fct_events", "web.fct_transactions",
    "web.fct_transaction_items", "web.fct_goal_conversions", "web.fct_funnel_steps",
    "web.dim_visitors", "web.agg_daily_site_kpis", "crm.customers",
    "crm.customer_daily_activity",
]  # fmt: skip
REPLAY = "bench_increment"
RAW_TABLES = {
    "raw_collector": ["events", "bad_events"],
    "raw_logfiles": ["hits", "rejected_lines", "files"],
}
MODEL_SCHEMAS = ["staging", "intermediate", "web", "crm", "reference"]
CONFIG = [
    "config/sites", "config/goals", "config/funnel_steps", "config/page_labels",
    "config/campaign_parameters",
]  # fmt: skip
RAW = [
    "raw_collector/events", "raw_collector/bad_events", "raw_logfiles/hits",
    "raw_logfiles/rejected_lines", "raw_logfiles/files",
]  # fmt: skip
SITELINE = str(Path(sys.executable).with_name("siteline"))


def siteline(env: dict, *args: str) -> float:
    started = time.perf_counter()
    result = subprocess.run([SITELINE, *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        out = result.stdout[-3000:] + "\n" + result.stderr[-3000:]
        sys.exit(f"siteline {' '.join(args)} failed:\n{out}")
    return time.perf_counter() - started


def slowest(home: Path, step: str, top: int = 12) -> None:
    """Keep this dbt invocation's run_results.json and print its slowest nodes."""
    results = home / "dbt" / "target" / "run_results.json"
    if not results.exists():
        return
    kept = home.parent / f"run_results_{step}.json"
    shutil.copy2(results, kept)
    nodes = json.loads(results.read_text())["results"]
    nodes.sort(key=lambda n: n["execution_time"], reverse=True)
    models = sum(n["execution_time"] for n in nodes if n["unique_id"].startswith("model."))
    tests = sum(
        n["execution_time"] for n in nodes if n["unique_id"].startswith(("test.", "unit_test."))
    )
    print(f"  {step}: models {models:.1f} s, tests {tests:.1f} s (summed); slowest:")
    for n in nodes[:top]:
        print(f"    {n['execution_time']:7.1f} s  {n['unique_id'].split('.', 2)[-1]}")


def count(url: str, table: str) -> int:
    with connect(url) as conn:
        return conn.execute(f"select count(*) from {table}").fetchone()[0]


def settle(url: str) -> float:
    """What the warehouse does after a full build, done now rather than during the incremental
    build: vacuum every model table (autovacuum's insert threshold sends it to each table the
    full build wrote) and a checkpoint (the
    full build's tests and models read each table right after it was written, setting hint
    bits: gigabytes of dirty buffers for the next checkpoint). Left to the server, both ran
    during the incremental build that followed at once (a vacuum of the sessionised events
    and of the page views, and a large checkpoint). An incremental run in
    production comes minutes after the last build, on tables autovacuum has been through;
    this times it so, and prints how long settling took. The vacuum fills each table's free
    space map; incremental models' new rows still go to the end of their tables (fill factor
    90, macros/insert_at_end.sql), not into old pages all over them."""
    started = time.perf_counter()
    with connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "select quote_ident(schemaname) || '.' || quote_ident(relname) "
            "from pg_stat_user_tables where schemaname = any(%s) order by n_live_tup desc",
            (MODEL_SCHEMAS,),
        ).fetchall()
        for (table,) in tables:
            conn.execute(f"vacuum {table}")
        conn.execute("checkpoint")
    return time.perf_counter() - started


def snapshot(url: str) -> dict:
    """Per mart: its row count and two sums of 60-bit slices of each row's md5 - equal for
    equal multisets of rows, and computed in one pass (a sorted string of a 10M-event mart
    passes PostgreSQL's 1 GB limit)."""
    with connect(url) as conn:
        return {
            t: conn.execute(
                "select count(*), sum(('x' || substr(h, 1, 15))::bit(60)::bigint::numeric), "
                "sum(('x' || substr(h, 16, 15))::bit(60)::bigint::numeric) "
                f"from (select md5(x::text) as h from {t} as x) as rows"
            ).fetchone()
            for t in MARTS
        }


def deliver(sim: Path, home: Path, share: float, first: bool) -> None:
    """Copy the first ``share`` of the landing segments and log lines (or the rest)."""
    segments = read_manifest(sim / "landing" / "events")
    cut = int(len(segments) * share)
    chosen = segments[:cut] if first else segments
    target = home / "landing" / "events"
    (target / SEGMENTS).mkdir(parents=True, exist_ok=True)
    for info in chosen[(0 if first else cut) :]:
        src, dst = sim / "landing" / "events" / SEGMENTS / info.name, target / SEGMENTS / info.name
        try:  # closed segments never change: a hard link saves GBs at 10M events
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    write_manifest(target, chosen)
    log_src = sim / "logs" / "access.log"
    log_dst = home / "demo" / "logs" / "access.log"
    log_dst.parent.mkdir(parents=True, exist_ok=True)
    with open(log_src, "rb") as fh:
        lines = fh.readlines()
    cut_line = int(len(lines) * share)
    with open(log_dst, "wb" if first else "ab") as out:
        out.writelines(lines[:cut_line] if first else lines[cut_line:])


def drop_models(url: str) -> None:
    with connect(url, autocommit=True) as conn:
        for schema in MODEL_SCHEMAS:
            conn.execute(f"drop schema if exists {schema} cascade")


def hold_back_increment(url: str) -> None:
    """Move the newest dlt load of each raw schema (the increment of a finished run) out of
    the raw tables into schema REPLAY, with its _dlt_loads row. Events the increment
    re-delivered replaced their first copies; those stay out until it is put back."""
    with connect(url, autocommit=True) as conn:
        if conn.execute("select to_regnamespace(%s) is not null", (REPLAY,)).fetchone()[0]:
            return  # held back by an earlier replay that stopped before putting it back
        conn.execute(f"create schema {REPLAY}")
        for raw, tables in RAW_TABLES.items():
            (load_id,) = conn.execute(
                f"select load_id from {raw}._dlt_loads order by inserted_at desc limit 1"
            ).fetchone()
            keyed = [("_dlt_loads", "load_id")] + [(t, "_dlt_load_id") for t in tables]
            for table, column in keyed:
                held = f"{REPLAY}.{raw}__{table}"
                conn.execute(f"create table {held} as select * from {raw}.{table} "
                             f"where {column} = %s", (load_id,))  # fmt: skip
                conn.execute(f"delete from {raw}.{table} where {column} = %s", (load_id,))
            print(f"held back load {load_id} of {raw}", flush=True)


def deliver_increment(url: str) -> None:
    """Put the held-back loads back, their rows before their _dlt_loads rows (as dlt does)."""
    with connect(url) as conn:
        for raw, tables in RAW_TABLES.items():
            for table in [*tables, "_dlt_loads"]:
                conn.execute(f"insert into {raw}.{table} select * from {REPLAY}.{raw}__{table}")
        conn.execute(f"drop schema {REPLAY} cascade")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--increment", type=float, default=0.01)
    ap.add_argument("--workdir", type=Path, default=Path(__file__).with_name(".work") / "models")
    ap.add_argument(
        "--reuse-load", action="store_true",
        help="keep the database and data directory of the last run, whose first load finished "
        "(resume at the full build)",
    )  # fmt: skip
    ap.add_argument(
        "--replay", action="store_true",
        help="on the database of a finished run: take its last 1%% out of the raw tables, build "
        "the models from empty schemas, put it back and build incrementally (the same increment)",
    )  # fmt: skip
    ap.add_argument(
        "--no-rebuild", action="store_true",
        help="stop after the incremental build (no rebuild from empty schemas to compare with)",
    )  # fmt: skip
    ap.add_argument(
        "--load-only", action="store_true",
        help="stop after the first load (resume later with --reuse-load)",
    )  # fmt: skip
    args = ap.parse_args()

    workdir = args.workdir / f"{args.events}"
    sim, home = workdir / "sim", workdir / "home"
    visits_per_day = max(1, round(args.events / 13.0 / args.days))
    cfg = SimulationConfig(days=args.days, visits_per_day=visits_per_day, seed=2026)
    started = time.perf_counter()
    summary = write_simulation(cfg, sim, progress=True, segment_events=50_000)
    stats = summary["stats"]
    took = "reused" if summary["reused"] else f"{time.perf_counter() - started:.0f} s"
    print(f"simulation: {stats['events']:,} events, {stats['log_lines']:,} log lines, "
          f"{stats['visits']:,} visits ({took})")  # fmt: skip

    base = ensure_warehouse()
    name = f"siteline_bench_models_{args.events}"
    url, dagster_url = with_database(base, name), with_database(base, name + "_dagster")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SITELINE_", "DAGSTER_"))}
    env.update(SITELINE_HOME=str(home), WAREHOUSE_URL=url, DAGSTER_PG_URL=dagster_url)
    if args.replay:
        hold_back_increment(url)
        drop_models(url)
    elif not args.reuse_load:
        with connect(with_database(base, "postgres"), autocommit=True) as conn:
            for db in (name, name + "_dagster"):
                conn.execute(f'drop database if exists "{db}" with (force)')
        ensure_database(url)
        ensure_database(dagster_url)
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        deliver(sim, home, 1 - args.increment, first=True)
        load = siteline(env, "run", *CONFIG, *RAW)
        print(f"load of the first {1 - args.increment:.0%} (config, tracker events, log pull): "
              f"{load:.0f} s", flush=True)  # fmt: skip
        if args.load_only:
            return
    full = siteline(env, "dbt", *PIPELINE_BUILD, "--full-refresh")
    slowest(home, "full")
    events = count(url, "intermediate.int_events_sessionised")
    print(f"full build over {events:,} unified events: {full:.0f} s", flush=True)

    settled = settle(url)
    print(f"vacuum of the model tables and a checkpoint before the incremental build: "
          f"{settled:.0f} s", flush=True)  # fmt: skip
    if args.replay:
        deliver_increment(url)
    else:
        deliver(sim, home, 1 - args.increment, first=False)
        siteline(env, "run", *RAW)
    incremental = siteline(env, "dbt", *PIPELINE_BUILD)
    slowest(home, "incremental")
    if args.no_rebuild:
        total = count(url, "intermediate.int_events_sessionised")
        share = incremental / full
        print(f"incremental build after {args.increment:.0%} more events ({total - events:,} "
              f"unified events): {incremental:.0f} s = {share:.1%} of the full build")  # fmt: skip
        return
    after_incremental = snapshot(url)
    # the rebuild starts from empty model schemas: a --full-refresh beside the existing tables
    # needs their size again in free disk (about 16 GB at 10M events)
    drop_models(url)
    refresh = siteline(env, "dbt", *PIPELINE_BUILD, "--full-refresh")
    slowest(home, "refresh")
    same = snapshot(url) == after_incremental
    total = count(url, "intermediate.int_events_sessionised")
    print(f"incremental build after {args.increment:.0%} more events ({total - events:,} unified "
          f"events): {incremental:.0f} s = {incremental / full:.1%} of the full build")  # fmt: skip
    print(f"full build again, into empty model schemas: {refresh:.0f} s; "
          f"the incremental result is identical: {same}")  # fmt: skip
    print(json.dumps({"events": stats["events"], "log_lines": stats["log_lines"],
                      "full_build_s": round(full), "incremental_build_s": round(incremental),
                      "incremental_share": round(incremental / full, 4),
                      "full_refresh_s": round(refresh), "identical": same}))  # fmt: skip


if __name__ == "__main__":
    main()
