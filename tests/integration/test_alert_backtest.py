"""The demo's alert rules backtested over the demo traffic's incidents.

`siteline demo` runs as a user would run it, on five weeks of small traffic: three weeks of
normal traffic the seasonal baselines learn from, a normal control week, then the week of
the four incidents (ingestion/demo_traffic/incidents.py). The marts must show each incident
where its ground truth says (checked in SQL, on its own), and the demo's rules in sites.yml,
judged over every period of the five weeks, must fire on every incident and breach nowhere
in the weeks before them.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median
from zoneinfo import ZoneInfo

import pytest

from ingestion.core.metrics import METRICS
from ingestion.core.sites import load_sites
from ingestion.core.warehouse import connect, ensure_database, with_database
from ingestion.demo_traffic.incidents import DEMO_MIN_DAYS, FLOOD_USER_AGENT
from ingestion.demo_traffic.writer import read_incidents
from tests.integration.test_models_truth import INHERITED, siteline

pytestmark = pytest.mark.integration

DAYS = 35
START = date(2026, 11, 1)  # SimulationConfig's first day
SIM = ["--days", str(DAYS), "--visits-per-day", "80", "--seed", "7", "--segment-events",
       "100000"]  # fmt: skip
TZ = ZoneInfo("Europe/Berlin")
INCIDENT_WEEK = datetime.combine(START, datetime.min.time()) + timedelta(days=DAYS - 7)
SIM_END = datetime.combine(START, datetime.min.time()) + timedelta(days=DAYS)
DATABASES = ("siteline_backtest", "siteline_backtest_dagster")


@pytest.fixture(scope="module")
def demo(warehouse, tmp_path_factory):
    home = tmp_path_factory.mktemp("backtest-home")
    url, dagster_url = (with_database(warehouse, db) for db in DATABASES)
    for db in (url, dagster_url):
        with connect(with_database(warehouse, "postgres"), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{db.rsplit("/", 1)[1]}" with (force)')
        ensure_database(db)
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    env.update(SITELINE_HOME=str(home), WAREHOUSE_URL=url, DAGSTER_PG_URL=dagster_url)
    siteline(env, "demo", "--no-serve", *SIM)
    incidents = read_incidents(home / "demo")
    yield {"url": url, "incidents": {row["kind"]: row for row in incidents}, "rows": incidents}
    with connect(with_database(warehouse, "postgres"), autocommit=True) as conn:
        for db in DATABASES:
            conn.execute(f'drop database if exists "{db}" with (force)')


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with connect(url) as conn:
        return conn.execute(sql, params or None).fetchall()


def local(value: str) -> datetime:
    return datetime.fromisoformat(value)


def window(incident: dict) -> tuple[datetime, datetime]:
    """The incident's [start, end) in UTC, aware."""
    return (
        datetime.fromisoformat(incident["start_utc"].replace("Z", "+00:00")),
        datetime.fromisoformat(incident["end_utc"].replace("Z", "+00:00")),
    )


# -- the ground truth, in the marts ---------------------------------------------------------------


def test_the_demo_has_its_four_incidents_in_the_last_week(demo):
    assert DAYS >= DEMO_MIN_DAYS + 7  # three weeks of baseline, a control week, incidents
    rows = demo["rows"]
    assert [r["kind"] for r in rows] == [
        "campaign_spike", "checkout_outage", "bot_flood", "page_speed_regression",
    ]  # fmt: skip
    for row in rows:
        start, end = local(row["start_local"]), local(row["end_local"])
        assert INCIDENT_WEEK <= start < end <= SIM_END
        utc_start, utc_end = window(row)
        assert utc_start == start.replace(tzinfo=TZ)
        assert utc_end - utc_start == end.replace(tzinfo=TZ) - start.replace(tzinfo=TZ)
        assert int(row["affected"]) > 0
        assert row["site_id"] == "demo"
        assert all(m in METRICS for m in row["metrics"].split())
    outage = demo["incidents"]["checkout_outage"]
    assert (outage["start_local"], outage["end_local"]) == (
        "2026-12-01T16:00:00", "2026-12-01T21:00:00",
    )  # fmt: skip
    assert outage["start_utc"] == "2026-12-01T15:00:00Z"


