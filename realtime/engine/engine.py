"""The real-time engine: live session state from the collector's events.

The collector hands every batch it made durable to :meth:`Engine.handle` through the event
bus (``bus.py``: in-process by default, a Redis stream between processes). For each event the
engine finds the visitor's open visit, decides with the warehouse's rules whether the event
starts a new one (``rules.Sessioniser``), updates the state (``state.SessionState``),
evaluates the site's real-time rules, asks for the customer state when a visit starts or a
visitor logs in (``customers.CustomerStates``) and announces the change to stream listeners.

A housekeeping task expires visits after the site's inactivity timeout and writes the
snapshot that lets in-memory state survive a restart.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import operator
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from ingestion.core.enrich import url_parts
from ingestion.core.sites import SitesConfig
from realtime.engine.bus import backlog_limit_bytes
from realtime.engine.customers import CustomerStates
from realtime.engine.rules import (
    Sessioniser,
    SiteRules,
    corrected_time,
    epoch,
    iso,
    session_id_of,
)
from realtime.engine.state import SessionState, scores
from realtime.engine.store import MemoryStore

log = logging.getLogger("siteline.engine")

CHANGES_CHANNEL = "siteline:rt:changes"


class Hub:
    """Server-sent-event listeners per site; changes are serialised once per event.

    Changes to one session reach a listener in revision order: with a shared store they
    travel through Redis from several processes, and a change may arrive after a newer
    one; the older is then dropped (the newer already carries everything it said)."""

    KEEP = 100_000  # sessions whose last delivered revision is remembered

    def __init__(self, queue_size: int = 1000) -> None:
        self.listeners: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = {}
        self.queue_size = queue_size
        self.dropped = 0
        self.stale = 0
        self._latest: dict[tuple[str, str], float] = {}
        self._order = threading.Lock()
        self.closed = False

    def listening(self, site_id: str) -> bool:
        return bool(self.listeners.get(site_id))

    def add(self, site_id: str) -> asyncio.Queue:
        """A listener's queue of changes; ``None`` in it ends the stream (:meth:`close`)."""
        queue: asyncio.Queue = asyncio.Queue(self.queue_size)
        self.listeners.setdefault(site_id, []).append((asyncio.get_running_loop(), queue))
        if self.closed:
            self._end(queue)
        return queue

    def close(self) -> None:
        """The server is stopping: end every open stream now (its client reconnects), so
        that the graceful stop does not wait its whole timeout for streams that never end."""
        self.closed = True
        for listeners in list(self.listeners.values()):
            for loop, queue in list(listeners):
                loop.call_soon_threadsafe(self._end, queue)

    @staticmethod
    def _end(queue: asyncio.Queue) -> None:
        if queue.full():
            queue.get_nowait()  # the stream ends: an undelivered change does not matter
        queue.put_nowait(None)

    def discard(self, site_id: str, queue: asyncio.Queue) -> None:
        self.listeners[site_id] = [x for x in self.listeners.get(site_id, []) if x[1] is not queue]

    def current(self, site_id: str, session_id: str | None, revision: float | None) -> bool:
        """Whether a change of this revision is newer than the last one delivered for the
        session (an ended session takes revision infinity: nothing older follows it)."""
        if session_id is None or revision is None:
            return True
        key = (site_id, session_id)
        with self._order:
            if revision <= self._latest.get(key, -1):
                self.stale += 1
                return False
            self._latest.pop(key, None)  # re-inserted last: the oldest are forgotten first
            self._latest[key] = revision
            if len(self._latest) > self.KEEP:
                for old in list(itertools.islice(self._latest, self.KEEP // 2)):
                    del self._latest[old]
        return True

    def deliver(
        self, site_id: str, payload: bytes, session_id: str | None = None,
        revision: float | None = None,
    ) -> None:  # fmt: skip
        if not self.current(site_id, session_id, revision):
            return
        for loop, queue in list(self.listeners.get(site_id, ())):
            loop.call_soon_threadsafe(self._put, queue, payload)

    def _put(self, queue: asyncio.Queue, payload: bytes) -> None:
        try:
            queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped += 1  # a listener that does not read loses changes, not the engine


_OPERATORS = {
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


def _matches(value, conditions: dict) -> bool:
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
                if not _OPERATORS[op](value, operand):
                    return False
            except TypeError:
                return False
    return True


_SESSION = {
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
}
_CART = {
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
            return _SESSION[rest](state)
        if group == "cart":
            return _CART[rest](state)
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


class RecentEvents:
    """Ids of the events applied in the last ``seconds`` (at most ``limit``): a retried
    delivery is applied once, and a snapshot records what it already holds."""

    def __init__(self, seconds: float = 120.0, limit: int = 200_000) -> None:
        self.seconds = seconds
        self.order: collections.deque[tuple[float, str]] = collections.deque()
        self.ids: set[str] = set()
        self.limit = limit

    def add(self, event_id: str, at: float) -> bool:
        """Remember ``event_id``; False when it was already applied recently."""
        if event_id in self.ids:
            return False
        order, ids = self.order, self.ids
        while order and (order[0][0] < at - self.seconds or len(order) >= self.limit):
            ids.discard(order.popleft()[1])
        order.append((at, event_id))
        ids.add(event_id)
        return True

    def since(self, at: float) -> list[str]:
        return [event_id for t, event_id in self.order if t >= at]


def json_size(events: Sequence[dict]) -> int:
    """The events' size as JSON: what a collector's batch says of itself (``nbytes``, the
    body as it came, without decoding it), else the records encoded."""
    size = getattr(events, "nbytes", None)
    if size is not None:
        return size
    return sum(len(orjson.dumps(record, default=str)) for record in events)


REPLAY_MARGIN = 30.0  # seconds: events land (fsync) before the engine applies them
SLICE_EVENTS = 20  # events applied at a time
IDLE_SLICE = 0.003  # seconds of engine work per turn of the event loop when idle ...
BUSY_SHARE = 0.10  # ... and the share of time it may take while requests wait
BUSY_BURST = 0.002  # seconds it may save up


class Engine:
    """Live state of every active visit; see the module docstring."""

    def __init__(
        self,
        sites: SitesConfig,
        store=None,
        customers: CustomerStates | None = None,
        snapshot_seconds: float = 60.0,
        max_backlog: int = 100_000,
        max_backlog_bytes: int | None = None,
    ) -> None:
        self.rules = {site.id: SiteRules(site) for site in sites.sites}
        self.sessionisers = {sid: Sessioniser(r) for sid, r in self.rules.items()}
        self.store = store if store is not None else MemoryStore()
        self.customers = customers
        if customers is not None:
            customers.on_update = self._customer_arrived
        self.hub = Hub()
        self.lock = threading.RLock()
        self.snapshot_seconds = snapshot_seconds
        self._dirty = False
        self.counters = {
            "events": 0, "late": 0, "unknown_site": 0, "out_of_order": 0,
            "sessions_started": 0, "sessions_expired": 0, "restored": 0, "replayed": 0,
            "duplicates": 0, "shed": 0, "shed_bytes": 0, "errors": 0, "replay_segments": 0,
        }  # fmt: skip
        self._changes_thread: threading.Thread | None = None
        self._saver: int | None = None  # pid of the snapshot writer
        self.latencies: collections.deque[float] = collections.deque(maxlen=10_000)
        self.recent = RecentEvents()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.busy = lambda: False
        # (events, their JSON size) waiting to be applied, bounded in events and in bytes.
        self.backlog: collections.deque[tuple[Sequence[dict], int]] = collections.deque()
        self.backlog_events = 0
        self.backlog_bytes = 0
        self.max_backlog = max_backlog
        self.max_backlog_bytes = (
            backlog_limit_bytes() if max_backlog_bytes is None else max_backlog_bytes
        )
        self._draining = False
        self.tokens = BUSY_BURST
        self._last_drain = time.perf_counter()

    # -- events -----------------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop, busy=lambda: False) -> None:
        """Apply submitted events on ``loop`` in slices, yielding to requests (``busy()``
        says whether requests are waiting)."""
        self.loop = loop
        self.busy = busy

    def submit(self, events: Sequence[dict]) -> None:
        """Bus subscriber in the collector's process: queue the batch; it is applied on the
        next turn of the event loop, in slices of at most ~3 ms, and while requests wait it
        takes at most ``BUSY_SHARE`` of the time: the real-time path never holds up an
        acknowledgement. A backlog beyond ``max_backlog`` events or ``max_backlog_bytes``
        (the events' JSON size: large events fill memory long before their count does) sheds
        its oldest batches, counted in ``shed`` and ``shed_bytes``: the landing still has
        every event."""
        if self.loop is None:
            self.handle(events)
            return
        size = json_size(events)
        if len(events) <= SLICE_EVENTS:
            # As it came: a batch that is shed before its turn is never decoded (the
            # collector's batches decode when first read).
            self.backlog.append((events, size))
            self.backlog_events += len(events)
            self.backlog_bytes += size
        else:
            for start in range(0, len(events), SLICE_EVENTS):
                chunk = events[start : start + SLICE_EVENTS]
                # The batch's size shared by event count (the last chunk takes the rest).
                share = size * (start + len(chunk)) // len(events) - size * start // len(events)
                self.backlog.append((chunk, share))
                self.backlog_events += len(chunk)
                self.backlog_bytes += share
        backlog = self.backlog
        while self.backlog_events > self.max_backlog or self.backlog_bytes > self.max_backlog_bytes:
            chunk, share = backlog.popleft()
            self.backlog_events -= len(chunk)
            self.backlog_bytes -= share
            self.counters["shed"] += len(chunk)
            self.counters["shed_bytes"] += share
        if not self._draining:
            self._draining = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        started = time.perf_counter()
        busy = self.busy()
        if busy:
            # Requests wait: the engine may use BUSY_SHARE of the time (a token bucket), so a
            # saturated collector acknowledges at nearly full speed and the backlog sheds.
            self.tokens = min(BUSY_BURST, self.tokens + (started - self._last_drain) * BUSY_SHARE)
            budget = self.tokens
        else:
            budget = IDLE_SLICE
        self._last_drain = started
        deadline = started + budget
        backlog = self.backlog
        while backlog and time.perf_counter() < deadline:
            chunk, share = backlog.popleft()
            self.backlog_events -= len(chunk)
            self.backlog_bytes -= share
            self.handle(chunk)
        spent = time.perf_counter() - started
        # A slice runs to its end, so it can overshoot the budget: the overshoot is owed
        # (tokens go below zero) and paid back before the next slice, so the share holds.
        self.tokens = self.tokens - spent if busy else BUSY_BURST
        if backlog:
            # The next turn of the loop (requests first); while the budget is spent, wait
            # until it has grown back rather than spin.
            if self.tokens > 0 or not busy:
                self.loop.call_soon(self._drain)
            else:
                self.loop.call_later(max(0.002, -self.tokens / BUSY_SHARE), self._drain)
        else:
            self._draining = False

    def handle(self, events: Sequence[dict]) -> None:
        """Bus subscriber: apply a batch of accepted events."""
        now = time.time()
        for record in events:
            try:
                self._handle(record, now, replay=False)
            except Exception:  # one odd event must not stop the others
                self.counters["errors"] += 1
                log.exception("cannot apply event %s", record.get("event_id"))

    def _handle(self, record: dict, now: float, replay: bool) -> None:
        site_id = record.get("site_id")
        rules = self.rules.get(site_id)
        visitor = record.get("visitor_id")
        if rules is None:
            self.counters["unknown_site"] += 1  # sites.yml changed under a running collector
            return
        if not visitor:
            return  # every event type requires one (schema.py); nothing to attach it to
        if not self.recent.add(record["event_id"], now):
            self.counters["duplicates"] += 1  # a retried delivery: applied once
            return
        at, delay, received = corrected_time(record)
        if delay > rules.allowed_lateness:
            self.counters["late"] += 1  # as the warehouse: counted, not put into visits
            return
        self.counters["events"] += 1
        outcome: dict = {}

        def change(state: SessionState | None) -> SessionState:
            return self._step(state, record, at, now, rules, outcome)

        if self.store.shared:
            state = self.store.update(site_id, visitor, change, rules.timeout + 60)
        else:
            with self.lock:
                state = change(self.store.get(site_id, visitor))
                if "renamed" in outcome:
                    self.store.unlink_session(site_id, outcome["renamed"])
                self.store.put(state)
                self._dirty = True
        if replay:
            return  # rebuilding after a restart: nobody to tell yet
        if outcome.get("ended") is not None:
            self._announce(site_id, "session_ended", self._brief(outcome["ended"], now))
        if outcome.get("lookup") and self.customers is not None:
            self.customers.want(site_id, visitor, state.user_id)
        if self.hub_wanted(site_id):
            self._announce(site_id, "session", self.describe(state, now, with_customer=True))
        # From the collector stamping the event to its state being visible here.
        self.latencies.append((time.time() - received) * 1000)

    def _step(self, state, record, at, now, rules: SiteRules, outcome: dict) -> SessionState:
        site_id, visitor, etype = rules.site_id, record["visitor_id"], record["type"]
        outcome.clear()
        if state is not None and now - state.seen_at > rules.timeout:
            outcome["ended"] = state  # expired, not yet swept
            state = None
        touch = None
        if etype == "page_view":
            host, _, query = url_parts(record.get("url"))
            referrer_host = url_parts(record.get("referrer"))[0]
            medium, _ = rules.referrer(referrer_host, host)
            touch = rules.touch_key(rules.campaign(query), medium, referrer_host)
        if state is not None and state.track is not None and at < state.track.last_at:
            # Out of order (engines sharing Redis may apply batches in another order than
            # they were sent): the event joins the open visit, and when it is the visit's
            # earliest, the visit is named after it and starts with it, as in the warehouse.
            self.counters["out_of_order"] += 1
            if at < state.started_at - rules.timeout:
                return state  # from a visit that ended before this one: not live
            track, new = state.track, False
            if at < state.started_at:  # (a tie in time keeps the name: no ids are kept)
                outcome["renamed"] = state.session_id
                state.session_id = session_id_of(site_id, visitor, record["event_id"])
                state.started_at = at
                track.started_at = min(track.started_at, at)
        else:
            track, new = self.sessionisers[site_id].step(
                state.track if state else None, at, etype == "page_view", touch
            )
        if new:
            previous = state
            if previous is not None:
                outcome["ended"] = previous
            session_id = session_id_of(site_id, visitor, record["event_id"])
            state = SessionState(site_id, session_id, visitor, at)
            if previous is not None and previous.user_id:
                state.user_id = state.customer_key = previous.user_id  # still logged in
            elif self.customers is not None:
                known = self.customers.peek(site_id, visitor, None)
                if known and known.get("customer_key"):
                    state.customer_key = known["customer_key"]
            self.counters["sessions_started"] += 1
            outcome["lookup"] = True
        state.track = track
        user_before = state.user_id
        state.apply(record, at, now, rules)
        if state.user_id != user_before:
            outcome["lookup"] = True  # logged in: the customer is someone else now
        if rules.site.realtime_rules:
            self._evaluate(state, rules, now)
        return state

    # -- rules and customers ----------------------------------------------------------------------
    def customer_of(self, state: SessionState) -> dict | None:
        if self.customers is None:
            return None
        return self.customers.peek(state.site_id, state.visitor_id, state.user_id)

    def _evaluate(self, state: SessionState, rules: SiteRules, now: float) -> None:
        """Re-evaluate the site's rules (a rule keeps the time it first matched)."""
        fields = RuleFields(state, rules, now, self.customer_of(state))
        before = dict(state.matched_rules)
        matched = tuple(
            (rule.id, before.get(rule.id, now))
            for rule in rules.site.realtime_rules
            if all(_matches(fields.get(name), cond) for name, cond in rule.when.items())
        )
        state.matched_rules = matched

    def _customer_arrived(self, site_id: str, visitor_id: str, customer: dict | None) -> None:
        """A customer state was fetched: attach its key, re-evaluate rules, announce."""
        rules = self.rules.get(site_id)
        if rules is None or customer is None:
            return
        now = time.time()

        def change(state: SessionState | None) -> SessionState | None:
            if state is None:
                return None
            if state.user_id is None and customer.get("customer_key"):
                state.customer_key = customer["customer_key"]
            if rules.site.realtime_rules:
                self._evaluate(state, rules, now)
            state.revision += 1
            return state

        if self.store.shared:
            state = self.store.update(site_id, visitor_id, change, rules.timeout + 60)
        else:
            with self.lock:
                state = change(self.store.get(site_id, visitor_id))
        if state is not None and self.hub_wanted(site_id):
            self._announce(site_id, "session", self.describe(state, now, with_customer=True))

    # -- reading ----------------------------------------------------------------------------------
    def describe(self, state: SessionState, now: float | None = None, with_customer=True) -> dict:
        rules = self.rules[state.site_id]
        now = time.time() if now is None else now
        customer = self.customer_of(state)
        data = state.to_dict(rules, now, customer)
        if with_customer:
            if customer is None:
                customer = (
                    {"status": "loading"}
                    if self.customers is not None and self.customers.url
                    else {"status": "unavailable", "reason": "no warehouse configured"}
                )
            data["customer"] = customer
        return data

    @staticmethod
    def _brief(state, now: float) -> dict:
        return {"session_id": state.session_id, "visitor_id": state.visitor_id,
                "ended_at": iso(now)}  # fmt: skip

    def session(self, site_id: str, session_id: str) -> dict | None:
        now = time.time()
        rules = self.rules[site_id]
        with self.lock:
            state = self.store.by_session(site_id, session_id)
            if state is None or now - state.seen_at > rules.timeout:
                return None
            return self.describe(state, now)

    def visitor_session(self, site_id: str, visitor_id: str) -> SessionState | None:
        rules = self.rules[site_id]
        with self.lock:
            state = self.store.get(site_id, visitor_id)
        if state is None or time.time() - state.seen_at > rules.timeout:
            return None
        return state

    def active(self, site_id: str, window: float | None = None, limit: int = 50) -> dict:
        """Active visits and visitors now, by page, channel and device (bots counted apart)."""
        rules = self.rules[site_id]
        now = time.time()
        window = rules.timeout if window is None else window
        with self.lock:
            states = list(self.store.active(site_id, now - window))
        humans = [s for s in states if not s.is_bot]
        by_page: dict[tuple, int] = {}
        by_channel: dict[str, int] = {}
        by_device: dict[str, int] = {}
        for s in humans:
            page = (url_parts(s.current_url)[1], s.current_label)
            by_page[page] = by_page.get(page, 0) + 1
            by_channel[s.channel or "unknown"] = by_channel.get(s.channel or "unknown", 0) + 1
            by_device[s.device_type or "unknown"] = by_device.get(s.device_type or "unknown", 0) + 1
        humans.sort(key=lambda s: s.seen_at, reverse=True)
        return {
            "site_id": site_id,
            "as_of": iso(now),
            "window_seconds": window,
            "active_sessions": len(humans),
            "active_visitors": len({s.visitor_id for s in humans}),
            "bot_sessions": len(states) - len(humans),
            "cart_value": round(sum(s.cart_value for s in humans), 2),
            "by_page": [
                {"path": path, "label": label, "sessions": n}
                for (path, label), n in sorted(by_page.items(), key=lambda x: (-x[1], str(x[0])))
            ],
            "by_channel": dict(sorted(by_channel.items(), key=lambda x: (-x[1], x[0]))),
            "by_device": dict(sorted(by_device.items(), key=lambda x: (-x[1], x[0]))),
            "sessions": [
                {
                    "session_id": s.session_id,
                    "visitor_id": s.visitor_id,
                    "customer_key": s.customer_key,
                    "started_at": iso(s.started_at),
                    "last_activity_at": iso(s.last_activity_at),
                    "page_views": s.page_views,
                    "current_path": url_parts(s.current_url)[1],
                    "channel": s.channel,
                    "cart_value": s.cart_value,
                    **scores(s, rules, now, None),
                }
                for s in humans[:limit]
            ],
        }

    # -- changes to listeners ---------------------------------------------------------------------
    def hub_wanted(self, site_id: str) -> bool:
        return self.store.shared or self.hub.listening(site_id)

    def _announce(self, site_id: str, kind: str, data: dict) -> None:
        payload = b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        revision = float("inf") if kind == "session_ended" else data.get("revision")
        if self.store.shared:  # every engine process tells its own listeners
            head = f"{site_id}\n{data.get('session_id', '')}\n{revision or ''}\n".encode()
            try:
                self.store.client.publish(CHANGES_CHANNEL, head + payload)
            except Exception as exc:
                log.warning("cannot publish a change: %s", exc)
        else:
            self.hub.deliver(site_id, payload, data.get("session_id"), revision)

    def _listen_for_changes(self) -> None:
        pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(CHANGES_CHANNEL)
        while True:
            try:
                message = pubsub.get_message(timeout=1.0)
            except Exception as exc:
                log.warning("change channel: %s", exc)
                time.sleep(1.0)
                continue
            if message and message["type"] == "message":
                site_id, session_id, revision, payload = message["data"].split(b"\n", 3)
                self.hub.deliver(
                    site_id.decode(), payload, session_id.decode() or None,
                    float(revision) if revision else None,
                )  # fmt: skip

    # -- housekeeping -----------------------------------------------------------------------------
    def _deadline(self, now: float):
        def oldest_alive(site_id: str) -> float | None:
            rules = self.rules.get(site_id)
            return None if rules is None else now - rules.timeout

        return oldest_alive

    def sweep(self) -> int:
        """Expire visits past their site's timeout; returns how many."""
        now = time.time()
        with self.lock:
            gone = self.store.expire(self._deadline(now))
            if gone:
                self._dirty = True
        for state in gone:
            self.counters["sessions_expired"] += 1
            if self.hub_wanted(state.site_id):
                self._announce(state.site_id, "session_ended", self._brief(state, now))
        return len(gone)

    def restore(self, landing: Path | None = None) -> int:
        """Rebuild the state after a restart: the snapshot, then every event the landing
        holds from shortly before the snapshot on that it does not (so even after a crash
        nothing acknowledged is missing), then expire what is over; then write a new
        snapshot. Returns the active sessions.

        The new snapshot bounds the next replay: without it, a process stopped by a crash
        before its first periodic snapshot left the old one in place, and every restart
        replayed all that had landed since then, again and again."""
        with self.lock:
            meta = self.store.load(self.rules.keys())
            if meta is not None and landing is not None:
                taken = meta.get("taken_at", meta["saved_at"])
                for event_id in meta.get("recent", ()):
                    self.recent.add(event_id, taken)
                self.counters["replayed"] = self._replay(landing, taken - REPLAY_MARGIN)
        self.sweep()
        restored = len(self.store)
        self.counters["restored"] = restored
        self._dirty = True
        self.save_in_background()
        if meta is not None:
            log.warning(
                "restored %d active sessions (snapshot of %d, %d events replayed)",
                restored, meta["states"], self.counters["replayed"],
            )  # fmt: skip
        return restored

    def _replay(self, landing: Path, since: float) -> int:
        from ingestion.core.landing import (
            SEGMENTS,
            UnreadableLine,
            iter_segment,
            landed_records,
            read_manifest,
        )
        from realtime.collector.throttled_log import ThrottledLog

        skipped = ThrottledLog(log)
        replayed = 0
        for segment in self._replay_segments(read_manifest(landing), since):
            for number, line in iter_segment(landing / SEGMENTS / segment.name):
                try:
                    records = landed_records(line)
                except UnreadableLine as exc:
                    # One unreadable line must not stop the start; the loader quarantines it.
                    self.counters["replay_skipped"] = self.counters.get("replay_skipped", 0) + 1
                    skipped.warning(
                        "unreadable", "replay: skipped %s line %d: %s", segment.name, number, exc
                    )
                    continue
                for record in records:
                    received = epoch(record["received_at"])
                    if received >= since:
                        before = self.counters["duplicates"]
                        self._handle(record, received, replay=True)
                        replayed += self.counters["duplicates"] == before
        return replayed

    def _replay_segments(self, segments: list, since: float) -> list:
        """The closed segments that can hold events received from ``since`` on (their last
        event was received then or later), in the manifest's order; the rest of the landing
        is not read. The collector has sealed this writer's open segment before the engine
        restores, so nothing acknowledged is in an ``.open`` file."""
        selected = [
            segment
            for segment in segments
            if segment.last_received_at and epoch(segment.last_received_at) >= since
        ]
        self.counters["replay_segments"] = len(selected)
        return selected

    def save(self) -> int:
        """Write the snapshot now (at shutdown); returns how many states it holds."""
        self._reap(wait=True)
        with self.lock:
            if not self._dirty:
                return 0
            self._dirty = False
            return self.store.save(self._snapshot_meta())

    def _snapshot_meta(self) -> dict:
        taken = time.time()
        return {"taken_at": taken, "recent": self.recent.since(taken - REPLAY_MARGIN)}

    def save_in_background(self) -> None:
        """Write the snapshot from a forked child, as Redis' BGSAVE does: the child holds a
        copy-on-write image of this instant and serialises it while this process goes on
        serving (serialising 100k states here would stall requests for a second)."""
        self._reap()
        if self._saver is not None or not self._dirty or not self.store.snapshots:
            return
        with self.lock:  # no batch is half-applied in the image
            self._dirty = False
            meta = self._snapshot_meta()
            pid = os.fork()
        if pid == 0:  # the child: write and leave, touching nothing else
            code = 1
            try:
                os.nice(10)  # serving goes first
                self.store.save(meta)
                code = 0
            finally:
                os._exit(code)
        self._saver = pid

    def _reap(self, wait: bool = False) -> None:
        if self._saver is None:
            return
        pid, status = os.waitpid(self._saver, 0 if wait else os.WNOHANG)
        if pid:
            self._saver = None
            if status != 0:
                self._dirty = True  # try again next time
                log.warning("the snapshot writer failed (status %d)", status)

    async def run(self) -> None:
        """Housekeeping until cancelled: expiry every second, a snapshot every few seconds."""
        if self.store.shared and self._changes_thread is None:
            self._changes_thread = threading.Thread(
                target=self._listen_for_changes, daemon=True, name="engine-changes"
            )
            self._changes_thread.start()
        last_save = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            try:
                self.sweep()
                if time.monotonic() - last_save >= self.snapshot_seconds:
                    last_save = time.monotonic()
                    self.save_in_background()
            except Exception:  # housekeeping must go on
                log.exception("engine housekeeping failed")

    def close(self) -> None:
        self._dirty = True
        self.save()
        if self.customers is not None:
            self.customers.close()

    def stats(self) -> dict:
        recent = sorted(self.latencies)
        return {
            **self.counters,
            "event_to_state_ms": {
                "events": len(recent),
                "p50": round(recent[len(recent) // 2], 3) if recent else None,
                "p99": round(recent[int(len(recent) * 0.99)], 3) if recent else None,
            },
            "active_sessions": len(self.store),
            "backlog": self.backlog_events,
            "backlog_bytes": self.backlog_bytes,
            "evicted": getattr(self.store, "evicted", 0),
            "store": type(self.store).__name__,
            "listeners_dropped": self.hub.dropped,
            "changes_superseded": self.hub.stale,
            **({"customers": self.customers.counters} if self.customers else {}),
        }
