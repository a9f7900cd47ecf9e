"""Where live session states are kept: in this process (default) or in Redis (shared).

Both stores answer the same questions - the state of a visitor's open visit, a visit by its
id or the tracker's client session id, the active visits of a site - so the engine and the
API do not know which one they use.

* :class:`MemoryStore` keeps :class:`SessionState` objects in per-site dictionaries keyed by
  the states' own strings (no copies), ordered by last update so expiry looks only at the
  oldest. It survives a restart through a snapshot file written every few seconds (by a
  forked child, so serving never waits) and at shutdown
  (``$SITELINE_HOME/realtime/sessions-<collector id>.json``); expired visits are dropped on
  load.
* :class:`RedisStore` (``SITELINE_ENGINE_STORE=redis://...``) keeps each visitor's state as
  one JSON value with a TTL of the site's timeout, pointers from session ids to visitors,
  and a sorted set of active visits per site. Updates are optimistic transactions (WATCH),
  so several engine processes can share it; every process answers the same.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Protocol

import orjson

from ingestion.core.settings import settings
from realtime.engine.state import SessionState

log = logging.getLogger("siteline.engine")


class Store(Protocol):
    """What the engine and the API read; writes differ: the memory store is changed in place
    under the engine's lock (``put``), the Redis store by optimistic transactions (``update``)."""

    shared: bool
    snapshots: bool

    def get(self, site_id: str, visitor_id: str) -> SessionState | None: ...

    def by_session(self, site_id: str, session_id: str) -> SessionState | None: ...

    def active(self, site_id: str, since: float) -> Iterator[SessionState]: ...

    def expire(self, deadline_of) -> list[SessionState]: ...

    def __len__(self) -> int: ...


class _Site:
    __slots__ = ("by_client", "by_session", "by_visitor")

    def __init__(self) -> None:
        self.by_visitor: dict[str, SessionState] = {}
        self.by_session: dict[str, SessionState] = {}
        self.by_client: dict[str, SessionState] = {}


