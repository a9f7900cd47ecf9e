"""How a site's personalisation rules (``realtime_rules`` in sites.yml) are evaluated against
a live visit: the operators a condition uses, the fields a rule names (session, cart, scores,
funnels, customer) and which rules match now.

sites.yml's schema (``ingestion.core.sites``: ``RULE_FIELD``, ``RULE_OPERATORS``) decides
what a rule may say; this module is what the engine computes for it. Fields and operators
are described for users in docs/realtime.md.
"""

from __future__ import annotations

import operator

from ingestion.core.enrich import url_parts
from realtime.engine.rules import SiteRules
from realtime.engine.state import SessionState, scores

# ``exists`` is not here: it is the one condition a missing value can meet (see matches).
OPERATORS = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "in": lambda value, operand: value in operand,
    "not_in": lambda value, operand: value not in operand,
    "contains": lambda value, operand: operand in value,
}


def matches(value, conditions: dict) -> bool:
    """Whether a field's value meets every condition ({operator: operand}); a missing value
    meets only ``exists: false``."""
    for op, operand in conditions.items():
        if op == "exists":
            if (value is not None) != bool(operand):
                return False
        elif value is None:
            return False
        else:
            try:
                if not OPERATORS[op](value, operand):
                    return False
            except TypeError:
                return False
    return True


SESSION_FIELDS = {
    "page_views": lambda s: s.page_views,
    "events": lambda s: s.events,
    "custom_events": lambda s: s.custom_events,
    "engaged_seconds": lambda s: s.engaged_seconds,
    "duration_seconds": lambda s: s.last_activity_at - s.started_at,
    "transactions": lambda s: s.transactions,
    "revenue": lambda s: round(s.revenue, 2),
    "is_bot": lambda s: s.is_bot,
    "goals": lambda s: list(s.goals),
    "user_id": lambda s: s.user_id,
    "channel": lambda s: s.channel,
    "landing_path": lambda s: s.landing_path,
    "current_path": lambda s: url_parts(s.current_url)[1],
    "current_label": lambda s: s.current_label,
    "device_type": lambda s: s.device_type,
    "country": lambda s: s.country,
}  # and ``idle_seconds``, which depends on the time of evaluation (RuleFields.get)
CART_FIELDS = {
    "value": lambda s: s.cart_value,
    "quantity": lambda s: s.cart_quantity,
    "skus": lambda s: list(s.cart or ()),
}


class RuleFields:
    """The values real-time rules test (names: docs/realtime.md), computed on demand: a rule
    costs only the fields it names."""

    def __init__(self, state: SessionState, rules: SiteRules, now: float, customer) -> None:
        self.state, self.rules, self.now = state, rules, now
        self.customer = customer or {}
        self._scores: dict | None = None

    def get(self, name: str):
        group, _, rest = name.partition(".")
        state = self.state
        if group == "session":
            if rest == "idle_seconds":
                return max(0.0, self.now - state.last_activity_at)
            return SESSION_FIELDS[rest](state)
        if group == "cart":
            return CART_FIELDS[rest](state)
        if group == "scores":
            if self._scores is None:
                self._scores = scores(state, self.rules, self.now, self.customer)
            return self._scores[rest]
        if group == "funnels":
            funnel_id = rest.rsplit(".", 1)[0]
            for index, (funnel, _) in enumerate(self.rules.funnels):
                if funnel.id == funnel_id:
                    steps = state.funnel_steps
                    return steps[index] if steps else 0
            return None
        if rest.startswith("attributes."):
            return (self.customer.get("attributes") or {}).get(rest[len("attributes.") :])
        return self.customer.get(rest)


def evaluate(state: SessionState, rules: SiteRules, now: float, customer: dict | None) -> None:
    """Record in ``state.matched_rules`` the site's rules that match now (a rule keeps the
    time it first matched)."""
    fields = RuleFields(state, rules, now, customer)
    before = dict(state.matched_rules)
    state.matched_rules = tuple(
        (rule.id, before.get(rule.id, now))
        for rule in rules.site.realtime_rules
        if all(matches(fields.get(name), cond) for name, cond in rule.when.items())
    )
