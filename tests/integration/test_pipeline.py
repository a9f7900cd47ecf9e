"""The first slice end to end: demo traffic -> dlt -> raw_collector.events -> dbt -> web.*."""

import csv
import json
import os
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from ingestion.core.warehouse import connect
from ingestion.demo_traffic.simulator import SimulationConfig
from ingestion.demo_traffic.writer import write_simulation

pytestmark = pytest.mark.integration

EXPECTED_ASSETS = {
    "raw_collector/events",
    "config/sites",
    "config/goals",
    "staging/stg_collector__events",
    "intermediate/int_events_sessionised",
    "web/fct_page_views",
    "web/fct_sessions",
    "web/agg_daily_site_kpis",
    "crm/customers",
    "crm/customer_attributes",
}


@pytest.fixture(scope="module")
def traffic(warehouse):
    out = Path(os.environ["SITELINE_HOME"]) / "sim"
    cfg = SimulationConfig(days=2, visits_per_day=120, seed=3)
    summary = write_simulation(cfg, out, progress=False, segment_events=1500,
                               landing_root=Path(os.environ["SITELINE_LANDING_DIR"]))  # fmt: skip
    with open(out / "truth" / "sessions.csv") as fh:
        sessions = list(csv.DictReader(fh))
    return summary["stats"], sessions


def counts(url):
    with connect(url) as conn:
        raw, distinct = conn.execute(
            "select count(*), count(distinct event_id) from raw_collector.events"
        ).fetchone()
        page_views = conn.execute(
            "select count(*) from web.fct_page_views where event_source = 'tracker'"
        ).fetchone()[0]
        sites = conn.execute("select site_id from config.sites").fetchall()
    return raw, distinct, page_views, sites


def test_definitions_form_one_connected_graph(warehouse):
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys >= EXPECTED_ASSETS

    def parents(key: str) -> set[str]:
        node = graph.get(dg.AssetKey.from_user_string(key))
        return {p.to_user_string() for p in node.parent_keys}

    assert parents("staging/stg_collector__events") == {"raw_collector/events"}
    assert parents("intermediate/int_events_unified") >= {
        "staging/stg_collector__events", "staging/stg_logfiles__hits", "reference/referrer_hosts",
    }  # fmt: skip
    # its data, the visitors a run rebuilds and the run's plan, which reads every
    # configuration whose change rebuilds it (models/intermediate/incremental/)
    assert parents("web/fct_page_views") == {
        "intermediate/int_events_sessionised", "intermediate/int_sessions",
        "intermediate/int_identity_map", "intermediate/int_visitors_changed_this_run",
        "intermediate/int_incremental_this_run", "staging/stg_config__sites",
    }  # fmt: skip
    assert parents("intermediate/int_visitors_changed_this_run") == {
        "intermediate/int_events_sessionised", "intermediate/int_orders",
        "intermediate/int_incremental_this_run",
    }  # fmt: skip
    assert parents("intermediate/int_incremental_this_run") == {
        "intermediate/int_incremental_manifest", "staging/stg_config__sites",
        "staging/stg_config__goals", "staging/stg_config__funnel_steps",
        "staging/stg_config__page_labels", "staging/stg_config__campaign_parameters",
        "reference/referrer_hosts", "reference/channel_rules",
    }  # fmt: skip
    assert "intermediate/int_days_changed_this_run" in parents("web/agg_daily_site_kpis")
    assert "intermediate/int_customers_changed_this_run" in parents("crm/customers")
    checks = {c.to_user_string() for c in graph.asset_check_keys}
    assert "web/fct_page_views:unique_by_index_fct_page_views_page_view_id" in checks
    # The alerts marts read the evaluator's tables (dbt sources, keys alerts/<table>); the
    # sensor's job builds every dbt model, those marts included, and none of those tables.
    assert parents("staging/stg_alerts__evaluations") == {"alerts/evaluations"}
    job = defs.resolve_job_def("load_collector_events")
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {"alerts/fct_alert_evaluations", "staging/stg_alerts__evaluations",
            "web/fct_sessions", "reference/channel_rules"} <= selected  # fmt: skip
    assert not {"alerts/evaluation", "alerts/evaluations", "alerts/notifications"} & selected


