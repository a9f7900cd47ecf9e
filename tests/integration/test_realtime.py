"""The real-time engine over real HTTP, fed by the real collector (its own process).

A browser session (headless Chromium with tracker.js) is live when the collector answers,
follows clicks and the cart, and expires after the (short) timeout; the API asks for keys,
keeps sites apart and enforces origins; the stream tells listeners; a restart keeps active
sessions; two processes sharing Redis give the same answers. Customer state from the
warehouse is tested in test_pipeline.py, where the marts are built.
"""

import json
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from realtime.engine.rules import session_id_of
from tests.integration.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.servers import collector, free_port, start_collector, stop
from tests.integration.test_event_bus import redis_url  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

PAGE = (Path(__file__).parent / "fixtures" / "shop.html").read_text()
KEY, OTHER_KEY = "key-for-demo-" + uuid.uuid4().hex, "key-for-other-" + uuid.uuid4().hex
TIMEOUT_SECONDS = 6


def sites_yml(path: Path, origin: str = "http://127.0.0.1:1", timeout: float = 0.1) -> Path:
    """Two sites with API keys; visits time out after ``timeout`` minutes (6 s)."""
    path.write_text(
        f"""
sites:
  - id: demo
    domains: [127.0.0.1, shop.siteline.test]
    allowed_origins: ['{origin}']
    timezone: Europe/Berlin
    api_key_env: RT_DEMO_KEY
    sessions: {{inactivity_timeout_minutes: {timeout}}}
    page_labels: [{{label: Product, path: '^/p/'}}]
    funnels:
      - id: checkout
        steps: [{{name: Product, path: '^/p/'}}, {{name: Bought, type: transaction}}]
    realtime_rules:
      - id: cart_offer
        name: Cart offer
        when: {{cart.value: {{gt: 40}}}}
        then: {{offer: free_shipping}}
  - id: other
    domains: [other.example]
    api_key_env: RT_OTHER_KEY
"""
    )
    return path


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


def event(kind: str, visitor: str, **fields) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(),
        "visitor_id": visitor,
        **fields,
    }


def post(base: str, *events, site_id="demo") -> None:
    response = httpx.post(
        f"{base}/collect",
        json={"site_id": site_id, "events": list(events)},
        headers={"User-Agent": DESKTOP},  # a person's browser, not a bot
    )
    assert response.status_code == 200, response.text


def sending(what: str):
    """Matches the collector's answer to the tracker's batch that carries ``what``."""
    return lambda r: r.url.endswith("/collect") and f'"{what}"' in (r.request.post_data or "")


