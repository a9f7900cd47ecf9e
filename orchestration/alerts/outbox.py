"""The outbox: every notification is written to the warehouse before anything is sent, then
delivered, retried and recorded from there.

    enqueue   an evaluation's news -> one notification per contact point (grouped: a message
              tells every instance's news for that contact point), its items unique per
              contact point and dedupe key (re-running an evaluation adds nothing), silences
              applied (silenced items are kept, marked, and not sent)
    deliver   claims what is due (``for update skip locked``: two deliverers never take the
              same one), marks it 'sending' and commits, sends every claimed notification in
              its own thread (a slow or failing channel holds up nobody), records each attempt
              (ok, error, duration) as it ends, retries failures with exponential backoff and
              gives up after :class:`RetryPolicy`'s attempts or age ('failed')

Statuses: pending -> sending -> sent | pending (retry later) | failed; silenced when every
item is held back by a silence.

At most once, where it cannot be known: a notification is marked 'sending' (committed) before
it is sent and 'sent' after. A deliverer that dies between the two leaves it 'sending'; once
its lease has run out (longer than any send can take: the contact point's timeout per
recipient plus a margin), the next deliverer records the attempt as interrupted and fails the
notification rather than send it again. The window is the few milliseconds between the
server's acceptance and the commit; a duplicate page at 3 a.m. and a message nobody can tell
went out twice are what the issue forbids, so this window loses the message (visible as
'failed', "interrupted") instead. Failures that are known not to have delivered (refused
connection, HTTP 5xx, timeout before an answer) are retried: they are at least once. An SMS
goes to each number in its own request; the numbers reached are kept
(``notifications.delivered_to``), and a retry sends only to the others. Mails carry a
Message-ID and webhooks an ``Idempotency-Key`` derived from the notification id, for
receivers that drop duplicates.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from ingestion.core.errors import SitelineError
from orchestration.alerts import contacts
from orchestration.alerts.contacts import render
from orchestration.alerts.news import AlertNews

log = logging.getLogger(__name__)

LEASE_MARGIN = 60.0  # seconds a send may overrun its timeouts before it counts as interrupted


@dataclass(frozen=True)
class RetryPolicy:
    """How failed notifications are retried: the wait after attempt n is
    ``first_wait * factor ** (n - 1)``, at most ``max_wait``; after ``max_attempts`` attempts,
    or once the notification is older than ``max_age`` seconds, it is given up ('failed')."""

    first_wait: float = 30.0
    factor: float = 2.0
    max_wait: float = 3600.0
    max_attempts: int = 12
    max_age: float = 24 * 3600.0

    def wait(self, attempt: int) -> float:
        return min(self.first_wait * self.factor ** max(attempt - 1, 0), self.max_wait)


@dataclass(frozen=True)
class Attempt:
    notification_id: int
    contact_point: str
    attempt: int
    ok: bool
    error: str | None
    duration_ms: float
    status: str  # the notification's status after it


@dataclass
class DeliveryReport:
    """What one :func:`deliver` did: every attempt, and the notifications by outcome."""

    attempts: list[Attempt] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    silenced: list[int] = field(default_factory=list)
    interrupted: list[int] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.sent)} sent"]
        for name in ("retrying", "failed", "silenced", "interrupted"):
            if getattr(self, name):
                parts.append(f"{len(getattr(self, name))} {name}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Silence:
    silence_id: int
    rule_id: str
    site_id: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str | None
    active: bool


# -- enqueue -------------------------------------------------------------------------------------


def enqueue(
    conn, evaluation_id: str, news: list[AlertNews], config, now: datetime | None = None
) -> list[int]:
    """Write the notifications an evaluation's ``news`` make; their ids (new or extended).

    One notification per contact point and evaluation, telling every news for it; a news
    whose dedupe key that contact point already has is skipped (a re-run enqueues nothing).
    Runs in the caller's transaction when there is one (a savepoint): the outbox then
    commits together with the transitions that made the news."""
    now = _utc(now)
    groups: dict[str, dict[str, AlertNews]] = {}
    for item in news:
        for point in dict.fromkeys(item.contact_points):
            groups.setdefault(point, {}).setdefault(item.dedupe_key, item)
    ids: list[int] = []
    with conn.transaction():
        for point, by_key in groups.items():
            known = {row[0] for row in conn.execute(
                "select dedupe_key from alerts.notification_items"
                " where contact_point = %s and dedupe_key = any(%s)",
                (point, list(by_key)),
            )}  # fmt: skip
            new = [item for key, item in by_key.items() if key not in known]
            if not new:
                continue
            silence_of = _matching_silences(conn, new, now)
            notification_id = _open_notification(conn, point, evaluation_id, now)
            with conn.cursor() as cur:
                # on conflict: another enqueue of the same news may have won the race since
                # the select (then this notification may end up empty: _settle drops it)
                cur.executemany(
                    "insert into alerts.notification_items (contact_point, dedupe_key,"
                    " notification_id, instance_id, kind, transition_id, silence_id, payload)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s)"
                    " on conflict (contact_point, dedupe_key) do nothing",
                    [(point, item.dedupe_key, notification_id, item.instance_id, item.kind,
                      item.transition_id, silence_of.get(item.dedupe_key),
                      Jsonb(_jsonable(item.payload()))) for item in new],
                )  # fmt: skip
            if _settle(conn, notification_id):
                ids.append(notification_id)
    return ids


def _open_notification(conn, point: str, evaluation_id: str, now: datetime) -> int:
    """The notification of ``point`` for this evaluation that may still take items: a new
    one, or the same evaluation's one not yet claimed; once that has been sent (an
    evaluation that hands over news twice), a follow-up ``<evaluation_id>#2``, ..."""
    for n in range(1, 1000):
        key = evaluation_id if n == 1 else f"{evaluation_id}#{n}"
        row = conn.execute(
            "insert into alerts.notifications (contact_point, evaluation_id, subject, status,"
            " created_at, next_attempt_at) values (%s, %s, '', 'pending', %s, %s)"
            " on conflict (contact_point, evaluation_id) do nothing returning notification_id",
            (point, key, now, now),
        ).fetchone()
        if row:
            return row[0]
        row = conn.execute(
            "select notification_id, status, attempts from alerts.notifications"
            " where contact_point = %s and evaluation_id = %s for update",
            (point, key),
        ).fetchone()
        if row and row[1] in ("pending", "silenced") and row[2] == 0:
            return row[0]
    raise SitelineError(f"evaluation '{evaluation_id}' has too many follow-up notifications")


