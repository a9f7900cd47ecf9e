"""fetch_series on a real warehouse filled by `siteline demo`: the alert metrics per local
day and hour equal the simulator's ground truth (visits, orders, revenue, the access log's
4xx lines, the funnel) or another mart (agg_daily_site_kpis), filters and `by` included;
a custom SQL runs as bi_reader, and its failures name the rule."""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from ingestion.core.alert_config import AlertRule
from ingestion.core.metrics import METRICS
from ingestion.core.sites import load_sites
from ingestion.core.warehouse import (
    bi_reader_url,
    connect,
    ensure_bi_reader,
    ensure_database,
    with_database,
)
from orchestration.alerts.series import QUERIES, SeriesError, fetch_series
from tests.integration.test_models_truth import INHERITED, access_log_hours, siteline

pytestmark = pytest.mark.integration

SIM = ["--days", "3", "--visits-per-day", "160", "--seed", "11"]
BERLIN = ZoneInfo("Europe/Berlin")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(warehouse, tmp_path_factory):
    home = tmp_path_factory.mktemp("alert-series-home")
    url = with_database(warehouse, "siteline_alert_series")
    dagster_url = with_database(warehouse, "siteline_alert_series_dagster")
    for db in (url, dagster_url):
        with connect(with_database(warehouse, "postgres"), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{db.rsplit("/", 1)[1]}" with (force)')
        ensure_database(db)
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    env.update(SITELINE_HOME=str(home), WAREHOUSE_URL=url, DAGSTER_PG_URL=dagster_url)
    siteline(env, "demo", "--no-serve", *SIM)
    ensure_bi_reader(url)  # this process's bi_reader password (the demo's home has its own)
    truth = home / "demo" / "truth"
    sessions = [s for s in read(truth, "sessions") if s["is_bot"] == "False"]
    days = sorted({local(s["started_at"]).date() for s in sessions})
    config = load_sites(ROOT / "sites.yml")
    with connect(url) as conn:
        yield {
            "conn": conn, "url": url, "truth": truth, "sessions": sessions,
            "start": datetime.combine(days[0], datetime.min.time()),
            "end": datetime.combine(days[-1] + timedelta(days=1), datetime.min.time()),
            "sites": config.sites, "stats": json.loads((truth / "summary.json").read_text()),
        }  # fmt: skip
    with connect(with_database(warehouse, "postgres"), autocommit=True) as conn:
        for db in ("siteline_alert_series", "siteline_alert_series_dagster"):
            conn.execute(f'drop database if exists "{db}" with (force)')


def read(truth: Path, name: str) -> list[dict]:
    with open(truth / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


def local(stamp: str) -> datetime:
    return (
        datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(BERLIN).replace(tzinfo=None)
    )


def rule(metric: str, grain: str = "day", **kw) -> AlertRule:
    return AlertRule(id=f"{metric}_rule", metric=metric, grain=grain,
                     condition={"type": "below", "value": 1}, **kw)  # fmt: skip


def fetch(demo, r: AlertRule, start=None, end=None):
    return fetch_series(demo["conn"], r, demo["sites"], start or demo["start"], end or demo["end"])


def as_dict(series) -> dict[datetime, float]:
    return {p: float(v) for p, v in zip(series.periods, series.values, strict=True)}


def test_visits_per_day_and_hour_equal_the_truth(demo):
    per_day = Counter(local(s["started_at"]).replace(hour=0, minute=0, second=0, microsecond=0)
                      for s in demo["sessions"])  # fmt: skip
    per_hour = Counter(local(s["started_at"]).replace(minute=0, second=0, microsecond=0)
                       for s in demo["sessions"])  # fmt: skip
    day = fetch(demo, rule("sessions"))
    assert list(day) == [("demo", None)]
    assert as_dict(day[("demo", None)]) == {p: float(n) for p, n in per_day.items()}
    hour = fetch(demo, rule("sessions", "hour"))[("demo", None)]
    assert len(hour.periods) == 3 * 24
    assert {p: v for p, v in as_dict(hour).items() if v} == {
        p: float(n) for p, n in per_hour.items()
    }
    # an hour without visits is 0 visits; its volume 0
    quiet = [i for i, v in enumerate(hour.values) if v == 0]
    assert quiet and all(hour.volumes[i] == 0 for i in quiet)


def test_visits_by_channel_with_a_device_filter_equal_the_truth(demo):
    mobile = [s for s in demo["sessions"] if s["device_type"] == "mobile"]
    counts = Counter(s["channel"] for s in mobile)
    top = sorted(counts, key=lambda c: (-counts[c], c))[:2]
    got = fetch(demo, rule("sessions", by="channel", by_limit=2, filters={"device": "mobile"}))
    assert sorted(got) == sorted(("demo", c) for c in top)
    for channel in top:
        per_day = Counter(local(s["started_at"]).date() for s in mobile if s["channel"] == channel)
        series = got[("demo", channel)]
        assert {p.date(): v for p, v in as_dict(series).items()} == {
            d: float(per_day.get(d, 0)) for d in (p.date() for p in series.periods)
        }


def test_orders_revenue_and_average_order_value_per_day_equal_the_truth(demo):
    orders = [t for t in read(demo["truth"], "transactions") if t["tracked"] == "True"]
    revenue: Counter = Counter()
    count: Counter = Counter()
    for t in orders:
        d = local(t["ordered_at"]).replace(hour=0, minute=0, second=0, microsecond=0)
        revenue[d] += float(t["revenue"])
        count[d] += 1
    got_revenue = fetch(demo, rule("revenue"))[("demo", None)]
    got_orders = fetch(demo, rule("transactions"))[("demo", None)]
    got_aov = fetch(demo, rule("average_order_value"))[("demo", None)]
    assert got_revenue.currency == "EUR" and got_revenue.unit == "currency"
    assert sum(count.values()) > 20
    for i, p in enumerate(got_revenue.periods):
        assert got_revenue.values[i] == pytest.approx(revenue[p])
        assert got_revenue.volumes[i] == count[p]  # the orders behind the revenue
        assert got_orders.values[i] == count[p]
        assert got_aov.values[i] == pytest.approx(revenue[p] / count[p])


def test_log_4xx_per_hour_equals_the_access_log(demo):
    lines = access_log_hours(demo["truth"])
    got = fetch(demo, rule("log_4xx", "hour"))[("demo", None)]
    assert {p: v for p, v in as_dict(got).items() if v} == {
        hour: float(n)
        for (hour, cls), n in lines.items()
        if cls == "4xx" and demo["start"] <= hour < demo["end"]
    }
    assert sum(got.values) > 0
    share = fetch(demo, rule("log_4xx_share"))[("demo", None)]
    in_range = sum(n for (hour, _), n in lines.items() if demo["start"] <= hour < demo["end"])
    assert sum(share.volumes) == in_range
    assert in_range > 0.99 * demo["stats"]["stats"]["log_lines"]  # a few lines after the days
    day = share.periods[1]
    on_day = {k: n for k, n in lines.items() if k[0].date() == day.date()}
    assert share.values[1] == pytest.approx(
        sum(n for (_, cls), n in on_day.items() if cls == "4xx") / sum(on_day.values())
    )
    # no 5xx in the demo: a count of 0, a share of 0 (there were log lines), never no data
    five = fetch(demo, rule("log_5xx_share"))[("demo", None)]
    assert list(five.values) == [0.0, 0.0, 0.0]


def test_rates_per_day_equal_the_daily_kpis_mart(demo):
    kpis = {
        row[0]: row[1:]
        for row in demo["conn"]
        .execute(
            "select kpi_date, visits, bounce_rate, conversion_rate, log_hits, bot_log_hits, "
            "engaged_seconds from web.agg_daily_site_kpis where site_id = 'demo'"
        )
        .fetchall()
    }
    series = {m: fetch(demo, rule(m))[("demo", None)] for m in
              ("bounce_rate", "conversion_rate", "bot_share", "engaged_time")}  # fmt: skip
    for i, p in enumerate(series["bounce_rate"].periods):
        visits, bounce, conversion, hits, bot_hits, engaged = kpis[p.date()]
        assert round(series["bounce_rate"].values[i], 4) == float(bounce)
        assert series["bounce_rate"].volumes[i] == visits
        assert round(series["conversion_rate"].values[i], 4) == float(conversion)
        assert series["bot_share"].values[i] == pytest.approx(bot_hits / hits)
        assert series["bot_share"].volumes[i] == hits
        assert series["engaged_time"].values[i] == pytest.approx(float(engaged) / visits)


def test_conversions_and_conversion_rate_by_goal(demo):
    conn = demo["conn"]
    rows = conn.execute(
        "select s.session_date, c.goal_id, count(*) from web.fct_goal_conversions as c "
        "inner join web.fct_sessions as s on s.session_id = c.session_id group by 1, 2"
    ).fetchall()
    by_goal = fetch(demo, rule("conversions", by="goal", by_limit=10))
    assert {k[1] for k in by_goal} == {g for _, g, _ in rows}
    for (_, goal), series in by_goal.items():
        expected = {d: n for d, g, n in rows if g == goal}
        assert {p.date(): v for p, v in as_dict(series).items()} == {
            p.date(): float(expected.get(p.date(), 0)) for p in series.periods
        }
    # the rate of one goal, filtered, equals the rate of that goal split by goal
    purchase = fetch(demo, rule("conversion_rate", filters={"goal": "purchase"}))
    split = fetch(demo, rule("conversion_rate", by="goal", by_limit=10))
    assert list(purchase[("demo", None)].values) == list(split[("demo", "purchase")].values)
    visits = fetch(demo, rule("sessions"))[("demo", None)].values
    purchases = by_goal[("demo", "purchase")].values
    assert list(split[("demo", "purchase")].values) == pytest.approx(list(purchases / visits))
    # by goal, the goal of most converting visits comes first
    top = fetch(demo, rule("conversion_rate", by="goal", by_limit=1))
    assert list(top) == [("demo", "add_to_cart")]


def test_funnel_drop_off_equals_the_truth(demo):
    steps = [sum(int(s["funnel_step"]) >= n for s in demo["sessions"]) for n in (1, 2)]
    got = fetch(demo, rule("funnel_drop_off", "month", filters={"funnel": "checkout", "step": 2}))
    series = got[("demo", None)]
    assert len(series.periods) == 1  # the demo's three days lie in one month
    assert series.volumes[0] == steps[0]
    assert series.values[0] == pytest.approx((steps[0] - steps[1]) / steps[0])


def test_page_load_p75_and_untracked_share_per_hour_equal_the_page_views(demo):
    loads: dict[datetime, list[float]] = {}
    views: Counter = Counter()
    from_logs: Counter = Counter()
    for at, load_ms, source in (
        demo["conn"]
        .execute(
            "select viewed_at, page_load_ms, event_source from web.fct_page_views "
            "where device_type = 'desktop'"
        )
        .fetchall()
    ):
        hour = at.astimezone(BERLIN).replace(minute=0, second=0, microsecond=0, tzinfo=None)
        views[hour] += 1
        from_logs[hour] += source == "logfile"
        if load_ms is not None:
            loads.setdefault(hour, []).append(load_ms)
    desktop = {"filters": {"device": "desktop"}}
    p75 = fetch(demo, rule("page_load_p75", "hour", **desktop))[("demo", None)]
    untracked = fetch(demo, rule("untracked_share", "hour", **desktop))[("demo", None)]
    assert len(loads) > 24
    for i, p in enumerate(p75.periods):
        if p in loads:
            # percentile_cont: linear between the neighbours, as numpy's default
            assert p75.values[i] == pytest.approx(float(np.percentile(loads[p], 75)))
            assert p75.volumes[i] == len(loads[p])
        else:
            assert math.isnan(p75.values[i]) and p75.volumes[i] == 0
        if views[p]:
            assert untracked.values[i] == pytest.approx(from_logs[p] / views[p])
            assert untracked.volumes[i] == views[p]
        else:
            assert math.isnan(untracked.values[i])


def test_new_customers_per_day_equal_first_orders_in_the_truth(demo):
    first: dict[str, datetime] = {}
    for t in read(demo["truth"], "transactions"):
        if t["tracked"] == "True":
            key = t["user_id"] or t["visitor_id"]
            at = local(t["ordered_at"])
            first[key] = min(first.get(key, at), at)
    got = fetch(demo, rule("new_customers"))[("demo", None)]
    per_day = Counter(at.date() for at in first.values())
    assert {p.date(): v for p, v in as_dict(got).items()} == {
        p.date(): float(per_day.get(p.date(), 0)) for p in got.periods
    }


def test_periods_without_rows_are_zero_for_counts_and_no_data_for_rates(demo):
    before = demo["start"] - timedelta(days=2)
    sessions = fetch(demo, rule("sessions"), start=before)[("demo", None)]
    bounce = fetch(demo, rule("bounce_rate"), start=before)[("demo", None)]
    assert sessions.periods[0] == before and len(sessions.periods) == 5
    assert list(sessions.values[:2]) == [0.0, 0.0] and sessions.values[2] > 0
    assert math.isnan(bounce.values[0]) and math.isnan(bounce.values[1]) and bounce.values[2] > 0


def test_every_metric_of_the_catalogue_but_real_time_ones_has_its_sql():
    assert set(QUERIES) | {"custom"} == {m for m, x in METRICS.items() if not x.realtime}


def test_a_custom_sql_runs_as_bi_reader_with_the_sites_range(demo):
    sql = (
        "select session_date as period, count(*) as value from web.fct_sessions "
        "where site_id = {site_id} and started_at >= {start_utc} and started_at < {end_utc} "
        "and landing_page_path like '/p/%' group by 1"
    )
    r = AlertRule(id="product_landings", metric="custom", sql=sql, grain="day",
                  condition={"type": "below", "value": 1})  # fmt: skip
    got = fetch_series(demo["conn"], r, demo["sites"], demo["start"], demo["end"],
                       bi_url=bi_reader_url(demo["url"]))[("demo", None)]  # fmt: skip
    rows = dict(demo["conn"].execute(
        "select session_date, count(*) from web.fct_sessions where site_id = 'demo' "
        "and landing_page_path like '/p/%' group by 1").fetchall())  # fmt: skip
    assert {p.date(): v for p, v in as_dict(got).items()} == {d: float(n) for d, n in rows.items()}
    assert got.label == "product_landings"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("select 1 as period, from web.fct_sessions",
         "alert rule 'broken': sql failed: syntax error at or near \"from\""),
        ("select now() as period, 1 as value, 2 as extra",
         "alert rule 'broken': sql returns 3 column(s) (period, value, extra); it must return "
         "two: period, value"),
        ("select now() as period, 'many' as value",
         "alert rule 'broken': sql returns the value 'many' (str)"),
        ("select 'monday' as period, 1 as value",
         "alert rule 'broken': sql returns the period 'monday' (str); the first column must be "
         "a date or a timestamp"),
        ("select {start}::date as period, 1 as value union all select {start}::date, 2",
         "alert rule 'broken': sql returns two rows for the day"),
        ("delete from web.fct_sessions returning started_at, 1",
         "alert rule 'broken': sql failed: "),
        ("select 1; select 2", "alert rule 'broken': sql: holds more than one statement"),
    ],
)  # fmt: skip
def test_a_failing_or_misshapen_custom_sql_raises_naming_the_rule(demo, sql, message):
    r = AlertRule(id="broken", metric="custom", sql=sql, grain="day",
                  condition={"type": "below", "value": 1})  # fmt: skip
    with pytest.raises(SeriesError) as info:
        fetch_series(demo["conn"], r, demo["sites"], demo["start"], demo["end"],
                     bi_url=bi_reader_url(demo["url"]))  # fmt: skip
    assert str(info.value).startswith(message)
    (count,) = demo["conn"].execute("select count(*) from web.fct_sessions").fetchone()
    assert count == len(demo["sessions"])  # bi_reader deleted nothing


