"""Real-time alert rules: judged every few seconds on the real-time engine's windows.

A rule whose metric is a ``realtime`` one of the catalogue (``active_visitors``, ``orders``,
``checkout_errors``, ``payment_failures``) names a ``window`` (``5m``) instead of a grain. A
loop (the ``alerts-live`` service ``siteline up`` starts; ``python -m
orchestration.alerts.live``) wakes every ``SITELINE_ALERTS_LIVE_SECONDS`` (10) seconds, asks
the engine for every such rule and site (``GET /v1/metrics/windows``, with the site's API
key) the window ending at the tick, the window before and the same window in previous weeks,
judges it (:func:`judge_window`) and hands the verdict to the evaluation's
``evaluate.apply`` (state machine, rows, news), then the news to the outbox.

The period of an evaluation is the window ending at the tick, the tick rounded down to the
interval: a re-run of a tick finds its periods evaluated and adds nothing. Why a loop and
not a Dagster sensor: docs/architecture.md ("Real-time alert rules").
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ingestion.core.alert_config import AlertCondition, AlertRule
from ingestion.core.metrics import METRICS, Metric
from ingestion.core.sites import Site, SitesConfig

log = logging.getLogger("siteline.alerts.live")

UNREACHABLE_GRACE = 60.0  # seconds without an engine before its rules go to Error


@dataclass(frozen=True)
class Judgement:
    """A window's verdict (the fields ``evaluate.apply`` reads, as conditions.Judgement)."""

    verdict: str  # ok | breach | nodata | error
    value: float | None
    volume: float | None
    baseline: float | None
    lower: float | None
    upper: float | None
    detail: str


def realtime_rules(config: SitesConfig) -> list[AlertRule]:
    return [r for r in config.alerts.rules if r.enabled and METRICS[r.metric].realtime]


def weeks_needed(condition: AlertCondition) -> int:
    """How many previous weeks' windows a condition reads."""
    if condition.type == "anomaly":
        return condition.weeks
    if condition.type in ("decrease", "increase") and (
        condition.compared_to == "same_period_last_week"
    ):
        return 1
    return 0


def _fmt(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:,.0f}" if abs(value - round(value)) < 0.05 else f"{value:,.1f}"


def judge_window(condition: AlertCondition, metric: Metric, answer: dict) -> Judgement:
    """The verdict on one window (``answer``: what ``/v1/metrics/windows`` returned).

    ``below``/``above`` a value; ``decrease``/``increase`` by more than ``by`` (percent or
    absolute) against the previous window or the same window last week; ``anomaly``: outside
    median ± ``threshold`` robust deviations (1.4826 · MAD, at least 1 and 10% of the median,
    so a flat history of zeros does not make one event an anomaly) of the same window in the
    last ``weeks`` weeks, with ``min_volume`` and ``min_change`` percent. Windows the
    engine kept only in part (``complete: false``) are no baseline; the current one can
    only show that the value is too high."""
    judgement = _judge(condition, metric, answer)
    if answer.get("complete", True) or judgement.verdict == "nodata":
        return judgement
    # A window the engine kept only in part (it started within it) holds a lower bound:
    # enough to say it is too high, not that it is too low or fine.
    high = judgement.upper is not None and judgement.value > judgement.upper
    if judgement.verdict == "breach" and high:
        return judgement
    detail = f"{judgement.detail}; the engine began keeping {metric.label.lower()} within it"
    return Judgement("nodata", judgement.value, judgement.volume, judgement.baseline,
                     judgement.lower, judgement.upper, detail)  # fmt: skip


def _baseline(window: dict | None) -> float | None:
    """A window's value to compare with: None unless the engine kept all of it."""
    if not window or not window.get("complete", True):
        return None
    return window.get("value")