def test_checkout_outage_answers_5xx_and_takes_no_orders_only_in_its_hours(demo):
    url, outage = demo["url"], demo["incidents"]["checkout_outage"]
    start, end = window(outage)
    devices = query(url, "select count(distinct network_key) from staging.stg_logfiles__hits "
                         "where http_status >= 500")  # fmt: skip
    assert devices == [(int(outage["affected"]),)]
    errors = query(url, "select requested_at, http_method, page_path, http_status "
                        "from staging.stg_logfiles__hits where http_status >= 500 "
                        "order by requested_at")  # fmt: skip
    assert errors, "no 5xx answers in the access log"
    assert all(start <= at < end for at, *_ in errors)
    assert {(m, p, s) for _, m, p, s in errors} == {("POST", "/checkout/payment", 503)}
    # Two or three tries per visitor who could not pay.
    assert 2 * int(outage["affected"]) <= len(errors) <= 3 * int(outage["affected"])
    # The 5xx share of the outage hours is what the rule's threshold (1%) is far below.
    shares = query(url, """
        select date_trunc('hour', requested_at), avg((http_status >= 500)::int)
        from staging.stg_logfiles__hits
        where requested_at >= %s and requested_at < %s
        group by 1 having bool_or(http_status >= 500)
    """, (start, end))  # fmt: skip
    assert shares and min(s for _, s in shares) > 0.01
    failures = query(url, "select count(*), count(distinct session_id), min(occurred_at), "
                          "max(occurred_at) from web.fct_events "
                          "where event_action = 'payment_failed'")  # fmt: skip
    count, visits, first, last = failures[0]
    # Visitors who block tracking fail in the log only.
    assert 0 < visits <= int(outage["affected"])
    assert count >= 2 * visits and start <= first and last < end
    orders = query(url, "select count(*) from web.fct_transactions "
                        "where ordered_at >= %s and ordered_at < %s", (start, end))  # fmt: skip
    assert orders == [(0,)]
    # The same hours of the four weeks before: orders (about one a week at this volume).
    before = [
        query(url, "select count(*) from web.fct_transactions where ordered_at >= %s and "
                   "ordered_at < %s", (start - timedelta(weeks=w), end - timedelta(weeks=w)))[0][0]
        for w in range(1, 5)
    ]  # fmt: skip
    assert sum(before) >= 4


def test_campaign_spike_multiplies_social_visits_in_its_hours_only(demo):
    url, spike = demo["url"], demo["incidents"]["campaign_spike"]
    start, end = window(spike)
    flash = query(url, "select min(started_at), max(started_at), count(*) from web.fct_sessions "
                       "where campaign_name = 'flash_sale'")  # fmt: skip
    first, last, count = flash[0]
    assert start <= first and last < end
    assert count == int(spike["affected"])

    def social(week: int) -> int:
        shift = timedelta(weeks=week)
        return query(url, "select count(*) from web.fct_sessions where channel_id = 'social' and "
                          "started_at >= %s and started_at < %s",
                     (start - shift, end - shift))[0][0]  # fmt: skip

    usual = [social(w) for w in range(1, 5)]
    assert social(0) >= 5 * max(usual) > 0


def test_bot_flood_raises_the_days_bot_share_far_above_the_usual(demo):
    url, flood = demo["url"], demo["incidents"]["bot_flood"]
    start, end = window(flood)
    hits = query(url, "select count(*), min(requested_at), max(requested_at), bool_and(is_bot) "
                      "from staging.stg_logfiles__hits where user_agent = %s",
                 (FLOOD_USER_AGENT,))  # fmt: skip
    assert hits == [(int(flood["affected"]), hits[0][1], hits[0][2], True)]
    assert start <= hits[0][1] and hits[0][2] < end
    share = dict(query(url, "select kpi_date, bot_log_hits::numeric / log_hits "
                            "from web.agg_daily_site_kpis where site_id = 'demo'"))  # fmt: skip
    day = local(flood["start_local"]).date()
    usual = [share[day - timedelta(weeks=w)] for w in range(1, 5)]
    assert share[day] > 2 * max(usual)
    before = [v for d, v in share.items() if d < INCIDENT_WEEK.date()]
    assert max(before) < 2 * median(before)  # normal days: nothing like it


