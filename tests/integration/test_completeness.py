"""Up to when a site's data is complete (orchestration/completeness.py), on a real warehouse.

One story, in its own database and data directory, through the real dlt sources and dbt: two
days of tracker traffic of site ``shop`` land in 24 segments of two hours; the first load
takes 18 of them (the first day and half of the second), the marts are built; then the rest
is loaded, then the marts are built again. Site ``blog`` has a logfile source with 30 minutes
of lateness, pulled once with a file and once without. The tests read what
``complete_until`` said at each step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dlt
import pytest

from ingestion.collector_events import closed_before, collector_events
from ingestion.core.landing import SegmentWriter
from ingestion.core.sites import IpPolicy, load_sites
from ingestion.core.warehouse import connect, ensure_database, with_database
from ingestion.demo_traffic.writer import AsCollected
from ingestion.logfiles import logfiles
from ingestion.site_config.source import site_config
from orchestration.completeness import NOTHING, complete_until, period_complete

pytestmark = pytest.mark.integration

BERLIN = ZoneInfo("Europe/Berlin")
DAY_BEFORE, DAY = date(2026, 11, 30), date(2026, 12, 1)
VISITS_PER_HOUR = 2  # one visit every 30 minutes, all day
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
# Variables the parent test process set for its own components; the story sets its own.
INHERITED = (
    "DAGSTER_HOME", "DESTINATION__POSTGRES__CREDENTIALS", "SITELINE_DLT_DIR",
    "SITELINE_LANDING_DIR", "SOURCES__COLLECTOR_EVENTS__LANDING_DIR", "SITELINE_DAGSTER_PG_URL",
    "SITELINE_PG_HOST", "SITELINE_PG_PORT", "SITELINE_PG_USER", "SITELINE_PG_DBNAME",
    "DBT_ENV_SECRET_PG_PASSWORD",
)  # fmt: skip


def utc(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A Berlin wall-clock time in UTC."""
    return datetime.combine(day, time(hour, minute, second), BERLIN).astimezone(UTC)


def day_end(day: date) -> datetime:
    return utc(day + timedelta(days=1))


def write_segments(landing: Path, day: date, hours: range, *, received=None) -> list[str]:
    """One segment per two hours of ``day``'s traffic: a page view of a new visitor every 30
    minutes, received a second after it occurred (or at ``received``). Returns their names."""
    writer = SegmentWriter(landing / "events", writer_id="collector_test")
    collected = AsCollected(IpPolicy())
    names = []
    for start in hours[::2]:
        for minute in range(0, 120, 60 // VISITS_PER_HOUR):
            occurred = utc(day, start) + timedelta(minutes=minute)
            at = received or occurred + timedelta(seconds=1)
            visitor = str(uuid.uuid4())
            writer.write(collected({
                "event_id": str(uuid.uuid4()), "type": "page_view", "site_id": "shop",
                "visitor_id": visitor, "session_id": str(uuid.uuid4()),
                "occurred_at": occurred.isoformat(), "sent_at": occurred.isoformat(),
                "received_at": at.isoformat(), "user_agent": UA, "ip": "91.64.0.1",
                "url": "https://shop.example/", "referrer": None, "title": "Shop",
            }))  # fmt: skip
        names.append(writer.close_segment().name)
    return names


def log_lines(day: date) -> str:
    """An access log of ``day``: a request every hour."""
    return "".join(
        f"85.214.7.{hour + 1} - - [{utc(day, hour).strftime('%d/%b/%Y:%H:%M:%S')} +0000] "
        f'"GET /post/{hour} HTTP/1.1" 200 1000 "-" "{UA}"\n'
        for hour in range(24)
    )


class Story:
    """The warehouse, data directory and pipelines of the story, and what it saw."""

    def __init__(self, url: str, home: Path) -> None:
        self.url, self.home = url, home
        self.landing = home / "landing"
        self.logs = home / "logs"
        self.logs.mkdir(parents=True)
        self.sites_file = home / "sites.yml"
        self.sites_file.write_text(
            "sites:\n"
            "  - id: shop\n    domains: [shop.example]\n    timezone: Europe/Berlin\n"
            "  - id: blog\n    domains: [blog.example]\n    timezone: Europe/Berlin\n"
            "    logfiles:\n"
            f"      - {{name: web1, url: 'file://{self.logs}/access.log*', lateness: 30m}}\n"
        )
        self.config = load_sites(str(self.sites_file))
        self.env = {k: v for k, v in os.environ.items() if k not in INHERITED}
        self.env.update(SITELINE_HOME=str(home), WAREHOUSE_URL=url, DAGSTER_PG_URL=url)
        self.seen: dict[str, object] = {}

    def pipeline(self, name: str, dataset: str) -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=f"siteline_{name}", dataset_name=dataset,
            destination=dlt.destinations.postgres(credentials=self.url),
            pipelines_dir=str(self.home / "dlt"),
        )  # fmt: skip

    def load_config(self) -> None:
        self.pipeline("config", "config").run(site_config(str(self.sites_file)))

    def load_collector(self, max_segments: int = 0) -> None:
        source = collector_events(landing_dir=str(self.landing), max_segments=max_segments)
        self.pipeline("collector", "raw_collector").run(source)

    def pull_logs(self) -> datetime:
        """A pull of blog.web1; when it started (its row of raw_logfiles.files)."""
        pipeline = self.pipeline("logs_blog_web1", "raw_logfiles")
        pipeline.run(logfiles("blog", "web1", sites_file=str(self.sites_file)))
        return self.query(
            "select max(pull_started_at) from raw_logfiles.files where site_id = 'blog'"
        )[0][0]

    def dbt(self, *args: str) -> None:
        exe = shutil.which("siteline") or str(Path(sys.executable).with_name("siteline"))
        result = subprocess.run([exe, "dbt", *args], env=self.env, capture_output=True,
                                text=True, timeout=900)  # fmt: skip
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"

    def build(self) -> None:
        """The marts built (the models only: the data tests are not what is tested here)."""
        self.dbt("run")

    def query(self, sql: str) -> list[tuple]:
        with connect(self.url) as conn:
            return conn.execute(sql).fetchall()

    def complete(self, site: str, now: datetime | None = None):
        from ingestion.collector_events import Landing

        with connect(self.url) as conn:
            return complete_until(conn, self.config, site, now, landing=Landing(str(self.landing)))

    def sessions(self) -> dict[date, int]:
        rows = self.query(
            "select (started_at at time zone 'Europe/Berlin')::date, count(*) "
            "from web.fct_sessions where site_id = 'shop' group by 1"
        )
        return dict(rows)


