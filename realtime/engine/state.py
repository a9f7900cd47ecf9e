"""Live state of one visit, and how an event changes it.

:class:`SessionState` is kept for every active session. It is small on purpose (slots,
shared strings, nothing derived stored): the engine holds one per active visit, so its
size bounds the engine's memory (benchmarks/realtime.py measures it). Derived figures -
duration, idle time, the real-time model outputs - are computed when the state is read
(:func:`scores`).

The real-time models (documented in docs/realtime.md, formulas here only):

* ``engagement_score`` (0-100) = 40 * min(page_views / 5, 1) + 40 * min(engaged_seconds /
  300, 1) + 20 * min(custom_events / 3, 1), rounded.
* ``purchase_intent`` (0-1) = 0.35 * [cart not empty] + 0.35 * funnel progress (the
  furthest share of a funnel's steps reached) + 0.15 * engagement_score / 100 + 0.15 *
  [the customer bought before]; 1 once the visit bought.
* ``abandonment_risk`` (0-1) = 0 with an empty cart or after a purchase; else
  min(idle_seconds / (timeout / 2), 1) * (0.5 + 0.5 * funnel progress): a cart left idle
  for half the inactivity timeout deep in the checkout is the highest risk.
"""

from __future__ import annotations

import sys

from ingestion.core.enrich import url_parts, user_agent_facts
from realtime.engine.rules import NO_CAMPAIGN, Campaign, SiteRules, Track, channel_of, iso

_intern = sys.intern