def _judge(condition: AlertCondition, metric: Metric, answer: dict) -> Judgement:
    value = answer.get("value")
    minutes = round(answer["window_seconds"] / 60)
    what = f"{metric.label} {_fmt(value)} in the last {minutes} min"
    if value is None:
        return Judgement("nodata", None, None, None, None, None, f"{metric.label}: no data")
    kind = condition.type
    if kind in ("below", "above"):
        limit = float(condition.value)
        breach = value < limit if kind == "below" else value > limit
        lower, upper = (limit, None) if kind == "below" else (None, limit)
        side = "below" if kind == "below" else "above"
        detail = f"{what} is {'' if breach else 'not '}{side} {_fmt(limit)}"
        return Judgement("breach" if breach else "ok", value, value, None, lower, upper, detail)
    if kind in ("decrease", "increase"):
        last_week = condition.compared_to == "same_period_last_week"
        other = answer["previous_weeks"][0] if last_week else answer["previous_window"]
        baseline = _baseline(other)
        against = "the same minutes last week" if last_week else "the window before"
        if baseline is None:
            detail = f"{what}; nothing to compare with ({against}: no data)"
            return Judgement("nodata", value, value, None, None, None, detail)
        by = float(condition.by)
        step = by if condition.unit == "absolute" else baseline * by / 100
        if kind == "decrease":
            lower, upper = baseline - step, None
            breach = value < lower
        else:
            lower, upper = None, baseline + step
            breach = value > upper if baseline > 0 or condition.unit == "absolute" else value > 0
        change = value - baseline
        percent = f" ({change / baseline * 100:+.0f}%)" if baseline else ""
        detail = f"{what}{percent}, {_fmt(baseline)} in {against}"
        return Judgement("breach" if breach else "ok", value, value, baseline, lower, upper, detail)
    # anomaly
    history = [v for v in map(_baseline, answer["previous_weeks"]) if v is not None]
    if len(history) < 2:
        detail = f"{what}; {len(history)} previous week(s) kept, the baseline needs 2"
        return Judgement("nodata", value, value, None, None, None, detail)
    median = _median(history)
    mad = _median([abs(h - median) for h in history])
    scale = max(1.4826 * mad, 0.1 * abs(median), 1.0)
    lower = median - condition.threshold * scale
    upper = median + condition.threshold * scale
    low, high = value < lower, value > upper
    outside = (low and condition.direction != "up") or (high and condition.direction != "down")
    change = abs(value - median) / median * 100 if median else math.inf
    enough = max(value, median) >= condition.min_volume and change >= condition.min_change
    breach = outside and enough
    detail = (
        f"{what}, usually {_fmt(median)} (the same minutes of the last {len(history)} weeks: "
        f"{_fmt(max(lower, 0))} to {_fmt(upper)})"
    )
    return Judgement("breach" if breach else "ok", value, value, median, lower, upper, detail)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def tick_of(now: float, interval: float) -> float:
    """The tick ``now`` belongs to: rounded down to the interval (re-runs land on it)."""
    return math.floor(now / interval) * interval


def period_of(tick: float, window: int, site: Site) -> tuple[datetime, datetime]:
    """The evaluated period, ``(tick - window, tick]``, as naive times in the site's zone
    (how evaluate.apply and the alerts schema keep periods)."""
    zone = ZoneInfo(site.timezone)

    def local(at: float) -> datetime:
        return datetime.fromtimestamp(at, UTC).astimezone(zone).replace(tzinfo=None)

    return local(tick - window), local(tick)


class EngineUnreachable(Exception):
    pass


class EngineWindows:
    """Reads ``/v1/metrics/windows`` of the engine with each site's API key."""

    def __init__(self, config: SitesConfig, url: str | None = None, timeout: float = 5.0) -> None:
        import httpx

        from ingestion.core.settings import settings
        from ingestion.core.sites import site_keys

        base = url or settings().alerts_engine_url
        self.url = (base or f"http://127.0.0.1:{settings().collector_port}").rstrip("/")
        self.keys = site_keys(config)
        self.http = httpx.Client(timeout=timeout)

    def get(self, site: Site, metric: str, window: int, weeks: int, at: float) -> dict:
        import httpx

        key = self.keys.get(site.id)
        if key is None:
            raise ValueError(
                f"site '{site.id}' has no API key for the real-time engine; set its "
                "api_key_env in sites.yml"
            )
        params = {"metric": metric, "window": window, "weeks": weeks, "at": f"{at:.3f}"}
        try:
            reply = self.http.get(
                f"{self.url}/v1/metrics/windows",
                params=params,
                headers={"Authorization": f"Bearer {key}"},
            )
        except httpx.TransportError as exc:
            raise EngineUnreachable(f"the real-time engine at {self.url}: {exc}") from exc
        if reply.status_code != 200:
            raise ValueError(f"the real-time engine answered {reply.status_code}: {reply.text}")
        return reply.json()

    def close(self) -> None:
        self.http.close()