def test_a_browser_session_is_live_follows_clicks_and_cart_and_expires(shop, tmp_path):
    from playwright.sync_api import sync_playwright

    origin, docroot, _ = shop
    sites = sites_yml(tmp_path / "rt-sites.yml", origin)
    with collector(tmp_path / "landing", sites_file=sites, **ENV) as (url, _):
        api = httpx.Client(base_url=url, headers=AUTH)
        (docroot / "index.html").write_text(PAGE.replace("{collector}", url))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            # A visitor's browser: headless Chromium's own user agent is flagged as a bot, and
            # /v1/active counts people.
            page = browser.new_page(user_agent=DESKTOP)
            # The state changes before the collector answers: the moment the tracker's POST
            # is answered, /v1/active shows the visit - no waiting, no polling.
            with page.expect_response(sending("page_view")) as sent:
                page.goto(f"{origin}/index.html", wait_until="load")
            assert sent.value.status == 200
            active = api.get("/v1/active").json()
            visitor = page.evaluate("localStorage.getItem('sl_vid')")
            client_session = page.evaluate("localStorage.getItem('sl_sid')")
            assert active["active_sessions"] == 1 and active["active_visitors"] == 1
            assert active["by_page"] == [{"path": "/index.html", "label": "Other", "sessions": 1}]
            assert active["sessions"][0]["visitor_id"] == visitor
            assert active["by_channel"] == {"direct": 1}

            with page.expect_response(sending("page_view")):
                page.click("#product")  # a single-page-app navigation
            state = api.get(f"/v1/visitors/{visitor}/state").json()
            session = state["session"]
            assert state["active"] is True and session["current_page"]["path"] == "/p/jacket"
            assert session["current_page"]["title"] == "Jacket"
            assert session["current_page"]["label"] == "Product"
            assert session["page_views"] == 2
            assert session["funnels"]["checkout"]["step"] == 1
            assert state["customer"] == {
                "status": "unavailable",
                "reason": "no warehouse configured",
            }

            with page.expect_response(sending("add_to_cart")):
                page.click("#add")
            by_client_id = api.get(f"/v1/sessions/{client_session}").json()
            session_id = by_client_id["session_id"]
            assert by_client_id["cart"] == {
                "items": [{"sku": "SKU-1", "quantity": 1, "value": 49.9, "name": None}],
                "quantity": 1,
                "value": 49.9,
            }
            assert [r["id"] for r in by_client_id["rules"]] == ["cart_offer"]
            assert by_client_id["rules"][0]["then"] == {"offer": "free_shipping"}
            assert by_client_id["scores"]["purchase_intent"] > 0.35  # a cart and a funnel step

            with page.expect_response(sending("transaction")):
                page.click("#login")
                page.click("#buy")
            session = api.get(f"/v1/sessions/{session_id}").json()
            assert session["user_id"] == "cust-42" and session["customer_key"] == "cust-42"
            assert session["transactions"] == 1 and session["revenue"] == 54.8
            assert session["cart"]["value"] == 0 and session["rules"] == []
            assert session["funnels"]["checkout"]["completed"] is True
            assert session["session_id"] == by_client_id["session_id"]  # one visit throughout
            page.goto("about:blank")
            browser.close()

        # After the inactivity timeout the visit is over: gone from every answer.
        deadline = time.monotonic() + TIMEOUT_SECONDS + 10
        while time.monotonic() < deadline:
            health = httpx.get(f"{url}/health").json()["engine"]
            if health["sessions_expired"]:  # the sweep (every second) ended it
                break
            time.sleep(0.5)
        assert api.get("/v1/active").json()["active_sessions"] == 0
        gone = api.get(f"/v1/sessions/{session_id}")
        assert gone.status_code == 404 and "no active session" in gone.json()["error"]
        assert health["sessions_started"] == 1 and health["sessions_expired"] == 1
        assert health["errors"] == 0