@pytest.fixture(scope="module")
def story(warehouse, tmp_path_factory):
    url = with_database(warehouse, "siteline_completeness")
    with connect(with_database(warehouse, "postgres"), autocommit=True) as conn:
        conn.execute('drop database if exists "siteline_completeness" with (force)')
    ensure_database(url)
    s = Story(url, tmp_path_factory.mktemp("completeness-home"))
    seen = s.seen

    s.load_config()
    s.dbt("seed")
    seen["unbuilt"] = s.complete("shop")
    seen["segments"] = write_segments(s.landing, DAY_BEFORE, range(24)) + write_segments(
        s.landing, DAY, range(24)
    )
    seen["blog_never_pulled"] = s.complete("blog")
    (s.logs / "access.log").write_text(log_lines(DAY))

    # 1. the first day and half of the second loaded (18 of 24 segments)
    s.load_collector(max_segments=18)
    s.build()
    seen["half"] = s.complete("shop")
    seen["half_sessions"] = s.sessions()

    # 2. the rest loaded and blog's log pulled, the marts not built again
    s.load_collector()
    seen["loaded_not_built"] = s.complete("shop")
    seen["pulled"] = s.pull_logs()
    seen["blog_pulled_not_built"] = s.complete("blog")

    # 3. the marts built again
    s.build()
    seen["now"] = now = datetime.now(UTC)
    seen["full"] = s.complete("shop", now)
    seen["full_sessions"] = s.sessions()
    seen["blog_built"] = s.complete("blog", now)
    # no segment closed since: three hours later nothing holds the data back but the clock
    seen["later"] = now + timedelta(hours=3)
    seen["idle"] = s.complete("shop", seen["later"])
    # 4. a segment closes (events received now) and is not loaded yet
    seen["new_segment"] = write_segments(s.landing, DAY, range(2), received=now)[0]
    seen["with_new_segment"] = s.complete("shop", seen["later"])

    # 5. blog's log is gone (rotated away): a pull finds no file, and still counts
    (s.logs / "access.log").unlink()
    seen["pulled_empty"] = s.pull_logs()
    seen["empty_rows"] = s.query(
        "select files_found, file_name from raw_logfiles.files "
        "where pull_started_at = (select max(pull_started_at) from raw_logfiles.files)"
    )
    s.build()
    seen["blog_after_empty_pull"] = s.complete("blog")
    seen["indexes"] = s.query(
        "select schemaname, indexname from pg_indexes "
        "where indexname in ('_dlt_loads__load_id', 'landing_reads__read_at', "
        "'files__source_pull_started_at') order by 1, 2"
    )
    yield seen
    with connect(with_database(warehouse, "postgres"), autocommit=True) as conn:
        conn.execute('drop database if exists "siteline_completeness" with (force)')


