"""The evaluation cycle: for every rule, the periods that are closed and complete, their
values and verdicts, the instances' states, the rows that record them, and the news for the
outbox.

A cycle evaluates each instance's periods in order, from the one after the last it evaluated
up to the last complete one (``orchestration.completeness``), so ``for: 2`` means two periods
in a row whatever the cadence of the cycles. Evaluating a period twice changes nothing (an
evaluation is stored once per instance and period, and the outbox keeps one item per
contact point and news), so a re-run, or two cycles racing, never notify twice. A rule that
cannot be evaluated (its custom SQL fails, its metric's mart is missing) moves its instances
to Error with the reason; the other rules go on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ingestion.core.alert_config import AlertRule
from ingestion.core.metrics import METRICS
from ingestion.core.sites import Site, SitesConfig
from orchestration.alerts import states
from orchestration.alerts.news import AlertNews
from orchestration.alerts.store import ensure_schema

log = logging.getLogger("siteline.alerts")

# A new instance starts this many periods back (its pending period fits), and a cycle that
# fell behind catches up at most this many periods per instance (the rest is skipped, said).
MAX_CATCH_UP = 48
# Periods of the series sent with each news, for the chart.
CHART_PERIODS = 36
# Up to this many periods to judge, a cycle reads only the periods their judgements read.
FEW_PERIODS = 6


def rule_version(rule: AlertRule) -> str:
    """A short hash of the rule's definition: evaluations name the version that made them."""
    canonical = json.dumps(rule.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def instance_id(rule: AlertRule, site_id: str, dimension_value: str | None) -> str:
    """``<rule>/<site>`` or ``<rule>/<site>/<by>=<value>``."""
    base = f"{rule.id}/{site_id}"
    return base if rule.by is None else f"{base}/{rule.by}={dimension_value}"


@dataclass
class RuleOutcome:
    rule_id: str
    instances: int = 0
    periods: int = 0
    states: dict[str, str] = field(default_factory=dict)  # instance -> state
    waiting: dict[str, str] = field(default_factory=dict)  # site -> why
    skipped: dict[str, str] = field(default_factory=dict)  # site -> periods not caught up
    error: str | None = None
    lines: list[str] = field(default_factory=list)  # what `check` prints


@dataclass
class CycleResult:
    evaluation_id: str
    outcomes: list[RuleOutcome] = field(default_factory=list)
    news: list[AlertNews] = field(default_factory=list)

    @property
    def errors(self) -> dict[str, str]:
        return {o.rule_id: o.error for o in self.outcomes if o.error}


def _utc(now: datetime | None) -> datetime:
    now = now or datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def run_cycle(
    conn,
    config: SitesConfig,
    *,
    now: datetime | None = None,
    rule_ids: list[str] | None = None,
    kind: str = "marts",
    dry_run: bool = False,
    deliver: bool = True,
    backfill: timedelta | None = None,
    landing=None,
) -> CycleResult:
    """Evaluate the enabled mart rules (``rule_ids``: only those) at ``now``; store and
    notify unless ``dry_run`` (``siteline alerts check``: computes and tells, writes
    nothing). ``conn`` is in autocommit mode: each instance's period commits on its own.

    ``backfill``: a new instance starts evaluating this far back, instead of at its latest
    periods, and what it finds is notified (a rule added during an incident, the demo).
    ``landing``: the collector's landing to read for completeness (default: this machine's,
    ``completeness.default_landing``)."""
    from orchestration import completeness

    now = _utc(now)
    result = CycleResult(evaluation_id=f"{kind}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")
    rules = [
        r
        for r in config.alerts.rules
        if (rule_ids is None or r.id in rule_ids) and (r.enabled or rule_ids)
        and not METRICS[r.metric].realtime
    ]  # fmt: skip
    if not dry_run:
        ensure_schema(conn)
        with conn.transaction():
            conn.execute(
                "insert into alerts.evaluation_runs (evaluation_id, kind, started_at, rules)"
                " values (%s, %s, %s, %s)",
                (result.evaluation_id, kind, now, len(rules)),
            )
    # up to when each site's data is complete: read once per cycle (the collector's manifest,
    # the loads, the marts' last build), for every site a rule watches
    complete: dict[str, completeness.Completeness] = {}
    watched = sorted({s.id for r in rules for s in _sites_or_none(config, r)})
    if watched:
        complete = completeness.complete_until_sites(conn, config, watched, now, landing=landing)
    for rule in rules:
        outcome = RuleOutcome(rule.id)
        result.outcomes.append(outcome)
        try:
            sites = config.sites_of(rule)
            result.news += _evaluate_rule(conn, config, rule, sites, complete, now, result,
                                          outcome, dry_run, backfill)  # fmt: skip
        except Exception as exc:  # one broken rule fails alone
            outcome.error = f"{type(exc).__name__}: {exc}".strip()
            log.warning("alert rule %s could not be evaluated: %s", rule.id, outcome.error)
            if not dry_run:
                result.news += _record_error(conn, config, rule, outcome, now, result)
    if not dry_run:
        with conn.transaction():
            conn.execute(
                "update alerts.evaluation_runs set finished_at = clock_timestamp(),"
                " instances = %s, errors = %s, detail = %s where evaluation_id = %s",
                (
                    sum(o.instances for o in result.outcomes),
                    len(result.errors),
                    json.dumps({o.rule_id: {"states": o.states, "waiting": o.waiting,
                                            "skipped": o.skipped, "error": o.error}
                                for o in result.outcomes}),
                    result.evaluation_id,
                ),
            )  # fmt: skip
        if deliver and result.news:
            from orchestration.alerts import outbox

            outbox.deliver(conn, config, now=None)
    return result


def _sites_or_none(config: SitesConfig, rule: AlertRule) -> list[Site]:
    try:
        return config.sites_of(rule)
    except ValueError:  # an unknown site: the rule's own evaluation says so
        return []


def last_complete_period(rule: AlertRule, site: Site, until: datetime, now: datetime):
    """The start (local) of the last period of ``rule.grain`` that has closed before ``now``
    and whose data is complete (its UTC end <= ``until``); None when there is none."""
    from zoneinfo import ZoneInfo

    from orchestration.alerts import periods

    limit = min(until, now)
    if limit.year < 1971:  # nothing is complete yet (e.g. the marts were never built)
        return None
    local_now = limit.astimezone(ZoneInfo(site.timezone)).replace(tzinfo=None)
    current = periods.period_start(local_now, rule.grain)
    # the period holding `limit` is not over: the one before is the candidate
    candidate = periods.shift(current, rule.grain, "previous_period")
    while periods.local_to_utc(periods.next_period(candidate, rule.grain), site.timezone) > limit:
        candidate = periods.shift(candidate, rule.grain, "previous_period")
    return candidate


def _evaluate_rule(conn, config, rule, sites, complete, now, result, outcome, dry_run,
                   backfill=None):  # fmt: skip
    from orchestration.alerts import conditions, periods, series

    news: list[AlertNews] = []
    known = {} if dry_run else _instances(conn, rule)
    plan: dict[str, tuple] = {}  # site -> (first period to evaluate, last complete period)
    for site in sites:
        state = complete[site.id]
        last = last_complete_period(rule, site, state.until, now)
        closed = last_complete_period(rule, site, now, now)
        if closed is not None and (last is None or last < closed):
            # the first period that has closed and waits: its end is what the data must reach
            waits = closed if last is None else periods.next_period(last, rule.grain)
            end_utc = periods.local_to_utc(periods.next_period(waits, rule.grain), site.timezone)
            waiting = "; ".join(state.waiting_for(end_utc)) or "the data is not complete yet"
            outcome.waiting[site.id] = waiting
            outcome.lines.append(
                f"{rule.id} {site.id}: {label(waits, rule.grain)} waiting for data: {waiting}"
            )
            if not dry_run:
                _mark_waiting(conn, rule, site.id, waiting)
        if last is None:
            continue
        back = rule.for_periods - 1 if not dry_run else 0
        first = _back(last, rule.grain, back)
        if backfill is not None and not dry_run:
            since = (now - backfill).astimezone(ZoneInfo(site.timezone)).replace(tzinfo=None)
            first = min(first, periods.next_period(periods.period_start(since, rule.grain),
                                                   rule.grain))  # fmt: skip
        done = [k["last_period_start"] for k in known.values()
                if k["site_id"] == site.id and k["last_period_start"] is not None]  # fmt: skip
        if done:
            resume = periods.next_period(min(done), rule.grain)
            first = max(resume, first if backfill else _back(last, rule.grain, MAX_CATCH_UP))
            if first > resume:  # fell behind: the periods before `first` are skipped, said
                skipped = (f"{rule.id} {site.id}: periods {label(resume, rule.grain)} to "
                           f"{label(_back(first, rule.grain, 1), rule.grain)} skipped (more "
                           f"than {MAX_CATCH_UP} behind)")  # fmt: skip
                outcome.lines.append(skipped)
                outcome.skipped[site.id] = skipped
                log.warning(skipped)
        if first <= last:
            plan[site.id] = (first, last)
    if not plan:
        return news
    history = conditions.history_needed(rule.condition, rule.grain)
    start = _back(min(f for f, _ in plan.values()), rule.grain, history)
    end = periods.next_period(max(last for _, last in plan.values()), rule.grain)
    by_site = {s.id: s for s in sites}
    # Judging a few periods (the usual cycle: the latest hour or day) reads only what their
    # judgements compare with (the same hour of 8 weeks, not 8 weeks of hours); catching up
    # many periods reads the whole range once.
    to_judge = sorted(
        {p for first, last in plan.values() for p in _periods(first, last, rule.grain)}
    )
    wanted = None
    if len(to_judge) <= FEW_PERIODS:
        read = conditions.periods_read
        wanted = sorted({w for p in to_judge for w in read(rule.condition, rule.grain, p)})
    values: dict[str, list[str]] = {}  # the instances of `by` known: judged even without rows
    for k in known.values():
        if rule.by and k["site_id"] in plan and k["dimension_value"] is not None:
            values.setdefault(k["site_id"], []).append(k["dimension_value"])
    data = series.fetch_series(conn, rule, [by_site[s] for s in plan], start, end,
                               periods=wanted, known=values)  # fmt: skip
    version = rule_version(rule)
    if not dry_run:
        with conn.transaction():
            conn.execute(
                "insert into alerts.rule_versions (rule_id, rule_version, definition)"
                " values (%s, %s, %s) on conflict do nothing",
                (rule.id, version, json.dumps(rule.model_dump(mode="json", by_alias=True))),
            )
    if rule.by is None:  # a site with no series at all has no data for its periods
        for site_id in plan:
            data.setdefault((site_id, None), None)
    for (site_id, value), points in sorted(data.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        first, last = plan[site_id]
        site = by_site[site_id]
        iid = instance_id(rule, site_id, value)
        if iid in known and known[iid]["last_period_start"] is not None:
            first = max(first, periods.next_period(known[iid]["last_period_start"], rule.grain))
        outcome.instances += 1
        index = {} if points is None else {p: i for i, p in enumerate(points.periods)}
        for period in _periods(first, last, rule.grain):
            i = index.get(period)
            if i is None:
                continue
            judgement = conditions.judge(rule.condition, points, rule.grain, i)
            outcome.periods += 1
            if dry_run:
                outcome.lines.append(_check_line(rule, site, value, period, judgement))
            else:
                news += apply(
                    conn, result.evaluation_id, rule, site, value, period,
                    periods.next_period(period, rule.grain), judgement, now,
                    config=config, version=version,
                    chart=lambda item: _with_chart(conn, rule, by_site, item),
                )  # fmt: skip
        if not dry_run:
            outcome.states[iid] = _state_of(conn, iid)
    return news


def _periods(first, last, grain):
    from orchestration.alerts import periods

    period = first
    while period <= last:
        yield period
        period = periods.next_period(period, grain)


def _with_chart(conn, rule, by_site, item: AlertNews) -> AlertNews:
    """The news with the recent periods of its series, and the condition's band on each
    (judged again over the chart's periods): what the message's chart draws."""
    from dataclasses import replace

    from orchestration.alerts import conditions, periods, series

    end = datetime.fromisoformat(item.period_start)
    first = _back(end, rule.grain, CHART_PERIODS - 1)
    start = _back(first, rule.grain, conditions.history_needed(rule.condition, rule.grain))
    data = series.fetch_series(conn, rule, [by_site[item.site_id]], start,
                               periods.next_period(end, rule.grain))  # fmt: skip
    points = data.get((item.site_id, item.dimension_value))
    if points is None:
        return item
    judged = conditions.judge_all(rule.condition, points, rule.grain)
    chart = [
        [p.isoformat(), _num(points.values[i]), _num(judged[i].lower), _num(judged[i].upper)]
        for i, p in enumerate(points.periods)
        if first <= p <= end
    ]
    return replace(item, series=chart)


def label(period: datetime, grain: str) -> str:
    """A period as people write it: 2026-12-07 09:00 (hour), 2026-12-07 (day), 2026-W49
    (week), 2026-12 (month)."""
    if grain == "hour":
        return f"{period:%Y-%m-%d %H:%M}"
    if grain == "week":
        year, week, _ = period.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{period:%Y-%m}" if grain == "month" else f"{period:%Y-%m-%d}"


def _back(start, grain, n: int):
    from orchestration.alerts import periods

    for _ in range(n):
        start = periods.shift(start, grain, "previous_period")
    return start


def _instances(conn, rule: AlertRule) -> dict[str, dict]:
    rows = conn.execute(
        "select instance_id, site_id, dimension_value, last_period_start from alerts.instances"
        " where rule_id = %s",
        (rule.id,),
    ).fetchall()
    return {
        r[0]: {"site_id": r[1], "dimension_value": r[2], "last_period_start": r[3]} for r in rows
    }


def _state_of(conn, iid: str) -> str:
    row = conn.execute("select state from alerts.instances where instance_id = %s", (iid,))
    found = row.fetchone()
    return found[0] if found else "normal"


def _mark_waiting(conn, rule: AlertRule, site_id: str, why: str) -> None:
    with conn.transaction():
        conn.execute(
            "update alerts.instances set waiting_for_data = true, waiting_reason = %s"
            " where rule_id = %s and site_id = %s",
            (why, rule.id, site_id),
        )


def _fmt(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _check_line(rule, site, value, period, judgement) -> str:
    who = f"{site.id}" + (f" {rule.by}={value}" if rule.by else "")
    return (
        f"{rule.id} {who} {label(period, rule.grain)}: value {_fmt(judgement.value)}, "
        f"baseline {_fmt(judgement.baseline)} [{_fmt(judgement.lower)}, "
        f"{_fmt(judgement.upper)}] -> {judgement.verdict}: {judgement.detail}"
    )


def apply(
    conn,
    evaluation_id: str,
    rule: AlertRule,
    site: Site,
    dimension_value: str | None,
    period_start: datetime,
    period_end: datetime,
    judgement,
    now: datetime,
    *,
    config: SitesConfig | None = None,
    version: str | None = None,
    error: str | None = None,
    chart=None,
) -> list[AlertNews]:
    """Move one instance through one evaluated period, in one transaction: store the
    evaluation, the transition if the state changed, the instance's new state and - given
    ``config`` - the news in the outbox; return the news (none when the period was evaluated
    before: re-runs are no-ops). ``chart(news) -> news`` draws the recent periods in."""
    from orchestration.alerts import periods

    now = _utc(now)
    iid = instance_id(rule, site.id, dimension_value)
    version = version or rule_version(rule)
    with conn.transaction():
        current = _locked_instance(conn, rule, site.id, dimension_value, version)
        seen = conn.execute(
            "select 1 from alerts.evaluations where instance_id = %s and period_start = %s",
            (iid, period_start),
        ).fetchone()
        if seen:
            return []
        moved = states.step(
            current, judgement.verdict, for_periods=rule.for_periods,
            repeat_seconds=rule.repeat_interval, no_data=rule.no_data, now=now,
        )  # fmt: skip
        after = moved.after
        start_utc = periods.local_to_utc(period_start, site.timezone)
        conn.execute(
            "insert into alerts.evaluations (instance_id, period_start, period_end,"
            " period_start_utc, value, volume, baseline, lower_bound, upper_bound, verdict,"
            " detail, state, evaluation_id, rule_version, evaluated_at)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                iid, period_start, period_end, start_utc, _num(judgement.value),
                _num(getattr(judgement, "volume", None)), _num(judgement.baseline),
                _num(judgement.lower), _num(judgement.upper), judgement.verdict,
                judgement.detail, after.state, evaluation_id, version, now,
            ),
        )  # fmt: skip
        transition_id = None
        if moved.transition:
            found = conn.execute(
                "insert into alerts.transitions (instance_id, rule_id, site_id,"
                " dimension_value, from_state, to_state, period_start, value, baseline, reason,"
                " evaluation_id, at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " on conflict (instance_id, period_start, to_state) do nothing"
                " returning transition_id",
                (
                    iid, rule.id, site.id, dimension_value, moved.transition[0],
                    moved.transition[1], period_start, _num(judgement.value),
                    _num(judgement.baseline), error or judgement.detail, evaluation_id, now,
                ),
            ).fetchone()  # fmt: skip
            transition_id = found[0] if found else None
        conn.execute(
            "update alerts.instances set state = %s,"
            " state_since = case when state = %s then state_since else %s end,"
            " breaching_periods = %s, last_period_start = greatest(last_period_start, %s),"
            " last_evaluated_at = %s, last_value = %s, last_notified_at = %s,"
            " waiting_for_data = false, waiting_reason = null, error = %s, rule_version = %s"
            " where instance_id = %s",
            (
                after.state, after.state, now, after.breaching_periods, period_start, now,
                _num(judgement.value), after.last_notified_at,
                error if judgement.verdict == "error" else None, version, iid,
            ),
        )  # fmt: skip
        if moved.notify is None or not rule.contact_points:
            return []
        news = _news(rule, site, dimension_value, period_start, period_end, judgement, moved,
                     after.state, now, iid, transition_id)  # fmt: skip
        if chart is not None:
            try:
                with conn.transaction():  # a savepoint: a chart that fails costs only itself
                    news = chart(news)
            except Exception as exc:  # the chart is an extra: the news goes without it
                log.warning("no chart for alert %s: %s", iid, exc)
        if config is not None:
            # queued in the same transaction as the transition that made it: a cycle killed
            # after this commit has its news in the outbox; one killed before re-evaluates
            # the period (at the real time: the outbox's retries run on the clock)
            from orchestration.alerts import outbox

            outbox.enqueue(conn, evaluation_id, [news], config, datetime.now(UTC))
    return [news]


def _locked_instance(conn, rule: AlertRule, site_id: str, value: str | None, version: str):
    """The instance's state, its row created if new and locked for this transaction (two
    evaluators never move one instance at once)."""
    iid = instance_id(rule, site_id, value)
    conn.execute(
        "insert into alerts.instances (instance_id, rule_id, site_id, dimension,"
        " dimension_value, rule_version) values (%s, %s, %s, %s, %s, %s)"
        " on conflict (instance_id) do nothing",
        (iid, rule.id, site_id, rule.by, value, version),
    )
    row = conn.execute(
        "select state, breaching_periods, last_notified_at from alerts.instances"
        " where instance_id = %s for update",
        (iid,),
    ).fetchone()
    return states.InstanceState(*row)


def _num(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if value != value else value


def _news(rule, site, dimension_value, start, end, judgement, moved, state, now, iid,
          transition_id) -> AlertNews:  # fmt: skip
    """The news of one instance's period; its chart holds that one period (the cycle draws
    the recent periods in: :func:`_with_charts`)."""
    from ingestion.core.settings import settings

    m = METRICS[rule.metric]
    kind = moved.notify
    chart: list[list] = []
    if _num(judgement.value) is not None:
        chart = [[start.isoformat(), _num(judgement.value), _num(judgement.lower),
                  _num(judgement.upper)]]  # fmt: skip
    base = getattr(settings(), "public_superset_url", None)
    dashboard = rule.dashboard or m.dashboard
    return AlertNews(
        kind=kind,
        dedupe_key=f"{iid}|{kind}|{start.isoformat()}",
        instance_id=iid,
        rule_id=rule.id,
        rule_name=rule.name or rule.id,
        severity=rule.severity,
        site_id=site.id,
        site_name=site.name or site.id,
        timezone=site.timezone,
        metric=m.name,
        metric_label=m.label,
        unit=m.unit,
        grain=rule.grain if not m.realtime else f"{(rule.window or 0) // 60}m",
        period_start=start.isoformat(),
        period_end=end.isoformat(),
        value=_num(judgement.value),
        baseline=_num(judgement.baseline),
        lower=_num(judgement.lower),
        upper=_num(judgement.upper),
        reason=judgement.detail,
        state=state,
        at=now.isoformat(),
        contact_points=tuple(rule.contact_points),
        dimension=rule.by,
        dimension_value=dimension_value,
        currency=site.currency,
        transition_id=transition_id,
        dashboard_url=f"{base.rstrip('/')}/superset/dashboard/{dashboard}/" if base else None,
        series=chart,
    )


def _record_error(conn, config, rule, outcome, now, result) -> list[AlertNews]:
    """Move the rule's instances (one per site when it has none yet) to Error with the
    reason. No period is recorded as evaluated: once the rule is fixed, the next cycle
    evaluates the periods the error held up."""
    news: list[AlertNews] = []
    try:
        sites = config.sites_of(rule)
    except ValueError:
        return news
    known = _instances(conn, rule)
    reason = f"the rule could not be evaluated: {outcome.error}"
    version = rule_version(rule)
    for site in sites:
        values = [k["dimension_value"] for k in known.values() if k["site_id"] == site.id]
        for value in values or [None]:
            iid = instance_id(rule, site.id, value)
            outcome.states[iid] = "error"
            try:
                with conn.transaction():
                    current = _locked_instance(conn, rule, site.id, value, version)
                    moved = states.step(
                        current, "error", for_periods=rule.for_periods,
                        repeat_seconds=rule.repeat_interval, no_data=rule.no_data, now=now,
                    )  # fmt: skip
                    transition_id = None
                    if moved.transition:
                        transition_id = conn.execute(
                            "insert into alerts.transitions (instance_id, rule_id, site_id,"
                            " dimension_value, from_state, to_state, reason, evaluation_id, at)"
                            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                            " returning transition_id",
                            (iid, rule.id, site.id, value, moved.transition[0],
                             moved.transition[1], reason, result.evaluation_id, now),
                        ).fetchone()[0]  # fmt: skip
                    conn.execute(
                        "update alerts.instances set state = 'error',"
                        " state_since = case when state = 'error' then state_since else %s end,"
                        " breaching_periods = 0, last_evaluated_at = %s, error = %s,"
                        " last_notified_at = %s, rule_version = %s where instance_id = %s",
                        (now, now, outcome.error, moved.after.last_notified_at, version, iid),
                    )
                    if moved.notify and rule.contact_points:
                        stamp = now.replace(tzinfo=None, microsecond=0)
                        item = _news(rule, site, value, stamp, stamp, _ErrorJudgement(reason),
                                     moved, "error", now, iid, transition_id)  # fmt: skip
                        # queued with the transition (see apply)
                        from orchestration.alerts import outbox

                        outbox.enqueue(conn, result.evaluation_id, [item], config,
                                       datetime.now(UTC))  # fmt: skip
                        news.append(item)
            except Exception as exc:  # the store itself failing: say so, go on
                log.error("could not record the error of rule %s: %s", rule.id, exc)
                continue
    return news


@dataclass(frozen=True)
class _ErrorJudgement:
    detail: str
    verdict: str = "error"
    value: float | None = None
    volume: float | None = None
    baseline: float | None = None
    lower: float | None = None
    upper: float | None = None
