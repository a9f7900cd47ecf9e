"""The real-time engine's visit rules, state changes, models and rules hook (pure parts).

The visit rules' and channel grouping's cases are in tests/cases/visit_rules.yml, the table
the warehouse's dbt unit tests are generated from too.
"""

import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from itertools import groupby

import pytest
import yaml

from ingestion.core.sites import SitesConfig
from realtime.engine.engine import Engine
from realtime.engine.personalisation import matches
from realtime.engine.rules import (
    Campaign,
    Sessioniser,
    SiteRules,
    channel_of,
    corrected_time,
    session_id_of,
)
from tests.cases.generate import SESSION_DEFAULTS, Case, load_cases

SITE = {
    "id": "shop",
    "domains": ["shop.example", "www.shop.example"],
    "timezone": "Europe/Berlin",
    "sessions": {"inactivity_timeout_minutes": 30, "max_session_hours": 2},
    "api_key_env": "SHOP_KEY",
    "page_labels": [{"label": "Product", "path": "^/p/"}, {"label": "Cart", "path": "^/cart"}],
    "goals": [
        {"id": "purchase", "type": "transaction"},
        {"id": "signup", "type": "event", "category": "account", "action": "signup"},
        {"id": "saw_cart", "type": "page", "path": "^/cart$"},
    ],
    "funnels": [
        {
            "id": "checkout",
            "steps": [
                {"name": "Cart", "path": "^/cart$"},
                {"name": "Pay", "path": "^/(cart|pay)$"},
                {"name": "Done", "type": "transaction"},
            ],
        }
    ],
    "realtime_rules": [
        {
            "id": "big_cart",
            "name": "Free shipping",
            "when": {"cart.value": {"gt": 100}, "session.page_views": {"gte": 2}},
            "then": {"offer": "free_shipping"},
        }
    ],
}
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def site_rules(**overrides) -> SiteRules:
    config = SitesConfig.model_validate({"sites": [{**SITE, **overrides}]})
    return SiteRules(config.sites[0])


def at(minutes: float) -> float:
    return (T0 + timedelta(minutes=minutes)).timestamp()


VISIT_CASES, CHANNEL_CASES = load_cases()


def sessionise(case: Case) -> list[list[str]]:
    """The visits the engine's Sessioniser makes of a case's hits (as lists of hit ids), fed
    per device in the warehouse's order; late and superseded hits are not fed (the engine
    counts late events and never receives log hits)."""
    config = SitesConfig.model_validate({"sites": [
        {"id": site_id, "domains": [f"{site_id}.example"], "timezone": settings["timezone"],
         "sessions": {name: settings[name] for name in SESSION_DEFAULTS}}
        for site_id, settings in case.sites.items()
    ]})  # fmt: skip
    rules = {site.id: SiteRules(site) for site in config.sites}
    fed = sorted(
        (h for h in case.hits if not h.held_out), key=lambda h: (h.site, h.device, h.order)
    )
    visits: list[list[str]] = []
    for (site_id, _device), hits in groupby(fed, key=lambda h: (h.site, h.device)):
        site, sessioniser, track = rules[site_id], Sessioniser(rules[site_id]), None
        for hit in hits:
            source = hit.source
            campaign = Campaign(
                name=source.get("campaign_name"),
                source=source.get("campaign_source"),
                medium=source.get("campaign_medium"),
            )
            touch = site.touch_key(
                campaign, source.get("referrer_medium"), source.get("referrer_host")
            )
            is_page_view = hit.type == "page_view"
            track, new = sessioniser.step(track, hit.at.timestamp(), is_page_view, touch)
            if new:
                visits.append([hit.id])
            else:
                visits[-1].append(hit.id)
    return visits


@pytest.mark.parametrize("case", VISIT_CASES, ids=lambda case: case.name)
def test_visit_rules_agree_with_the_table_of_cases(case):
    assert sorted(sessionise(case)) == sorted(case.visits)


@pytest.mark.parametrize(
    "case", CHANNEL_CASES, ids=lambda case: "-".join(str(v) for v in case.values())
)
def test_channel_grouping_agrees_with_the_table_of_cases(case):
    medium, source = case.get("campaign_medium"), case.get("campaign_source")
    assert channel_of(medium, source, case.get("referrer_medium")) == case["channel"]


