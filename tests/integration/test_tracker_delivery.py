"""tracker.js delivery and privacy in headless Chromium: retries while the collector is down,
no retry of a 4xx, Do-Not-Track, consent."""

import json
import time
from pathlib import Path

import httpx
import orjson
import pytest

from ingestion.core.landing import SEGMENTS, landed_records
from realtime.collector.routes.pages import minified_tracker
from tests.integration.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.servers import collector, free_port, start_collector, stop

pytestmark = pytest.mark.integration
PLAIN = (Path(__file__).parent / "fixtures" / "plain.html").read_text()


def landed(landing: Path, stream: str = "events") -> list[dict]:
    read = landed_records if stream == "events" else lambda line: [orjson.loads(line)]
    return [
        record
        for path in sorted((landing / stream / SEGMENTS).glob("*.jsonl*"))
        for line in path.read_bytes().splitlines()
        for record in read(line)
    ]


def requests_seen(base: str) -> int:
    return httpx.get(f"{base}/health").json()["counters"]["requests"]


def serve_page(docroot: Path, name: str, options: dict) -> None:
    """The page and a self-hosted copy of the tracker on the shop's own origin."""
    (docroot / "t.js").write_bytes(minified_tracker())
    (docroot / name).write_text(PLAIN.replace("{options}", json.dumps(options)))


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_events_wait_in_the_queue_and_arrive_when_the_collector_is_back(shop, browser, tmp_path):
    origin, docroot, sites = shop
    port = free_port()
    serve_page(docroot, "retry.html", {"siteId": "demo", "endpoint": f"http://127.0.0.1:{port}/collect",
                                       "heartbeatSeconds": 0, "flushMs": 100})  # fmt: skip
    page = browser.new_page()
    page.goto(f"{origin}/retry.html", wait_until="load")
    page.wait_for_function("localStorage.getItem('sl_q') !== null")  # the collector is down
    queued = json.loads(page.evaluate("localStorage.getItem('sl_q')"))
    assert [e["type"] for e in queued] == ["page_view"]
    env = {
        **__import__("os").environ,
        "SITELINE_LANDING_DIR": str(tmp_path / "landing"),
        "SITELINE_SITES_FILE": str(sites),
        "SITELINE_RATE_LIMIT": "0",
        "SITELINE_COLLECTOR_ID": "retrytest",
    }
    proc = start_collector(port, env)
    try:
        page.wait_for_function("localStorage.getItem('sl_q') === null", timeout=20_000)
    finally:
        stop(proc)
    events = landed(tmp_path / "landing")
    assert [e["event_id"] for e in events] == [queued[0]["event_id"]]  # delivered once


def test_a_4xx_is_not_retried_and_is_quarantined(shop, browser, tmp_path):
    origin, docroot, sites = shop
    with collector(tmp_path / "landing", sites_file=sites, SITELINE_RATE_LIMIT="0") as (base, _):
        serve_page(docroot, "bad.html", {"siteId": "no_such_site", "endpoint": f"{base}/collect",
                                         "heartbeatSeconds": 0, "flushMs": 100})  # fmt: skip
        page = browser.new_page()
        page.goto(f"{origin}/bad.html", wait_until="load")
        page.wait_for_function("localStorage.getItem('sl_q') === null", timeout=10_000)
        seen = requests_seen(base)
        time.sleep(4)  # longer than the first two backoff steps
        assert requests_seen(base) == seen == 1
    (bad,) = landed(tmp_path / "landing", "bad_events")
    assert bad["status"] == 400 and bad["reason"] == "site_id: unknown site 'no_such_site'"


def test_do_not_track_sends_nothing(shop, browser, tmp_path):
    origin, docroot, sites = shop
    with collector(tmp_path / "landing", sites_file=sites, SITELINE_RATE_LIMIT="0") as (base, _):
        serve_page(
            docroot, "dnt.html", {"siteId": "demo", "endpoint": f"{base}/collect", "flushMs": 100}
        )
        page = browser.new_page()
        page.add_init_script("Object.defineProperty(navigator, 'doNotTrack', {get: () => '1'})")
        page.goto(f"{origin}/dnt.html", wait_until="load")
        page.evaluate("siteline('track', 'video', 'play')")
        time.sleep(1.5)
        assert requests_seen(base) == 0
        assert page.evaluate("localStorage.getItem('sl_q')") is None


def test_consent_holds_events_until_granted(shop, browser, tmp_path):
    origin, docroot, sites = shop
    with collector(tmp_path / "landing", sites_file=sites, SITELINE_RATE_LIMIT="0") as (base, _):
        serve_page(docroot, "consent.html", {"siteId": "demo", "endpoint": f"{base}/collect",
                                             "requireConsent": True, "heartbeatSeconds": 0,
                                             "flushMs": 100})  # fmt: skip
        page = browser.new_page()
        page.goto(f"{origin}/consent.html", wait_until="load")
        time.sleep(1.0)
        assert requests_seen(base) == 0  # nothing before the visitor's choice
        page.evaluate("siteline('consent', true)")
        page.wait_for_function("localStorage.getItem('sl_q') === null", timeout=10_000)
        time.sleep(1.5)  # the collector closes the segment
    types = [e["type"] for e in landed(tmp_path / "landing")]
    assert sorted(types) == ["consent", "page_view"]