def test_keys_sites_and_origins_are_enforced(tmp_path):
    sites = sites_yml(tmp_path / "rt-sites.yml", "https://shop.siteline.test", timeout=30)
    with collector(tmp_path / "landing", sites_file=sites, **ENV) as (url, _):
        post(url, event("page_view", "v-1", session_id="c-1", url="https://shop.siteline.test/"))
        no_key = httpx.get(f"{url}/v1/sessions/c-1")
        assert no_key.status_code == 401 and "Authorization: Bearer" in no_key.json()["error"]
        assert no_key.headers["www-authenticate"].startswith("Bearer")
        wrong = httpx.get(f"{url}/v1/sessions/c-1", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "wrong API key"
        assert httpx.get(f"{url}/v1/sessions/c-1", headers=AUTH).status_code == 200
        other = {"Authorization": f"Bearer {OTHER_KEY}"}
        assert httpx.get(f"{url}/v1/sessions/c-1", headers=other).status_code == 404
        assert httpx.get(f"{url}/v1/visitors/v-1/state", headers=other).status_code == 404
        assert httpx.get(f"{url}/v1/active", headers=other).json()["active_sessions"] == 0

        allowed = {**AUTH, "Origin": "https://shop.siteline.test"}
        ok = httpx.get(f"{url}/v1/visitors/v-1/state", headers=allowed)
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://shop.siteline.test"
        foreign = httpx.get(f"{url}/v1/active", headers={**AUTH, "Origin": "https://evil.example"})
        assert (
            foreign.status_code == 403 and "not allowed for site 'demo'" in foreign.json()["error"]
        )
        preflight = httpx.options(
            f"{url}/v1/active",
            headers={"Origin": "https://shop.siteline.test",
                     "Access-Control-Request-Headers": "authorization"},
        )  # fmt: skip
        assert preflight.status_code == 204
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        bad = httpx.get(f"{url}/v1/active?minutes=abc", headers=AUTH)
        assert bad.status_code == 400 and "minutes" in bad.json()["error"]
        assert httpx.get(f"{url}/v1/nothing", headers=AUTH).status_code == 404
        assert httpx.get(f"{url}/openapi.json").json()["paths"]["/v1/active"]["get"]["summary"]


def read_stream(
    url: str, headers: dict, out: list, ready: threading.Event, sessions: int | None = None,
    events: int | None = None,
) -> None:  # fmt: skip
    """Collect (event, data) pairs of the SSE stream until a visit ends, ``sessions`` session
    changes arrived, a session change shows ``events`` events, or the server stops."""
    try:
        with httpx.stream("GET", f"{url}/v1/stream", headers=headers, timeout=30) as response:
            kind = None
            for line in response.iter_lines():
                if line == "event: active":
                    ready.set()
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    out.append((kind, json.loads(line[6:])))
                    if kind == "session_ended":
                        return
                    if sessions and sum(k == "session" for k, _ in out) >= sessions:
                        return
                    if events and kind == "session" and out[-1][1]["events"] >= events:
                        return
    except httpx.TransportError:
        pass  # the collector was stopped


def test_the_stream_tells_listeners_of_every_change(tmp_path):
    sites = sites_yml(tmp_path / "rt-sites.yml", timeout=0.05)  # 3 s
    with collector(tmp_path / "landing", sites_file=sites, **ENV) as (url, _):
        received: list = []
        ready = threading.Event()
        reader = threading.Thread(target=read_stream, args=(url, AUTH, received, ready))
        reader.start()
        assert ready.wait(10)
        first = event("page_view", "v-s", url="https://shop.siteline.test/p/1")
        post(url, first)
        post(url, event("event", "v-s", category="ecommerce", action="add_to_cart", label="A",
                        value=10.0, url="https://shop.siteline.test/p/1"))  # fmt: skip
        post(url, event("page_view", "v-s", url="https://other.example/"), site_id="other")
        reader.join(20)
    kinds = [k for k, _ in received]
    assert kinds == ["active", "session", "session", "session_ended"]  # the other site: unseen
    expected_id = session_id_of("demo", "v-s", first["event_id"])
    assert received[1][1]["session_id"] == expected_id and received[1][1]["page_views"] == 1
    assert received[2][1]["cart"]["value"] == 10.0
    assert received[3][1]["session_id"] == expected_id


def test_a_restart_keeps_active_sessions(tmp_path):
    sites = sites_yml(tmp_path / "rt-sites.yml", timeout=30)
    env = {
        **os.environ, **ENV,
        "SITELINE_SITES_FILE": str(sites),
        "SITELINE_LANDING_DIR": str(tmp_path / "landing"),
        "SITELINE_COLLECTOR_ID": "restart",
        "SITELINE_ENGINE_SNAPSHOT_SECONDS": "3600",  # no periodic snapshot during the test
    }  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_collector(port, env)
    try:
        first = event("page_view", "v-r", session_id="c-r", url="https://shop.siteline.test/p/1")
        post(url, first, event("event", "v-r", category="ecommerce", action="add_to_cart",
                               label="A", value=12.5, url="https://shop.siteline.test/p/1"))  # fmt: skip
        before = httpx.get(f"{url}/v1/sessions/c-r", headers=AUTH).json()
    finally:
        stop(proc)  # SIGTERM: the engine writes its snapshot on the way out
    proc = start_collector(port, env)
    try:
        after = httpx.get(f"{url}/v1/sessions/c-r", headers=AUTH).json()
        assert httpx.get(f"{url}/health").json()["engine"]["restored"] == 1
        post(url, event("page_view", "v-r", session_id="c-r", url="https://shop.siteline.test/"))
        continued = httpx.get(f"{url}/v1/sessions/c-r", headers=AUTH).json()
        # A crash right after the event was acknowledged: no snapshot holds it, the landing
        # does; the next start replays it on top of the snapshot.
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)
    proc = start_collector(port, env)
    try:
        crashed = httpx.get(f"{url}/v1/sessions/c-r", headers=AUTH).json()
        health = httpx.get(f"{url}/health").json()["engine"]
        post(url, first)  # a retried delivery of an event already applied ...
        again = httpx.get(f"{url}/v1/sessions/c-r", headers=AUTH).json()
    finally:
        stop(proc)
    for key in ("session_id", "started_at", "cart", "page_views", "entry"):
        assert after[key] == before[key]
    assert continued["session_id"] == before["session_id"] and continued["page_views"] == 2
    assert crashed["page_views"] == 2 and crashed["cart"]["value"] == 12.5
    assert crashed["current_page"]["path"] == "/" and crashed["session_id"] == before["session_id"]
    assert health["replayed"] == 1 and health["restored"] == 1
    assert again["events"] == crashed["events"] == 3  # ... counts once