def _settle(conn, notification_id: int) -> bool:
    """Subject and status from the notification's items: 'silenced' when every item is; the
    notification is deleted when it holds no item (its news were enqueued by a concurrent
    run). False then."""
    rows = conn.execute(
        "select payload, silence_id from alerts.notification_items where notification_id = %s"
        " order by dedupe_key",
        (notification_id,),
    ).fetchall()
    if not rows:
        conn.execute(
            "delete from alerts.notifications where notification_id = %s", (notification_id,)
        )
        return False
    told = [payload for payload, silence_id in rows if silence_id is None]
    if told:
        subject, status = render.subject(_ordered(told)), "pending"
    else:
        subject, status = "[SILENCED] " + render.subject(_ordered([p for p, _ in rows])), "silenced"
    conn.execute(
        "update alerts.notifications set subject = %s, status = %s"
        " where notification_id = %s and status in ('pending', 'silenced')",
        (subject, status, notification_id),
    )
    return True


def _ordered(items: list[dict]) -> list[dict]:
    """Firing first, the most severe first, then by rule, site and value of ``by``."""
    rank = {kind: i for i, kind in enumerate(("firing", "repeat", "test", "resolved"))}
    severity = {s: i for i, s in enumerate(render.SEVERITY_ORDER)}
    return sorted(items, key=lambda p: (rank.get(p.get("kind"), 9),
                                        severity.get(p.get("severity"), 9),
                                        str(p.get("rule_name")), str(p.get("site_name")),
                                        str(p.get("dimension_value"))))  # fmt: skip


