"""``siteline demo``: demo traffic written where a real installation's data arrives, the whole
pipeline run on it, and what that gave (:class:`DemoResult`); printing it and starting the
services afterwards are the CLI's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from orchestration.pipeline import JobRun, PipelineResult

# Four weeks: three of normal traffic for the alerts' seasonal baselines, then a week with
# the demo's incidents (ingestion/demo_traffic/incidents.py). As many visits as two weeks of
# 400 a day were, so the demo loads as fast as it did.
DEMO_DAYS = 28
DEMO_VISITS_PER_DAY = 200
DEMO_SEED = 42
SEGMENT_EVENTS = 50_000  # tracker events per landing segment
EVALUATION = "alerts/evaluation"


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` did."""

    url: str  # the warehouse DSN (with its password)
    traffic: dict  # the writer's summary: ``stats``, ``reused``, ``replaced_segments``
    pipeline: PipelineResult
    page_views: int | None  # rows of web.fct_page_views; None when the pipeline failed
    alerts: tuple[str, ...] = ()  # a line per alert that fired over the demo's days
    mail_folder: Path | None = None  # where the demo's alert mails landed

    @property
    def ok(self) -> bool:
        return self.pipeline.ok


def run_demo(
    days: int = DEMO_DAYS,
    visits_per_day: int = DEMO_VISITS_PER_DAY,
    seed: int = DEMO_SEED,
    segment_events: int = SEGMENT_EVENTS,
    incidents: bool = True,
    on_warehouse: Callable[[str], None] | None = None,
    on_traffic: Callable[[dict], None] | None = None,
    on_run: Callable[[JobRun], None] | None = None,
) -> DemoResult:
    """Start the warehouse, write the demo traffic (the same settings as last time reuse it),
    materialise every asset once and count the page views the marts hold.

    The callbacks hear of each step as it ends, so that a terminal shows progress: the
    warehouse DSN, the writer's summary, each finished run (``pipeline.run_assets``).
    ``incidents``: the demo's incidents in the traffic's last week (``demo_incidents``; a
    run shorter than three weeks has none).
    """
    from ingestion.demo_traffic import prepare_demo_traffic
    from ingestion.demo_traffic.incidents import demo_incidents
    from ingestion.demo_traffic.simulator import SimulationConfig
    from orchestration.doctor import table_rows
    from orchestration.pipeline import run_assets
    from orchestration.runtime import prepare

    url = prepare(warehouse="ready")
    if on_warehouse is not None:
        on_warehouse(url)
    cfg = SimulationConfig(days=days, visits_per_day=visits_per_day, seed=seed)
    if incidents:
        cfg = replace(cfg, incidents=demo_incidents(cfg.start, days))
    traffic = prepare_demo_traffic(cfg, url, segment_events=segment_events)
    if on_traffic is not None:
        on_traffic(traffic)
    pipeline = run_assets(on_run=on_run, exclude=[EVALUATION])
    page_views, alerts, mail_folder = None, (), None
    if pipeline.ok:
        page_views = table_rows(("web.fct_page_views",), url)["web.fct_page_views"]
        alerts, mail_folder = _evaluate_alerts(cfg.start, days, pipeline, on_run,
                                               fresh=not traffic["reused"])  # fmt: skip
    return DemoResult(url, traffic, pipeline, page_views, alerts, mail_folder)


def _evaluate_alerts(start, days: int, pipeline: PipelineResult, on_run, fresh: bool):
    """The alert rules evaluated over the demo's days, through Dagster (the run is in its
    UI), as if it were 01:00 after the traffic's last day: the traffic is in the past, so a
    normal evaluation (the latest period) would see no traffic at all. The mails go to the
    mail sink (in this process unless `siteline up`'s is listening). Returns a line per alert
    that fired, and the mail folder. ``fresh``: the traffic was generated anew, so the demo
    site's alert states of the traffic it replaced are forgotten first (they would hold its
    periods as evaluated)."""
    from ingestion.core.sites import load_sites
    from ingestion.core.warehouse import connect, warehouse_url
    from orchestration.alerts import mail_sink
    from orchestration.alerts.store import ensure_schema
    from orchestration.pipeline import run_assets

    if fresh:
        with connect(warehouse_url(), autocommit=True) as conn, conn.transaction():
            ensure_schema(conn)
            conn.execute(
                "delete from alerts.evaluations where instance_id in"
                " (select instance_id from alerts.instances where site_id = 'demo')"
            )
            conn.execute("delete from alerts.transitions where site_id = 'demo'")
            conn.execute("delete from alerts.instances where site_id = 'demo'")
    zone = ZoneInfo(load_sites().site("demo").timezone)
    after = datetime.combine(start + timedelta(days=days), time(1), zone).astimezone(UTC)
    config = {"at": after.isoformat(), "backfill": f"{days}d"}
    with contextlib.ExitStack() as stack:
        try:
            folder = stack.enter_context(mail_sink.running())
        except OSError:  # another sink took the port meanwhile: the mails go to it
            folder = None
        evaluation = run_assets([EVALUATION], on_run=on_run,
                                ops={"alerts__evaluation": {"config": config}})  # fmt: skip
    pipeline.runs.extend(evaluation.runs)
    with connect(warehouse_url()) as conn:
        rows = conn.execute(
            "select f.instance_id, f.period_start, f.reason, ("
            "  select min(r.period_start) from alerts.transitions as r"
            "  where r.instance_id = f.instance_id and r.to_state = 'resolved'"
            "    and r.period_start > f.period_start)"
            " from alerts.transitions as f where f.to_state = 'firing'"
            " order by f.period_start, f.instance_id"
        ).fetchall()
    lines = tuple(
        f"{iid}: fired {fired:%Y-%m-%d %H:%M}"
        + (f", resolved {resolved:%Y-%m-%d %H:%M}" if resolved else ", still firing")
        + f" - {reason}"
        for iid, fired, reason, resolved in rows
    )
    return lines, folder