def test_page_speed_regression_slows_the_pages_of_its_hours(demo):
    url, slow = demo["url"], demo["incidents"]["page_speed_regression"]
    start, end = window(slow)
    p75 = dict(query(url, """
        select (viewed_at >= %s and viewed_at < %s),
               percentile_cont(0.75) within group (order by page_load_ms)
        from web.fct_page_views where page_load_ms is not null group by 1
    """, (start, end)))  # fmt: skip
    assert p75[True] > 2 * p75[False]
    daily = dict(query(url, """
        select (viewed_at at time zone 'Europe/Berlin')::date,
               percentile_cont(0.75) within group (order by page_load_ms)
        from web.fct_page_views where page_load_ms is not null group by 1
    """))  # fmt: skip
    before = [v for d, v in daily.items() if d < INCIDENT_WEEK.date()]
    assert max(before) < 1.2 * median(before)  # a steady page speed on normal days


def test_the_weeks_before_the_incidents_carry_none_of_their_traces(demo):
    url = demo["url"]
    cutoff = INCIDENT_WEEK.replace(tzinfo=TZ)
    assert query(url, "select count(*) from staging.stg_logfiles__hits where requested_at < %s "
                      "and (http_status >= 500 or user_agent = %s)",
                 (cutoff, FLOOD_USER_AGENT)) == [(0,)]  # fmt: skip
    assert query(url, "select count(*) from web.fct_sessions where started_at < %s and "
                      "campaign_name = 'flash_sale'", (cutoff,)) == [(0,)]  # fmt: skip


# -- the backtest of the demo's rules --------------------------------------------------------------


def test_the_demo_rules_catch_every_incident_and_stay_quiet_in_the_control_weeks(demo):
    """Every rule of the demo site that the marts answer, backtested over the five weeks
    (`siteline alerts backtest`'s function: the rule's conditions and state machine): each
    incident lies under a firing of a rule on one of the metrics it moves; no period before
    the incident week breaches."""
    from orchestration.alerts.backtest import backtest

    config = load_sites(Path(__file__).parents[2] / "sites.yml")
    rules = [r for r in config.alerts.rules if not METRICS[r.metric].realtime and r.enabled]
    assert {r.metric for r in rules} >= {"log_5xx_share", "sessions", "bot_share",
                                         "page_load_p75"}  # fmt: skip
    now = SIM_END.replace(tzinfo=TZ).astimezone(UTC)
    firings: list[tuple[str, str, str | None, datetime, datetime]] = []
    control_breaches = []
    with connect(demo["url"]) as conn:
        for rule in rules:
            result = backtest(conn, config, rule, days=DAYS, now=now)
            assert result.periods > 0, f"rule {rule.id}: nothing replayed"
            step = timedelta(hours=1) if rule.grain == "hour" else timedelta(days=1)
            for instance, periods in result.breach_periods.items():
                control_breaches += [(instance, p) for p in periods if p + step <= INCIDENT_WEEK]
            firings += [(rule.metric, e.site_id, e.dimension_value, e.fired, e.resolved or SIM_END)
                        for e in result.episodes]  # fmt: skip
    assert control_breaches == []
    for incident in demo["rows"]:
        start, end = local(incident["start_local"]), local(incident["end_local"])
        wanted = incident["metrics"].split()
        dimension = incident["dimension"].split("=")[1] if incident["dimension"] else None
        caught = [
            f for f in firings
            if f[0] in wanted and f[1] == incident["site_id"] and f[3] < end and start < f[4]
            and (dimension is None or f[2] in (None, dimension))
        ]  # fmt: skip
        assert caught, f"incident {incident['kind']} ({start}..{end}) not caught"
