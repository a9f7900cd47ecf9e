"""What an evaluation hands to the outbox: one instance's news (firing, resolved, repeat)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass(frozen=True)
class AlertNews:
    """One instance's news for one evaluation; the outbox groups them per contact point.

    ``dedupe_key`` is unique per instance and event (``<instance>|<kind>|<period start>``):
    the outbox keeps one item per contact point and key, so re-running an evaluation sends
    nothing twice. Times are ISO strings: period bounds local to the site (its
    ``timezone``), ``at`` in UTC. ``series`` holds the recent periods for the chart:
    ``[period_start, value, lower, upper]`` (lower/upper: the baseline band or the
    threshold, None where the condition has none)."""

    kind: Literal["firing", "resolved", "repeat", "test"]
    dedupe_key: str
    instance_id: str
    rule_id: str
    rule_name: str
    severity: str
    site_id: str
    site_name: str
    timezone: str
    metric: str
    metric_label: str
    unit: str
    grain: str
    period_start: str
    period_end: str
    value: float | None
    baseline: float | None
    lower: float | None
    upper: float | None
    reason: str
    state: str
    at: str
    contact_points: tuple[str, ...]
    dimension: str | None = None
    dimension_value: str | None = None
    currency: str | None = None
    transition_id: int | None = None
    dashboard_url: str | None = None
    series: list[list] = field(default_factory=list)

    def payload(self) -> dict:
        """The JSON stored with the outbox item (and sent by the JSON webhook)."""
        return asdict(self)