def _matching_silences(conn, news: list[AlertNews], now: datetime) -> dict[str, int]:
    """dedupe key -> the silence that holds that news back now (test messages never are)."""
    rules = sorted({item.rule_id for item in news if item.kind != "test"})
    if not rules:
        return {}
    active = conn.execute(
        "select silence_id, rule_id, site_id from alerts.silences"
        " where rule_id = any(%s) and starts_at <= %s and ends_at > %s order by silence_id",
        (rules, now, now),
    ).fetchall()
    found = {}
    for item in news:
        for silence_id, rule_id, site_id in active:
            if item.kind != "test" and rule_id == item.rule_id and site_id in (None, item.site_id):
                found[item.dedupe_key] = silence_id
                break
    return found


# -- deliver -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    notification_id: int
    contact_point: str
    subject: str
    attempt: int
    created_at: datetime
    delivered_to: frozenset[str]
    items: list[dict]


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    reached: list[str]
    error: str | None
    duration_ms: float
    permanent: bool = False  # refused as such (an HTTP 4xx): not retried


def deliver(
    conn,
    config,
    now: datetime | None = None,
    *,
    policy: RetryPolicy | None = None,
    only: list[int] | None = None,
    limit: int = 100,
    workers: int = 8,
) -> DeliveryReport:
    """Send every notification that is due (``only``: of these), each through its contact
    point, in parallel; record every attempt; schedule retries (see the module doc).

    ``conn`` must not be inside a transaction (autocommit, or idle): the 'sending' mark is
    committed before anything goes out, each outcome as soon as it is known."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise SitelineError(
            "outbox.deliver needs a connection outside a transaction: it commits the "
            "'sending' mark before it sends; commit first or use an autocommit connection"
        )
    now = _utc(now)
    policy = policy or RetryPolicy()
    report = DeliveryReport()
    _fail_interrupted(conn, now, report)
    claims = _claim(conn, config, now, policy, only, limit, report)
    if not claims:
        return report
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(claims)))) as pool:
        futures = {pool.submit(_send, config, claim): claim for claim in claims}
        # recorded as each ends: a channel that hangs until its timeout delays no record
        for future in as_completed(futures):
            _record(conn, futures[future], future.result(), now, policy, report)
    return report


def _claim(conn, config, now, policy, only, limit, report) -> list[_Claim]:
    """Take the due notifications (skipping those another deliverer holds), apply the
    silences that began since they were enqueued, mark the rest 'sending'; one commit."""
    claims = []
    with conn.transaction():
        rows = conn.execute(
            "select notification_id, contact_point, attempts, created_at, delivered_to"
            " from alerts.notifications"
            " where status = 'pending' and next_attempt_at <= %s"
            " and (%s::bigint[] is null or notification_id = any(%s::bigint[]))"
            " order by next_attempt_at, notification_id"
            " limit %s for update skip locked",
            (now, only, only, limit),
        ).fetchall()
        for notification_id, point_name, attempts, created_at, delivered_to in rows:
            created_at = created_at.astimezone(UTC)  # the session's time zone may be another
            _silence_items(conn, notification_id, now)
            if not _settle(conn, notification_id):
                continue
            status, subject = conn.execute(
                "select status, subject from alerts.notifications where notification_id = %s",
                (notification_id,),
            ).fetchone()
            if status == "silenced":
                report.silenced.append(notification_id)
                continue
            if (now - created_at).total_seconds() > policy.max_age:
                error = (f"not sent: enqueued {created_at:%Y-%m-%d %H:%M} UTC, older than "
                         f"{policy.max_age / 3600:g} h (was the deliverer stopped?)")  # fmt: skip
                _give_up(conn, notification_id, attempts + 1, error, now)
                report.failed.append(notification_id)
                report.attempts.append(Attempt(notification_id, point_name, attempts + 1, False,
                                               error, 0.0, "failed"))  # fmt: skip
                continue
            items = [payload for (payload,) in conn.execute(
                "select payload from alerts.notification_items"
                " where notification_id = %s and silence_id is null",
                (notification_id,),
            )]  # fmt: skip
            lease = _lease(config, point_name)
            conn.execute(
                "update alerts.notifications set status = 'sending', attempts = attempts + 1,"
                " next_attempt_at = %s where notification_id = %s",
                (now + timedelta(seconds=lease), notification_id),
            )
            claims.append(_Claim(notification_id, point_name, subject, attempts + 1, created_at,
                                 frozenset(delivered_to or ()), _ordered(items)))  # fmt: skip
    return claims


def _lease(config, point_name: str) -> float:
    """How long a send through this contact point may take at most (its timeout per
    recipient, plus a margin): after that a 'sending' mark counts as interrupted."""
    try:
        point = config.alerts.contact_point(point_name)
    except KeyError:
        return LEASE_MARGIN
    return point.timeout_seconds * max(1, len(point.to) + len(point.bcc)) * 2 + LEASE_MARGIN


def _silence_items(conn, notification_id: int, now: datetime) -> None:
    """Hold back the items of a silence created after they were enqueued."""
    conn.execute(
        """
        update alerts.notification_items as i set silence_id = s.silence_id
        from alerts.silences as s
        where i.notification_id = %(id)s and i.silence_id is null and i.kind <> 'test'
          and s.rule_id = i.payload ->> 'rule_id'
          and (s.site_id is null or s.site_id = i.payload ->> 'site_id')
          and s.starts_at <= %(now)s and s.ends_at > %(now)s
        """,
        {"id": notification_id, "now": now},
    )


def _send(config, claim: _Claim) -> _Outcome:
    """Send one notification (in a worker thread: no database here)."""
    started = time.perf_counter()
    try:
        point = config.alerts.contact_point(claim.contact_point)
        message = contacts.Message(claim.notification_id, claim.contact_point, claim.subject,
                                   claim.items, claim.created_at)  # fmt: skip
        reached = contacts.send(point, message, claim.delivered_to)
        return _Outcome(True, reached, None, _ms(started))
    except KeyError as exc:  # the contact point left sites.yml since the enqueue
        return _Outcome(False, [], str(exc.args[0]), _ms(started))
    except contacts.DeliveryError as exc:
        return _Outcome(False, exc.delivered_to, _masked(str(exc)), _ms(started), exc.permanent)
    except Exception as exc:  # a bug (rendering, a plugin): recorded and retried, not fatal
        log.exception("notification %s: unexpected error", claim.notification_id)
        return _Outcome(False, [], _masked(f"{type(exc).__name__}: {exc}"), _ms(started))


def _record(conn, claim: _Claim, outcome: _Outcome, now, policy, report) -> None:
    """Store the attempt and the notification's next status, in one commit."""
    n = claim.attempt
    if outcome.ok:
        status, error, next_at = "sent", None, None
    else:
        wait = policy.wait(n)
        age = (now + timedelta(seconds=wait) - claim.created_at).total_seconds()
        if outcome.permanent:
            status, next_at = "failed", None
            error = f"{outcome.error} - not retried: the endpoint refused the message itself"
        elif n >= policy.max_attempts or age > policy.max_age:
            status, next_at = "failed", None
            error = f"{outcome.error} - gave up after {n} attempt{'s' * (n > 1)}"
            if n < policy.max_attempts:
                error += f" (the next would be past the {policy.max_age / 3600:g} h limit)"
        else:
            status, error = "pending", outcome.error
            next_at = now + timedelta(seconds=wait)
    with conn.transaction():
        # on conflict: a deliverer that took this attempt for interrupted wrote its guess;
        # the real outcome replaces it
        conn.execute(
            "insert into alerts.delivery_attempts (notification_id, attempt, attempted_at, ok,"
            " error, duration_ms) values (%s, %s, %s, %s, %s, %s)"
            " on conflict (notification_id, attempt) do update set ok = excluded.ok,"
            " error = excluded.error, duration_ms = excluded.duration_ms",
            (claim.notification_id, n, now, outcome.ok, error, outcome.duration_ms),
        )
        conn.execute(
            "update alerts.notifications set status = %s, last_error = %s,"
            " sent_at = case when %s = 'sent' then %s else sent_at end,"
            " next_attempt_at = coalesce(%s, next_attempt_at),"
            " delivered_to = array(select distinct unnest(delivered_to || %s::text[]))"
            " where notification_id = %s and attempts = %s",
            (status, error, status, now, next_at, outcome.reached, claim.notification_id, n),
        )
    getattr(report, {"sent": "sent", "pending": "retrying", "failed": "failed"}[status]).append(
        claim.notification_id
    )
    report.attempts.append(Attempt(claim.notification_id, claim.contact_point, n, outcome.ok,
                                   error, outcome.duration_ms, status))  # fmt: skip
    if outcome.ok:
        log.info("notification %s to %s sent (attempt %s)", claim.notification_id,
                 claim.contact_point, n)  # fmt: skip
    else:
        log.warning("notification %s to %s: attempt %s failed: %s; %s", claim.notification_id,
                    claim.contact_point, n, error,
                    f"next at {next_at:%H:%M:%S}" if next_at else "given up")  # fmt: skip


