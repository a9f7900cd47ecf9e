"""What a rule would have fired: its conditions and its state machine replayed over past
periods (PostHog's "backtest"), without writing anything or notifying anyone.

The replay uses the rule's whole definition (condition, ``for``, ``no_data``), the same
series and the same judging as the live evaluation, on every period of the last ``days``
days that is closed; the completeness of each past period is not checked (it is history).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ingestion.core.alert_config import AlertRule
from ingestion.core.sites import SitesConfig
from orchestration.alerts import states
from orchestration.alerts.evaluate import instance_id


@dataclass
class Episode:
    """One firing: from the period that made the instance fire to the one that resolved it
    (None: still firing at the end of the backtest)."""

    instance_id: str
    site_id: str
    dimension_value: str | None
    fired: datetime
    resolved: datetime | None
    peak_value: float | None
    detail: str


@dataclass
class BacktestResult:
    rule_id: str
    start: dict[str, datetime]  # site -> first period replayed (local)
    end: dict[str, datetime]  # site -> last period replayed (local)
    periods: int = 0
    breaches: int = 0
    episodes: list[Episode] = field(default_factory=list)
    breach_periods: dict[str, list[datetime]] = field(default_factory=dict)  # instance -> periods


def backtest(
    conn, config: SitesConfig, rule: AlertRule, days: int = 90, now: datetime | None = None
) -> BacktestResult:
    from orchestration.alerts import conditions, periods, series
    from orchestration.alerts.evaluate import last_complete_period

    now = now or datetime.now(UTC)
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    sites = config.sites_of(rule)
    result = BacktestResult(rule.id, {}, {})
    for site in sites:
        last = last_complete_period(rule, site, now, now)
        local_start = (now - timedelta(days=days)).astimezone(ZoneInfo(site.timezone))
        result.start[site.id] = periods.next_period(
            periods.period_start(local_start.replace(tzinfo=None), rule.grain), rule.grain
        )
        result.end[site.id] = last
    first = min(result.start.values())
    history = conditions.history_needed(rule.condition, rule.grain)
    fetch_start = first
    for _ in range(history):
        fetch_start = periods.shift(fetch_start, rule.grain, "previous_period")
    fetch_end = periods.next_period(max(result.end.values()), rule.grain)
    data = series.fetch_series(conn, rule, sites, fetch_start, fetch_end)
    for (site_id, value), points in sorted(data.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        iid = instance_id(rule, site_id, value)
        judgements = conditions.judge_all(rule.condition, points, rule.grain)
        state = states.InstanceState()
        open_episode: Episode | None = None
        for period, judgement in zip(points.periods, judgements, strict=True):
            if not result.start[site_id] <= period <= result.end[site_id]:
                continue
            result.periods += 1
            if judgement.verdict == "breach":
                result.breaches += 1
                result.breach_periods.setdefault(iid, []).append(period)
            moved = states.step(
                state, judgement.verdict, for_periods=rule.for_periods,
                repeat_seconds=rule.repeat_interval, no_data=rule.no_data,
                now=datetime.combine(period, datetime.min.time()) if not isinstance(
                    period, datetime) else period,
            )  # fmt: skip
            state = moved.after
            if moved.notify == "firing":
                open_episode = Episode(iid, site_id, value, period, None, judgement.value,
                                       judgement.detail)  # fmt: skip
                result.episodes.append(open_episode)
            elif open_episode is not None and moved.after.state == "firing":
                if judgement.value is not None and open_episode.peak_value is not None:
                    open_episode.peak_value = max(open_episode.peak_value, judgement.value)
            elif moved.notify == "resolved" and open_episode is not None:
                open_episode.resolved = period
                open_episode = None
    return result