def test_every_metric_runs_filtered_and_split_by_each_of_its_dimensions(demo):
    """Each metric's statement for each dimension it has, as a filter and as `by`: one
    series per value, every period of the range present."""
    values = {"channel": "direct", "device": "mobile", "country": "DE", "page_label": "Home",
              "campaign": "spring_sale", "goal": "purchase"}  # fmt: skip
    for name, metric in METRICS.items():
        if metric.realtime or name == "custom":
            continue
        required = {"funnel": "checkout", "step": 2} if name == "funnel_drop_off" else {}
        for dim in (None, *[d for d in metric.dimensions if d in values]):
            filtered = fetch(
                demo, rule(name, filters={**required, **({dim: values[dim]} if dim else {})})
            )
            assert [len(s.periods) for s in filtered.values()] == [3], (name, dim)
            if dim:
                split = fetch(demo, rule(name, filters=required, by=dim, by_limit=3))
                assert 1 <= len(split) <= 3, (name, dim)
                assert all(len(s.periods) == 3 for s in split.values())


def test_fetching_some_periods_reads_the_same_values_as_the_whole_range(demo):
    hours = [demo["start"] + timedelta(hours=h) for h in (10, 14, 34, 62)]
    outside = demo["end"] + timedelta(hours=3)
    for r in (rule("sessions", "hour"), rule("log_4xx", "hour"),
              rule("bounce_rate", "hour", by="channel", by_limit=20)):  # fmt: skip
        whole = fetch(demo, r)
        some = fetch_series(demo["conn"], r, demo["sites"], demo["start"], demo["end"],
                            periods=[*hours, outside, hours[0]])  # fmt: skip
        assert set(some) <= set(whole) and some
        for key, series in some.items():
            assert series.periods == hours
            at = [whole[key].index(p) for p in hours]
            assert list(series.values) == pytest.approx(list(whole[key].values[at]), nan_ok=True)
            assert list(series.volumes) == list(whole[key].volumes[at])