def _fail_interrupted(conn, now: datetime, report: DeliveryReport) -> None:
    """Fail the notifications a deliverer marked 'sending' and never settled (it died): at
    most once (see the module doc)."""
    with conn.transaction():
        rows = conn.execute(
            "select notification_id, contact_point, attempts, next_attempt_at"
            " from alerts.notifications where status = 'sending' and next_attempt_at <= %s"
            " for update skip locked",
            (now,),
        ).fetchall()
        for notification_id, point, attempts, lease_end in rows:
            lease_end = lease_end.astimezone(UTC)
            error = (f"interrupted: the deliverer stopped after attempt {attempts} began and "
                     f"before it was recorded (lease ended {lease_end:%Y-%m-%d %H:%M:%S} UTC); "
                     "not sent again, so that nobody gets it twice")  # fmt: skip
            _give_up(conn, notification_id, attempts, error, now)
            report.interrupted.append(notification_id)
            report.attempts.append(Attempt(notification_id, point, attempts, False, error, 0.0,
                                           "failed"))  # fmt: skip


def _give_up(conn, notification_id: int, attempt: int, error: str, now: datetime) -> None:
    conn.execute(
        "insert into alerts.delivery_attempts (notification_id, attempt, attempted_at, ok,"
        " error, duration_ms) values (%s, %s, %s, false, %s, 0)"
        " on conflict (notification_id, attempt) do nothing",
        (notification_id, attempt, now, error),
    )
    conn.execute(
        "update alerts.notifications set status = 'failed', last_error = %s,"
        " attempts = greatest(attempts, %s) where notification_id = %s",
        (error, attempt, notification_id),
    )


