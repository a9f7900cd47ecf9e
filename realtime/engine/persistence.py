"""How the engine's in-memory state survives a restart: the snapshot and the replay.

The snapshot (every live state, when it was taken and the ids of the events applied just
before; written by the store, ``MemoryStore.save``, with the alert metrics' minutes beside it,
``MemoryWindows.save``) is written in the background by a forked
child every few seconds, at shutdown and right after each start. At start the engine loads
it and replays from the collector's landing every event received from shortly before the
snapshot on that it does not hold, so even after a crash nothing acknowledged is missing.
A shared store (Redis) keeps the states itself: it writes no snapshot and loads none.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from realtime.engine.rules import epoch

if TYPE_CHECKING:
    from realtime.engine.engine import Engine

log = logging.getLogger("siteline.engine")

REPLAY_MARGIN = 30.0  # seconds: events land (fsync) before the engine applies them


class Snapshots:
    """The snapshot and replay of one engine (its lock, store, dedupe and counters)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.writer: int | None = None  # pid of the child writing a snapshot

    # -- at start ---------------------------------------------------------------------------------
    def restore(self, landing: Path | None = None) -> int:
        """Rebuild the state after a restart: the snapshot, then every event the landing
        holds from shortly before the snapshot on that it does not (so even after a crash
        nothing acknowledged is missing), then expire what is over; then write a new
        snapshot. Returns the active sessions.

        The new snapshot bounds the next replay: without it, a process stopped by a crash
        before its first periodic snapshot left the old one in place, and every restart
        replayed all that had landed since then, again and again."""
        engine = self.engine
        with engine.lock:
            meta = engine.store.load(engine.rules.keys())
            engine.windows.load(engine.rules.keys())  # saved with the states: replayed alike
            if meta is not None and landing is not None:
                taken = meta.get("taken_at", meta["saved_at"])
                for event_id in meta.get("recent", ()):
                    engine.recent.add(event_id, taken)
                engine.counters["replayed"] = self.replay(landing, taken - REPLAY_MARGIN)
        engine.windows.begin(engine.rules.keys(), time.time())  # kept from now at the latest
        engine.sweep()
        restored = len(engine.store)
        engine.counters["restored"] = restored
        engine.dirty = True
        self.save_in_background()
        if meta is not None:
            log.warning(
                "restored %d active sessions (snapshot of %d, %d events replayed)",
                restored, meta["states"], engine.counters["replayed"],
            )  # fmt: skip
        return restored

    def replay(self, landing: Path, since: float) -> int:
        """Apply every landed event received from ``since`` on; returns how many were new."""
        from ingestion.core.landing import (
            SEGMENTS,
            UnreadableLine,
            iter_segment,
            landed_records,
            read_manifest,
        )
        from realtime.throttled_log import ThrottledLog

        engine = self.engine
        counters = engine.counters
        skipped = ThrottledLog(log)
        replayed = 0
        for segment in self.segments_to_replay(read_manifest(landing), since):
            for number, line in iter_segment(landing / SEGMENTS / segment.name):
                try:
                    records = landed_records(line)
                except UnreadableLine as exc:
                    # One unreadable line must not stop the start; the loader quarantines it.
                    counters["replay_skipped"] = counters.get("replay_skipped", 0) + 1
                    skipped.warning(
                        "unreadable", "replay: skipped %s line %d: %s", segment.name, number, exc
                    )
                    continue
                for record in records:
                    received = epoch(record["received_at"])
                    if received >= since:
                        before = counters["duplicates"]
                        engine.apply(record, received, replay=True)
                        replayed += counters["duplicates"] == before
        return replayed

    def segments_to_replay(self, segments: list, since: float) -> list:
        """The closed segments that can hold events received from ``since`` on (their last
        event was received then or later), in the manifest's order; the rest of the landing
        is not read. The collector has sealed this writer's open segment before the engine
        restores, so nothing acknowledged is in an ``.open`` file."""
        selected = [
            segment
            for segment in segments
            if segment.last_received_at and epoch(segment.last_received_at) >= since
        ]
        self.engine.counters["replay_segments"] = len(selected)
        return selected

    # -- writing ----------------------------------------------------------------------------------
    def save(self) -> int:
        """Write the snapshot now (at shutdown); returns how many states it holds."""
        engine = self.engine
        self.reap(wait=True)
        with engine.lock:
            if not engine.dirty:
                return 0
            engine.dirty = False
            saved = engine.store.save(self._meta())
            engine.windows.save()
            return saved

    def _meta(self) -> dict:
        taken = time.time()
        return {"taken_at": taken, "recent": self.engine.recent.since(taken - REPLAY_MARGIN)}

    def save_in_background(self) -> None:
        """Write the snapshot from a forked child, as Redis' BGSAVE does: the child holds a
        copy-on-write image of this instant and serialises it while this process goes on
        serving (serialising every state here would hold up requests)."""
        engine = self.engine
        self.reap()
        if self.writer is not None or not engine.dirty or not engine.store.snapshots:
            return
        with engine.lock:  # no batch is half-applied in the image
            engine.dirty = False
            meta = self._meta()
            pid = os.fork()
        if pid == 0:  # the child: write and leave, touching nothing else
            code = 1
            try:
                os.nice(10)  # serving goes first
                engine.store.save(meta)
                engine.windows.save()  # the alert metrics' minutes, of the same instant
                code = 0
            finally:
                os._exit(code)
        self.writer = pid

    def reap(self, wait: bool = False) -> None:
        """Collect the snapshot writer once it has finished (``wait``: until it has); a
        failed write leaves the state to be saved again next time."""
        if self.writer is None:
            return
        pid, status = os.waitpid(self.writer, 0 if wait else os.WNOHANG)
        if pid:
            self.writer = None
            if status != 0:
                self.engine.dirty = True  # try again next time
                log.warning("the snapshot writer failed (status %d)", status)