def test_two_processes_sharing_redis_give_the_same_answers(redis_url, tmp_path):  # noqa: F811
    redis, _ = redis_url
    sites = sites_yml(tmp_path / "rt-sites.yml", timeout=30)
    shared = {**ENV, "SITELINE_EVENT_BUS": redis, "SITELINE_ENGINE_STORE": redis}
    with (
        collector(tmp_path / "a", sites_file=sites, SITELINE_COLLECTOR_ID="a", **shared) as (a, _),
        collector(tmp_path / "b", sites_file=sites, SITELINE_COLLECTOR_ID="b", **shared) as (b, _),
    ):
        received: list = []
        ready = threading.Event()
        reader = threading.Thread(
            target=read_stream, args=(b, AUTH, received, ready, None, 3), daemon=True
        )
        reader.start()
        assert ready.wait(10)
        first = event("page_view", "v-x", session_id="c-x", url="https://shop.siteline.test/p/1")
        post(a, first)  # to process A ...
        post(b, event("event", "v-x", session_id="c-x", category="ecommerce", action="add_to_cart",
                      label="A", value=20.0, url="https://shop.siteline.test/p/1"))  # fmt: skip
        post(a, event("page_view", "v-x", session_id="c-x", url="https://shop.siteline.test/"))

        def answers(base):
            response = httpx.get(f"{base}/v1/sessions/c-x", headers=AUTH)
            return response.json() if response.status_code == 200 else None

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen = [answers(a), answers(b)]
            if all(s and s["events"] == 3 for s in seen):
                break
            time.sleep(0.1)
        keep = ("session_id", "visitor_id", "page_views", "events", "cart", "current_page",
                "entry", "funnels", "rules", "revision")  # fmt: skip
        assert {k: seen[0][k] for k in keep} == {k: seen[1][k] for k in keep}
        assert seen[0]["session_id"] == session_id_of("demo", "v-x", first["event_id"])
        assert seen[0]["events"] == 3 and seen[0]["cart"]["value"] == 20.0
        active = [httpx.get(f"{base}/v1/active", headers=AUTH).json() for base in (a, b)]
        assert active[0]["active_sessions"] == active[1]["active_sessions"] == 1
        reader.join(10)
        # B's listeners hear the changes whichever process applied them, in revision order:
        # one published out of order is superseded by the newer state, never shown after it
        revisions = [d["revision"] for k, d in received if k == "session"]
        assert revisions == sorted(set(revisions)) and revisions[-1] == seen[0]["revision"]
        assert [d["events"] for k, d in received if k == "session"][-1] == 3