# -- test messages -------------------------------------------------------------------------------


def test_notify(conn, config, contact_point: str, now: datetime | None = None) -> DeliveryReport:
    """Send a test message through ``contact_point`` by the outbox (kind 'test', recorded like
    any other); one attempt, no retry: the caller sees the error at once."""
    try:
        config.alerts.contact_point(contact_point)
    except KeyError as exc:
        raise SitelineError(f"sites.yml: {exc.args[0]}") from None
    now = _utc(now)
    news = sample_news(config, contact_point, now)
    ids = enqueue(conn, f"test-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}", [news], config, now)
    return deliver(conn, config, now, only=ids, policy=RetryPolicy(max_attempts=1))


test_notify.__test__ = False  # not a pytest test, whatever its name says


def sample_news(config, contact_point: str, now: datetime) -> AlertNews:
    """A made-up firing alert for a test message: a revenue drop on the first site, with two
    weeks of series and a baseline band, so the message looks like a real one."""
    site = config.sites[0]
    today = now.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    series = []
    for back in range(14, 0, -1):
        day = today - timedelta(days=back)
        value = 1300 + 120 * (day.weekday() in (5, 6)) + 15 * (back % 3)
        series.append([day.isoformat(), float(value if back > 1 else 760), 1080.0, 1560.0])
    last = today - timedelta(days=1)
    return AlertNews(
        kind="test", dedupe_key=f"test|{contact_point}|{uuid.uuid4().hex}", instance_id="test",
        rule_id="test", rule_name="Test notification", severity="info", site_id=site.id,
        site_name=site.name or site.id, timezone=site.timezone, metric="revenue",
        metric_label="Revenue", unit="currency", grain="day", period_start=last.isoformat(),
        period_end=today.isoformat(), value=760.0, baseline=1320.0, lower=1080.0, upper=1560.0,
        reason="A test from `siteline alerts test-notify`: Revenue 760 is 42% below its usual "
        "level (1,320); nothing fired, this is what an alert looks like.",
        state="firing", at=now.isoformat(), contact_points=(contact_point,),
        currency=site.currency, series=series,
    )  # fmt: skip


