"""Per-site, per-minute counters of the real-time alert metrics, and their sliding windows.

The real-time alert rules (``sites.yml`` ``alerts.rules`` with a ``realtime`` metric of
``ingestion.core.metrics``) compare the last few minutes with the same minutes of previous
weeks. The session states do not remember that far back, so the engine keeps, per site and
per minute (by the collector's clock, ``received_at``: when the events reached it):

* ``orders``: ``transaction`` events;
* ``checkout_errors``: error events (``category`` ``error``: the tracker's
  ``javascript_error`` and ``http_error``, docs/tracker.md "Errors") on a checkout page (the
  site's page label ``Checkout``);
* ``payment_failures``: events with ``action`` ``payment_failed``;
* ``active_visitors``: at the end of each minute, the distinct visitors with an event in the
  last 1, 2, 3, 4, 5, 10, 15, 20, 30, 45 and 60 minutes (:data:`ACTIVE_MINUTES`; a window
  between two of them is interpolated). A distinct count cannot be added up from smaller
  windows, so it is taken when the minute closes, from the last time each visitor was seen.

Bots (``is_bot``) are left out, as in ``/v1/active``. Minutes are kept for
``SITELINE_ENGINE_WINDOW_WEEKS`` weeks (8) in a ring of fixed size per site: 14 int32
figures a minute, 5.2 MB per site for 8 weeks, whatever the traffic.

The engine keeps a site's minutes from its first start on (``begin``); a window that began
before is measured over the part since and answered as not ``complete``, a window that ended
before has no value (no data, not 0). A window ``(end - window, end]`` adds up its minutes;
a minute the window covers in part counts in proportion (a minute still under way: in
proportion of the part of it that has passed), so the current window and the same window a
week ago are measured alike - except that the counts of the last :data:`RECENT` seconds are
also kept by the second, so the live window, which ends at an evaluator's tick a moment ago,
counts exactly the events that came by then. Active
visitors now are counted exactly, from the visitors' last events; at an earlier end they are
interpolated between the two minute ends around it.

:class:`MemoryWindows` is kept in the process (saved beside the session snapshot, restored
with it, the landing replayed after it: ``persistence.py``), :class:`RedisWindows` in Redis
with the session states (``SITELINE_ENGINE_STORE=redis://...``), shared by every engine.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import orjson

from ingestion.core.enrich import url_parts
from ingestion.core.settings import settings

log = logging.getLogger("siteline.engine")

COUNTED = ("orders", "checkout_errors", "payment_failures")
METRICS = ("active_visitors", *COUNTED)
ACTIVE_MINUTES = (1, 2, 3, 4, 5, 10, 15, 20, 30, 45, 60)
HORIZON = ACTIVE_MINUTES[-1] * 60  # seconds a visitor's last event matters
RECENT = 180  # seconds also counted second by second: the live window's end is exact
WEEK = 7 * 86400
MINUTES_A_WEEK = 7 * 1440
CHECKOUT_LABEL = "checkout"  # page label (case-insensitive) of the checkout pages
ERROR_CATEGORY = "error"
PAYMENT_FAILED = "payment_failed"


def counted(record: dict, page_label) -> tuple[int, ...]:
    """The indices into :data:`COUNTED` that one event adds to (``page_label(path)`` gives
    the site's label of a path)."""
    etype = record.get("type")
    if etype == "transaction":
        return (0,)
    if etype != "event":
        return ()
    found: tuple[int, ...] = ()
    path = url_parts(record.get("url"))[1] if record.get("category") == ERROR_CATEGORY else None
    if path is not None and page_label(path).lower() == CHECKOUT_LABEL:
        found = (1,)
    if record.get("action") == PAYMENT_FAILED:
        found = (*found, 2)
    return found


def interpolate_active(figures, seconds: float) -> float:
    """Active visitors in a window of ``seconds`` from the figures of :data:`ACTIVE_MINUTES`
    at one minute end (linear between the two kept windows around it)."""
    minutes = seconds / 60
    if minutes <= ACTIVE_MINUTES[0]:
        return float(figures[0]) * minutes / ACTIVE_MINUTES[0]
    for i in range(1, len(ACTIVE_MINUTES)):
        if minutes <= ACTIVE_MINUTES[i]:
            low, high = ACTIVE_MINUTES[i - 1], ACTIVE_MINUTES[i]
            share = (minutes - low) / (high - low)
            return float(figures[i - 1]) + share * float(figures[i] - figures[i - 1])
    return float(figures[-1])


def weeks_kept() -> int:
    return settings().engine_window_weeks


class Windows:
    """The window arithmetic, over what a store keeps (see the module docstring). A store
    gives :meth:`minutes` (the counts of a range of minutes), :meth:`minute_ends` (the
    active-visitor figures at minute ends), :meth:`live_active` and :meth:`kept_since`."""

    weeks: int

    # -- what a store provides --------------------------------------------------------------------
    def minutes(self, site_id: str, index: int, first: int, last: int) -> np.ndarray:
        raise NotImplementedError

    def seconds(self, site_id: str, index: int, minute: int) -> np.ndarray | None:
        """The counts of each second of a recent ``minute`` (None: not kept by second)."""
        raise NotImplementedError

    def minute_ends(self, site_id: str, ends: list[int]) -> list:
        raise NotImplementedError

    def live_active(self, site_id: str, since: float) -> int:
        raise NotImplementedError

    def kept_since(self, site_id: str) -> float | None:
        """When the engine began keeping the site's minutes (epoch seconds)."""
        raise NotImplementedError

    def begin(self, site_ids, now: float) -> None:
        """Keep the minutes of ``site_ids`` from ``now`` on (at an engine's start; a site kept
        before keeps its start): from then on, no event is a count of 0, not no data."""

    def close_until(self, now: float) -> None:
        """Take the active-visitor figures of every minute that ended by ``now``."""

    # -- windows ----------------------------------------------------------------------------------
    def value(self, site_id: str, metric: str, start: float, end: float, now: float):
        """The metric over ``(start, end]`` (epoch seconds) as the engine knows it at ``now``;
        None when the engine kept nothing for the site then (it ends before the engine began
        keeping, or lies further back than the ring holds). A window that began before the
        engine did holds only the part since (:meth:`answer` says it is not complete)."""
        since = self.kept_since(site_id)
        oldest = now - self.weeks * WEEK - 2 * HORIZON  # the ring's spare minutes
        if since is None or end <= since or start < oldest or end > now + 1e-6:
            return None
        if metric == "active_visitors":
            return self._active(site_id, start, end, now)
        index = COUNTED.index(metric)
        first, last = int(start // 60), math.ceil(end / 60) - 1
        counts = self.minutes(site_id, index, first, last)
        total = 0.0
        for offset, count in enumerate(counts):
            if not count:
                continue
            m0 = (first + offset) * 60
            if (start > m0 or end < m0 + 60) and m0 >= now - RECENT + 60:
                by_second = self.seconds(site_id, index, first + offset)
                # A recent minute in part: by its seconds, when they hold all of it (not so
                # after a restart, which keeps minutes only).
                if by_second is not None and int(by_second.sum()) == int(count):
                    total += _share(by_second, m0, 1, start, end, now)
                    continue
            total += _share([count], m0, 60, start, end, now)
        return round(total, 3)

    def _active(self, site_id: str, start: float, end: float, now: float):
        seconds = end - start
        if end >= (now // 60) * 60:
            # In the minute under way: exactly, from the visitors' last events (those seen
            # since ``end`` count too: they are active now).
            return float(self.live_active(site_id, end - seconds))
        before, after = int(end // 60), math.ceil(end / 60)
        figures = self.minute_ends(site_id, [before, after])
        values = [None if f is None else interpolate_active(f, seconds) for f in figures]
        if before == after or values[1] is None:
            if values[0] is None:
                return None
            return round(values[0], 3)
        if values[0] is None:
            return round(values[1], 3)
        share = (end - before * 60) / 60
        return round(values[0] + share * (values[1] - values[0]), 3)

    def answer(self, site_id: str, metric: str, end: float, window: float, weeks: int,
               now: float) -> dict:  # fmt: skip
        """The window ending at ``end``, the window before it and the same window in each of
        the last ``weeks`` weeks (``GET /v1/metrics/windows``)."""
        from realtime.engine.rules import iso

        self.close_until(now)
        start = end - window

        def one(s: float, e: float, **more) -> dict:
            value = self.value(site_id, metric, s, e, now)
            complete = value is not None and s >= since - 1e-6
            return {**more, "start": iso(s), "end": iso(e), "value": value, "complete": complete}

        since = self.kept_since(site_id)
        return {
            "site_id": site_id,
            "metric": metric,
            "window_seconds": window,
            "as_of": iso(now),
            **one(start, end),
            "previous_window": one(start - window, start),
            "previous_weeks": [
                one(start - k * WEEK, end - k * WEEK, weeks_ago=k) for k in range(1, weeks + 1)
            ],
            "kept_since": iso(since) if since is not None else None,
        }


def _share(counts, first: float, width: float, start: float, end: float, now: float) -> float:
    """What buckets of ``width`` seconds from ``first`` on add to the window ``(start, end]``:
    each in proportion of its part in the window (a bucket under way: of the part of it that
    has passed)."""
    total = 0.0
    for n, count in enumerate(counts):
        if not count:
            continue
        b0 = first + n * width
        covered = min(b0 + width, now) - b0
        overlap = min(end, b0 + width, now) - max(start, b0)
        if covered > 0 and overlap > 0:
            total += float(count) * min(1.0, overlap / covered)
    return total


class _SiteRing:
    """One site's minutes in memory: a ring of ``slots`` minutes."""

    __slots__ = ("active", "closed", "counts", "last_closed", "minute", "second",
                 "second_counts", "seen", "since")  # fmt: skip

    def __init__(self, slots: int) -> None:
        self.counts = np.zeros((slots, len(COUNTED)), np.int32)
        self.active = np.zeros((slots, len(ACTIVE_MINUTES)), np.int32)
        self.minute = np.full(slots, -1, np.int64)  # the epoch minute a slot holds
        self.closed = np.zeros(slots, np.bool_)  # its active figures were taken at its end
        self.since: float | None = None  # when the engine began keeping the site
        self.last_closed: int | None = None  # the last minute end whose figures were taken
        self.seen: dict[str, float] = {}  # visitor -> last event (last HORIZON s), in order
        self.second_counts = np.zeros((RECENT, len(COUNTED)), np.int32)
        self.second = np.full(RECENT, -1, np.int64)  # the epoch second a slot holds

    def slot(self, minute: int) -> int:
        slot = minute % len(self.minute)
        if self.minute[slot] != minute:
            self.minute[slot] = minute
            self.counts[slot] = 0
            self.active[slot] = 0
            self.closed[slot] = False
        return slot

    def close_until(self, now: float) -> None:
        end = int(now // 60)  # the last minute end that has passed (epoch minute it starts)
        if self.last_closed is None or end <= self.last_closed:
            return
        first = max(self.last_closed + 1, end - len(self.minute) + 1)
        times = np.sort(np.fromiter(self.seen.values(), float, len(self.seen)))
        for boundary in range(first, end + 1):
            at = boundary * 60.0
            slot = self.slot(boundary - 1)  # the minute that ends there
            upto = np.searchsorted(times, at, side="right")
            for i, minutes in enumerate(ACTIVE_MINUTES):
                self.active[slot, i] = upto - np.searchsorted(times, at - minutes * 60, "right")
            self.closed[slot] = True
        self.last_closed = end

    def forget_before(self, at: float) -> None:
        seen = self.seen
        while seen:
            visitor = next(iter(seen))
            if seen[visitor] >= at:
                break
            del seen[visitor]


class MemoryWindows(Windows):
    """The minutes of every site in this process; see the module docstring."""

    def __init__(self, path: Path | None = None, weeks: int | None = None) -> None:
        self.weeks = weeks if weeks is not None else weeks_kept()
        self.slots = self.weeks * MINUTES_A_WEEK + 180  # + windows ending an hour ago
        self.sites: dict[str, _SiteRing] = {}
        self.path = path

    def record(self, site_id: str, visitor_id: str, received: float, indices) -> None:
        """Count one event received at ``received`` (adding to ``indices`` of COUNTED)."""
        ring = self.sites.get(site_id)
        if ring is None:
            ring = self.sites[site_id] = _SiteRing(self.slots)
        minute = int(received // 60)
        if ring.since is None:
            ring.since, ring.last_closed = received, minute
        else:
            ring.close_until(received)  # the figures of a minute end before what follows it
        if indices:
            slot = ring.slot(minute)
            second = int(received)
            at = second % RECENT
            if ring.second[at] != second:
                ring.second[at] = second
                ring.second_counts[at] = 0
            for index in indices:
                ring.counts[slot, index] += 1
                ring.second_counts[at, index] += 1
        seen = ring.seen
        seen.pop(visitor_id, None)  # re-insert: ordered by last event
        seen[visitor_id] = max(received, ring.last_closed * 60.0)
        if len(seen) % 1024 == 0:
            ring.forget_before(received - HORIZON - 60)

    def close_until(self, now: float) -> None:
        for ring in self.sites.values():
            ring.close_until(now)
            ring.forget_before(now - HORIZON - 60)

    def kept_since(self, site_id: str) -> float | None:
        ring = self.sites.get(site_id)
        return None if ring is None else ring.since

    def begin(self, site_ids, now: float) -> None:
        for site_id in site_ids:
            if site_id not in self.sites:
                ring = self.sites[site_id] = _SiteRing(self.slots)
                ring.since, ring.last_closed = now, int(now // 60)

    def minutes(self, site_id: str, index: int, first: int, last: int) -> np.ndarray:
        ring = self.sites[site_id]
        wanted = np.arange(first, last + 1)
        slots = wanted % self.slots
        held = ring.minute[slots] == wanted
        return np.where(held, ring.counts[slots, index], 0)

    def seconds(self, site_id: str, index: int, minute: int) -> np.ndarray | None:
        ring = self.sites[site_id]
        wanted = np.arange(minute * 60, minute * 60 + 60)
        slots = wanted % RECENT
        held = ring.second[slots] == wanted
        return np.where(held, ring.second_counts[slots, index], 0)

    def minute_ends(self, site_id: str, ends: list[int]) -> list:
        ring = self.sites[site_id]
        out = []
        for end in ends:
            slot = (end - 1) % self.slots
            if ring.minute[slot] == end - 1 and ring.closed[slot]:
                out.append(ring.active[slot].tolist())
            elif ring.since is not None and end * 60 <= ring.since:
                out.append(None)  # before the engine kept anything
            elif ring.last_closed is not None and end <= ring.last_closed:
                out.append([0] * len(ACTIVE_MINUTES))  # taken, nobody was there
            else:
                out.append(None)
        return out

    def live_active(self, site_id: str, since: float) -> int:
        ring = self.sites[site_id]
        return sum(1 for at in ring.seen.values() if at > since)

    # -- snapshot (beside the session states': persistence.py) ------------------------------------
    def save(self) -> None:
        """Write every site's ring to :attr:`path` (atomically)."""
        if self.path is None or not self.sites:
            return
        arrays: dict[str, np.ndarray] = {}
        meta = {"version": 1, "weeks": self.weeks, "sites": {}}
        for n, (site_id, ring) in enumerate(self.sites.items()):
            used = np.nonzero(ring.minute >= 0)[0]
            arrays[f"s{n}_slot"] = used.astype(np.int32)
            arrays[f"s{n}_minute"] = ring.minute[used]
            arrays[f"s{n}_counts"] = ring.counts[used]
            arrays[f"s{n}_active"] = ring.active[used]
            arrays[f"s{n}_closed"] = ring.closed[used]
            meta["sites"][site_id] = {
                "n": n, "since": ring.since, "last_closed": ring.last_closed,
                "seen": list(ring.seen.items()),
            }  # fmt: skip
        arrays["meta"] = np.frombuffer(orjson.dumps(meta), np.uint8)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, self.path)

    def load(self, sites) -> bool:
        """Read the rings back (of the ``sites`` the engine knows); False without a file."""
        if self.path is None or not self.path.exists():
            return False
        try:
            with np.load(self.path) as data:
                meta = orjson.loads(data["meta"].tobytes())
                for site_id, info in meta["sites"].items():
                    if site_id not in sites:
                        continue
                    ring = self.sites[site_id] = _SiteRing(self.slots)
                    n = info["n"]
                    minutes = data[f"s{n}_minute"]
                    slots = minutes % self.slots  # the ring may have another size now
                    ring.minute[slots] = minutes
                    ring.counts[slots] = data[f"s{n}_counts"]
                    ring.active[slots] = data[f"s{n}_active"]
                    ring.closed[slots] = data[f"s{n}_closed"]
                    ring.since, ring.last_closed = info["since"], info["last_closed"]
                    ring.seen = dict(info["seen"])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring the unreadable window counters %s: %s", self.path, exc)
            self.sites.clear()
            return False
        return True


class RedisWindows(Windows):
    """The minutes of every site in Redis, beside the session states, shared by the engine
    processes: per minute a hash of its counts (``HINCRBY``) and one of its active-visitor
    figures, each living ``weeks`` weeks; per site a sorted set of the visitors' last events
    (the last hour). A minute's figures are taken once (``SET NX``), by whichever process's
    housekeeping (every second) sees the minute ended first."""

    def __init__(self, client, prefix: str = "siteline:rt", weeks: int | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.weeks = weeks if weeks is not None else weeks_kept()
        self.ttl = self.weeks * WEEK + 7200
        self.sites_seen: set[str] = set()

    def _key(self, site_id: str, kind: str, ident: int | str = "") -> str:
        return f"{self.prefix}:{site_id}:{kind}:{ident}"

    def record(self, site_id: str, visitor_id: str, received: float, indices) -> None:
        minute = int(received // 60)
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._key(site_id, "wsince"), received, nx=True)
        pipe.set(self._key(site_id, "wclosed"), minute, nx=True)
        if indices:
            key = self._key(site_id, "wc", minute)
            by_second = self._key(site_id, "ws", minute)
            for index in indices:
                pipe.hincrby(key, COUNTED[index], 1)
                pipe.hincrby(by_second, f"{index}:{int(received) % 60}", 1)
            pipe.expire(key, self.ttl)
            pipe.expire(by_second, RECENT + 120)
        pipe.zadd(self._key(site_id, "wseen"), {visitor_id: received})
        pipe.execute()
        self.sites_seen.add(site_id)

    def close_until(self, now: float) -> None:
        end = int(now // 60)
        # The sites of sites.yml (``begin`` at the start) and any this process counted: no
        # scan of the keyspace, which holds every visitor's state, every second.
        for site_id in list(self.sites_seen):
            raw = self.client.get(self._key(site_id, "wclosed"))
            if raw is None:
                continue
            first = max(int(raw) + 1, end - 120)
            seen = self._key(site_id, "wseen")
            for boundary in range(first, end + 1):
                if not self.client.set(self._key(site_id, "wlock", boundary), 1, nx=True, ex=7200):
                    continue  # another process takes this one
                at = boundary * 60
                pipe = self.client.pipeline(transaction=False)
                for minutes in ACTIVE_MINUTES:
                    pipe.zcount(seen, f"({at - minutes * 60}", at)
                figures = pipe.execute()
                key = self._key(site_id, "wa", boundary - 1)
                pipe = self.client.pipeline(transaction=False)
                pipe.hset(key, mapping=dict(zip(map(str, ACTIVE_MINUTES), figures, strict=True)))
                pipe.expire(key, self.ttl)
                pipe.set(self._key(site_id, "wclosed"), boundary)
                pipe.execute()
            self.client.zremrangebyscore(seen, "-inf", f"({now - HORIZON - 60}")

    def kept_since(self, site_id: str) -> float | None:
        raw = self.client.get(self._key(site_id, "wsince"))
        return None if raw is None else float(raw)

    def begin(self, site_ids, now: float) -> None:
        pipe = self.client.pipeline(transaction=False)
        for site_id in site_ids:
            pipe.set(self._key(site_id, "wsince"), now, nx=True)
            pipe.set(self._key(site_id, "wclosed"), int(now // 60), nx=True)
            self.sites_seen.add(site_id)
        pipe.execute()

    def minutes(self, site_id: str, index: int, first: int, last: int) -> np.ndarray:
        pipe = self.client.pipeline(transaction=False)
        for minute in range(first, last + 1):
            pipe.hget(self._key(site_id, "wc", minute), COUNTED[index])
        return np.array([int(v) if v else 0 for v in pipe.execute()], np.int64)

    def seconds(self, site_id: str, index: int, minute: int) -> np.ndarray | None:
        raw = self.client.hgetall(self._key(site_id, "ws", minute))
        counts = np.zeros(60, np.int64)
        prefix = f"{index}:".encode()
        for field, value in raw.items():
            if field.startswith(prefix):
                counts[int(field[len(prefix) :])] = int(value)
        return counts

    def minute_ends(self, site_id: str, ends: list[int]) -> list:
        since = self.kept_since(site_id)
        closed = int(self.client.get(self._key(site_id, "wclosed")) or -1)
        out = []
        for end in ends:
            raw = self.client.hgetall(self._key(site_id, "wa", end - 1))
            if raw:
                out.append([int(raw[str(m).encode()]) for m in ACTIVE_MINUTES])
            elif since is not None and since < end * 60 and end <= closed:
                out.append([0] * len(ACTIVE_MINUTES))
            else:
                out.append(None)
        return out

    def live_active(self, site_id: str, since: float) -> int:
        return self.client.zcount(self._key(site_id, "wseen"), f"({since}", "+inf")

    def save(self) -> None:
        return None  # Redis keeps them

    def load(self, sites) -> bool:
        return False


def make_windows(store, snapshot: Path | None = None) -> Windows:
    """The window counters beside the session ``store``: in Redis with a Redis store, else
    in memory, saved beside the session snapshot ``snapshot`` (when there is one)."""
    if getattr(store, "shared", False):
        return RedisWindows(store.client, store.prefix)
    path = None
    if snapshot is not None:
        path = snapshot.with_name(snapshot.stem.replace("sessions", "windows") + ".npz")
    return MemoryWindows(path)
