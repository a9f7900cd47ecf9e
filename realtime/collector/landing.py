"""The landing format: accepted events as JSONL segments listed in a manifest.

A public, versioned on-disk contract between whatever accepts events (the collector, or the
demo simulator writing what the collector would have written) and whatever loads them
(``ingestion.collector_events``, locally or through the manifest over HTTP(S)).

Layout under a landing directory::

    segments/<name>.jsonl     closed segments, one accepted event per line, never changed again
    segments/<name>.jsonl.open  the segment being written (never loaded)
    manifest.json             {"version": 1, "segments": [{"name", "events", "bytes", "sha256",
                                 "first_received_at", "last_received_at", "closed_at"}, ...]}

A segment is closed by renaming ``.open`` away and then rewriting the manifest atomically
(write to a temporary file, fsync, rename), so a reader never sees half a manifest and never
a segment the manifest does not list. Each line ends in ``\\n``: a last line without one was
torn by a crash and is skipped, not loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SEGMENTS = "segments"


@dataclass(frozen=True)
class SegmentInfo:
    name: str
    events: int
    bytes: int
    sha256: str
    first_received_at: str | None
    last_received_at: str | None
    closed_at: str


def read_manifest(landing_dir: Path) -> list[SegmentInfo]:
    path = Path(landing_dir) / MANIFEST
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: landing format version {data.get('version')} is not supported")
    return [SegmentInfo(**seg) for seg in data["segments"]]


def _write_manifest(landing_dir: Path, segments: list[SegmentInfo]) -> None:
    path = landing_dir / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    body = {"version": FORMAT_VERSION, "segments": [seg.__dict__ for seg in segments]}
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(body, option=orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def remove_segments(landing_dir: Path, writer_id: str) -> list[str]:
    """Forget the closed segments one writer wrote (manifest first, then the files)."""
    landing_dir = Path(landing_dir)
    segments = read_manifest(landing_dir)
    marker = f"-{writer_id}-"
    removed = [seg.name for seg in segments if marker in seg.name]
    if removed:
        _write_manifest(landing_dir, [seg for seg in segments if marker not in seg.name])
        for name in removed:
            (landing_dir / SEGMENTS / name).unlink(missing_ok=True)
    return removed


def iter_segment(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of every complete line; a torn last line is skipped."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                return
            yield number, line


class SegmentWriter:
    """Appends accepted events to segments and closes them by size.

    ``fsync_each`` makes every :meth:`write` durable before it returns (the collector's
    group commit builds on :meth:`flush`); the simulator syncs only when a segment closes.
    """

    def __init__(
        self,
        landing_dir: Path,
        writer_id: str = "collector",
        max_events: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.dir = Path(landing_dir)
        (self.dir / SEGMENTS).mkdir(parents=True, exist_ok=True)
        self.writer_id = writer_id
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._segments = read_manifest(self.dir)
        self._seq = len(self._segments)
        self._fh = None
        self._path: Path | None = None
        self._events = 0
        self._bytes = 0
        self._hash = hashlib.sha256()
        self._first: str | None = None
        self._last: str | None = None

    def _open(self) -> None:
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{self.writer_id}-{self._seq:06d}.jsonl"
        self._path = self.dir / SEGMENTS / (name + ".open")
        self._fh = open(self._path, "ab")  # noqa: SIM115 (lives as long as the segment)
        self._events = self._bytes = 0
        self._hash = hashlib.sha256()
        self._first = self._last = None

    def write(self, record: dict) -> None:
        if self._fh is None:
            self._open()
        line = orjson.dumps(record) + b"\n"
        self._fh.write(line)
        self._hash.update(line)
        self._events += 1
        self._bytes += len(line)
        received = record.get("received_at")
        self._first = self._first or received
        self._last = received
        if self._events >= self.max_events or self._bytes >= self.max_bytes:
            self.close_segment()

    def flush(self, durable: bool = True) -> None:
        if self._fh is not None:
            self._fh.flush()
            if durable:
                os.fsync(self._fh.fileno())

    def close_segment(self) -> SegmentInfo | None:
        if self._fh is None:
            return None
        self.flush()
        self._fh.close()
        self._fh = None
        final = self._path.with_suffix("")  # drop ".open"
        os.replace(self._path, final)
        info = SegmentInfo(
            name=final.name,
            events=self._events,
            bytes=self._bytes,
            sha256=self._hash.hexdigest(),
            first_received_at=self._first,
            last_received_at=self._last,
            closed_at=datetime.now(UTC).isoformat(),
        )
        self._segments.append(info)
        _write_manifest(self.dir, self._segments)
        return info

    def close(self) -> None:
        self.close_segment()