class SessionState:
    """One live visit: who, since when, what so far, where now, cart, goals and funnels."""

    __slots__ = (  # noqa: RUF023 - grouped by meaning, not sorted
        "site_id", "session_id", "visitor_id", "client_session_id", "user_id", "customer_key",
        "started_at", "last_activity_at", "seen_at", "page_views", "events", "custom_events",
        "engaged_seconds", "current_url", "current_title", "current_label", "entry_at",
        "landing_path", "referrer_host", "referrer_medium", "referrer_source", "campaign",
        "channel", "device_type", "browser", "os", "country", "is_bot", "cart", "goals",
        "funnel_steps", "transactions", "revenue", "matched_rules", "track", "revision",
    )  # fmt: skip

    def __init__(self, site_id: str, session_id: str, visitor_id: str, at: float) -> None:
        self.site_id = site_id
        self.session_id = session_id
        self.visitor_id = visitor_id
        self.client_session_id: str | None = None
        self.user_id: str | None = None
        self.customer_key = visitor_id
        self.started_at = at
        self.last_activity_at = at
        self.seen_at = at  # wall clock of the last event received (expiry)
        self.page_views = 0
        self.events = 0
        self.custom_events = 0
        self.engaged_seconds = 0.0
        self.current_url: str | None = None
        self.current_title: str | None = None
        self.current_label: str | None = None
        self.entry_at: float | None = None  # when the page view the entry fields come from was
        self.landing_path: str | None = None
        self.referrer_host: str | None = None
        self.referrer_medium: str | None = None
        self.referrer_source: str | None = None
        self.campaign: Campaign = NO_CAMPAIGN
        self.channel: str | None = None
        self.device_type: str | None = None
        self.browser: str | None = None
        self.os: str | None = None
        self.country: str | None = None
        self.is_bot = False
        self.cart: dict[str, list] | None = None  # sku → [quantity, value, name]
        self.goals: tuple[str, ...] = ()
        self.funnel_steps: tuple[int, ...] = ()
        self.transactions = 0
        self.revenue = 0.0
        self.matched_rules: tuple[tuple[str, float], ...] = ()
        self.track: Track | None = None
        self.revision = 0

    # -- the event --------------------------------------------------------------------------------
    def apply(self, record: dict, at: float, seen: float, rules: SiteRules) -> None:
        """Change the state by one event (already assigned to this visit)."""
        etype = record["type"]
        self.events += 1
        self.revision += 1
        self.seen_at = seen
        latest = at >= self.last_activity_at  # events may arrive out of order
        if at > self.last_activity_at:
            self.last_activity_at = at
        if self.client_session_id is None and record.get("session_id"):
            self.client_session_id = record["session_id"]
        if record.get("user_id"):
            self.user_id = self.customer_key = record["user_id"]
        if record.get("is_bot"):
            self.is_bot = True
        if self.device_type is None and self.events == 1:
            facts = user_agent_facts(record.get("user_agent") or "")
            self.device_type = _opt(facts["device_type"])
            self.browser = _opt(facts["browser"])
            self.os = _opt(facts["os"])
            self.country = _opt(record.get("country"))
        host, path, query = url_parts(record.get("url"))
        if etype == "page_view":
            self.page_views += 1
            if latest or self.current_url is None:
                self.current_url = record.get("url")
                self.current_title = record.get("title")
                self.current_label = _intern(rules.page_label(path))
            if self.entry_at is None or at < self.entry_at:  # the visit's first page view
                self.entry_at = at
                self.landing_path = path
                self.referrer_host = url_parts(record.get("referrer"))[0]
                medium, source = rules.referrer(self.referrer_host, host)
                self.referrer_medium, self.referrer_source = medium, source
                self.campaign = rules.campaign(query)
                self.channel = _intern(
                    channel_of(self.campaign.medium, self.campaign.source, medium)
                )
        elif etype == "page_ping":
            self.engaged_seconds += float(record.get("engaged_seconds") or 0)
        elif etype == "event":
            self.custom_events += 1
            if record.get("category") == "ecommerce":
                self._cart_event(record)
        elif etype == "transaction":
            self.transactions += 1
            self.revenue += float(record.get("revenue") or 0)
            self.cart = None  # bought: the cart is empty again
        self._goals_and_funnels(etype, path, record, rules)

    def _cart_event(self, record: dict) -> None:
        """add_to_cart / remove_from_cart (category ``ecommerce``, label = SKU, value = line
        value, properties.quantity); see docs/tracker.md, "Cart events"."""
        action, sku = record.get("action"), record.get("label")
        if not sku or action not in ("add_to_cart", "remove_from_cart"):
            return
        props = record.get("properties") or {}
        quantity = props.get("quantity") if isinstance(props.get("quantity"), int) else 1
        value = float(record.get("value") or 0)
        cart = self.cart if self.cart is not None else {}
        line = cart.get(sku)
        if action == "add_to_cart":
            if line is None:
                cart[sku] = [quantity, value, props.get("name")]
            else:
                line[0] += quantity
                line[1] += value
        elif line is not None:
            if quantity >= line[0]:
                del cart[sku]
            else:
                line[1] -= line[1] * quantity / line[0]
                line[0] -= quantity
        self.cart = cart or None

    def _goals_and_funnels(self, etype, path, record, rules: SiteRules) -> None:
        category, action = record.get("category"), record.get("action")
        for goal, rule in rules.goals:
            if goal.id not in self.goals and rules.matches(rule, etype, path, category, action):
                self.goals = (*self.goals, goal.id)
        if not rules.funnels:
            return
        steps = list(self.funnel_steps or (0,) * len(rules.funnels))
        for index, (_, compiled) in enumerate(rules.funnels):
            reached = steps[index]
            # One event can complete consecutive steps (the warehouse compares with >=).
            while reached < len(compiled) and rules.matches(
                compiled[reached], etype, path, category, action
            ):
                reached += 1
            steps[index] = reached
        self.funnel_steps = tuple(steps)

    # -- reading ----------------------------------------------------------------------------------
    @property
    def cart_quantity(self) -> int:
        return sum(line[0] for line in self.cart.values()) if self.cart else 0

    @property
    def cart_value(self) -> float:
        return round(sum(line[1] for line in self.cart.values()), 2) if self.cart else 0.0

    def funnel_progress(self, rules: SiteRules) -> float:
        best = 0.0
        for (_, compiled), reached in zip(rules.funnels, self.funnel_steps, strict=False):
            best = max(best, reached / len(compiled))
        return best

    def to_dict(self, rules: SiteRules, now: float, customer: dict | None = None) -> dict:
        """The public form (GET /v1/sessions/{id}); times as ISO 8601 UTC."""
        campaign = self.campaign
        return {
            "site_id": self.site_id,
            "session_id": self.session_id,
            "client_session_id": self.client_session_id,
            "visitor_id": self.visitor_id,
            "user_id": self.user_id,
            "customer_key": self.customer_key,
            "started_at": iso(self.started_at),
            "last_activity_at": iso(self.last_activity_at),
            "duration_seconds": round(self.last_activity_at - self.started_at, 3),
            "idle_seconds": round(max(0.0, now - self.last_activity_at), 3),
            "expires_at": iso(self.seen_at + rules.timeout),
            "page_views": self.page_views,
            "events": self.events,
            "custom_events": self.custom_events,
            "engaged_seconds": self.engaged_seconds,
            "current_page": {
                "url": self.current_url,
                "path": url_parts(self.current_url)[1],
                "title": self.current_title,
                "label": self.current_label,
            },
            "entry": {
                "landing_path": self.landing_path,
                "channel": self.channel,
                "referrer_host": self.referrer_host,
                "referrer_medium": self.referrer_medium,
                "referrer_source": self.referrer_source,
                "campaign": {
                    "name": campaign.name,
                    "source": campaign.source,
                    "medium": campaign.medium,
                    "term": campaign.term,
                    "content": campaign.content,
                },
            },
            "device": {
                "type": self.device_type,
                "browser": self.browser,
                "os": self.os,
                "country": self.country,
            },
            "is_bot": self.is_bot,
            "cart": {
                "items": [
                    {"sku": sku, "quantity": line[0], "value": round(line[1], 2), "name": line[2]}
                    for sku, line in (self.cart or {}).items()
                ],
                "quantity": self.cart_quantity,
                "value": self.cart_value,
            },
            "goals": list(self.goals),
            "funnels": {
                funnel.id: {
                    "step": reached,
                    "steps": len(compiled),
                    "step_name": compiled_name(funnel, reached),
                    "completed": reached == len(compiled),
                }
                for (funnel, compiled), reached in zip(
                    rules.funnels, self.funnel_steps or (0,) * len(rules.funnels), strict=True
                )
            },
            "transactions": self.transactions,
            "revenue": round(self.revenue, 2),
            "scores": scores(self, rules, now, customer),
            "rules": [
                {"id": rule_id, "matched_at": iso(at), **_rule_output(rules, rule_id)}
                for rule_id, at in self.matched_rules
            ],
            "revision": self.revision,
        }

    # -- persistence (snapshot, Redis) ------------------------------------------------------------
    def to_record(self) -> dict:
        record = {name: getattr(self, name) for name in self.__slots__}
        record["campaign"] = list(
            (self.campaign.name, self.campaign.source, self.campaign.medium,
             self.campaign.term, self.campaign.content)
        )  # fmt: skip
        track = self.track
        record["track"] = (
            None if track is None
            else [track.last_at, track.last_day, track.page_views_in_run, track.last_touch,
                  track.started_at, track.piece]
        )  # fmt: skip
        return record

    @classmethod
    def from_record(cls, record: dict) -> SessionState:
        state = cls.__new__(cls)
        for name in cls.__slots__:
            setattr(state, name, record.get(name))
        state.campaign = Campaign(*record["campaign"]) if any(record["campaign"]) else NO_CAMPAIGN
        state.track = Track(*record["track"]) if record.get("track") else None
        state.goals = tuple(record.get("goals") or ())
        state.funnel_steps = tuple(record.get("funnel_steps") or ())
        state.matched_rules = tuple(tuple(r) for r in record.get("matched_rules") or ())
        for name in ("site_id", "channel", "device_type", "browser", "os", "country",
                     "current_label", "referrer_medium"):  # fmt: skip
            value = getattr(state, name)
            if value is not None:
                setattr(state, name, _intern(value))
        return state