def test_run_loads_models_and_a_rerun_adds_nothing(warehouse, traffic):
    from orchestration.cli import run_pipeline

    stats, sessions = traffic
    assert run_pipeline() is True
    raw, distinct, page_views, sites = counts(warehouse)
    # Retried deliveries collapse: one row per event id, as many as the simulator created.
    assert raw == distinct == stats["events"]
    assert (
        stats["duplicates"] > 0
        and stats["landing_records"] == stats["events"] + stats["duplicates"]
    )
    # The tracker's page views, bots left out.
    assert page_views == sum(
        int(s["page_views"]) for s in sessions if s["tracked"] == "True" and s["is_bot"] == "False"
    )
    assert sites == [("demo",)]

    assert run_pipeline() is True
    assert counts(warehouse) == (raw, distinct, page_views, sites)

    with dg.DagsterInstance.get() as instance:  # the runs are recorded where the UI reads them
        for key in EXPECTED_ASSETS:
            event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
            assert event is not None, key
        assert len(instance.get_runs()) >= 2


def test_the_doctor_counts_the_rows_of_the_tables_that_exist(warehouse, traffic):
    from orchestration.doctor import Check, check_tables, table_rows

    with connect(warehouse) as conn:
        page_views = conn.execute("select count(*) from web.fct_page_views").fetchone()[0]
    assert page_views > 0
    rows = table_rows(("web.fct_page_views", "web.no_such_table"), warehouse)
    assert rows == {"web.fct_page_views": page_views, "web.no_such_table": None}
    assert check_tables(("web.fct_page_views", "web.no_such_table")) == [
        Check("web.fct_page_views", True, f"{page_views:,} rows"),
        Check("web.no_such_table", False, "missing — run `siteline run` (or `siteline demo`)"),
    ]


def test_mart_columns_carry_their_descriptions(warehouse, traffic):
    with connect(warehouse) as conn:
        comment = conn.execute(
            "select col_description('web.fct_page_views'::regclass, ordinal_position) "
            "from information_schema.columns where table_schema = 'web' "
            "and table_name = 'fct_page_views' and column_name = 'viewed_at'"
        ).fetchone()[0]
    assert comment == "When the page was viewed (UTC, device clock corrected)."


def test_every_mart_column_is_in_the_data_dictionary(warehouse, traffic):
    # Postgres comments are what BI tools show; every web and crm column must have one.
    with connect(warehouse) as conn:
        columns = conn.execute(
            "select table_schema || '.' || table_name || '.' || column_name, "
            "col_description((table_schema || '.' || table_name)::regclass, ordinal_position) "
            "from information_schema.columns where table_schema in ('web', 'crm')"
        ).fetchall()
    tables = {c.rsplit(".", 1)[0] for c, _ in columns}
    assert {"web.fct_sessions", "web.fct_transactions", "crm.customers"} <= tables
    assert len(tables) == 20
    assert [c for c, comment in columns if not comment] == []