def instance_of(rule: AlertRule, site: Site) -> str:
    from orchestration.alerts import evaluate

    return evaluate.instance_id(rule, site.id, None)


def hand_over(conn, evaluation_id: str, rule: AlertRule, site: Site, start: datetime,
              end: datetime, judgement: Judgement, now: datetime,
              config: SitesConfig, error: str | None = None) -> list:  # fmt: skip
    """The one call into the evaluation: the state machine, the rows and the news."""
    from orchestration.alerts import evaluate

    return evaluate.apply(
        conn, evaluation_id, rule, site, None, start, end, judgement, now,
        config=config, error=error,
    )  # fmt: skip


def notify(conn, evaluation_id: str, news: list, config: SitesConfig, now: datetime) -> None:
    """What is due sent (retries too, also on a quiet tick): ``news`` is in the outbox
    already, queued by ``evaluate.apply`` with the transition that made it."""
    from orchestration.alerts import outbox

    outbox.deliver(conn, config, now=None)


def steady(verdict: str, state: str | None, rule: AlertRule) -> bool:
    """Whether a verdict leaves the instance as it is with nothing to tell: fine and Normal,
    or no data and NoData. Such a tick is not stored as an evaluation (a row every 10 s per
    instance would grow the table by 8,640 a day for nothing); the instance's last value and
    evaluation time are updated."""
    if verdict == "nodata" and rule.no_data != "nodata":
        return False
    return (verdict, state) in (("ok", "normal"), ("nodata", "nodata"))


@dataclass
class _Judged:
    rule: AlertRule
    site: Site
    judgement: Judgement
    error: str | None


class LiveEvaluator:
    """Evaluates every real-time rule at each tick; see the module docstring."""

    def __init__(self, config: SitesConfig, engine: EngineWindows) -> None:
        self.config = config
        self.engine = engine
        self.unreachable_since: float | None = None
        self.schema_of: int | None = None  # the connection the schema was ensured on

    def judge_all(self, at: float) -> list[_Judged] | None:
        """Every real-time rule and site judged at the tick ``at``; None when the engine has
        been unreachable for less than UNREACHABLE_GRACE (the tick is skipped)."""
        judged: list[_Judged] = []
        for rule in realtime_rules(self.config):
            metric = METRICS[rule.metric]
            try:
                sites = self.config.sites_of(rule)
            except ValueError as exc:
                log.warning("real-time rule %s: %s", rule.id, exc)
                continue
            for site in sites:
                error = None
                try:
                    weeks = weeks_needed(rule.condition)
                    answer = self.engine.get(site, rule.metric, rule.window, weeks, at)
                    self.unreachable_since = None
                    judgement = judge_window(rule.condition, metric, answer)
                except EngineUnreachable as exc:
                    first = self.unreachable_since = self.unreachable_since or time.time()
                    if time.time() - first < UNREACHABLE_GRACE:
                        log.warning("%s; this tick is not evaluated", exc)
                        return None  # starting or restarting: the next tick tries again
                    error = f"{exc} (for {UNREACHABLE_GRACE:.0f} s or more)"
                    judgement = Judgement("error", None, None, None, None, None, error)
                except Exception as exc:  # one broken rule fails alone
                    error = f"{type(exc).__name__}: {exc}"
                    judgement = Judgement("error", None, None, None, None, None, error)
                judged.append(_Judged(rule, site, judgement, error))
        return judged

    def tick(self, conn, at: float) -> dict:
        """Evaluate every real-time rule for the window ending at ``at`` (a tick): store what
        changes an instance, notify; returns the count of each verdict."""
        from orchestration.alerts.store import ensure_schema

        judged = self.judge_all(at)
        verdicts: dict[str, int] = {}
        if not judged:
            return verdicts
        for one in judged:
            verdicts[one.judgement.verdict] = verdicts.get(one.judgement.verdict, 0) + 1
        if self.schema_of != id(conn):
            ensure_schema(conn)
            self.schema_of = id(conn)
        now = datetime.now(UTC)
        ids = [instance_of(j.rule, j.site) for j in judged]
        states = dict(
            conn.execute(
                "select instance_id, state from alerts.instances where instance_id = any(%s)",
                (ids,),
            ).fetchall()
        )
        pairs = list(zip(judged, ids, strict=True))
        still = [steady(j.judgement.verdict, states.get(i), j.rule) for j, i in pairs]
        quiet = [pair for pair, s in zip(pairs, still, strict=True) if s]
        if quiet:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(
                    "update alerts.instances set last_evaluated_at = %s, last_value = %s"
                    " where instance_id = %s",
                    [(now, j.judgement.value, i) for j, i in quiet],
                )
        changing = [j for j, s in zip(judged, still, strict=True) if not s]
        evaluation_id = f"realtime-{datetime.fromtimestamp(at, UTC):%Y%m%dT%H%M%S}"
        news: list = []
        if changing:
            with conn.transaction():
                conn.execute(
                    "insert into alerts.evaluation_runs (evaluation_id, kind, started_at, rules)"
                    " values (%s, 'realtime', %s, %s) on conflict (evaluation_id) do nothing",
                    (evaluation_id, now, len({j.rule.id for j in judged})),
                )
            for j in changing:
                start, end = period_of(at, j.rule.window, j.site)
                try:
                    news += hand_over(conn, evaluation_id, j.rule, j.site, start, end,
                                      j.judgement, now, self.config, j.error)  # fmt: skip
                except Exception:  # one instance that cannot be stored fails alone
                    log.exception("real-time rule %s, site %s: cannot store", j.rule.id,
                                  j.site.id)  # fmt: skip
        notify(conn, evaluation_id, news, self.config, now)
        if changing:
            with conn.transaction():
                conn.execute(
                    "update alerts.evaluation_runs set finished_at = clock_timestamp(),"
                    " instances = %s, errors = %s where evaluation_id = %s",
                    (len(judged), verdicts.get("error", 0), evaluation_id),
                )
        return verdicts


