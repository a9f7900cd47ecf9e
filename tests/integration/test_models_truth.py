"""The warehouse models checked exactly against the simulator's ground truth.

`siteline demo` runs as a user would run it, in its own data directory and databases, on a
small simulation; tracker events then arrive in several loads (three landing segments per
run) while the access log is pulled at once, so late events, retried deliveries and log
hits that a later tracker event supersedes all cross incremental runs. The marts after those
incremental runs must equal a full refresh, and both must equal the ground truth: visits,
page views, channels, visitors, customers, orders, revenue and funnel counts.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from bisect import bisect_left
from collections import Counter, defaultdict
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from ingestion.core.warehouse import connect, ensure_database, mask_url, with_database
from tests.cases.generate import load_cases

pytestmark = pytest.mark.integration

SIM = ["--days", "3", "--visits-per-day", "160", "--seed", "11", "--segment-events", "1000"]
MARTS = [
    "web.fct_sessions", "web.fct_page_views", "web.fct_events", "web.dim_visitors",
    "web.fct_transactions", "web.fct_transaction_items", "web.fct_goal_conversions",
    "web.fct_funnel_steps", "web.dim_pages", "web.dim_campaigns", "web.dim_devices",
    "web.agg_daily_site_kpis", "web.agg_hourly_log_hits", "crm.customers",
    "crm.customer_daily_activity",
]  # fmt: skip
FUNNEL = ["/cart", "/checkout/shipping", "/checkout/payment", "/checkout/complete"]
# Variables the parent test process set for its own components; the demo sets its own.
INHERITED = (
    "DAGSTER_HOME", "DESTINATION__POSTGRES__CREDENTIALS", "SITELINE_DLT_DIR",
    "SITELINE_LANDING_DIR", "SOURCES__COLLECTOR_EVENTS__LANDING_DIR", "SITELINE_DAGSTER_PG_URL",
    "SITELINE_PG_HOST", "SITELINE_PG_PORT", "SITELINE_PG_USER", "SITELINE_PG_DBNAME",
    "DBT_ENV_SECRET_PG_PASSWORD",
)  # fmt: skip


def run_siteline(env: dict, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("siteline") or str(Path(sys.executable).with_name("siteline"))
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=900)


def siteline(env: dict, *args: str) -> str:
    result = run_siteline(env, *args)
    assert result.returncode == 0, f"siteline {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def siteline_fails(env: dict, *args: str) -> str:
    """The output of a siteline command that must fail (a data test finding a broken row)."""
    result = run_siteline(env, *args)
    assert result.returncode != 0, f"siteline {' '.join(args)} passed:\n{result.stdout}"
    return result.stdout


def snapshot(url: str) -> dict[str, tuple[int, str]]:
    """Row count and a hash of every row of every mart."""
    with connect(url) as conn:
        return {
            table: conn.execute(
                f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
                f"from {table} as t"
            ).fetchone()
            for table in MARTS
        }


def customer_value_counts(url: str) -> tuple[int, int]:
    """The customers per RFM value int_customer_activity keeps (moved by each run's customers),
    and how many of those rows differ from counting its rows now."""
    counted = (
        "select site_id, coalesce(last_seen_at::date, '-infinity'::date), coalesce(visits, 0), "
        "coalesce(transactions, 0), coalesce(revenue, 0), count(*) "
        "from intermediate.int_customer_activity group by grouping sets ((site_id, 2), "
        "(site_id, 3, 4), (site_id, 5))"
    )
    kept = "select * from intermediate.customer_value_counts"
    with connect(url) as conn:
        rows = conn.execute(f"select count(*) from ({kept}) as k").fetchone()[0]
        differ = conn.execute(
            f"select count(*) from (({kept} except all {counted}) "
            f"union all ({counted} except all {kept})) as d"
        ).fetchone()[0]
    return rows, differ


def matched_requests(url: str) -> list[tuple[str, str]]:
    """The (log hit, tracker page view) pairs the models matched as one request."""
    with connect(url) as conn:
        return conn.execute(
            "select event_id, matched_view_id from intermediate.int_events_sessionised "
            "where event_source = 'logfile' and is_superseded order by event_id"
        ).fetchall()


@pytest.fixture(scope="module")
def demo(warehouse, tmp_path_factory):
    home = tmp_path_factory.mktemp("truth-home")
    url = with_database(warehouse, "siteline_truth")
    dagster_url = with_database(warehouse, "siteline_truth_dagster")
    for db in (url, dagster_url):
        with connect(with_database(warehouse, "postgres"), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{db.rsplit("/", 1)[1]}" with (force)')
        ensure_database(db)
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    env.update(
        SITELINE_HOME=str(home), WAREHOUSE_URL=url, DAGSTER_PG_URL=dagster_url,
        SOURCES__COLLECTOR_EVENTS__MAX_SEGMENTS="3",
    )  # fmt: skip
    output = siteline(env, "demo", "--no-serve", *SIM)
    truth = home / "demo" / "truth"
    stats = json.loads((truth / "summary.json").read_text())["stats"]
    # What run_demo (orchestration/demo.py) returned, printed as each step ends.
    with connect(url) as conn:
        page_views = conn.execute("select count(*) from web.fct_page_views").fetchone()[0]
    assert page_views > 0
    lines = output.splitlines()
    traffic = (
        f"demo traffic generated: {stats['visits']:,} visits, {stats['events']:,} tracker "
        f"events, {stats['log_lines']:,} log lines"
    )
    first_run = next(i for i, line in enumerate(lines) if line.startswith("run "))
    assert ": success in " in lines[first_run]
    assert (
        lines.index(f"warehouse {mask_url(url)}")
        < lines.index(traffic)
        < first_run
        < lines.index(f"web.fct_page_views {page_views:,} rows")
    )
    runs = 1
    while True:
        with connect(url) as conn:
            loaded = conn.execute("select count(*) from raw_collector.events").fetchone()[0]
        if loaded == stats["events"]:
            break
        assert runs < 12, f"{loaded} of {stats['events']} events loaded after {runs} runs"
        siteline(env, "run")
        runs += 1
    incremental = snapshot(url)
    incremental_matches = matched_requests(url)
    value_counts = customer_value_counts(url)
    execute(  # what a back-office system writes
        url, "insert into crm.customer_attributes values ('demo', 'cust-0000001', "
        "'recommendations', '[\"SKU-0001\"]', 'recommender', now())",
    )  # fmt: skip
    # Models only: the data tests ran on the same data in the incremental runs.
    siteline(env, "dbt", "run", "--full-refresh")
    yield {
        "url": url, "truth": truth, "stats": stats, "runs": runs, "incremental": incremental,
        "env": env, "value_counts": value_counts, "incremental_matches": incremental_matches,
    }  # fmt: skip
    with connect(with_database(warehouse, "postgres"), autocommit=True) as conn:
        for db in ("siteline_truth", "siteline_truth_dagster"):
            conn.execute(f'drop database if exists "{db}" with (force)')


def read(truth: Path, name: str) -> list[dict]:
    with open(truth / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with connect(url) as conn:
        return conn.execute(sql, params or None).fetchall()


def execute(url: str, sql: str, params: tuple = ()) -> None:
    """A change behind the models' back, committed."""
    with connect(url, autocommit=True) as conn:
        conn.execute(sql, params or None)


def test_incremental_runs_equal_a_full_refresh(demo):
    assert demo["runs"] >= 3  # the events really arrived over several incremental runs
    assert snapshot(demo["url"]) == demo["incremental"]


def test_a_full_refresh_keeps_what_back_office_systems_wrote(demo):
    rows = query(demo["url"], "select customer_key, attribute_value from crm.customer_attributes")
    assert rows == [("cust-0000001", ["SKU-0001"])]


def test_visits_match_the_truth_one_by_one(demo):
    """Each visit as the truth has it. A tracker session the visit rules split (a campaign
    link followed inside it, longer than the length cap) is several visits with the tracker's
    session id: matched in order of time (the truth's parts)."""
    truth = [s for s in read(demo["truth"], "sessions") if s["is_bot"] == "False"]
    tracked = {(s["session_id"], int(s["part"])): s for s in truth if s["tracked"] == "True"}
    blocked = [s for s in truth if s["tracked"] == "False"]
    assert len(tracked) > 300 and len(blocked) > 10
    # the demo has visits each rule splits: two parts from a campaign link, two from the cap
    parts = Counter(sid for sid, _ in tracked)
    split = [tracked[sid, 1] for sid, n in parts.items() if n == 2]
    assert {s["channel"] for s in split} == {"email", "direct"}
    rows = query(
        demo["url"],
        "select client_session_id, event_source, page_views, engaged_seconds, channel_id, "
        "campaign_name, landing_page_path, exit_page_path, device_type, transactions, revenue, "
        "user_id from web.fct_sessions order by client_session_id, started_at",
    )
    assert len(rows) == len(truth)
    from_tracker = {}
    for r in rows:
        if r[1] == "tracker":
            part = sum(1 for sid, _ in from_tracker if sid == r[0]) if parts[r[0]] > 1 else 0
            from_tracker[r[0], part] = r
    assert set(from_tracker) == set(tracked)
    for sid, s in tracked.items():
        r = from_tracker[sid]
        expected = (
            int(s["page_views"]),
            int(s["engaged_seconds"]),
            s["channel"],
            s["campaign"] or None,
            s["landing_path"],
            s["exit_path"],
            s["device_type"],
            int(s["transactions"]),
            Decimal(s["revenue"]).quantize(Decimal("0.01")),
        )
        assert r[2:11] == expected, f"session {sid}"
    # Visits only the access log saw (tracking blocked): no ids to join on, so compare the
    # multiset of what each visit was.
    from_logs = Counter((r[2], r[4], r[6], r[7], r[8]) for r in rows if r[1] == "logfile")
    expected_logs = Counter(
        (int(s["page_views"]), s["channel"], s["landing_path"], s["exit_path"], s["device_type"])
        for s in blocked
    )
    assert from_logs == expected_logs


def test_log_hits_and_tracker_page_views_are_matched_one_to_one(demo):
    """The audit's check: no log hit is matched to two page views and no page view to two
    hits, and the pairs are exactly the requests both sources saw: every tracked page view
    (quick reloads included, two views near two hits) has its own log line in the demo."""
    sessions = read(demo["truth"], "sessions")
    expected = sum(int(s["page_views"]) for s in sessions if s["tracked"] == "True")
    assert demo["stats"]["reloads"] > 10
    pairs = matched_requests(demo["url"])
    assert pairs == demo["incremental_matches"]  # the incremental runs matched the same
    hits = Counter(hit for hit, _ in pairs)
    views = Counter(view for _, view in pairs)
    assert [h for h, n in hits.items() if n > 1] == []
    assert [v for v, n in views.items() if n > 1] == []
    assert None not in views
    (unmatched,) = query(
        demo["url"],
        "select count(*) from intermediate.int_events_sessionised as hit "
        "where hit.is_superseded and not exists (select 1 from "
        "intermediate.int_events_sessionised as view where view.event_id = hit.matched_view_id "
        "and view.event_source = 'tracker' and view.event_type = 'page_view')",
    )[0]
    assert unmatched == 0
    assert len(pairs) == expected
    # and a matched hit is no page view of its own
    (counted,) = query(
        demo["url"],
        "select count(*) from web.fct_page_views where page_view_id in (select event_id from "
        "intermediate.int_events_sessionised where is_superseded)",
    )[0]
    assert counted == 0


def access_log_hours(truth: Path) -> Counter:
    """Lines of the demo's access log per local hour (Europe/Berlin) and status class: the
    web server's own record, read without the loader."""
    counts: Counter = Counter()
    berlin = ZoneInfo("Europe/Berlin")
    for path in sorted((truth.parent / "logs").glob("access.log*")):
        with open(path) as fh:
            for line in fh:
                stamp = line.split("[", 1)[1].split("]", 1)[0]
                at = datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").astimezone(berlin)
                status = int(line.split('"', 2)[2].split()[0])
                hour = at.replace(minute=0, second=0, tzinfo=None)
                counts[(hour, f"{status // 100}xx")] += 1
    return counts


def test_hourly_log_hits_match_the_access_log_and_the_daily_counts(demo):
    """web.agg_hourly_log_hits (the alerts' log metrics) has every line of the access log in
    its local hour and status class, and its bots and static assets add up to the days of
    int_daily_log_hits."""
    rows = query(
        demo["url"],
        "select kpi_hour, status_class, sum(hits)::int from web.agg_hourly_log_hits group by 1, 2",
    )
    expected = access_log_hours(demo["truth"])
    assert sum(expected.values()) == demo["stats"]["log_lines"]
    assert {(hour, cls): n for hour, cls, n in rows} == dict(expected)
    assert {cls for _, cls in expected} >= {"2xx", "4xx"}
    differ = query(
        demo["url"],
        "select count(*) from ((select site_id, kpi_date, sum(hits), coalesce(sum(hits) "
        "filter (where is_bot), 0), coalesce(sum(hits) filter (where is_static), 0) "
        "from web.agg_hourly_log_hits group by 1, 2) "
        "except (select site_id, kpi_date, log_hits, bot_log_hits, static_log_hits "
        "from intermediate.int_daily_log_hits)) as d",
    )[0][0]
    assert differ == 0


def test_bots_are_kept_out_and_counted(demo):
    bots = [s for s in read(demo["truth"], "sessions") if s["is_bot"] == "True"]
    ((visits, bot_visits),) = query(
        demo["url"], "select sum(visits), sum(bot_visits) from web.agg_daily_site_kpis"
    )
    truth = [s for s in read(demo["truth"], "sessions") if s["is_bot"] == "False"]
    assert visits == len(truth)
    # JavaScript-running bots are one visit each; declared crawlers add log-only visits.
    tracker_bots = query(
        demo["url"],
        "select count(*) from intermediate.int_sessions where is_bot and event_source = 'tracker'",
    )[0][0]
    assert tracker_bots == len(bots) and bot_visits > len(bots)


def test_orders_and_revenue_match_the_truth(demo):
    orders = [t for t in read(demo["truth"], "transactions") if t["tracked"] == "True"]
    items = read(demo["truth"], "transaction_items")
    tracked_ids = {t["order_id"] for t in orders}
    rows = query(
        demo["url"], "select order_id, revenue, quantity, customer_key from web.fct_transactions"
    )
    assert {r[0] for r in rows} == tracked_ids
    by_id = {r[0]: r for r in rows}
    for t in orders:
        assert by_id[t["order_id"]][1] == Decimal(t["revenue"]).quantize(Decimal("0.01"))
        assert by_id[t["order_id"]][2] == int(t["quantity"])
    lines = query(
        demo["url"], "select order_id, sku, quantity, price from web.fct_transaction_items"
    )
    expected = Counter(
        (i["order_id"], i["sku"], int(i["quantity"]), Decimal(i["price"]).quantize(Decimal("0.01")))
        for i in items
        if i["order_id"] in tracked_ids
    )
    assert Counter(lines) == expected
    purchases = query(
        demo["url"],
        "select count(*), sum(goal_value) from web.fct_goal_conversions where goal_id = 'purchase'",
    )[0]
    assert purchases == (
        len({t["session_id"] for t in orders}),
        sum(Decimal(t["revenue"]) for t in orders).quantize(Decimal("0.01")),
    )


def test_customers_are_stitched_across_devices_and_earlier_visits(demo):
    truth = [s for s in read(demo["truth"], "sessions") if s["is_bot"] == "False"]
    identity = {i["visitor_id"]: i["user_id"] for i in read(demo["truth"], "identities")}
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    visits: Counter = Counter()
    for s in truth:
        if s["tracked"] != "True":
            continue
        key = identity.get(s["visitor_id"], s["visitor_id"])
        visits[key] += 1
        revenue[key] += Decimal(s["revenue"])
    rows = query(
        demo["url"],
        "select customer_key, visits, revenue, visitor_ids from crm.customers "
        "where customer_key not like 'log:%'",
    )
    assert {r[0] for r in rows} == set(visits)
    for key, n, value, _ in rows:
        assert (n, value) == (visits[key], revenue[key].quantize(Decimal("0.01"))), key
    # Some customers really were stitched: a login linked earlier anonymous visits, and
    # some users came back on more than one device.
    assert any(r[3] > 1 for r in rows)
    stitched = query(
        demo["url"],
        "select count(*) from web.fct_sessions s join intermediate.int_identity_map i "
        "using (site_id, visitor_id) where s.started_at < i.first_identified_at",
    )[0][0]
    assert stitched > 0
    blocked_devices = {s["visitor_id"] for s in truth if s["tracked"] == "False"}
    log_customers = query(
        demo["url"], "select count(*) from crm.customers where customer_key like 'log:%'"
    )[0][0]
    assert log_customers == len(blocked_devices)


def test_rfm_scores_are_quintiles_that_equal_values_share(demo):
    """Each score is 1 + floor(5 * customers of the site with a lower value / customers),
    computed here in Python from the customers' own figures (after incremental runs)."""
    rows = query(
        demo["url"],
        "select site_id, customer_key, last_seen_at::date, visits, transactions, revenue, "
        "recency_score, frequency_score, monetary_score from crm.customers",
    )
    measures = {
        "recency": lambda r: r[2],
        "frequency": lambda r: (r[3], r[4]),
        "monetary": lambda r: r[5],
    }
    for position, (name, value) in enumerate(measures.items()):
        values: dict[str, list] = defaultdict(list)
        for r in rows:
            values[r[0]].append(value(r))
        ordered = {site: sorted(found) for site, found in values.items()}
        for r in rows:
            site = ordered[r[0]]
            lower = bisect_left(site, value(r))
            assert r[6 + position] == 1 + (5 * lower) // len(site), (name, r[1])
    # ties were exercised: the demo's many customers without revenue share the lowest
    # monetary score, and its few days of last visits give fewer than five recency scores
    # (ntile over one customer per row would have used all five)
    assert sum(1 for r in rows if r[5] == 0) > len(rows) / 2
    assert {r[8] for r in rows if r[5] == 0} == {1}
    assert 1 < len({r[6] for r in rows}) < 5


def test_customer_value_counts_follow_the_incremental_runs(demo):
    """crm.customers scores the values int_customer_activity counts as it goes: after the
    incremental runs (and after the full refresh) the counts equal counting its customers."""
    rows, differ = demo["value_counts"]
    assert rows > 20  # dates of last visits, visits and orders, revenues
    assert differ == 0
    assert customer_value_counts(demo["url"]) == (rows, 0)


def test_customers_rewrites_only_moved_scores_and_everyone_on_a_new_day(demo):
    """crm.customers records the scores it gave per value (intermediate.int_customer_scores):
    a run rewrites the customers of a value whose score moved, and every customer on the
    first run of a day (their days since the last visit moved)."""
    env, url = demo["env"], demo["url"]
    rewritten = (
        "select count(*) from crm.customers "
        "where xmin::text::bigint >= %s and xmin::text::bigint < %s"
    )

    def run_customers() -> tuple[int, int]:
        start = query(url, "select txid_current()")[0][0]
        siteline(env, "dbt", "run", "--select", "customers")
        return start, query(url, "select txid_current()")[0][0]

    run_customers()  # after the fixture's full refresh: scores given today
    assert query(url, rewritten, run_customers()) == [(0,)]
    # a score given to one value differs from today's: that value's customers, no others
    (revenue, customers) = query(
        url, "select revenue, count(*) from crm.customers where revenue > 0 "
        "group by revenue order by count(*) desc, revenue limit 1",
    )[0]  # fmt: skip
    execute(url, "update intermediate.int_customer_scores set given_score = given_score %% 5 + 1 "
            "where measure = 'monetary' and revenue = %s", (revenue,))  # fmt: skip
    before = query(url, "select customer_key, monetary_score from crm.customers order by 1")
    assert query(url, rewritten, run_customers()) == [(customers,)]
    assert query(url, "select customer_key, monetary_score from crm.customers order by 1") == before
    # a new day: every customer, with today's days since the last visit
    execute(url, "update intermediate.int_customer_scores set given_on = given_on - 1")
    execute(url, "update crm.customers set days_since_last_visit = -1")
    total = query(url, "select count(*) from crm.customers")[0][0]
    assert total > 100
    assert query(url, rewritten, run_customers()) == [(total,)]
    assert query(
        url, "select count(*) from crm.customers "
        "where days_since_last_visit = current_date - last_seen_at::date",
    ) == [(total,)]  # fmt: skip


def test_daily_kpis_recompute_only_the_days_whose_visits_changed(demo):
    """int_sessions logs the local days of the visits a run removed, added or altered
    (intermediate.changed_days); agg_daily_site_kpis recomputes those days and carries the
    figures of the others as they were."""
    env, url = demo["env"], demo["url"]
    kpis = "select site_id, kpi_date, visits, page_views from web.agg_daily_site_kpis order by 1, 2"
    before = query(url, kpis)
    logged = "select site_id, from_day, to_day from intermediate.changed_days where change_id > %s"
    last = query(url, "select coalesce(max(change_id), 0) from intermediate.changed_days")[0][0]
    (site, visitor, session_id, day) = query(
        url, "select s.site_id, s.visitor_id, s.session_id, s.session_date "
        "from intermediate.int_sessions as s "
        "inner join staging.stg_config__sites as c on s.site_id = c.site_id "
        "where not s.is_bot and s.session_date = (s.ended_at at time zone c.site_timezone)::date "
        "order by s.session_id limit 1",
    )[0]  # fmt: skip
    other = query(
        url, "select max(kpi_date) from web.agg_daily_site_kpis where site_id = %s "
        "and kpi_date <> %s and visits > 0", (site, day),
    )[0][0]  # fmt: skip
    assert other is not None
    rebuild_device = (
        "insert into intermediate.changed_devices (site_id, device_key) values (%s, %s)"
    )
    # the device rebuilt, its visits as they were: no day logged, every day carried
    execute(url, rebuild_device, (site, visitor))
    siteline(env, "dbt", "run", "--select", "int_sessions", "agg_daily_site_kpis")
    assert query(url, logged, (last,)) == []
    assert query(url, kpis) == before
    # one visit altered where it is stored: rebuilt, it differs, and its day is logged; two
    # days' figures altered: the visit's day is recomputed, the other carried as it is
    execute(url, "update intermediate.int_sessions set page_views = page_views + 1000 "
            "where session_id = %s", (session_id,))  # fmt: skip
    execute(url, "update web.agg_daily_site_kpis set page_views = page_views + 100000 "
            "where site_id = %s and kpi_date in (%s, %s)", (site, day, other))  # fmt: skip
    execute(url, rebuild_device, (site, visitor))
    siteline(env, "dbt", "run", "--select", "int_sessions", "agg_daily_site_kpis")
    assert query(url, logged, (last,)) == [(site, day, day)]
    assert query(url, kpis) == [
        (s, d, v, p + 100000 if (s, d) == (site, other) else p) for (s, d, v, p) in before
    ]
    # built whole again: as before
    siteline(env, "dbt", "run", "--select", "agg_daily_site_kpis", "--full-refresh")
    assert query(url, kpis) == before


def test_funnel_counts_match_the_truth(demo):
    truth = [s for s in read(demo["truth"], "sessions") if s["is_bot"] == "False"]
    expected = [sum(int(s["funnel_step"]) >= n for s in truth) for n in range(1, 5)]
    rows = query(
        demo["url"],
        "select step_number, count(*), count(*) filter (where not reached_next_step) "
        "from web.fct_funnel_steps where funnel_id = 'checkout' group by 1 order by 1",
    )
    assert [r[1] for r in rows] == expected
    assert expected[0] > expected[3] > 0
    # Drop-off per step: visits that reached the step and not the next one.
    assert [r[2] for r in rows] == [
        a - b for a, b in zip(expected, [*expected[1:], 0], strict=True)
    ]


def test_the_table_of_visit_rule_cases_runs_as_dbt_unit_tests(demo):
    """The unit tests generated from tests/cases/visit_rules.yml run with the others (the
    pipeline's build leaves unit tests out; `siteline dbt build` and this run them)."""
    output = siteline(demo["env"], "dbt", "test", "--select", "test_type:unit")
    cases, _ = load_cases()
    lines = output.splitlines()
    for name in [case.name for case in cases] + ["channels_follow_the_seed_channel_rules"]:
        assert any(" PASS " in line and f"::{name} " in line for line in lines), name


def test_dim_channels_describes_each_channel_by_its_rules(demo):
    rows = dict(query(demo["url"], "select channel_id, definition from web.dim_channels"))
    assert rows["organic_search"] == "Campaign medium organic; or referrer search"
    assert rows["affiliate"] == "Campaign medium affiliate, affiliates, partner"
    assert rows["other"] == (
        "A campaign medium or source that no campaign medium or referrer rule matches"
    )
    assert rows["direct"] == "No campaign medium or source, and no referrer rule matching"
    assert len(rows) == 9


def test_data_tests_read_what_changed_since_the_last_passing_run(demo):
    """An ordinary build's data tests that opt in (`where: __changed_rows__`) read the rows of
    devices changed since the last run that passed every test (macros/test_scopes.sql); a
    build after a full refresh reads everything. A row broken behind the models' back is
    found once its device changes."""
    env, url = demo["env"], demo["url"]
    # after the fixture's full refresh: every test reads every row, all pass, the watermark moves
    siteline(env, "dbt", "build")
    (tested_at,) = query(
        url,
        "select updated_at from intermediate.int_incremental_manifest where model_name = 'data_tests'",
    )[0]
    site_id, visitor_id, page_view_id = query(
        url, "select site_id, visitor_id, page_view_id from web.fct_page_views "
        "order by page_view_id limit 1",
    )[0]  # fmt: skip
    execute(url, "update web.fct_page_views set viewed_at = null where page_view_id = %s",
            (page_view_id,))  # fmt: skip
    try:
        # the device did not change since the passing run: its rows are not read again
        siteline(env, "dbt", "test", "--select", "fct_page_views")
        execute(
            url, "insert into intermediate.changed_devices (site_id, device_key) values (%s, %s)",
            (site_id, visitor_id),
        )  # fmt: skip
        output = siteline_fails(env, "dbt", "test", "--select", "fct_page_views")
        assert "not_null_fct_page_views_viewed_at" in output
        # neither selected run (a subset of the tests) moved the watermark
        assert query(
            url, "select updated_at from intermediate.int_incremental_manifest "
            "where model_name = 'data_tests'",
        )[0][0] == tested_at  # fmt: skip
    finally:
        siteline(env, "dbt", "run", "--select", "fct_page_views", "--full-refresh")


def test_staging_tests_read_the_loads_no_passing_run_has_tested(demo):
    """A staging view's opted-in tests read the raw loads not yet marked tested: a passing
    build marks every load it saw at its start (intermediate.loads_read), so a raw row broken
    behind the loaders' back is not read again until its load is unmarked."""
    env, url = demo["env"], demo["url"]
    siteline(env, "dbt", "build")
    loads = query(
        url, "select l.load_id, t.done from raw_collector._dlt_loads as l "
        "left join intermediate.loads_read as t on t.reader = 'data_tests' "
        "and t.raw_schema = 'raw_collector' and t.load_id = l.load_id where l.status = 0",
    )  # fmt: skip
    assert len(loads) > 1
    assert all(done for _, done in loads)
    event_id, event_type, load_id = query(
        url, "select event_id, type, _dlt_load_id from raw_collector.events "
        "order by event_id limit 1",
    )[0]  # fmt: skip
    mark = (
        "update intermediate.loads_read set done = %s where reader = 'data_tests' and load_id = %s"
    )
    execute(url, "update raw_collector.events set type = 'bogus' where event_id = %s", (event_id,))
    try:
        # its load passed before: not read again
        siteline(env, "dbt", "test", "--select", "stg_collector__events")
        execute(url, mark, (False, load_id))
        output = siteline_fails(env, "dbt", "test", "--select", "stg_collector__events")
        assert "accepted_values_stg_collector__events_event_type" in output
        # a subset of the tests marks nothing
        assert query(
            url, "select done from intermediate.loads_read "
            "where reader = 'data_tests' and load_id = %s", (load_id,),
        ) == [(False,)]  # fmt: skip
    finally:
        execute(url, "update raw_collector.events set type = %s where event_id = %s",
                (event_type, event_id))  # fmt: skip
        execute(url, mark, (True, load_id))


def test_sessionisation_reads_the_loads_it_has_not_recorded(demo):
    """int_events_sessionised records every load it read (intermediate.loads_read) and reads
    a load again only when its record is gone: its rows are rewritten, not doubled, and the
    rows re-read around them whose visits did not change are left as they are."""
    env, url = demo["env"], demo["url"]
    siteline(env, "dbt", "run", "--select", "int_events_sessionised")
    recorded = (
        "select count(*) from intermediate.loads_read where reader = 'int_events_sessionised'"
    )
    completed = (
        "select (select count(*) from raw_collector._dlt_loads where status = 0) "
        "+ (select count(*) from raw_logfiles._dlt_loads where status = 0)"
    )
    assert query(url, recorded) == query(url, completed)
    (load_id, rows) = query(
        url, "select _dlt_load_id, count(*) from raw_collector.events group by 1 order by 1 limit 1"
    )[0]  # fmt: skip
    before = query(
        url, "select count(*), max(sessionised_at) from intermediate.int_events_sessionised"
    )
    # nothing new: nothing rewritten
    siteline(env, "dbt", "run", "--select", "int_events_sessionised")
    assert (
        query(url, "select count(*), max(sessionised_at) from intermediate.int_events_sessionised")
        == before
    )
    # vacuumed, as autovacuum does after a build: the free space map lists every page's
    # leftover bytes, which the rewritten rows are not to be scattered into
    execute(url, "vacuum intermediate.int_events_sessionised")
    execute(url, "delete from intermediate.loads_read where reader = 'int_events_sessionised' "
            "and load_id = %s", (load_id,))  # fmt: skip
    siteline(env, "dbt", "run", "--select", "int_events_sessionised")
    rewritten = query(
        url, "select count(*) from intermediate.int_events_sessionised "
        "where load_id = %s and sessionised_at > %s", (load_id, before[0][1]),
    )[0][0]  # fmt: skip
    assert rewritten == rows
    # they went to new or emptied pages, not into the leftovers of pages the full build
    # packed: a few may share a page that had a tenth of it free
    scattered = query(
        url, "select coalesce(sum(rewritten), 0) from (select count(*) filter (where "
        "sessionised_at > %s) as rewritten, count(*) as total "
        "from intermediate.int_events_sessionised group by (ctid::text::point)[0]) as pages "
        "where rewritten between 1 and total - 1", (before[0][1],),
    )[0][0]  # fmt: skip
    assert scattered <= rewritten // 100  # 7 of 2,992; 43 without the fill factor
    # and no other row: the later rows of those devices, re-read from the restart, kept
    # their visits and are not written again (there are such rows: other loads' rows in
    # the same inactivity-delimited runs)
    assert query(
        url, "select count(*) from intermediate.int_events_sessionised as o "
        "where o.load_id <> %s and exists (select 1 from intermediate.int_events_sessionised "
        "as f where f.load_id = %s and f.site_id = o.site_id and f.device_key = o.device_key "
        "and f.gap_started_at = o.gap_started_at)", (load_id, load_id),
    )[0][0] > 0  # fmt: skip
    assert query(
        url, "select count(*) from intermediate.int_events_sessionised where sessionised_at > %s",
        (before[0][1],),
    ) == [(rows,)]  # fmt: skip
    assert (
        query(url, "select count(*) from intermediate.int_events_sessionised")[0][0] == before[0][0]
    )
    assert query(url, recorded) == query(url, completed)


def check_unique_test_trusts_the_index(
    demo: dict, test: str, table: str, key: str, scope: str, scope_key: str
) -> None:
    """The data test `test` of `table` (schema.name) is answered by a valid unique index on
    its key without reading the table; without the index it scans and finds a duplicate
    (a row copied, whose device or customer is logged as changed: the test's scope)."""
    env, url = demo["env"], demo["url"]
    name = table.split(".")[1]
    siteline(env, "dbt", "test", "--select", test)
    compiled = next(Path(env["SITELINE_HOME"], "dbt", "target", "compiled").rglob(f"{test}*.sql"))
    with connect(url) as conn:
        plan = conn.execute("explain (analyze, format json) " + compiled.read_text()).fetchone()[0]

    def scans(node: dict) -> list[dict]:
        found = [node] if node.get("Relation Name") == name else []
        return found + [s for child in node.get("Plans", []) for s in scans(child)]

    table_scans = scans(plan[0]["Plan"])
    assert table_scans and all(s["Actual Loops"] == 0 for s in table_scans)

    execute(url, f"alter table {table} drop constraint if exists {name}_pkey")
    for (index,) in query(
        url, "select indexrelid::regclass::text from pg_index where indisunique "
        "and indrelid = %s::regclass", (table,),
    ):  # fmt: skip
        execute(url, f"drop index {index}")
    with connect(url, autocommit=True) as conn:
        site_id, scoped = conn.execute(
            f"insert into {table} select * from {table} limit 1 returning site_id, {scope_key}"
        ).fetchone()
    execute(
        url, f"insert into intermediate.changed_{scope}s (site_id, {scope}_key) values (%s, %s)",
        (site_id, scoped),
    )  # fmt: skip
    try:
        output = siteline_fails(env, "dbt", "test", "--select", test)
        assert f"Failure in test {test}" in output
    finally:
        siteline(env, "dbt", "run", "--select", name, "--full-refresh")
    assert query(url, f"select count(*) - count(distinct {key}) from {table}") == [(0,)]


def test_unique_by_index_tests_trust_a_unique_index_and_scan_a_table_without_one(demo):
    """`unique_by_index` (macros/tests/unique_by_index.sql) is answered by a valid unique index
    on the column without reading the table; without the index it scans and finds a
    duplicate."""
    check_unique_test_trusts_the_index(
        demo, "unique_by_index_fct_page_views_page_view_id", "web.fct_page_views", "page_view_id",
        scope="device", scope_key="visitor_id",
    )  # fmt: skip


def test_unique_combination_by_index_tests_trust_a_unique_index_too(demo):
    """`unique_combination_by_index` is answered by a unique index on its columns as
    `unique_by_index` is; without the index it scans and finds a duplicate."""
    check_unique_test_trusts_the_index(
        demo, "unique_combination_by_index_customers_site_id__customer_key", "crm.customers",
        "customer_key", scope="customer", scope_key="customer_key",
    )  # fmt: skip


def copy_project(tmp_path: Path) -> Path:
    """A copy of the dbt project to edit as an analyst would (built with --project-dir)."""
    project = tmp_path / "dbt_project"
    shutil.copytree(
        Path(__file__).resolve().parents[2] / "dbt_project", project,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
    )  # fmt: skip
    return project


def test_a_new_unique_test_on_a_mart_column_reads_every_row(demo, tmp_path):
    """A `unique` test an analyst adds to a mart column is dbt's own: it reads every row and
    finds a duplicate planted in rows that no run changed since the last passing build,
    which the project's test of that column, opted in to the changed rows, does not read."""
    env, url = demo["env"], demo["url"]
    siteline(env, "dbt", "build")  # every test passes: the next opted-in tests start here
    project = copy_project(tmp_path)
    models_yml = project / "models" / "marts" / "web" / "_web__models.yml"
    models = yaml.safe_load(models_yml.read_text())
    (fct_events,) = [m for m in models["models"] if m["name"] == "fct_events"]
    (event_id,) = [c for c in fct_events["columns"] if c["name"] == "event_id"]
    event_id["data_tests"] = ["unique"]  # as an analyst writes it
    models_yml.write_text(yaml.safe_dump(models, sort_keys=False))
    with connect(url, autocommit=True) as conn:
        (planted,) = conn.execute(
            "insert into web.fct_events select * from web.fct_events "
            "order by event_id limit 1 returning ctid::text"
        ).fetchone()
    test = "unique_fct_events_event_id"
    try:
        # the project's test, opted in: it ran, and passed over the changed rows
        assert f" PASS {test} " in siteline(env, "dbt", "test", "--select", test)
        output = siteline_fails(
            env, "dbt", "test", "--select", test, "--project-dir", str(project),
            "--target-path", str(tmp_path / "target"),
        )  # fmt: skip
        assert f"Failure in test {test}" in output
        assert "Got 1 result, configured to fail if != 0" in output
    finally:
        execute(url, "delete from web.fct_events where ctid = %s::tid", (planted,))
    assert query(url, "select count(*) - count(distinct event_id) from web.fct_events") == [(0,)]


def test_a_test_reads_changed_rows_only_on_a_model_that_says_how_to_find_them(demo, tmp_path):
    """A test opting in to the changed rows of a model without `meta: tests_read` stops with
    an error naming the model and the fix, rather than reading all rows or none."""
    project = copy_project(tmp_path)
    models_yml = project / "models" / "marts" / "web" / "_web__models.yml"
    models = yaml.safe_load(models_yml.read_text())
    (fct_transactions,) = [m for m in models["models"] if m["name"] == "fct_transactions"]
    assert "meta" not in fct_transactions["config"]
    (order_id,) = [c for c in fct_transactions["columns"] if c["name"] == "order_id"]
    order_id["data_tests"] = [{"not_null": {"config": {"where": "__changed_rows__"}}}]
    models_yml.write_text(yaml.safe_dump(models, sort_keys=False))
    output = siteline_fails(
        demo["env"], "dbt", "test", "--select", "not_null_fct_transactions_order_id",
        "--project-dir", str(project), "--target-path", str(tmp_path / "target"),
    )  # fmt: skip
    assert (
        '"web"."fct_transactions": a data test of this model reads `where: __changed_rows__`, '
        "but the model does not say how its changed rows are found"
    ) in " ".join(output.split())


def test_views_are_replaced_only_when_their_definition_changes(demo, tmp_path):
    """A staging view (materialized `view_if_changed`) whose SQL and comments are the model's
    is left in place (same oid, 'UNCHANGED VIEW'); a new column description is written to it
    without replacing it; new SQL replaces it; and the project's own SQL replaces that again.
    A model that asks for dbt's `view` is replaced in every run, as dbt documents."""
    url, view = demo["url"], "staging.stg_collector__bad_events"
    project = copy_project(tmp_path)
    models_yml = project / "models" / "staging" / "collector" / "_collector__models.yml"
    model_sql = project / "models" / "staging" / "collector" / "stg_collector__bad_events.sql"
    sql = model_sql.read_text()

    def build(project_dir: Path | None = None) -> str:
        # a target (and partial parse) of each project's own
        target = tmp_path / ("target_copy" if project_dir else "target")
        args = ["--target-path", str(target)]
        if project_dir:
            args += ["--project-dir", str(project_dir)]
        siteline(demo["env"], "dbt", "run", "-s", "stg_collector__bad_events", *args)
        results = json.loads((target / "run_results.json").read_text())["results"]
        # (`siteline dbt` adds the run's scope models to a selection)
        (model,) = [r for r in results if r["unique_id"].endswith(".stg_collector__bad_events")]
        return model["adapter_response"]["_message"]

    def state() -> tuple[int, str, list[str]]:
        oid, comment = query(
            url, f"select '{view}'::regclass::oid, col_description('{view}'::regclass, 1)"
        )[0]
        columns = query(
            url, "select column_name from information_schema.columns where "
            "table_schema = 'staging' and table_name = 'stg_collector__bad_events' "
            "order by ordinal_position",
        )  # fmt: skip
        return oid, comment, [c for (c,) in columns]

    oid, comment, columns = state()
    assert comment == "Id of the rejected payload; unique."
    assert build() == "UNCHANGED VIEW"
    assert state() == (oid, comment, columns)

    models_yml.write_text(models_yml.read_text().replace(
        "Id of the rejected payload; unique.", "The rejected payload's id."
    ))  # fmt: skip
    assert build(project) == "UNCHANGED VIEW"
    assert state() == (oid, "The rejected payload's id.", columns)

    model_sql.write_text(model_sql.read_text().replace(
        "select * from renamed", "select *, 1 as probe from renamed"
    ))  # fmt: skip
    assert build(project) == "CREATE VIEW"
    new_oid, comment, new_columns = state()
    assert new_oid != oid and comment == "The rejected payload's id."
    assert new_columns == [*columns, "probe"]

    assert build() == "CREATE VIEW"
    assert state()[1:] == ("Id of the rejected payload; unique.", columns)
    assert build() == "UNCHANGED VIEW"

    model_sql.write_text("{{ config(materialized='view') }}\n" + sql)
    assert build(project) == "CREATE VIEW"
    replaced = state()[0]
    assert build(project) == "CREATE VIEW"  # the same SQL: dbt's view replaces it anyway
    assert state()[0] != replaced
    assert build() == "UNCHANGED VIEW"
    assert state()[1:] == ("Id of the rejected payload; unique.", columns)


def test_visits_across_local_midnight_split_when_the_site_asks(demo, tmp_path):
    """The demo site keeps a visit across midnight whole (the truth's visits, above); with
    split_at_midnight each tracker visit whose events span the site's local midnight is two
    visits, and no other visit changes. Back to the project's sites.yml afterwards."""
    project_sites = Path(__file__).resolve().parents[2] / "sites.yml"
    config = yaml.safe_load(project_sites.read_text())
    site = next(s for s in config["sites"] if s["id"] == "demo")
    assert site["sessions"]["split_at_midnight"] is False
    site["sessions"]["split_at_midnight"] = True
    sites = tmp_path / "sites.yml"
    sites.write_text(yaml.safe_dump(config, sort_keys=False))
    zone = ZoneInfo(site["timezone"])

    def local_day(value: str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(zone).date()

    truth = [
        s for s in read(demo["truth"], "sessions")
        if s["is_bot"] == "False" and s["tracked"] == "True"
    ]  # fmt: skip
    across = [s for s in truth if local_day(s["started_at"]) != local_day(s["ended_at"])]
    assert len(across) >= 3  # one a day at least, by the simulator's own
    tracker_visits = "select count(*) from web.fct_sessions where event_source = 'tracker'"
    assert query(demo["url"], tracker_visits) == [(len(truth),)]
    try:
        siteline({**demo["env"], "SITELINE_SITES_FILE": str(sites)}, "run")
        assert query(demo["url"], tracker_visits) == [(len(truth) + len(across),)]
        halves = query(
            demo["url"],
            "select client_session_id, count(*), count(distinct session_date) "
            "from web.fct_sessions where client_session_id = any(%s) group by 1",
            ([s["session_id"] for s in across],),
        )
        assert sorted(h[1:] for h in halves) == [(2, 2)] * len(across)
    finally:
        siteline(demo["env"], "run")
    assert query(demo["url"], tracker_visits) == [(len(truth),)]


def test_a_changed_channel_rule_regroups_every_visit_it_concerns(demo):
    """Seed channel_rules is configuration int_sessions reads (macros/scopes.sql): a changed
    rule rebuilds the visits' channels, not only those of devices with new events; the seed
    as shipped brings every channel back."""
    env, url = demo["env"], demo["url"]

    def searches_in(channel: str) -> int:
        """Visits from a search engine, without campaign parameters, in the channel."""
        return query(
            url, "select count(*) from web.fct_sessions where campaign_medium is null and "
            f"campaign_source is null and referrer_medium = 'search' and channel_id = '{channel}'",
        )[0][0]  # fmt: skip

    found = searches_in("organic_search")
    assert found > 0
    before = snapshot(url)
    execute(
        url,
        "update reference.channel_rules set channel_id = 'referral' "
        "where match_kind = 'referrer_medium' and match_value = 'search'",
    )
    try:
        siteline(env, "dbt", "run", "--select", "int_sessions+")
        assert (searches_in("referral"), searches_in("organic_search")) == (found, 0)
    finally:
        siteline(env, "dbt", "seed", "--select", "channel_rules")
        siteline(env, "dbt", "run", "--select", "int_sessions+")
    assert snapshot(url) == before


def plan(url: str) -> dict[str, tuple[bool, bool, str | None]]:
    """The run's plan (int_incremental_this_run): per model, whether the run selected it,
    whether it was built whole and why."""
    rows = query(
        url, "select model_name, is_selected, built_whole, whole_because "
        "from intermediate.int_incremental_this_run",
    )  # fmt: skip
    return {name: (selected, whole, why) for name, selected, whole, why in rows}


def built_whole_last(url: str, model: str) -> bool:
    """Whether the last run that built `model` built it whole (int_incremental_manifest)."""
    return query(
        url, "select full_at = updated_at from intermediate.int_incremental_manifest "
        "where model_name = %s", (model,),
    )[0][0]  # fmt: skip


def test_the_run_plan_says_which_models_are_built_whole_and_why(demo):
    """int_incremental_this_run says, for every incremental model, whether a run builds it
    whole and why; int_incremental_manifest keeps what each build was. `siteline dbt` adds
    the run's scope models to a selection (orchestration/dbt_paths.py)."""
    env, url = demo["env"], demo["url"]
    before = snapshot(url)
    # selected without the run's scope models: built whole (what changed is not known)
    siteline(env, "dbt", "run", "--select", "fct_page_views", "--exclude", "tag:incremental_scope")
    assert built_whole_last(url, "fct_page_views")
    # with them: only what changed; the models not selected are planned, not built
    siteline(env, "dbt", "run", "--select", "fct_page_views")
    assert not built_whole_last(url, "fct_page_views")
    planned = plan(url)
    assert len(planned) == 19  # web.agg_hourly_log_hits is the 19th
    assert planned["fct_page_views"] == (True, False, None)
    assert planned["int_sessions"] == (False, False, None)
    # an input built whole since a model's last run: the model is built whole, and so is every
    # model of the run that reads it
    siteline(env, "dbt", "run", "--select", "int_sessions", "--full-refresh")
    siteline(env, "dbt", "run", "--select", "fct_sessions")
    assert plan(url)["fct_sessions"] == (True, True, "int_sessions built whole since")
    siteline(env, "dbt", "run", "--select", "int_sessions+")
    planned = plan(url)
    assert planned["int_sessions"] == (True, False, None)
    assert planned["fct_page_views"] == (True, True, "int_sessions built whole since")
    assert planned["fct_sessions"] == (True, True, "fct_goal_conversions built whole this run")
    assert planned["int_customer_activity"] == (True, True, "fct_sessions built whole since")
    assert planned["customers"] == (True, True, "int_customer_activity built whole this run")
    # then by what changed again
    siteline(env, "dbt", "run", "--select", "int_sessions+")
    assert {whole for selected, whole, _ in plan(url).values() if selected} == {False}
    assert snapshot(url) == before


def test_editing_sites_yml_rebuilds_the_history_it_changes(demo, tmp_path):
    """Last in the module: it changes the configuration. A shorter inactivity timeout and a
    new goal, then an ordinary `siteline run`: the incremental models see that the rules
    they read changed and rebuild their history, so the marts equal a full refresh."""
    project_sites = Path(__file__).resolve().parents[2] / "sites.yml"
    config = yaml.safe_load(project_sites.read_text())
    site = next(s for s in config["sites"] if s["id"] == "demo")
    site["sessions"]["inactivity_timeout_minutes"] = 10
    site["goals"].append({"id": "read_blog", "name": "Read the blog", "type": "page",
                          "path": "^/blog/"})  # fmt: skip
    sites = tmp_path / "sites.yml"
    sites.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**demo["env"], "SITELINE_SITES_FILE": str(sites)}
    url = demo["url"]
    visits_before = query(url, "select count(*) from web.fct_sessions")[0][0]

    siteline(env, "run")
    incremental = snapshot(url)
    # every incremental model reads the sites' configuration
    assert {why for _, _, why in plan(url).values()} == {"configuration changed"}
    visits_after = query(url, "select count(*) from web.fct_sessions")[0][0]
    blog_visits = query(
        url, "select count(distinct session_id) from web.fct_page_views where page_path ~ '^/blog/'"
    )[0][0]
    conversions = query(
        url, "select count(*) from web.fct_goal_conversions where goal_id = 'read_blog'"
    )[0][0]
    siteline(env, "dbt", "run", "--full-refresh")

    assert snapshot(url) == incremental
    assert visits_after > visits_before  # 10-minute pauses now end visits
    assert conversions == blog_visits > 0
