"""The real-time alert metrics over real HTTP: events posted to a real collector (its own
process, the engine inside it) are counted in the engine's windows and served by
``GET /v1/metrics/windows``; they survive a restart (memory store: the snapshot; Redis: the
shared store), and the API checks its key and input like the other ``/v1`` reads."""

import http.server
import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.servers import collector
from tests.integration.test_event_bus import redis_url  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

KEY, OTHER_KEY = "key-demo-" + uuid.uuid4().hex, "key-other-" + uuid.uuid4().hex
ENV = {
    "RT_DEMO_KEY": KEY,
    "RT_OTHER_KEY": OTHER_KEY,
    "SITELINE_RATE_LIMIT": "0",
    "SITELINE_ENGINE_WAREHOUSE_URL": "none",
}
AUTH = {"Authorization": f"Bearer {KEY}"}
DESKTOP = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
BOT = "Googlebot/2.1 (+http://www.google.com/bot.html)"
SHOP = "https://shop.siteline.test"


def sites_yml(path: Path) -> Path:
    path.write_text(
        """
sites:
  - id: demo
    domains: [shop.siteline.test]
    api_key_env: RT_DEMO_KEY
    page_labels: [{label: Checkout, path: '^/(cart|checkout/)'}, {label: Product, path: '^/p/'}]
  - id: other
    domains: [other.example]
    api_key_env: RT_OTHER_KEY
"""
    )
    return path


def event(kind: str, visitor: str, path: str = "/", **fields) -> dict:
    return {
        "event_id": str(uuid.uuid4()), "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(), "visitor_id": visitor,
        "url": SHOP + path, **fields,
    }  # fmt: skip


def post(base: str, *events, agent: str = DESKTOP) -> None:
    response = httpx.post(
        f"{base}/collect",
        json={"site_id": "demo", "events": list(events)},
        headers={"User-Agent": agent},
    )
    assert response.status_code == 200, response.text


def traffic(base: str) -> None:
    """Three visitors, two orders, one checkout error (and one elsewhere), two payment
    failures, and a bot's payment failure that counts for nothing."""
    post(
        base,
        event("page_view", "v1", "/p/jacket"),
        event("page_view", "v2", "/cart"),
        event("page_view", "v3", "/checkout/pay"),
        event("transaction", "v1", "/checkout/done", order_id="o-1", revenue=49.9),
        event("transaction", "v2", "/checkout/done", order_id="o-2", revenue=12.5),
        event("event", "v3", "/checkout/pay", category="error", action="javascript_error"),
        event("event", "v1", "/p/jacket", category="error", action="http_error", value=502),
        event("event", "v2", "/checkout/pay", category="ecommerce", action="payment_failed"),
        event("event", "v3", "/checkout/pay", category="ecommerce", action="payment_failed"),
    )
    post(base, event("event", "bot-1", "/checkout/pay", category="ecommerce",
                     action="payment_failed"), agent=BOT)  # fmt: skip


def values(base: str, weeks: int = 1) -> dict:
    """Each metric's window of 5 minutes ending now, with the window before and last week."""
    out = {}
    for metric in ("active_visitors", "orders", "checkout_errors", "payment_failures"):
        reply = httpx.get(
            f"{base}/v1/metrics/windows",
            params={"metric": metric, "window": 300, "weeks": weeks},
            headers=AUTH,
        )
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["site_id"] == "demo" and answer["window_seconds"] == 300
        out[metric] = (
            answer["value"],
            answer["previous_window"]["value"],
            [w["value"] for w in answer["previous_weeks"]],
        )
    return out


# Now: the posted events; the window before and last week: nothing kept yet (no data).
EXPECTED = {
    "active_visitors": (3.0, None, [None]),
    "orders": (2.0, None, [None]),
    "checkout_errors": (1.0, None, [None]),
    "payment_failures": (2.0, None, [None]),
}


def test_events_posted_to_the_collector_are_in_the_windows_and_survive_a_restart(tmp_path):
    sites = sites_yml(tmp_path / "sites.yml")
    landing = tmp_path / "landing"
    with collector(landing, sites_file=sites, **ENV) as (url, _):
        traffic(url)
        assert values(url) == EXPECTED
    # A restart (the snapshot at the stop, the landing replayed after it at the start).
    with collector(landing, sites_file=sites, **ENV) as (url, _):
        assert values(url) == EXPECTED