def test_referrers_and_campaigns_are_read_as_the_warehouse_reads_them():
    rules = site_rules()
    assert rules.referrer(None, "shop.example") == (None, None)
    assert rules.referrer("shop.example", "shop.example") == ("internal", None)
    assert rules.referrer("www.shop.example", "shop.example") == ("internal", None)
    assert rules.referrer("www.google.com", "shop.example") == ("search", "Google")
    assert rules.referrer("blog.example", "shop.example") == ("other_site", None)
    campaign = rules.campaign("pk_campaign=old&utm_campaign=spring+sale&utm_source=nl&utm_medium=")
    assert (campaign.name, campaign.source, campaign.medium) == ("spring sale", "nl", None)
    assert rules.campaign("q=shoes") == rules.campaign(None)
    assert not rules.campaign("q=shoes").is_set
    assert rules.page_label("/p/jacket") == "Product" and rules.page_label("/") == "Other"


def test_campaigns_differing_in_which_field_is_set_are_different_sources():
    """The key joined the fields without the missing ones: (source=x, name=y) and
    (medium=x, name=y) were one campaign, and no new visit started (as in the warehouse;
    the visits are case a_new_campaign_or_external_referrer_starts_a_new_visit)."""
    rules = site_rules()
    by_source = rules.touch_key(rules.campaign("utm_source=x&utm_campaign=y"), None, None)
    by_medium = rules.touch_key(rules.campaign("utm_medium=x&utm_campaign=y"), None, None)
    assert by_source == 'campaign|["x", null, "y"]'
    assert by_medium == 'campaign|[null, "x", "y"]'


def test_session_ids_are_the_warehouse_ids():
    event_id = "0b6c2f9e-5d3a-4c1e-9a7f-1e2d3c4b5a69"
    expected = hashlib.md5(f"shop|visitor-1|{event_id}".encode()).hexdigest()
    assert session_id_of("shop", "visitor-1", event_id) == expected


def test_device_clocks_are_corrected_by_the_send_delay():
    record = {
        "occurred_at": "2026-03-10T11:59:00Z",  # the device's clock is 2 minutes behind
        "sent_at": "2026-03-10T11:59:30Z",
        "received_at": "2026-03-10T12:01:30.000Z",
    }
    occurred, delay, received = corrected_time(record)
    assert occurred == at(1) and delay == 30 and received == at(1.5)


@pytest.mark.parametrize(
    ("occurred_at", "sent_at"),
    [
        ("2000-01-01T00:00:00Z", "2026-03-10T11:59:30Z"),  # a wait of 26 years
        ("2026-03-10T12:00:00Z", "2026-03-10T11:59:30Z"),  # sent before it happened
    ],
)
def test_a_device_wait_no_tracker_can_have_had_places_the_event_at_its_arrival(
    occurred_at, sent_at
):
    """As stg_collector__events (device_wait_is_plausible): received_at, send delay 0."""
    record = {"occurred_at": occurred_at, "sent_at": sent_at, "received_at": "2026-03-10T12:01:30Z"}
    assert corrected_time(record) == (at(1.5), 0.0, at(1.5))


def event(kind: str, minutes: float, visitor="v1", **fields) -> dict:
    moment = (T0 + timedelta(minutes=minutes)).isoformat()
    return {
        "event_id": str(uuid.uuid4()), "type": kind, "site_id": "shop", "visitor_id": visitor,
        "session_id": "client-1", "occurred_at": moment, "sent_at": moment,
        "received_at": moment, "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
        "country": "DE", "is_bot": False, **fields,
    }  # fmt: skip


def engine() -> Engine:
    return Engine(SitesConfig.model_validate({"sites": [SITE]}))


def cart_event(minutes, action, sku, value, quantity=1):
    return event("event", minutes, category="ecommerce", action=action, label=sku, value=value,
                 properties={"quantity": quantity}, url="https://shop.example/p/x")  # fmt: skip


