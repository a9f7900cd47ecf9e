"""The metric catalogue: every KPI that alerts, reports and the real-time rules can name.

Defined once, here, and read by everyone: ``sites.yml``'s validation (an alert rule naming an
unknown metric, or filtering on a dimension its metric does not have, is refused),
the alert evaluator and the scheduled reports (``orchestration/alerts/series.py`` turns a
metric into SQL over the marts) and the real-time evaluator (the ``realtime`` metrics are
windows of the engine's live state, not SQL).

A metric is a number per site and period (an hour, a day, ...in the site's time zone): a
``count`` or a ``sum`` of rows, a ``ratio`` of two counts, a ``mean`` or a ``percentile``.
``volume`` is what a rate is a rate of (the visits behind a bounce rate): the anomaly
condition's ``min_volume`` reads it, so that 1 bounce in 2 visits pages nobody.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

# Dimensions a rule may filter on (``filters:``) or split by (``by:``), and the column of the
# metric's relation each stands for (filled in per metric below).
DIMENSIONS = ("channel", "device", "country", "page_label", "campaign", "goal", "funnel", "step")
SPLITTABLE = ("channel", "device", "country", "page_label", "campaign", "goal")

Unit = Literal["count", "ratio", "seconds", "milliseconds", "currency"]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: Unit
    description: str
    # the dimensions a rule may filter on / split by, for this metric
    dimensions: tuple[str, ...] = ()
    # dimensions that must be given (a funnel's drop-off needs its funnel and step)
    required: tuple[str, ...] = ()
    # True: a window of the real-time engine's state (sliding minutes), not a mart query
    realtime: bool = False
    # which way is bad, for a default anomaly direction and for report arrows
    higher_is_better: bool | None = True
    # the Superset dashboard an alert on this metric links to
    dashboard: str = "traffic"
    notes: tuple[str, ...] = field(default_factory=tuple)


_SESSION_DIMS = ("channel", "device", "country", "page_label", "campaign")

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("sessions", "Visits", "count", "Visits of people that started in the period "
               "(web.fct_sessions; page_label filters on the landing page).", _SESSION_DIMS),
        Metric("visitors", "Visitors", "count", "Distinct visitor ids with a visit that "
               "started in the period.", _SESSION_DIMS),
        Metric("page_views", "Page views", "count", "Page views of people "
               "(web.fct_page_views).", ("channel", "device", "country", "page_label")),
        Metric("bounce_rate", "Bounce rate", "ratio", "Visits with at most one page view / "
               "visits.", _SESSION_DIMS, higher_is_better=False),
        Metric("engaged_time", "Engaged time per visit", "seconds", "Mean engaged seconds "
               "(heartbeats) per visit.", _SESSION_DIMS),
        Metric("conversion_rate", "Conversion rate", "ratio", "Visits that reached a goal (the "
               "given goal, or any) / visits.", (*_SESSION_DIMS, "goal")),
        Metric("conversions", "Conversions", "count", "Goal conversions (the given goal, or "
               "all) in visits that started in the period (web.fct_goal_conversions).",
               (*_SESSION_DIMS, "goal")),
        Metric("funnel_drop_off", "Funnel step drop-off", "ratio", "Share of the visits that "
               "reached the funnel's step before `step` and did not reach `step` "
               "(web.fct_funnel_steps).", ("funnel", "step", "channel", "device", "country"),
               required=("funnel", "step"), higher_is_better=False),
        Metric("transactions", "Orders", "count", "Orders placed in the period "
               "(web.fct_transactions, by ordered_at).", ("channel", "device", "country")),
        Metric("revenue", "Revenue", "currency", "Revenue of the orders placed in the period.",
               ("channel", "device", "country")),
        Metric("average_order_value", "Average order value", "currency", "Revenue / orders.",
               ("channel", "device", "country")),
        Metric("new_customers", "New customers", "count", "Customers whose first order was "
               "placed in the period (crm.customers.first_transaction_at)."),
        Metric("log_4xx", "HTTP 4xx responses", "count", "Log lines answered 4xx (bots and "
               "static assets included).", higher_is_better=False),
        Metric("log_5xx", "HTTP 5xx responses", "count", "Log lines answered 5xx.",
               higher_is_better=False),
        Metric("log_4xx_share", "HTTP 4xx share", "ratio", "Log lines answered 4xx / log "
               "lines.", higher_is_better=False),
        Metric("log_5xx_share", "HTTP 5xx share", "ratio", "Log lines answered 5xx / log "
               "lines.", higher_is_better=False),
        Metric("bot_share", "Bot share", "ratio", "Log lines from bots / log lines.",
               higher_is_better=False),
        Metric("page_load_p75", "Page load time (p75)", "milliseconds", "75th percentile of "
               "the tracker's page load time (navigation start to load event).",
               ("channel", "device", "country", "page_label"), higher_is_better=False),
        Metric("untracked_share", "Page views the tracker missed", "ratio", "Page views only "
               "the access log saw (tracker blocked, no consent, no JavaScript) / page views: "
               "the ad-blocker and consent loss.", ("device", "country", "page_label"),
               higher_is_better=False),
        Metric("custom", "Custom SQL", "count", "A rule's own SQL over web.* / crm.*, run as "
               "bi_reader, returning (period, value); the rule gives it in `sql`.",
               higher_is_better=None),
        # windows of the real-time engine's live state
        Metric("active_visitors", "Active visitors", "count", "Visitors with an event in the "
               "last `window` minutes.", realtime=True, dashboard="alerts"),
        Metric("orders", "Orders (live)", "count", "Orders received in the last `window` "
               "minutes.", realtime=True, dashboard="alerts"),
        Metric("checkout_errors", "Checkout errors", "count", "JavaScript errors and HTTP "
               "errors on checkout pages (page label Checkout) in the last `window` minutes.",
               realtime=True, higher_is_better=False, dashboard="alerts"),
        Metric("payment_failures", "Payment failures", "count", "Payment failures (event "
               "action payment_failed) in the last `window` minutes.", realtime=True,
               higher_is_better=False, dashboard="alerts"),
    )
}  # fmt: skip


# The Superset dashboard (slug) an alert on a metric links to; the rest link to "traffic".
_DASHBOARDS = {
    "goals": ("conversion_rate", "conversions", "funnel_drop_off"),
    "ecommerce": ("transactions", "revenue", "average_order_value", "new_customers"),
    "performance": ("log_4xx", "log_5xx", "log_4xx_share", "log_5xx_share", "bot_share",
                    "page_load_p75", "untracked_share"),
}  # fmt: skip
for _slug, _names in _DASHBOARDS.items():
    for _name in _names:
        METRICS[_name] = replace(METRICS[_name], dashboard=_slug)


def metric(name: str) -> Metric:
    """The catalogue's metric ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        known = ", ".join(sorted(METRICS))
        raise KeyError(f"'{name}' is not a metric; the catalogue has: {known}") from None