def _opt(value: str | None) -> str | None:
    return _intern(value) if value else None


def compiled_name(funnel, reached: int) -> str | None:
    return funnel.steps[reached - 1].name if reached else None


def _rule_output(rules: SiteRules, rule_id: str) -> dict:
    for rule in rules.site.realtime_rules:
        if rule.id == rule_id:
            return {"name": rule.name or rule.id, "then": rule.then}
    return {}


def scores(state: SessionState, rules: SiteRules, now: float, customer: dict | None) -> dict:
    """The real-time model outputs (formulas in the module docstring and docs/realtime.md)."""
    engagement = round(
        40 * min(state.page_views / 5, 1)
        + 40 * min(state.engaged_seconds / 300, 1)
        + 20 * min(state.custom_events / 3, 1)
    )
    progress = state.funnel_progress(rules)
    has_cart = bool(state.cart)
    bought_before = bool(customer and (customer.get("transactions") or 0) > 0)
    if state.transactions:
        intent = 1.0
    else:
        intent = 0.35 * has_cart + 0.35 * progress + 0.15 * engagement / 100 + 0.15 * bought_before
    if not has_cart or state.transactions:
        risk = 0.0
    else:
        idle = max(0.0, now - state.last_activity_at)
        risk = min(idle / (rules.timeout / 2), 1.0) * (0.5 + 0.5 * progress)
    return {
        "engagement_score": engagement,
        "purchase_intent": round(min(intent, 1.0), 3),
        "abandonment_risk": round(risk, 3),
    }
