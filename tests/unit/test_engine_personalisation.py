"""Personalisation rules: the fields and operators sites.yml accepts are the ones the engine
computes, their values for a visit, and which rules match over time."""

import re
import uuid
from datetime import UTC, datetime, timedelta

from ingestion.core.sites import RULE_FIELD, RULE_OPERATORS, SitesConfig
from realtime.engine.engine import Engine
from realtime.engine.personalisation import (
    CART_FIELDS,
    OPERATORS,
    SESSION_FIELDS,
    RuleFields,
    evaluate,
)

SITE = {
    "id": "shop",
    "domains": ["shop.example"],
    "sessions": {"inactivity_timeout_minutes": 30},
    "page_labels": [{"label": "Cart", "path": "^/cart"}],
    "funnels": [{"id": "checkout", "steps": [{"name": "Cart", "path": "^/cart$"},
                                              {"name": "Done", "type": "transaction"}]}],
    "realtime_rules": [
        {"id": "big_cart", "when": {"cart.value": {"gt": 100}}},
        {"id": "returning", "when": {"customer.transactions": {"gte": 1},
                                     "customer.attributes.tier": {"in": ["gold"]}}},
    ],
}  # fmt: skip
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def at(minutes: float) -> float:
    return (T0 + timedelta(minutes=minutes)).timestamp()


def event(kind: str, minutes: float, **fields) -> dict:
    moment = (T0 + timedelta(minutes=minutes)).isoformat()
    return {
        "event_id": str(uuid.uuid4()), "type": kind, "site_id": "shop", "visitor_id": "v1",
        "session_id": "client-1", "occurred_at": moment, "sent_at": moment,
        "received_at": moment, "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
        "country": "DE", "is_bot": False, **fields,
    }  # fmt: skip


def add_to_cart(minutes: float, sku: str, value: float) -> dict:
    return event("event", minutes, category="ecommerce", action="add_to_cart", label=sku,
                 value=value, properties={"quantity": 1}, url="https://shop.example/cart")  # fmt: skip


def schema_names(group: str) -> set[str]:
    """The names sites.yml's schema accepts after ``group.`` (from its pattern)."""
    alternatives = re.search(group + r"\\\.\(([a-z_|]+)\)", RULE_FIELD.pattern).group(1)
    return set(alternatives.split("|"))


def test_the_engine_computes_every_field_and_operator_sites_yml_accepts():
    assert set(SESSION_FIELDS) | {"idle_seconds"} == schema_names("session")
    assert set(CART_FIELDS) == schema_names("cart") == {"value", "quantity", "skus"}
    assert set(OPERATORS) | {"exists"} == set(RULE_OPERATORS)


def test_the_fields_of_a_visit():
    engine = Engine(SitesConfig.model_validate({"sites": [SITE]}))
    engine.handle([
        event("page_view", 0, url="https://shop.example/p/a", referrer="https://www.bing.com/"),
        add_to_cart(1, "A", 60.0),
        event("page_view", 2, url="https://shop.example/cart"),
        add_to_cart(3, "B", 50.0),
    ])  # fmt: skip
    state = engine.store.get("shop", "v1")
    customer = {"known": True, "transactions": 2, "rfm_segment": "champion",
                "attributes": {"tier": "gold"}}  # fmt: skip
    fields = RuleFields(state, engine.rules["shop"], at(5), customer)
    assert {name: fields.get("session." + name) for name in sorted(SESSION_FIELDS)} == {
        "channel": "organic_search", "country": "DE", "current_label": "Cart",
        "current_path": "/cart", "custom_events": 2, "device_type": "desktop",
        "duration_seconds": 180.0, "engaged_seconds": 0.0, "events": 4, "goals": [],
        "is_bot": False, "landing_path": "/p/a", "page_views": 2, "revenue": 0.0,
        "transactions": 0, "user_id": None,
    }  # fmt: skip
    assert fields.get("session.idle_seconds") == 120.0
    assert [fields.get("cart." + name) for name in ("value", "quantity", "skus")] == [
        110.0, 2, ["A", "B"],
    ]  # fmt: skip
    assert fields.get("funnels.checkout.step") == 1
    assert fields.get("funnels.other.step") is None
    assert fields.get("customer.transactions") == 2
    assert fields.get("customer.attributes.tier") == "gold"
    assert fields.get("customer.attributes.missing") is None
    # engagement 40 * 2/5 + 0 + 20 * 2/3 = 29.3 -> 29; intent .35 + .35 * 1/2 + .15 * .29
    # + .15 (bought before); risk: idle 2 of 15 minutes, times (.5 + .5 * 1/2)
    assert [fields.get("scores." + name) for name in
            ("engagement_score", "purchase_intent", "abandonment_risk")] == [29, 0.718, 0.1]  # fmt: skip


def test_a_rule_keeps_the_time_it_first_matched_until_it_no_longer_matches():
    engine = Engine(SitesConfig.model_validate({"sites": [SITE]}))
    rules = engine.rules["shop"]
    engine.handle([event("page_view", 0, url="https://shop.example/cart"),
                   add_to_cart(1, "A", 120.0)])  # fmt: skip
    state = engine.store.get("shop", "v1")
    assert [rule for rule, _ in state.matched_rules] == ["big_cart"]
    first = dict(state.matched_rules)["big_cart"]
    gold = {"transactions": 1, "attributes": {"tier": "gold"}}
    evaluate(state, rules, first + 60, gold)
    assert state.matched_rules == (("big_cart", first), ("returning", first + 60))
    evaluate(state, rules, first + 120, {"transactions": 1, "attributes": {"tier": "silver"}})
    assert state.matched_rules == (("big_cart", first),)
    evaluate(state, rules, first + 180, None)  # no customer state: customer fields are missing
    assert state.matched_rules == (("big_cart", first),)
