"""tracker.js in headless Chromium: browse, click, buy, log in; the events reach the warehouse."""

import time
from pathlib import Path

import pytest

from ingestion.collector_events import collector_events
from ingestion.core.warehouse import connect
from tests.integration.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.servers import collector, isolated_pipeline

pytestmark = pytest.mark.integration

PAGE = (Path(__file__).parent / "fixtures" / "shop.html").read_text()


def test_a_browser_session_arrives_in_the_warehouse(shop, tmp_path, warehouse):
    from playwright.sync_api import sync_playwright

    origin, docroot, sites = shop
    landing = tmp_path / "landing"
    with collector(landing, sites_file=sites, SITELINE_RATE_LIMIT="0") as (url, _):
        (docroot / "index.html").write_text(PAGE.replace("{collector}", url))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(locale="de-DE", timezone_id="Europe/Berlin")
            page.goto(f"{origin}/index.html", wait_until="load")
            page.wait_for_function("window.siteline && window.siteline.loaded === true")
            page.mouse.move(10, 10)
            page.click("#product")
            page.mouse.move(20, 20)
            time.sleep(1.5)  # a heartbeat while engaged
            page.click("#add")
            page.click("#login")
            page.click("#buy")
            visitor = page.evaluate("localStorage.getItem('sl_vid')")
            page.goto(f"{origin}/index.html", wait_until="load")  # a new document load
            assert page.evaluate("localStorage.getItem('sl_vid')") == visitor
            page.goto("about:blank")  # pagehide: the last batch goes by sendBeacon
            browser.close()
        time.sleep(2.5)  # let the collector close its segments

    pipeline = isolated_pipeline("test_browser", "test_browser_collector", warehouse, tmp_path)
    pipeline.run(collector_events(landing_dir=str(landing)))
    with connect(warehouse) as conn:
        rows = conn.execute(
            "select type, visitor_id, session_id, user_id, url, referrer, title, attributes, "
            "is_bot, bot_reason, browser, page_path from test_browser_collector.events "
            "order by occurred_at"
        ).fetchall()
        # The quarantine table always exists; it is empty: nothing the browser sent was rejected.
        bad = conn.execute("select count(*) from test_browser_collector.bad_events").fetchone()[0]
    assert bad == 0
    by_type: dict[str, list] = {}
    for row in rows:
        by_type.setdefault(row[0], []).append(row)
    assert {r[1] for r in rows} == {visitor}
    assert len({r[2] for r in rows}) == 1  # one session

    views = by_type["page_view"]
    assert [v[4] for v in views[:2]] == [f"{origin}/index.html", f"{origin}/p/jacket"]
    first, spa = views[0], views[1]
    assert first[7]["performance"]["ttfb_ms"] >= 0 and "load_ms" in first[7]["performance"]
    assert first[7]["language"] == "de-DE" and first[7]["timezone"] == "Europe/Berlin"
    assert "x" in first[7]["screen"] and "x" in first[7]["viewport"]
    assert spa[5] == f"{origin}/index.html" and spa[6] == "Jacket"
    assert (
        "performance" not in spa[7] or spa[7]["performance"] is None
    )  # SPA views: no load timings
    assert len(views) == 3  # index, SPA navigation, index again (sent by beacon on pagehide)
    assert views[2][7]["performance"]["load_ms"] > 0

    (add,) = by_type["event"]
    assert add[7]["category"] == "ecommerce" and add[7]["action"] == "add_to_cart"
    assert add[7]["value"] == 49.9 and add[7]["properties"] == {"quantity": 1}
    (identify,) = by_type["identify"]
    assert identify[3] == "cust-42" and identify[7]["traits"] == {"plan": "gold"}
    (transaction,) = by_type["transaction"]
    assert transaction[3] == "cust-42"  # events after login carry the user id
    assert transaction[7]["order_id"] == "ORD-1" and transaction[7]["revenue"] == 54.8
    assert transaction[7]["items"][0]["sku"] == "SKU-1"
    assert by_type["page_ping"] and all(p[7]["engaged_seconds"] == 1 for p in by_type["page_ping"])
    # Headless Chromium says so in its user agent: flagged as a bot, kept, not dropped.
    # Headless Chromium is a bot by its user agent: flagged at collection, typed at load,
    # with the browser parsed from the user agent and the URL split once.
    assert all(r[8] is True and "HeadlessChrome" in r[9] for r in rows)
    assert {r[10] for r in rows} == {"HeadlessChrome"}
    assert [v[11] for v in views[:2]] == ["/index.html", "/p/jacket"]