def test_state_follows_pages_cart_goals_funnels_and_purchase():
    eng = engine()
    eng.handle([
        event("page_view", 0, url="https://shop.example/p/a?utm_source=nl&utm_medium=email",
              referrer="https://mail.example/"),
        cart_event(1, "add_to_cart", "A", 60.0, 2),
        cart_event(2, "add_to_cart", "B", 50.0),
        cart_event(3, "remove_from_cart", "A", 0, 1),
        event("page_view", 4, url="https://shop.example/cart", referrer="https://shop.example/p/a"),
        event("event", 5, category="account", action="signup", url="https://shop.example/cart"),
        event("event", 5.5, category="account", action="signup", url="https://shop.example/cart"),
        event("page_ping", 6, engaged_seconds=30, url="https://shop.example/cart"),
    ])  # fmt: skip
    state = eng.store.get("shop", "v1")
    view = eng.describe(state, now=at(6.5))
    assert view["page_views"] == 2 and view["events"] == 8 and view["custom_events"] == 5
    assert view["entry"]["channel"] == "email" and view["entry"]["landing_path"] == "/p/a"
    assert view["current_page"] == {
        "url": "https://shop.example/cart", "path": "/cart", "title": None, "label": "Cart",
    }  # fmt: skip
    assert view["cart"] == {
        "items": [{"sku": "A", "quantity": 1, "value": 30.0, "name": None},
                  {"sku": "B", "quantity": 1, "value": 50.0, "name": None}],
        "quantity": 2, "value": 80.0,
    }  # fmt: skip
    assert view["goals"] == ["saw_cart", "signup"]  # each goal once per visit
    # one page view reached both "Cart" and "Pay" (the warehouse compares with >=)
    assert view["funnels"]["checkout"] == {
        "step": 2, "steps": 3, "step_name": "Pay", "completed": False,
    }  # fmt: skip
    assert view["engaged_seconds"] == 30.0
    assert view["device"] == {
        "type": "desktop",
        "browser": "Chrome",
        "os": "Linux",
        "country": "DE",
    }
    # engagement 40*2/5 + 40*30/300 + 20*1 = 16 + 4 + 20 = 40;
    # intent .35 cart + .35 * 2/3 funnel + .15 * .4 = .35 + .2333 + .06 = .643
    # risk: idle 30 s of a 15-minute half timeout = 1/30, times (.5 + .5 * 2/3)
    assert view["scores"] == {
        "engagement_score": 40, "purchase_intent": 0.643, "abandonment_risk": 0.028,
    }  # fmt: skip
    assert view["rules"] == []  # cart 80 is not over 100

    eng.handle([cart_event(7, "add_to_cart", "C", 25.5)])
    view = eng.describe(eng.store.get("shop", "v1"), now=at(7))
    assert view["cart"]["value"] == 105.5
    assert [(r["id"], r["name"], r["then"]) for r in view["rules"]] == [
        ("big_cart", "Free shipping", {"offer": "free_shipping"})
    ]
    eng.handle([event("transaction", 8, order_id="O-1", revenue=105.5,
                      url="https://shop.example/pay")])  # fmt: skip
    view = eng.describe(eng.store.get("shop", "v1"), now=at(8))
    assert view["cart"]["value"] == 0 and view["transactions"] == 1 and view["revenue"] == 105.5
    assert view["funnels"]["checkout"]["completed"] is True
    assert view["scores"]["purchase_intent"] == 1.0 and view["scores"]["abandonment_risk"] == 0
    assert view["rules"] == []  # the cart is empty again
    assert "purchase" in view["goals"]


def test_engine_sessions_agree_with_the_rules_and_carry_the_login_over():
    eng = engine()
    first = event("page_view", 0, url="https://shop.example/")
    eng.handle([first, event("identify", 1, user_id="cust-7", url="https://shop.example/")])
    state = eng.store.get("shop", "v1")
    assert state.session_id == session_id_of("shop", "v1", first["event_id"])
    assert state.customer_key == "cust-7"
    later = event("page_view", 45, url="https://shop.example/")  # after the timeout
    eng.handle([later])
    state = eng.store.get("shop", "v1")
    assert state.session_id == session_id_of("shop", "v1", later["event_id"])
    assert state.customer_key == "cust-7" and state.page_views == 1
    assert eng.counters["sessions_started"] == 2
    # an event sent later than the allowed lateness is counted, not applied
    old = event("page_view", 50, url="https://shop.example/")
    old["sent_at"] = old["received_at"] = (T0 + timedelta(days=4)).isoformat()
    eng.handle([old])
    assert eng.counters["late"] == 1 and eng.store.get("shop", "v1").page_views == 1


