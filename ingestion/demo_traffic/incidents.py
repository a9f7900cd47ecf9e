"""Incidents injected into the demo traffic, with their ground truth.

An incident is something a site owner wants an alert for: the checkout failing for a few
hours, a burst of visits from one campaign, a bot flooding the web server, pages turning
slow after a deploy. The simulator (``simulator.Simulator``) makes each one happen in the
traffic it writes, and writes what it did to ``truth/incidents.csv``, so that a backtest
of the alert rules can check that every incident is caught and nothing else is.

Incidents are configuration (``SimulationConfig.incidents``), placed in the site's local
time; their randomness comes from a stream of its own, so the same seed gives the same
incidents, and a run without incidents is the traffic it always was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

IncidentKind = Literal["checkout_outage", "campaign_spike", "bot_flood", "page_speed_regression"]

# What each kind moves: metric names of the catalogue (ingestion/core/metrics.py), and the
# dimension value it moves them in (None: the site as a whole).
MOVES: dict[str, tuple[str, ...]] = {
    "checkout_outage": (
        "log_5xx_share", "log_5xx", "transactions", "revenue", "conversion_rate",
        "payment_failures",
    ),
    "campaign_spike": ("sessions", "visitors"),
    "bot_flood": ("bot_share",),
    "page_speed_regression": ("page_load_p75",),
}  # fmt: skip

# The source of a campaign spike's visits: an Instagram post of a flash sale (channel social).
SPIKE_SOURCE = (
    "social", 0, "https://www.instagram.com/",
    {"utm_source": "instagram", "utm_medium": "social", "utm_campaign": "flash_sale"},
)  # fmt: skip
# A scraper that names itself (the crawler list knows it) from a few cloud addresses.
FLOOD_USER_AGENT = "Scrapy/2.11.0 (+https://scrapy.org)"
FLOOD_NETWORK = "47.128.20"
OUTAGE_STATUS = 503

# The demo's incidents need a seasonal baseline before them: three weeks of normal traffic.
DEMO_MIN_DAYS = 21

TRUTH_FIELDS = [
    "incident", "kind", "site_id", "start_local", "end_local", "start_utc", "end_utc",
    "metrics", "dimension", "factor", "description", "affected",
]  # fmt: skip


@dataclass(frozen=True)
class Incident:
    """One incident: ``kind`` from ``start`` (naive, the site's local time) for ``hours``.

    ``factor`` is how strong it is, per kind:

    * ``checkout_outage``: unused. Placing an order fails: ``POST /checkout/payment``
      answers 503, the payment page reports ``payment_failed`` (a tracker event, category
      ``ecommerce``), the visitor tries once or twice more and leaves; no order.
    * ``campaign_spike``: extra visits per hour, as a multiple of the site's average hourly
      visits (``visits_per_day / 24``), all from ``SPIKE_SOURCE`` (channel social, campaign
      ``flash_sale``).
    * ``bot_flood``: a scraper's requests per hour, as a multiple of the site's average
      hourly visits: log lines only (it runs no JavaScript), GET 200 of product, category
      and search pages.
    * ``page_speed_regression``: the tracker's page load time (``load_ms``, and
      ``dom_interactive_ms``) of every page view is multiplied by it.
    """

    kind: IncidentKind
    start: datetime
    hours: float
    factor: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in MOVES:
            raise ValueError(f"'{self.kind}' is not an incident kind; use {', '.join(MOVES)}")
        if self.start.tzinfo is not None:
            raise ValueError("an incident's start is a naive datetime in the site's time zone")
        if self.hours <= 0 or self.factor <= 0:
            raise ValueError("an incident needs hours > 0 and factor > 0")

    @property
    def metrics(self) -> tuple[str, ...]:
        """The catalogue's metrics this incident moves."""
        return MOVES[self.kind]

    @property
    def dimension(self) -> tuple[str, str] | None:
        """The (dimension, value) the metrics move in, when not the whole site."""
        return ("channel", SPIKE_SOURCE[0]) if self.kind == "campaign_spike" else None

    def window_utc(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) in UTC (aware); the duration is absolute, across a DST change too."""
        start = self.start.replace(tzinfo=tz).astimezone(UTC)
        return start, start + timedelta(hours=self.hours)

    def window_local(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) as naive local times of the site."""
        start, end = self.window_utc(tz)
        return (start.astimezone(tz).replace(tzinfo=None), end.astimezone(tz).replace(tzinfo=None))

    def as_dict(self) -> dict:
        return {"kind": self.kind, "start": self.start.isoformat(), "hours": self.hours,
                "factor": self.factor}  # fmt: skip


def demo_incidents(start: date, days: int) -> tuple[Incident, ...]:
    """The demo's four incidents, on four weekdays of the last week of a run of at least
    ``DEMO_MIN_DAYS`` days (the weeks before are the normal traffic a seasonal baseline
    learns from); none in a shorter run.

    Counted from the last week's first day D: a flash-sale spike on D+1 18:00-21:00, the
    checkout outage on D+2 16:00-21:00 (the evening peak), a scraper's flood on D+3
    10:00-15:00, slow pages from D+4 09:00 to D+5 13:00 (28 hours). D+5's afternoon and D+6
    are normal again.
    """
    if days < DEMO_MIN_DAYS:
        return ()
    first = start + timedelta(days=days - 7)

    def at(day: int, hour: int) -> datetime:
        return datetime.combine(first + timedelta(days=day), time(hour))

    return (
        Incident("campaign_spike", at(1, 18), hours=3, factor=8),
        Incident("checkout_outage", at(2, 16), hours=5),
        Incident("bot_flood", at(3, 10), hours=5, factor=100),
        Incident("page_speed_regression", at(4, 9), hours=28, factor=2.5),
    )


def truth_rows(incidents: tuple[Incident, ...], site_id: str, tz: ZoneInfo,
               affected: list[int]) -> list[dict]:  # fmt: skip
    """The ground truth of ``incidents`` (``truth/incidents.csv``): one row each, with its
    window in local time and UTC, the metrics it moves and how much traffic it touched
    (``affected``: failed orders, extra visits, bot requests or slowed page views)."""
    rows = []
    for number, (incident, touched) in enumerate(zip(incidents, affected, strict=True), 1):
        start_local, end_local = incident.window_local(tz)
        start_utc, end_utc = incident.window_utc(tz)
        dimension = incident.dimension
        rows.append({
            "incident": number, "kind": incident.kind, "site_id": site_id,
            "start_local": start_local.isoformat(), "end_local": end_local.isoformat(),
            "start_utc": _z(start_utc), "end_utc": _z(end_utc),
            "metrics": " ".join(incident.metrics),
            "dimension": f"{dimension[0]}={dimension[1]}" if dimension else "",
            "factor": incident.factor, "description": describe(incident), "affected": touched,
        })  # fmt: skip
    return rows


def describe(incident: Incident) -> str:
    """The incident in one sentence."""
    if incident.kind == "checkout_outage":
        return (f"Placing an order fails: POST /checkout/payment answers {OUTAGE_STATUS}, "
                "payment_failed events, no orders")  # fmt: skip
    if incident.kind == "campaign_spike":
        return (f"{incident.factor:g}x the average hourly visits on top, from Instagram "
                "(channel social, campaign flash_sale)")  # fmt: skip
    if incident.kind == "bot_flood":
        return (f"A scraper ({FLOOD_USER_AGENT.split()[0]}) requests {incident.factor:g}x the "
                "average hourly visits per hour (log only)")  # fmt: skip
    return f"Page load time {incident.factor:g}x slower (tracker performance data)"


def _z(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