def run(stop: threading.Event | None = None, interval: float | None = None) -> None:
    """Evaluate the real-time rules every ``interval`` seconds until ``stop`` is set. Never
    ends on an error: a warehouse or engine that is not up yet is tried again next tick."""
    from ingestion.core.settings import settings
    from ingestion.core.sites import load_sites
    from ingestion.core.warehouse import connect, warehouse_url

    stop = stop or threading.Event()
    interval = interval or settings().alerts_live_seconds
    config = load_sites()
    if not realtime_rules(config):
        # No rule to judge: the service still sends what the outbox holds that is due (the
        # retries of the mart rules' notifications); and a service that ends stops `up`.
        log.info("no real-time alert rules in sites.yml; delivering the outbox only")
        _deliver_only(config, stop, interval)
        return
    engine = EngineWindows(config)
    evaluator = LiveEvaluator(config, engine)
    conn = None
    log.info("evaluating %d real-time rule(s) every %g s on %s",
             len(realtime_rules(config)), interval, engine.url)  # fmt: skip
    while not stop.is_set():
        at = tick_of(time.time(), interval)
        try:
            if conn is None or conn.closed:
                conn = connect(warehouse_url(), autocommit=True)
            evaluator.tick(conn, at)
        except Exception as exc:
            log.warning("real-time alert evaluation at %s failed: %s", at, exc)
            if conn is not None and not conn.closed:
                conn.close()
            conn = None
        stop.wait(max(0.0, at + interval - time.time()))
    engine.close()
    if conn is not None:
        conn.close()


def _deliver_only(config: SitesConfig, stop: threading.Event, interval: float) -> None:
    from ingestion.core.warehouse import connect, warehouse_url
    from orchestration.alerts import outbox
    from orchestration.alerts.store import ensure_schema

    while not stop.is_set():
        try:
            with connect(warehouse_url(), autocommit=True) as conn:
                ensure_schema(conn)
                while not stop.is_set():
                    outbox.deliver(conn, config, now=None)
                    stop.wait(interval)
        except Exception as exc:  # a warehouse not up yet: tried again next time
            log.warning("delivering the alert outbox failed: %s", exc)
            stop.wait(interval)


def main() -> None:
    from orchestration.runtime import prepare

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    prepare("no")  # siteline up made the warehouse ready; a warehouse down is retried
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(stop)


if __name__ == "__main__":
    main()