def test_the_windows_api_checks_its_key_and_input(tmp_path):
    sites = sites_yml(tmp_path / "sites.yml")
    with collector(tmp_path / "landing", sites_file=sites, **ENV) as (url, _):
        before = datetime.now(UTC).timestamp()
        traffic(url)
        address = f"{url}/v1/metrics/windows"
        no_key = httpx.get(address, params={"metric": "orders"})
        assert no_key.status_code == 401
        other = httpx.get(address, params={"metric": "orders"},
                          headers={"Authorization": f"Bearer {OTHER_KEY}"})  # fmt: skip
        assert other.status_code == 200
        # Nothing happened on the other site since the engine started: 0, kept in part.
        assert (other.json()["site_id"], other.json()["value"]) == ("other", 0.0)
        assert other.json()["complete"] is False
        cases = {
            (("metric", "sessions"),): "metric must be one of active_visitors, orders, "
            "checkout_errors, payment_failures (got 'sessions')",
            (("metric", "orders"), ("window", "30")): "window must be from 60 to 3600 seconds",
            (("metric", "orders"), ("weeks", "9")): "weeks must be from 0 to 8 (the engine "
            "keeps 8 weeks: SITELINE_ENGINE_WINDOW_WEEKS)",
            (("metric", "orders"), ("at", "2020-01-01T00:00:00Z")): "at must be in the last "
            "hour, not in the future",
        }  # fmt: skip
        for params, message in cases.items():
            reply = httpx.get(address, params=dict(params), headers=AUTH)
            assert (reply.status_code, reply.json()["error"]) == (400, message)
        foreign = httpx.get(address, params={"metric": "orders", "site": "other"}, headers=AUTH)
        assert foreign.status_code == 404
        assert foreign.json()["error"] == "site 'other' is not the site of this API key ('demo')"
        # ``at``: the window ending then (the live evaluator asks for its tick). A minute
        # before the traffic the engine had not started yet: no data, not 0.
        then = int(before) - 60  # whole seconds: the answer repeats it exactly
        at = httpx.get(address, params={"metric": "orders", "at": f"{then:.3f}"}, headers=AUTH)
        assert (at.json()["value"], at.json()["complete"]) == (None, False)
        assert at.json()["end"] == datetime.fromtimestamp(then, UTC).isoformat(
            timespec="milliseconds"
        ).replace("+00:00", "Z")


def test_engines_sharing_redis_keep_the_windows_in_it(redis_url, tmp_path):  # noqa: F811
    redis, _ = redis_url
    sites = sites_yml(tmp_path / "sites.yml")
    shared = {**ENV, "SITELINE_EVENT_BUS": "inprocess", "SITELINE_ENGINE_STORE": redis}
    with collector(tmp_path / "landing-a", sites_file=sites, **shared) as (url, _):
        traffic(url)
        assert values(url) == EXPECTED
    # Another process, another landing: what it knows comes from Redis alone.
    other = {**shared, "SITELINE_COLLECTOR_ID": "second"}
    with collector(tmp_path / "landing-b", sites_file=sites, **other) as (url, _):
        assert values(url) == EXPECTED


def test_the_redis_windows_answer_as_the_memory_ones(redis_url):  # noqa: F811
    import redis as redis_client

    from realtime.engine.windows import WEEK, MemoryWindows, RedisWindows

    url, _ = redis_url
    t0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()
    stores = [MemoryWindows(weeks=2), RedisWindows(redis_client.Redis.from_url(url), weeks=2)]
    for w in stores:
        w.begin(["shop"], t0 - WEEK - 3600)
        for at, visitor, adds in (
            (t0 - WEEK + 5, "x", (0,)), (t0 - WEEK + 50, "y", (0, 2)), (t0 - WEEK + 180, "", ()),
            (t0 + 5, "a", (0,)), (t0 + 30, "b", (1,)), (t0 + 40, "a", (2,)),
            (t0 + 65, "c", (0,)),
        ):  # fmt: skip
            w.close_until(at)  # the housekeeping, every second, as time goes by
            if visitor:
                w.record("shop", visitor, at, adds)
    asked = [
        ("orders", t0 + 100, 120), ("orders", t0 + 90, 60), ("checkout_errors", t0 + 100, 300),
        ("payment_failures", t0 + 100, 120), ("active_visitors", t0 + 100, 60),
        ("active_visitors", t0 + 100, 120),
    ]  # fmt: skip
    answers = [[w.answer("shop", m, end, window, 1, t0 + 100) for m, end, window in asked]
               for w in stores]  # fmt: skip
    assert answers[0] == answers[1]
    # (now, a week ago): by the second now, by minutes in proportion a week ago (half of the
    # minute of x and y's 2 orders); active visitors a week ago between two minute ends.
    assert [(a["value"], a["previous_weeks"][0]["value"]) for a in answers[1]] == [
        (2.0, 2.0), (1.0, 1.0), (1.0, 0.0), (1.0, 1.0), (1.0, 0.667), (3.0, 2.0),
    ]  # fmt: skip
    later = t0 + 600  # by the minute ends now
    for w in stores:
        w.close_until(later)
    assert [w.value("shop", "active_visitors", t0 + 30, t0 + 90, later) for w in stores] == [
        1.5,
        1.5,
    ]