class MemoryStore:
    """In-process states; see the module docstring."""

    shared = False

    def __init__(self, snapshot: Path | None = None, max_sessions: int | None = None) -> None:
        self.sites: dict[str, _Site] = {}
        self.snapshot_path = snapshot
        self.snapshots = snapshot is not None
        # A hard bound on memory (a flood of new visitors): beyond it the least recently
        # active visit of the site is dropped early, and counted.
        self.max_sessions = max_sessions or settings().engine_max_sessions
        self.count = 0
        self.evicted = 0

    def _site(self, site_id: str) -> _Site:
        site = self.sites.get(site_id)
        if site is None:
            site = self.sites[site_id] = _Site()
        return site

    def get(self, site_id: str, visitor_id: str) -> SessionState | None:
        site = self.sites.get(site_id)
        return site.by_visitor.get(visitor_id) if site else None

    def put(self, state: SessionState) -> None:
        site = self._site(state.site_id)
        old = site.by_visitor.pop(state.visitor_id, None)  # re-insert: newest last
        if old is not None and old is not state:
            self._unindex(site, old)
        if old is None:
            self.count += 1
            if self.count > self.max_sessions and site.by_visitor:
                oldest = next(iter(site.by_visitor.values()))
                del site.by_visitor[oldest.visitor_id]
                self._unindex(site, oldest)
                self.count -= 1
                self.evicted += 1
        site.by_visitor[state.visitor_id] = state
        site.by_session[state.session_id] = state
        if state.client_session_id:
            site.by_client[state.client_session_id] = state

    @staticmethod
    def _unindex(site: _Site, state: SessionState) -> None:
        if site.by_session.get(state.session_id) is state:
            del site.by_session[state.session_id]
        if state.client_session_id and site.by_client.get(state.client_session_id) is state:
            del site.by_client[state.client_session_id]

    def by_session(self, site_id: str, session_id: str) -> SessionState | None:
        site = self.sites.get(site_id)
        if not site:
            return None
        return site.by_session.get(session_id) or site.by_client.get(session_id)

    def unlink_session(self, site_id: str, session_id: str) -> None:
        """Forget a session id the visit no longer has (it was renamed)."""
        site = self.sites.get(site_id)
        if site:
            site.by_session.pop(session_id, None)

    def active(self, site_id: str, since: float) -> Iterator[SessionState]:
        site = self.sites.get(site_id)
        if site:
            for state in reversed(site.by_visitor.values()):
                if state.seen_at < since:
                    break  # ordered by last update: the rest is older
                yield state

    def expire(self, deadline_of) -> list[SessionState]:
        """Remove and return the states whose site's timeout has passed (``deadline_of(site_id)``
        gives the oldest ``seen_at`` still active)."""
        gone: list[SessionState] = []
        for site_id, site in self.sites.items():
            oldest_alive = deadline_of(site_id)
            if oldest_alive is None:
                continue  # a site the engine does not know (none is kept: see load)
            for state in list(_oldest_first(site.by_visitor, oldest_alive)):
                del site.by_visitor[state.visitor_id]
                self._unindex(site, state)
                gone.append(state)
        self.count -= len(gone)
        return gone

    def __len__(self) -> int:
        return self.count

    # -- snapshot ---------------------------------------------------------------------------------
    def save(self, meta: dict | None = None) -> int:
        """Write every state to the snapshot file (atomically, fsync'ed), with ``meta`` (when
        it was taken, the ids of the events applied just before); returns how many."""
        if self.snapshot_path is None:
            return 0
        states = [s.to_record() for site in self.sites.values() for s in site.by_visitor.values()]
        self.snapshot_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.snapshot_path.with_suffix(".tmp")
        data = {"version": 1, "saved_at": time.time(), **(meta or {}), "states": states}
        with open(temporary, "wb") as fh:
            fh.write(orjson.dumps(data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, self.snapshot_path)
        return len(states)

    def load(self, sites: Collection[str] | None = None) -> dict | None:
        """Read the snapshot back into the store (every state of the ``sites`` the engine
        knows: the caller replays what came after and expires what is over); returns its
        meta data, None without snapshot.

        A site removed from ``sites.yml`` since the snapshot has no rules to expire or apply
        its visits by: they are dropped, with a log line per site."""
        if self.snapshot_path is None or not self.snapshot_path.exists():
            return None
        try:
            data = orjson.loads(self.snapshot_path.read_bytes())
            records = sorted(data.pop("states"), key=lambda r: r["seen_at"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable snapshot %s: %s", self.snapshot_path, exc)
            return None
        dropped: dict[str, int] = {}
        for record in records:
            site_id = record.get("site_id")
            if sites is not None and site_id not in sites:
                dropped[site_id] = dropped.get(site_id, 0) + 1
                continue
            self.put(SessionState.from_record(record))
        for site_id, count in dropped.items():
            log.warning(
                "snapshot %s: dropped %d live visit(s) of site '%s', which sites.yml no longer "
                "defines", self.snapshot_path, count, site_id,
            )  # fmt: skip
        return {**data, "states": len(records) - sum(dropped.values())}


def _oldest_first(states: dict[str, SessionState], oldest_alive: float) -> Iterator[SessionState]:
    for state in states.values():
        if state.seen_at >= oldest_alive:
            return
        yield state


class RedisStore:
    """States shared through Redis; see the module docstring."""

    shared = True
    snapshots = False

    def __init__(self, url: str, prefix: str = "siteline:rt") -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix

    def _key(self, site_id: str, kind: str, ident: str) -> str:
        return f"{self.prefix}:{site_id}:{kind}:{ident}"

    def _active_key(self, site_id: str) -> str:
        return f"{self.prefix}:{site_id}:active"

    def get(self, site_id: str, visitor_id: str) -> SessionState | None:
        raw = self.client.get(self._key(site_id, "v", visitor_id))
        return SessionState.from_record(orjson.loads(raw)) if raw else None

    def update(self, site_id: str, visitor_id: str, change, ttl: float) -> SessionState | None:
        """Read, change and write one visitor's state atomically (optimistic, retried):
        ``change(state_or_None)`` returns the new state (or None to leave it); its keys live
        ``ttl`` seconds after this write."""
        import redis

        ms = max(1000, int(ttl * 1000))
        key = self._key(site_id, "v", visitor_id)
        for _ in range(50):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    state = SessionState.from_record(orjson.loads(raw)) if raw else None
                    new = change(state)
                    if new is None:
                        pipe.unwatch()
                        return state
                    pipe.multi()
                    pipe.set(key, orjson.dumps(new.to_record()), px=ms)
                    pipe.set(self._key(site_id, "s", new.session_id), visitor_id, px=ms)
                    if new.client_session_id:
                        pipe.set(self._key(site_id, "c", new.client_session_id), visitor_id, px=ms)
                    pipe.zadd(self._active_key(site_id), {visitor_id: new.seen_at})
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue
        raise RuntimeError(f"state of visitor {visitor_id} kept changing; gave up after 50 tries")

    def by_session(self, site_id: str, session_id: str) -> SessionState | None:
        visitor = self.client.get(self._key(site_id, "s", session_id)) or self.client.get(
            self._key(site_id, "c", session_id)
        )
        if not visitor:
            return None
        state = self.get(site_id, visitor.decode())
        if state and session_id in (state.session_id, state.client_session_id):
            return state
        return None

    def active(self, site_id: str, since: float) -> Iterator[SessionState]:
        visitors = self.client.zrevrangebyscore(self._active_key(site_id), "+inf", since)
        if not visitors:
            return
        keys = [self._key(site_id, "v", v.decode()) for v in visitors]
        for start in range(0, len(keys), 500):
            for raw in self.client.mget(keys[start : start + 500]):
                if raw:
                    yield SessionState.from_record(orjson.loads(raw))

    def expire(self, deadline_of) -> list[SessionState]:
        """Values expire by their TTL; this trims the active sets (and reports what it trimmed
        that this process may announce; several processes may each announce one expiry)."""
        gone: list[SessionState] = []
        for key in self.client.scan_iter(f"{self.prefix}:*:active", count=100):
            site_id = key.decode()[len(self.prefix) + 1 : -len(":active")]
            oldest = deadline_of(site_id)
            if oldest is None:
                continue
            stale = self.client.zrangebyscore(key, "-inf", f"({oldest}")
            if stale and self.client.zremrangebyscore(key, "-inf", f"({oldest}"):
                gone.extend(
                    _Expired(site_id, v.decode())
                    for v in stale  # type: ignore[misc]
                )
        return gone

    def __len__(self) -> int:
        total = 0
        for key in self.client.scan_iter(f"{self.prefix}:*:active", count=100):
            total += self.client.zcard(key)
        return total

    def save(self, meta: dict | None = None) -> int:
        return 0  # Redis keeps the states (configure its persistence: RDB or AOF)

    def load(self, sites: Collection[str] | None = None) -> dict | None:
        return None


class _Expired:
    """What is known of a visit that expired in Redis: its site and visitor."""

    def __init__(self, site_id: str, visitor_id: str) -> None:
        self.site_id = site_id
        self.visitor_id = visitor_id
        self.session_id = None


def make_store(spec: str | None = None, snapshot: Path | None = None):
    """The store named by ``SITELINE_ENGINE_STORE``: ``memory`` (default) or a redis:// URL."""
    spec = spec if spec is not None else settings().engine_store
    if spec in ("", "memory"):
        return MemoryStore(snapshot)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(spec)
    raise ValueError(
        f"SITELINE_ENGINE_STORE='{spec}' is not supported; use 'memory' or a redis:// URL"
    )