def test_half_a_day_of_traffic_is_not_a_complete_day_the_full_day_is(story):
    """The issue's key test, on completeness alone: with half of the day loaded the day
    looks like a 50% drop against the day before, which a 'drop' rule would fire on - but
    the day is not complete, so a day rule waits; with the whole day it is complete and
    shows no drop."""
    half, full = story["half"], story["full"]
    assert story["half_sessions"] == {DAY_BEFORE: 48, DAY: 24}  # what a drop rule would see
    # the first segment left (12:00-14:00 of the day) holds it back: its first event
    assert half.until == utc(DAY, 12, 0, 1)
    assert period_complete(half, day_end(DAY_BEFORE)) is True
    assert period_complete(half, utc(DAY, 12)) is True
    assert period_complete(half, day_end(DAY)) is False
    assert period_complete(half, utc(DAY, 13)) is False
    assert half.reasons == [
        "collector: 6 landing segment(s) were left for a later load "
        "(the earliest from 2026-12-01 12:00 CET)"
    ]
    assert half.waiting_for(day_end(DAY)) == half.reasons
    assert half.waiting_for(day_end(DAY_BEFORE)) == []

    assert story["full_sessions"] == {DAY_BEFORE: 48, DAY: 48}
    assert full.until == closed_before(story["now"], 60)  # the clock, less a segment's time
    assert period_complete(full, day_end(DAY)) is True


def test_a_load_the_marts_were_not_built_after_holds_the_data_back(story):
    waiting = story["loaded_not_built"]
    assert waiting.until == utc(DAY, 12, 0, 1)  # as before the load
    assert period_complete(waiting, day_end(DAY)) is False
    [reason] = waiting.reasons
    assert reason.startswith("collector: 6 landing segment(s) were left for a later load")
    assert ", after the marts' last build 20" in reason


def test_before_the_first_build_nothing_is_complete(story):
    unbuilt = story["unbuilt"]
    assert unbuilt.until == NOTHING
    assert unbuilt.reasons[0] == "the marts have not been built yet (siteline run)"
    assert period_complete(unbuilt, day_end(DAY_BEFORE)) is False


def test_an_idle_collector_does_not_hold_the_data_back(story):
    idle = story["idle"]
    assert idle.until == closed_before(story["later"], 60)
    assert idle.reasons == [
        "collector: events of the last 90 s may still be in a landing segment the collector "
        "has not closed"
    ]
    # a segment closed since (not loaded): its first event holds the data back
    behind = story["with_new_segment"]
    first_event = story["now"]
    assert behind.until == first_event
    [reason] = behind.reasons
    assert reason.startswith(f"collector: landing segment {story['new_segment']} (first event ")
    assert reason.endswith(") is not in the marts yet")


def test_a_logfile_source_not_pulled_past_the_end_and_its_lateness_holds_the_site_back(story):
    assert story["blog_never_pulled"].until == NOTHING
    assert "logfile source blog.web1 has not been pulled yet" in story["blog_never_pulled"].reasons

    not_built = story["blog_pulled_not_built"]
    assert not_built.until == NOTHING  # pulled after the marts' last build
    [reason] = [r for r in not_built.reasons if r.startswith("logfile source")]
    pulled = story["pulled"].astimezone(BERLIN)
    assert reason.startswith(f"logfile source blog.web1: its pull of {pulled:%Y-%m-%d %H:%M} "
                             "CET is not in the marts yet (built 20")  # fmt: skip

    built, pulled = story["blog_built"], story["pulled"]
    assert built.until == pulled - timedelta(minutes=30)
    [reason] = [r for r in built.reasons if r.startswith("logfile source")]
    local = pulled.astimezone(BERLIN)
    until = (pulled - timedelta(minutes=30)).astimezone(BERLIN)
    assert reason == (
        f"logfile source blog.web1 last pulled {local:%Y-%m-%d %H:%M} CET, so complete until "
        f"{until:%Y-%m-%d %H:%M} CET (lateness 30 min)"
    )
    # a period ending 29 minutes before the pull waits; one ending 31 minutes before does not
    assert period_complete(built, pulled - timedelta(minutes=29)) is False
    assert period_complete(built, pulled - timedelta(minutes=31)) is True
    assert built.waiting_for(pulled - timedelta(minutes=29)) == [reason]
    # "shop" has no logfile source: blog's does not hold it back
    assert story["full"].until > built.until


def test_a_pull_that_finds_no_file_still_moves_the_source_on(story):
    assert story["empty_rows"] == [(0, None)]
    after = story["blog_after_empty_pull"]
    assert story["pulled_empty"] > story["pulled"]
    assert after.until == story["pulled_empty"] - timedelta(minutes=30)


def test_the_bookkeeping_it_reads_is_indexed(story):
    """A row or two per question, not a scan of a year of loads (dbt's on-run-start)."""
    assert story["indexes"] == [
        ("raw_collector", "_dlt_loads__load_id"),
        ("raw_collector", "landing_reads__read_at"),
        ("raw_logfiles", "_dlt_loads__load_id"),
        ("raw_logfiles", "files__source_pull_started_at"),
    ]