def test_expired_visits_are_swept_and_active_counts_humans_by_page_and_channel():
    eng = engine()
    now = time.time()
    iso_now = datetime.fromtimestamp(now, UTC).isoformat()
    fresh = {"occurred_at": iso_now, "sent_at": iso_now, "received_at": iso_now}
    eng.handle([
        {**event("page_view", 0, visitor="a", url="https://shop.example/p/a"), **fresh},
        {**event("page_view", 0, visitor="b", url="https://shop.example/p/a",
                 referrer="https://www.bing.com/"), **fresh},
        {**event("page_view", 0, visitor="bot", url="https://shop.example/", is_bot=True), **fresh},
    ])  # fmt: skip
    summary = eng.active("shop")
    assert summary["active_sessions"] == 2 and summary["bot_sessions"] == 1
    assert summary["by_page"] == [{"path": "/p/a", "label": "Product", "sessions": 2}]
    assert summary["by_channel"] == {"direct": 1, "organic_search": 1}
    eng.store.get("shop", "a").seen_at = now - 31 * 60  # a's last event was 31 minutes ago
    assert eng.sweep() == 1
    assert eng.store.get("shop", "a") is None and eng.active("shop")["active_sessions"] == 1


def test_rule_conditions():
    assert matches(120, {"gt": 100, "lte": 120})
    assert not matches(100, {"gt": 100})
    assert matches("champion", {"in": ["champion", "loyal customer"]})
    assert matches(["purchase"], {"contains": "purchase"})
    assert matches(None, {"exists": False}) and not matches(None, {"gte": 0})
    assert not matches("text", {"gt": 1})  # a type mismatch is no match, not an error


def test_rules_name_unknown_fields_and_operators():
    bad = {**SITE, "realtime_rules": [{"id": "x", "when": {"cart.colour": {"eq": "red"}}}]}
    with pytest.raises(ValueError, match=r"'cart\.colour' is not a state field"):
        SitesConfig.model_validate({"sites": [bad]})
    bad = {**SITE, "realtime_rules": [{"id": "x", "when": {"cart.value": {"above": 1}}}]}
    with pytest.raises(ValueError, match="'above' is not an operator"):
        SitesConfig.model_validate({"sites": [bad]})
    text = yaml.safe_dump({"sites": [SITE]})
    assert (
        SitesConfig.model_validate(yaml.safe_load(text)).sites[0].realtime_rules[0].id == "big_cart"
    )


def test_memory_is_bounded_by_evicting_the_least_recently_active_visit():
    from realtime.engine.state import SessionState
    from realtime.engine.store import MemoryStore

    store = MemoryStore(max_sessions=2)
    states = [SessionState("shop", f"s{i}", f"v{i}", float(i)) for i in range(3)]
    for state in states[:2]:
        store.put(state)
    store.put(states[0])  # v0 is active again: v1 is now the least recently active
    store.put(states[2])
    assert len(store) == 2 and store.evicted == 1
    assert store.get("shop", "v1") is None and store.by_session("shop", "s1") is None
    assert store.get("shop", "v0") is states[0] and store.get("shop", "v2") is states[2]