CHECKOUT_PAGE = """<!doctype html>
<html><head><title>Pay</title>
<script>
  window.siteline = window.siteline || function () { (siteline.q = siteline.q || []).push(arguments) };
  siteline('init', { siteId: 'demo', endpoint: '{collector}/collect', heartbeatSeconds: 0, flushMs: 100 });
</script>
<script async src="{collector}/t.js"></script>
</head><body>
<button id="boom" onclick="undefinedFunction()">Pay</button>
<button id="reject" onclick="Promise.reject(new Error('card service timed out'))">Retry</button>
<button id="api" onclick="fetch('{payments}/charge')">Charge</button>
<button id="declined"
   onclick="siteline('track', 'ecommerce', 'payment_failed', {label: 'card_declined'})">Card</button>
</body></html>"""


class Failing(http.server.BaseHTTPRequestHandler):
    """A payment API that answers 503 (readable by the page: CORS allowed)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(503)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_the_tracker_reports_checkout_errors_and_the_engine_counts_them(shop, tmp_path):
    from playwright.sync_api import sync_playwright

    origin, docroot, _ = shop
    sites = tmp_path / "sites-browser.yml"
    sites.write_text(
        "sites:\n  - id: demo\n    domains: [127.0.0.1]\n"
        f"    allowed_origins: ['{origin}']\n    api_key_env: RT_DEMO_KEY\n"
        "    page_labels: [{label: Checkout, path: '^/checkout/'}]\n"
    )
    payments = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=payments.serve_forever, daemon=True).start()
    payments_url = f"http://127.0.0.1:{payments.server_address[1]}"
    with collector(tmp_path / "landing", sites_file=sites, **ENV) as (url, _):
        (docroot / "checkout").mkdir()
        (docroot / "checkout" / "pay.html").write_text(
            CHECKOUT_PAGE.replace("{collector}", url).replace("{payments}", payments_url)
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(user_agent=DESKTOP)
            with page.expect_response(sending("page_view")):
                page.goto(f"{origin}/checkout/pay.html", wait_until="load")
            with page.expect_response(sending("javascript_error")) as thrown:
                page.click("#boom")
            with page.expect_response(sending("unhandled_rejection")):
                page.click("#reject")
            with page.expect_response(sending("http_error")) as failed_call:
                page.click("#api")
            with page.expect_response(sending("payment_failed")):
                page.click("#declined")
            sent = [json.loads(r.request.post_data)["events"][0]
                    for r in (thrown.value, failed_call.value)]  # fmt: skip
            browser.close()
        payments.shutdown()
        assert sent[0]["category"] == "error" and sent[0]["action"] == "javascript_error"
        assert "undefinedFunction" in sent[0]["label"]
        assert (sent[1]["action"], sent[1]["value"], sent[1]["label"]) == (
            "http_error",
            503,
            f"{payments_url}/charge",
        )
        got = {}
        for metric in ("checkout_errors", "payment_failures", "active_visitors"):
            reply = httpx.get(f"{url}/v1/metrics/windows", params={"metric": metric},
                              headers=AUTH)  # fmt: skip
            got[metric] = reply.json()["value"]
        assert got == {"checkout_errors": 3.0, "payment_failures": 1.0, "active_visitors": 1.0}


def sending(what: str):
    """Matches the collector's answer to the tracker's batch that carries ``what``."""
    return lambda r: r.url.endswith("/collect") and f'"{what}"' in (r.request.post_data or "")


def test_an_engine_that_does_not_answer_skips_ticks_then_puts_the_rules_in_error(
    tmp_path, monkeypatch
):
    from ingestion.core.sites import load_sites
    from orchestration.alerts.live import UNREACHABLE_GRACE, EngineWindows, LiveEvaluator
    from tests.integration.servers import free_port

    monkeypatch.setenv("RT_DEMO_KEY", KEY)
    monkeypatch.setenv("RT_OTHER_KEY", OTHER_KEY)
    sites = sites_yml(tmp_path / "sites.yml")
    sites.write_text(
        sites.read_text()
        + """  - id: nokey
    domains: [nokey.example]
alerts:
  rules:
    - id: orders_live
      metric: orders
      window: 5m
      sites: [demo, nokey]
      condition: {type: below, value: 1}
"""
    )
    config = load_sites(sites)
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    evaluator = LiveEvaluator(config, EngineWindows(config, url=nobody))
    now = datetime.now(UTC).timestamp()
    assert evaluator.judge_all(now) is None  # a restart, perhaps: the tick is skipped
    evaluator.unreachable_since -= UNREACHABLE_GRACE  # a minute later, still nobody
    judged = evaluator.judge_all(now + UNREACHABLE_GRACE)
    assert [(j.site.id, j.judgement.verdict) for j in judged] == [
        ("demo", "error"),
        ("nokey", "error"),
    ]
    assert judged[0].error.startswith(f"the real-time engine at {nobody}: ")
    assert judged[1].error == (
        "ValueError: site 'nokey' has no API key for the real-time engine; set its "
        "api_key_env in sites.yml"
    )