def test_bi_reader_reads_the_marts_and_nothing_else(warehouse, traffic):
    import psycopg

    from ingestion.core.warehouse import bi_reader_url

    with psycopg.connect(bi_reader_url(warehouse), autocommit=True) as conn:
        assert conn.execute("select count(*) from web.fct_sessions").fetchone()[0] > 0
        assert conn.execute("select count(*) from crm.customers").fetchone()[0] > 0
        for table in ("raw_collector.events", "staging.stg_collector__events",
                      "intermediate.int_sessions", "config.sites"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select 1 from {table} limit 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("create table web.mine (x int)")


def test_the_real_time_engine_sessionises_exactly_as_the_warehouse(warehouse, traffic):
    """Every landed tracker event, replayed through the engine in time order, lands in the
    visit the warehouse put it in (same session id), and each visit gets the same channel."""

    from ingestion.core.landing import SEGMENTS, iter_segment, landed_records, read_manifest
    from ingestion.core.sites import load_sites
    from realtime.engine.engine import Engine
    from realtime.engine.rules import corrected_time

    landing = Path(os.environ["SITELINE_LANDING_DIR"]) / "events"
    records = {}
    for segment in read_manifest(landing):
        for _, line in iter_segment(landing / SEGMENTS / segment.name):
            for record in landed_records(line):
                records.setdefault(record["event_id"], record)  # retried deliveries count once
    engine = Engine(load_sites())
    ordered = sorted(records.values(), key=lambda r: (corrected_time(r)[0], r["event_id"]))
    assigned, channels = {}, {}
    for record in ordered:
        late_before = engine.counters["late"]
        engine.handle([record])
        if engine.counters["late"] == late_before:
            state = engine.store.get(record["site_id"], record["visitor_id"])
            assigned[record["event_id"]] = state.session_id
            channels[state.session_id] = state.channel
    with connect(warehouse) as conn:
        expected = dict(conn.execute(
            "select event_id, session_id from intermediate.int_events_sessionised "
            "where event_source = 'tracker' and session_id is not null"
        ).fetchall())  # fmt: skip
        warehouse_channels = dict(conn.execute(
            "select session_id, channel_id from intermediate.int_sessions "
            "where event_source = 'tracker'"
        ).fetchall())  # fmt: skip
    assert engine.counters["errors"] == 0 and engine.counters["out_of_order"] == 0
    assert len(assigned) == len(expected) > 1000
    assert assigned == expected
    assert channels == warehouse_channels


def test_the_real_time_engine_serves_customer_state_and_survives_a_warehouse_outage(
    warehouse, traffic, tmp_path
):
    """A returning customer's anonymous visit shows the CRM datamart's lifetime value and the
    back-office attributes; the demo site's rule fires on a big cart; with the warehouse cut
    off the engine keeps answering, marking the customer state stale."""
    import time
    import uuid
    from datetime import UTC, datetime
    from urllib.parse import urlsplit

    import httpx
    import psycopg

    from ingestion.core.home import PROJECT_ROOT
    from ingestion.core.warehouse import bi_reader_url
    from tests.integration.servers import TcpProxy, collector, free_port

    with connect(warehouse) as conn:
        customer_key, visitor_id, revenue, transactions, segment = conn.execute(
            "select c.customer_key, v.visitor_id, c.revenue, c.transactions, c.rfm_segment "
            "from crm.customers as c join web.dim_visitors as v "
            "on v.site_id = c.site_id and v.customer_key = c.customer_key "
            "where c.site_id = 'demo' and c.is_identified and c.transactions > 0 "
            "order by c.revenue desc, v.visitor_id limit 1"
        ).fetchone()
        # A back-office system writes its recommendations for this customer.
        conn.execute(
            "insert into crm.customer_attributes values ('demo', %s, 'recommendations', "
            "%s::jsonb, 'recommender', now())",
            (customer_key, '["SKU-7", "SKU-9"]'),
        )
        conn.commit()
    parts = urlsplit(warehouse)
    proxy = TcpProxy(parts.hostname, parts.port)
    engine_url = bi_reader_url(warehouse).replace(f":{parts.port}/", f":{proxy.port}/")
    key = "demo-key-" + uuid.uuid4().hex
    auth = {"Authorization": f"Bearer {key}"}
    chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"

    def send(*events):
        stamped = [{"event_id": str(uuid.uuid4()), "occurred_at": datetime.now(UTC).isoformat(),
                    "visitor_id": visitor_id, **e} for e in events]  # fmt: skip
        # (an event may name another visitor_id: a second browser)
        response = httpx.post(f"{url}/collect", json={"site_id": "demo", "events": stamped},
                              headers={"User-Agent": chrome})  # fmt: skip
        assert response.status_code == 200, response.text

    def state_of(visitor):
        return httpx.get(f"{url}/v1/visitors/{visitor}/state", headers=auth, timeout=10)

    # The project's demo site, with this collector's origin allowed for its demo page.
    port = free_port()
    project_sites = (PROJECT_ROOT / "sites.yml").read_text()
    sites = tmp_path / "sites.yml"
    sites.write_text(project_sites.replace(
        "      - http://127.0.0.1:8000\n", f"      - http://127.0.0.1:8000\n      - http://127.0.0.1:{port}\n"
    ))  # fmt: skip
    with collector(tmp_path / "landing", sites_file=sites, port=port, SITELINE_DEMO_API_KEY=key,
                   SITELINE_RATE_LIMIT="0", SITELINE_ENGINE_WAREHOUSE_URL=engine_url,
                   SITELINE_CUSTOMER_TTL="1", SITELINE_DEMO_PAGE="1") as (url, _):  # fmt: skip
        send({"type": "page_view", "url": "https://shop.siteline.test/p/x"},
             {"type": "event", "category": "ecommerce", "action": "add_to_cart",
              "label": "SKU-1", "value": 150.0, "url": "https://shop.siteline.test/p/x"})  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            state = state_of(visitor_id).json()
            if state["session"]["rules"]:
                break
            time.sleep(0.2)
        customer = state["customer"]
        assert customer["status"] == "ok" and customer["known"] is True
        assert customer["customer_key"] == customer_key and customer["stale"] is False
        assert customer["revenue"] == float(revenue) and customer["transactions"] == transactions
        assert customer["rfm_segment"] == segment
        assert customer["attributes"] == {"recommendations": ["SKU-7", "SKU-9"]}
        session = state["session"]
        assert session["customer_key"] == customer_key  # known before logging in
        assert [r["id"] for r in session["rules"]] == ["returning_big_cart"]
        assert session["rules"][0]["then"]["offer"] == "free_shipping"

        # A new browser logs in as the customer: the visit turns into theirs.
        other_device = "new-device-" + uuid.uuid4().hex
        send({"type": "page_view", "url": "https://shop.siteline.test/login",
              "visitor_id": other_device},
             {"type": "identify", "user_id": customer_key, "url": "https://shop.siteline.test/login",
              "visitor_id": other_device})  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            login = state_of(other_device).json()
            if login["customer"].get("customer_key") == customer_key:
                break
            time.sleep(0.2)
        assert login["session"]["user_id"] == customer_key
        assert login["customer_key"] == customer_key
        assert login["customer"]["revenue"] == float(revenue)
        assert login["customer"]["is_identified"] is True

        # The demo shop page, as a user tries it: log in as the customer in Chromium and see
        # the lifetime value in the live panel; a big cart brings the demo site's offer.
        from playwright.sync_api import sync_playwright

        from tests.integration.conftest import CHROMIUM, CHROMIUM_ARGS

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(user_agent=chrome)
            page.goto(f"{url}/demo/", wait_until="load")
            assert customer_key in page.inner_text("#customer")  # the top customers to pick
            page.select_option("#customer", customer_key)
            page.click("#login")
            page.wait_for_function(
                "document.querySelector('[data-field=\"lifetime revenue\"]')?.textContent"
                f" === '€{float(revenue):.2f}'",
                timeout=15_000,
            )
            for button in page.query_selector_all(".add")[:6]:
                button.click()
            page.wait_for_selector(".offer", timeout=15_000)
            assert "Free shipping" in page.inner_text("#offers")
            browser.close()

        proxy.close()  # the warehouse is unreachable from now on
        time.sleep(1.5)  # the cached customer state is older than its TTL
        send({"type": "page_view", "url": "https://shop.siteline.test/cart"})
        during = state_of(visitor_id)
        assert during.status_code == 200
        stale = during.json()
        assert stale["customer"]["stale"] is True
        assert stale["customer"]["revenue"] == float(revenue)
        assert stale["session"]["page_views"] == 2
        stranger = state_of("never-seen-" + uuid.uuid4().hex)
        assert stranger.status_code == 200
        assert stranger.json()["customer"] == {
            "status": "unavailable", "reason": "warehouse unreachable",
        }  # fmt: skip
        health = httpx.get(f"{url}/health").json()["engine"]
    assert health["customers"]["failures"] >= 1 and health["errors"] == 0
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute("delete from crm.customer_attributes where written_by = 'recommender'")


def test_docs_site_is_generated_with_the_column_descriptions(warehouse, traffic):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from orchestration.defs.models.project import cli_target_dir

    exe = Path(sys.executable).with_name("siteline")
    result = subprocess.run([str(exe), "docs", "--generate-only"], capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    target = cli_target_dir()
    assert str(target / "index.html") in result.stdout
    assert (target / "index.html").exists()
    catalog = json.loads((target / "catalog.json").read_text())
    sessions = catalog["nodes"]["model.siteline.fct_sessions"]["columns"]
    assert sessions["channel_id"]["comment"].startswith("Channel of the visit")


def _a_new_load(conn) -> str:
    """A load id after every other, recorded as dlt records a finished load: rows inserted
    by hand under it are what the next incremental run reads."""
    (load_id,) = conn.execute("select max(load_id) from raw_collector._dlt_loads").fetchone()
    new_load = load_id + "1"
    conn.execute(
        "insert into raw_collector._dlt_loads select %s, schema_name, status, inserted_at, "
        "schema_version_hash from raw_collector._dlt_loads where load_id = %s",
        (new_load, load_id),
    )
    return new_load


def _copy_a_human_page_view(conn, table: str) -> None:
    """A temporary ``table`` holding one loaded page view of a human visitor, to change."""
    conn.execute(
        f"create temporary table {table} as select * from raw_collector.events "
        "where type = 'page_view' and not is_bot order by event_id limit 1"
    )


def test_a_device_clock_out_of_any_range_is_placed_at_its_arrival(warehouse, traffic):
    """sent_at 9999-12-31 with occurred_at 0001-01-01 (what a loaded row can hold): the
    models build, and the event is placed when the collector received it."""
    from orchestration.cli import run_pipeline

    assert run_pipeline() is True
    event_id = "6f1b8a52-0d5e-4c59-9a51-1f4b2f0c9e01"
    with connect(warehouse, autocommit=True) as conn:
        new_load = _a_new_load(conn)
        # a page view of a human visitor, two hours after its original arrived
        _copy_a_human_page_view(conn, "extreme")
        conn.execute(
            "update extreme set event_id = %s, _dlt_load_id = %s, _dlt_id = %s, "
            "occurred_at = '0001-01-01 00:00:00+00', sent_at = '9999-12-31 23:59:59+00', "
            "received_at = received_at + interval '2 hours'",
            (event_id, new_load, event_id[:14]),
        )
        conn.execute("insert into raw_collector.events select * from extreme")
        (received_at,) = conn.execute("select received_at from extreme").fetchone()
    try:
        assert run_pipeline() is True
        with connect(warehouse) as conn:
            placed = conn.execute(
                "select occurred_at, session_started_at, is_late "
                "from intermediate.int_events_sessionised where event_id = %s",
                (event_id,),
            ).fetchall()
            viewed = conn.execute(
                "select viewed_at from web.fct_page_views where page_view_id = %s", (event_id,)
            ).fetchall()
        assert placed == [(received_at, received_at, False)]
        assert viewed == [(received_at,)]
    finally:
        with connect(warehouse, autocommit=True) as conn:
            conn.execute("delete from raw_collector.events where event_id = %s", (event_id,))


def test_client_numbers_no_column_can_hold_are_null_and_the_models_build(warehouse, traffic):
    """Numbers a client sent that no column can hold (loaded before the collector bounded
    them, or by another path): a revenue of 1e13, a string or huge timing, a fractional or
    huge quantity, items that are no list. The models build; such values are NULL, a
    fractional timing is rounded to the millisecond, an amount to the cent."""
    from orchestration.cli import run_pipeline

    assert run_pipeline() is True
    view_id = "7a2c9b63-1e6f-4d5a-8b62-2a5c3a1d0f02"
    order_ids = ["8b3d0c74-2f70-4e6b-9c73-3b6d4b2e1a03", "9c4e1d85-3a81-4f7c-8d84-4c7e5c3f2b04"]
    performance = {"dns_ms": "x", "connect_ms": 1.5, "ttfb_ms": 1e20, "load_ms": -5,
                   "dom_interactive_ms": 120.4}  # fmt: skip
    items = [
        {"sku": "a", "price": 1e13, "quantity": 3},
        {"sku": "b", "price": 2.5, "quantity": 1.5},
        {"sku": "c", "price": "x", "quantity": 3e9},
        {"sku": "d", "price": 9e11, "quantity": 2},
        {"sku": "e", "price": 10},
    ]
    order = {"order_id": "robust-1", "revenue": 1e13, "shipping": "x", "tax": 1.005,
             "value": "huge", "items": items}  # fmt: skip
    # 1e400 has no float: written into the JSON text as it would arrive
    order_json = json.dumps(order).replace('"huge"', "1e400")
    not_a_list = {"order_id": "robust-2", "revenue": 12.5, "items": {"sku": "f"}}
    rows = [
        (view_id, "page_view", json.dumps({"performance": performance})),
        (order_ids[0], "transaction", order_json),
        (order_ids[1], "transaction", json.dumps(not_a_list)),
    ]
    with connect(warehouse, autocommit=True) as conn:
        new_load = _a_new_load(conn)
        # a page view of a human visitor, then two orders, a second apart, in its visit
        _copy_a_human_page_view(conn, "odd")
        for event_id, kind, attributes in rows:
            conn.execute(
                "update odd set event_id = %s, type = %s, attributes = %s::jsonb, "
                "_dlt_load_id = %s, _dlt_id = %s, occurred_at = occurred_at + interval '1 s', "
                "sent_at = sent_at + interval '1 s', received_at = received_at + interval '1 s'",
                (event_id, kind, attributes, new_load, event_id[:14]),
            )
            conn.execute("insert into raw_collector.events select * from odd")
    try:
        assert run_pipeline() is True
        with connect(warehouse) as conn:
            timings = conn.execute(
                "select dns_ms, connect_ms, ttfb_ms, dom_interactive_ms, page_load_ms "
                "from web.fct_page_views where page_view_id = %s",
                (view_id,),
            ).fetchall()
            values = conn.execute(
                "select event_value from staging.stg_collector__events where event_id = %s",
                (order_ids[0],),
            ).fetchall()
            orders = conn.execute(
                "select order_id, revenue, shipping, tax, item_lines, quantity "
                "from web.fct_transactions where order_id like 'robust-%%' order by order_id"
            ).fetchall()
            lines = conn.execute(
                "select sku, price, quantity, line_revenue from web.fct_transaction_items "
                "where order_id like 'robust-%%' order by order_id, line_number"
            ).fetchall()
            sessions = conn.execute(
                "select s.revenue, (select sum(t.revenue) from web.fct_transactions as t "
                "where t.session_id = s.session_id) from web.fct_sessions as s "
                "where s.session_id in (select session_id from web.fct_transactions "
                "where order_id like 'robust-%%')"
            ).fetchall()
        assert timings == [(None, 2, None, 120, None)]
        assert values == [(None,)]
        assert orders == [
            ("robust-1", None, None, Decimal("1.01"), 5, 6),  # 3 + 2 + 1 whole quantities
            ("robust-2", Decimal("12.50"), None, None, 0, 0),
        ]
        assert lines == [
            ("a", None, 3, None),
            ("b", Decimal("2.50"), None, None),
            ("c", None, None, None),
            ("d", Decimal("900000000000.00"), 2, None),  # 1.8e12 fits no amount
            ("e", Decimal("10.00"), 1, Decimal("10.00")),
        ]
        # the session's revenue: its orders that have one (12.50 with any others)
        assert len(sessions) == 1 and sessions[0][0] == sessions[0][1] >= Decimal("12.50")
    finally:
        with connect(warehouse, autocommit=True) as conn:
            conn.execute(
                "delete from raw_collector.events where event_id = any(%s)",
                ([view_id, *order_ids],),
            )


def test_unknown_asset_selection_names_the_known_ones(warehouse):
    from ingestion.core.errors import SitelineError
    from orchestration.cli import run_pipeline

    with pytest.raises(
        SitelineError,
        match="unknown asset web/nope; known assets: alerts/dim_alert_instances, alerts/evaluation,",
    ):
        run_pipeline(["web/nope"])


def test_demo_traffic_is_replaced_not_doubled_when_its_settings_change(warehouse, traffic):
    from ingestion.demo_traffic import prepare_demo_traffic
    from orchestration.cli import run_pipeline

    first = prepare_demo_traffic(
        SimulationConfig(days=1, visits_per_day=60, seed=11), warehouse, progress=False
    )
    assert run_pipeline(["raw_collector/events"]) is True
    with connect(warehouse) as conn:
        before = conn.execute("select count(*) from raw_collector.events").fetchone()[0]
    again = prepare_demo_traffic(
        SimulationConfig(days=1, visits_per_day=60, seed=11), warehouse, progress=False
    )
    assert again["reused"] is True
    second = prepare_demo_traffic(
        SimulationConfig(days=1, visits_per_day=80, seed=12), warehouse, progress=False
    )
    assert second["replaced_segments"]  # the first demo's segments
    assert run_pipeline(["raw_collector/events"]) is True
    with connect(warehouse) as conn:
        after = conn.execute("select count(*) from raw_collector.events").fetchone()[0]
    # Every earlier simulator segment (this module's traffic, then the first demo) was
    # replaced: only the latest demo traffic is in the raw table, once.
    assert before == first["stats"]["events"]
    assert after == second["stats"]["events"]