def test_an_event_applied_out_of_order_joins_the_visit_and_the_earliest_names_it():
    eng = engine()
    view = event("page_view", 1, url="https://shop.example/p/a", referrer="https://www.bing.com/")
    cart = cart_event(2, "add_to_cart", "A", 10.0)
    later = event("page_view", 3, url="https://shop.example/cart")
    eng.handle([cart])  # another engine process applied the first batch later
    first_name = eng.store.get("shop", "v1").session_id
    eng.handle([view, later])
    state = eng.store.get("shop", "v1")
    assert state.session_id == session_id_of("shop", "v1", view["event_id"])  # as the warehouse
    assert eng.store.by_session("shop", first_name) is None
    assert eng.store.by_session("shop", state.session_id) is state
    assert state.started_at == at(1) and state.events == 3 and state.page_views == 2
    assert (state.landing_path, state.channel) == ("/p/a", "organic_search")
    assert state.current_url == "https://shop.example/cart"
    assert eng.counters["out_of_order"] == 1 and eng.counters["sessions_started"] == 1


def test_listeners_see_the_changes_of_a_visit_in_revision_order():
    import asyncio

    from realtime.engine.hub import Hub

    async def run() -> list[bytes]:
        hub = Hub()
        queue = hub.add("shop")
        # as from Redis pub/sub, where two processes published out of order
        for session, revision in [("s1", 1), ("s1", 3), ("s1", 2), ("s2", 1), ("s1", 3)]:
            hub.deliver("shop", f"{session}@{revision}".encode(), session, revision)
        hub.deliver("shop", b"s2 ended", "s2", float("inf"))
        hub.deliver("shop", b"s2@2", "s2", 2)  # published before the end, arrived after
        hub.deliver("shop", b"summary")  # not a visit's change: always delivered
        await asyncio.sleep(0)
        assert hub.stale == 3
        return [queue.get_nowait() for _ in range(queue.qsize())]

    assert asyncio.run(run()) == [b"s1@1", b"s1@3", b"s2@1", b"s2 ended", b"summary"]


def test_the_backlog_is_bounded_in_bytes_and_sheds_its_oldest_batches(monkeypatch):
    import asyncio

    import orjson

    from ingestion.core.landing import RequestRecords

    monkeypatch.setenv("SITELINE_ENGINE_BACKLOG_MB", "1")
    eng = engine()
    assert eng.max_backlog_bytes == 1024 * 1024
    loop = asyncio.new_event_loop()
    eng.attach(loop)  # not running yet: everything submitted waits in the backlog
    large = [
        event("page_view", n / 60, visitor=f"v{n:03d}", url="https://shop.example/p/a",
              properties={"blob": "x" * 60_000})
        for n in range(100)
    ]  # fmt: skip
    size = len(orjson.dumps(large[0]))
    assert all(len(orjson.dumps(e)) == size for e in large) and 60_000 < size < 61_000
    for record in large:
        eng.submit([record])
        assert eng.backlog_bytes <= 1024 * 1024
    kept = 1024 * 1024 // size  # 17 events of ~61 KB
    assert eng.backlog_events == kept and eng.backlog_bytes == kept * size
    assert eng.counters["shed"] == 100 - kept and eng.counters["shed_bytes"] == (100 - kept) * size
    # A collector's batch counts as its body, without decoding it; a batch of more than 20
    # events is queued in slices that share its size.
    body = orjson.dumps({"events": [
        {k: v for k, v in e.items() if k not in ("site_id", "received_at", "sent_at")}
        for e in large[:30]
    ]})  # fmt: skip
    enrichment = {"site_id": "shop", "received_at": large[0]["received_at"], "sent_at": None}
    eng.submit(RequestRecords(enrichment, body, 30))
    # Slices of 20 and 10 events (1.2 and 0.6 MB): everything older than the last one is shed.
    assert eng.backlog_events == 10 and eng.backlog_bytes == len(body) - len(body) * 20 // 30
    assert eng.counters["shed"] + eng.backlog_events == 130
    assert eng.counters["shed_bytes"] + eng.backlog_bytes == 100 * size + len(body)
    stats = eng.stats()
    assert stats["backlog_bytes"] == eng.backlog_bytes and stats["shed"] == eng.counters["shed"]

    async def drained():
        while eng.backlog:
            await asyncio.sleep(0.001)

    loop.run_until_complete(drained())
    loop.close()
    assert eng.backlog_bytes == 0 and eng.backlog_events == 0
    assert eng.counters["events"] == 130 - eng.counters["shed"]  # what was kept was applied
