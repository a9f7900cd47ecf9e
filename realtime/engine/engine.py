"""The real-time engine: live session state from the collector's events.

The collector hands every batch it made durable to :meth:`Engine.handle` through the event
bus (``bus.py``: in-process by default, a Redis stream between processes). For each event the
engine drops a retried delivery (:class:`RecentEvents`), finds the visitor's open visit,
decides with the warehouse's rules whether the event starts a new one (``rules.Sessioniser``),
updates the state (``state.SessionState``), evaluates the site's personalisation rules
(``personalisation.py``), asks for the customer state when a visit starts or a visitor logs
in (``customers.CustomerStates``) and announces the change to stream listeners (``hub.py``).
It answers the API's reads (:meth:`Engine.describe`, :meth:`Engine.session`,
:meth:`Engine.active`).

Around it: the periodic work that expires visits and writes snapshots (``scheduler.py``),
and the snapshot and replay that let in-memory state survive a restart (``persistence.py``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from ingestion.core.enrich import url_parts
from ingestion.core.sites import SitesConfig
from realtime.engine.bus import backlog_limit_bytes
from realtime.engine.customers import CustomerStates
from realtime.engine.hub import CHANGES_CHANNEL, Hub
from realtime.engine.persistence import Snapshots
from realtime.engine.personalisation import evaluate
from realtime.engine.rules import Sessioniser, SiteRules, corrected_time, iso, session_id_of
from realtime.engine.scheduler import housekeeping
from realtime.engine.state import SessionState, scores
from realtime.engine.store import MemoryStore
from realtime.engine.windows import counted, make_windows

log = logging.getLogger("siteline.engine")


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
        windows=None,
    ) -> None:
        self.rules = {site.id: SiteRules(site) for site in sites.sites}
        self.sessionisers = {sid: Sessioniser(r) for sid, r in self.rules.items()}
        self.store = store if store is not None else MemoryStore()
        # Per-minute counters of the real-time alert metrics, kept where the states are.
        self.windows = (
            windows
            if windows is not None
            else make_windows(self.store, getattr(self.store, "snapshot_path", None))
        )
        self.customers = customers
        if customers is not None:
            customers.on_update = self._customer_arrived
        self.hub = Hub()
        self.lock = threading.RLock()
        self.snapshot_seconds = snapshot_seconds
        self.dirty = False  # the state changed since the last snapshot
        self.counters = {
            "events": 0, "late": 0, "unknown_site": 0, "out_of_order": 0,
            "sessions_started": 0, "sessions_expired": 0, "restored": 0, "replayed": 0,
            "duplicates": 0, "shed": 0, "shed_bytes": 0, "errors": 0, "replay_segments": 0,
        }  # fmt: skip
        self.snapshots = Snapshots(self)
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
        next turn of the event loop, in slices of at most ``IDLE_SLICE``, and while requests
        wait it takes at most ``BUSY_SHARE`` of the time: the real-time path never holds up an
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
                self.apply(record, now, replay=False)
            except Exception:  # one odd event must not stop the others
                self.counters["errors"] += 1
                log.exception("cannot apply event %s", record.get("event_id"))

    def apply(self, record: dict, now: float, replay: bool) -> None:
        """Apply one event at ``now`` (``replay``: rebuilding after a restart)."""
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
        if not record.get("is_bot"):  # the alert metrics count people, as /v1/active does
            adds = counted(record, rules.page_label)
            if self.store.shared:
                self.windows.record(site_id, visitor, received, adds)
            else:
                with self.lock:
                    self.windows.record(site_id, visitor, received, adds)
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
                self.dirty = True
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
            evaluate(state, rules, now, self.customer_of(state))
        return state

    # -- customers --------------------------------------------------------------------------------
    def customer_of(self, state: SessionState) -> dict | None:
        if self.customers is None:
            return None
        return self.customers.peek(state.site_id, state.visitor_id, state.user_id)

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
                evaluate(state, rules, now, self.customer_of(state))
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

    def metric_windows(self, site_id: str, metric: str, end: float | None, window: float,
                       weeks: int) -> dict:  # fmt: skip
        """An alert metric over the window ending at ``end`` (default: now), the window
        before it and the same window in each of the last ``weeks`` weeks (windows.py)."""
        now = time.time()
        with self.lock:
            return self.windows.answer(site_id, metric, now if end is None else end, window,
                                       weeks, now)  # fmt: skip

    # -- changes to listeners ---------------------------------------------------------------------
    def hub_wanted(self, site_id: str) -> bool:
        return self.store.shared or self.hub.listening(site_id)

    def _announce(self, site_id: str, kind: str, data: dict) -> None:
        payload = b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        revision = float("inf") if kind == "session_ended" else data.get("revision")
        if self.store.shared:  # every engine process tells its own listeners (Hub.follow)
            head = f"{site_id}\n{data.get('session_id', '')}\n{revision or ''}\n".encode()
            try:
                self.store.client.publish(CHANGES_CHANNEL, head + payload)
            except Exception as exc:
                log.warning("cannot publish a change: %s", exc)
        else:
            self.hub.deliver(site_id, payload, data.get("session_id"), revision)

    # -- expiry -----------------------------------------------------------------------------------
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
                self.dirty = True
        for state in gone:
            self.counters["sessions_expired"] += 1
            if self.hub_wanted(state.site_id):
                self._announce(state.site_id, "session_ended", self._brief(state, now))
        return len(gone)

    def close_windows(self) -> None:
        """Take the active-visitor figures of the minutes that ended (windows.py)."""
        if self.store.shared:
            self.windows.close_until(time.time())
        else:
            with self.lock:
                self.windows.close_until(time.time())

    # -- snapshot and replay (persistence.py), periodic work (scheduler.py) ------------------------
    def restore(self, landing: Path | None = None) -> int:
        """Rebuild the state after a restart; returns the active sessions
        (:meth:`Snapshots.restore`)."""
        return self.snapshots.restore(landing)

    def save(self) -> int:
        """Write the snapshot now (at shutdown); returns how many states it holds."""
        return self.snapshots.save()

    def save_in_background(self) -> None:
        """Write the snapshot from a forked child (:meth:`Snapshots.save_in_background`)."""
        self.snapshots.save_in_background()

    async def run(self) -> None:
        """Housekeeping until cancelled: expiry every second, a snapshot every
        ``snapshot_seconds`` (:func:`scheduler.housekeeping`)."""
        await housekeeping(self)

    def close(self) -> None:
        self.dirty = True
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
            "windows": {"store": type(self.windows).__name__, "weeks": self.windows.weeks},
            "listeners_dropped": self.hub.dropped,
            "changes_superseded": self.hub.stale,
            **({"customers": self.customers.counters} if self.customers else {}),
        }