# -- silences ------------------------------------------------------------------------------------


def add_silence(
    conn,
    rule_id: str,
    site_id: str | None,
    duration_seconds: float,
    reason: str,
    created_by: str | None = None,
    now: datetime | None = None,
) -> int:
    """Hold back ``rule_id``'s notifications (of ``site_id``, or every site) from now for
    ``duration_seconds``; the silence's id. Firing and resolved alike, until it ends;
    notifications already queued but not yet sent are held back too."""
    if duration_seconds <= 0:
        raise SitelineError("a silence needs a positive duration (e.g. --for 2h)")
    if not reason.strip():
        raise SitelineError("a silence needs a reason (--reason), for whoever wonders later")
    now = _utc(now)
    return conn.execute(
        "insert into alerts.silences (rule_id, site_id, starts_at, ends_at, reason, created_by)"
        " values (%s, %s, %s, %s, %s, %s) returning silence_id",
        (rule_id, site_id, now, now + timedelta(seconds=duration_seconds), reason.strip(),
         created_by),
    ).fetchone()[0]  # fmt: skip


def end_silence(conn, silence_id: int, now: datetime | None = None) -> bool:
    """End a silence now (its row stays, as the record); False when none is active."""
    now = _utc(now)
    return bool(conn.execute(
        "update alerts.silences set ends_at = greatest(%s, starts_at + interval '1 second')"
        " where silence_id = %s and ends_at > %s",
        (now, silence_id, now),
    ).rowcount)  # fmt: skip


def silences(conn, now: datetime | None = None, include_ended: bool = False) -> list[Silence]:
    """The silences that are active or yet to start (``include_ended``: all), newest first."""
    now = _utc(now)
    rows = conn.execute(
        "select silence_id, rule_id, site_id, starts_at, ends_at, reason, created_by"
        " from alerts.silences where %s or ends_at > %s order by starts_at desc, silence_id desc",
        (include_ended, now),
    ).fetchall()
    return [Silence(*row, active=row[3] <= now < row[4]) for row in rows]


# -- helpers -------------------------------------------------------------------------------------

# a URL, without the punctuation that may follow it in a sentence
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>:;,.)]", re.IGNORECASE)


def _masked(text: str) -> str:
    """Every URL in ``text`` cut to its scheme, host and port (a path may be a token)."""
    return _URL.sub(lambda m: contacts.mask_url(m.group()), text)


def _jsonable(value):
    """A payload PostgreSQL's jsonb takes: NaN and infinities (no data) as null, numpy's
    numbers as Python's, tuples as lists, dates as ISO strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
