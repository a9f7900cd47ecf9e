"""The landing format: accepted events as JSONL segments listed in a manifest.

A public, versioned on-disk contract between whatever accepts events (the collector, or the
demo simulator writing what the collector would have written) and whatever loads them
(``ingestion.collector_events``, locally or through the manifest over HTTP(S)).

Layout under a landing directory::

    segments/<name>.jsonl     closed segments of JSON lines, never changed again
    segments/<name>.jsonl.open  the segment being written (never loaded)
    manifest.json             {"version": 2, "segments": [{"name", "events", "bytes", "sha256",
                                 "first_received_at", "last_received_at", "closed_at"}, ...]}

A line is one accepted event (an object with ``event_id``: the event and what the collector
added), or, since version 2, one request all of whose events were accepted: what the
collector added and the request body verbatim under ``request`` (:func:`request_line`).
:func:`landed_records` reads both; version 1 manifests (event lines only) stay readable.
A line it cannot read raises :class:`UnreadableLine` naming why; readers quarantine that one
line and go on (the collector lands no such line, but a landing may come from elsewhere).

A segment is closed by renaming ``.open`` away and then rewriting the manifest atomically
(write to a temporary file, fsync, rename), so a reader never sees half a manifest and never
a segment the manifest does not list. Each line ends in ``\\n``: a last line without one was
torn by a crash and is skipped, not loaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
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
    if data.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"{path}: landing format version {data.get('version')} is not supported")
    return [SegmentInfo(**seg) for seg in data["segments"]]


@contextlib.contextmanager
def _manifest_lock(landing_dir: Path):
    """Serialise manifest updates of several writers (collector, demo) on one directory."""
    with open(Path(landing_dir) / ".manifest.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _append_manifest(landing_dir: Path, info: SegmentInfo) -> None:
    with _manifest_lock(landing_dir):
        _write_manifest(landing_dir, [*read_manifest(landing_dir), info])


def write_manifest(landing_dir: Path, segments: list[SegmentInfo]) -> None:
    """Replace a landing directory's manifest (for tools that assemble a landing from
    segments copied elsewhere; the files must be in ``segments/`` first)."""
    with _manifest_lock(landing_dir):
        _write_manifest(Path(landing_dir), segments)


def _write_manifest(landing_dir: Path, segments: list[SegmentInfo]) -> None:
    path = landing_dir / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    body = {"version": FORMAT_VERSION, "segments": [seg.__dict__ for seg in segments]}
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(body, option=orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _sync_directory(landing_dir)


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_segments(landing_dir: Path, writer_id: str) -> list[str]:
    """Forget the closed segments one writer wrote (manifest first, then the files)."""
    landing_dir = Path(landing_dir)
    if not landing_dir.exists():
        return []
    marker = f"-{writer_id}-"
    with _manifest_lock(landing_dir):
        segments = read_manifest(landing_dir)
        removed = [seg.name for seg in segments if marker in seg.name]
        if removed:
            _write_manifest(landing_dir, [seg for seg in segments if marker not in seg.name])
        for name in removed:
            (landing_dir / SEGMENTS / name).unlink(missing_ok=True)
    return removed


def expire_segments(landing_dir: Path, closed_before: datetime) -> list[str]:
    """Forget and delete the segments closed before ``closed_before`` (manifest first, then
    the files): the landing is a buffer in front of the warehouse, not an archive, and the
    manifest (rewritten whenever a segment closes) must not grow without end."""
    landing_dir = Path(landing_dir)
    with _manifest_lock(landing_dir):
        segments = read_manifest(landing_dir)
        expired = [s.name for s in segments if datetime.fromisoformat(s.closed_at) < closed_before]
        if expired:
            gone = set(expired)
            _write_manifest(landing_dir, [s for s in segments if s.name not in gone])
        for name in expired:
            (landing_dir / SEGMENTS / name).unlink(missing_ok=True)
    return expired


def request_line(enrichment: bytes, body: bytes) -> bytes:
    """The landing line of a request whose events were all accepted: what the collector
    adds (``enrichment``, a JSON object without ``event_id``) and the request's JSON body
    verbatim under ``request``. Writing the body as it came saves decoding and encoding
    every event on the request path; readers expand it with :func:`landed_records`.

    The body has passed a strict JSON parser, so a line break in it can only be whitespace
    between tokens, and becomes a space: a landing line never contains one."""
    if b"\n" in body or b"\r" in body:
        body = body.replace(b"\n", b" ").replace(b"\r", b" ")
    return enrichment[:-1] + b',"request":' + body + b"}\n"


def request_records(enrichment: dict, events: list[dict]) -> list[dict]:
    """The landed records of a request's events: each event with what the collector adds
    (which wins over a field of the same name), ``sent_at`` defaulting to ``occurred_at``
    (server-side tracking has no device clock to correct)."""
    records = []
    for event in events:
        record = {**event, **enrichment}
        if record.get("sent_at") is None:
            record["sent_at"] = record.get("occurred_at")
        records.append(record)
    return records


class UnreadableLine(ValueError):
    """A landing line that is not an event or request record; the message says why."""


def landed_records(line: bytes) -> list[dict]:
    """The event records of one landing line: an event (it has an ``event_id``), or a
    request written by :func:`request_line`. Raises :class:`UnreadableLine` (and nothing
    else) for a line that is neither: not JSON, or not of either shape."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise UnreadableLine(f"not valid JSON: {exc}") from None
    if type(record) is not dict:
        raise UnreadableLine("not a JSON object")
    received_at = record.get("received_at")
    try:
        datetime.fromisoformat(received_at)
    except (TypeError, ValueError):
        shown = repr(received_at)[:40]
        raise UnreadableLine(f"received_at {shown} is not an ISO 8601 time") from None
    if "event_id" in record:
        return [record]
    request = record.pop("request", None)
    events = request.get("events") if type(request) is dict else None
    if type(events) is not list or not all(type(event) is dict for event in events):
        raise UnreadableLine("neither an event (event_id) nor a request (request.events)")
    return request_records(record, events)


class RequestRecords(Sequence):
    """The records of one accepted request, decoded only when first read: the real-time
    engine sheds what it has no time for, and then never pays for decoding it."""

    __slots__ = ("_body", "_count", "_enrichment", "_records")

    def __init__(self, enrichment: dict, body: bytes, count: int) -> None:
        self._enrichment = enrichment
        self._body = body
        self._count = count
        self._records: list[dict] | None = None

    def _decoded(self) -> list[dict]:
        if self._records is None:
            events = orjson.loads(self._body)["events"]
            self._records = request_records(self._enrichment, events)
            self._body = b""
        return self._records

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        return self._decoded()[index]

    def __iter__(self) -> Iterator[dict]:
        return iter(self._decoded())


def iter_segment(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of every complete line; a torn last line is skipped."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                return
            yield number, line


class OpenSegment:
    """A segment being written: its file and what the manifest will say of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = open(path, "ab")  # noqa: SIM115 (lives as long as the segment)
        _sync_directory(path.parent)  # the new file's name survives a crash too
        self.opened_at = time.monotonic()
        self.events = 0
        self.bytes = 0
        self.hash = hashlib.sha256()
        self.first: str | None = None
        self.last: str | None = None

    def finish(self, landing_dir: Path) -> SegmentInfo:
        """Sync, close and rename the segment, then list it in the manifest. Blocks for
        the disk: the collector runs it off its event loop."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        final = self.path.with_suffix("")  # drop ".open"
        os.replace(self.path, final)
        _sync_directory(final.parent)  # listed only once the rename is durable
        info = SegmentInfo(
            name=final.name,
            events=self.events,
            bytes=self.bytes,
            sha256=self.hash.hexdigest(),
            first_received_at=self.first,
            last_received_at=self.last,
            closed_at=datetime.now(UTC).isoformat(),
        )
        _append_manifest(landing_dir, info)
        return info


class SegmentWriter:
    """Appends accepted events to segments and closes them by size.

    The collector's group commit builds on :meth:`flush` and closes full segments off its
    event loop (``close_when_full=False``, :meth:`detach`, :meth:`OpenSegment.finish`); the
    simulator lets :meth:`write_lines` close them and syncs only then.
    """

    def __init__(
        self,
        landing_dir: Path,
        writer_id: str = "collector",
        max_events: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
        close_when_full: bool = True,
    ) -> None:
        self.dir = Path(landing_dir)
        (self.dir / SEGMENTS).mkdir(parents=True, exist_ok=True)
        self.writer_id = writer_id
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.close_when_full = close_when_full
        self._seq = 0
        self._open: OpenSegment | None = None

    def _start(self) -> OpenSegment:
        self._seq += 1
        # Timestamp to the microsecond + writer id + sequence: unique across restarts.
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{self.writer_id}-{self._seq:06d}.jsonl"
        self._open = OpenSegment(self.dir / SEGMENTS / (name + ".open"))
        return self._open

    def write(self, record: dict) -> None:
        self.write_lines([orjson.dumps(record) + b"\n"], record.get("received_at"))

    def write_lines(
        self, lines: list[bytes], received_at: str | None, events: int | None = None
    ) -> None:
        """Append complete lines (each ending in a newline) in one write; ``events`` is
        how many events they hold when that is not one per line."""
        segment = self._open or self._start()
        data = b"".join(lines)
        segment.fh.write(data)
        segment.hash.update(data)
        segment.events += len(lines) if events is None else events
        segment.bytes += len(data)
        segment.first = segment.first or received_at
        segment.last = received_at or segment.last
        if self.close_when_full and self.full:
            self.close_segment()

    @property
    def full(self) -> bool:
        segment = self._open
        return segment is not None and (
            segment.events >= self.max_events or segment.bytes >= self.max_bytes
        )

    @property
    def file(self):
        """The open segment's file object, or None between segments."""
        return self._open.fh if self._open is not None else None

    @property
    def open_events(self) -> int:
        return self._open.events if self._open is not None else 0

    @property
    def opened_at(self) -> float | None:
        return self._open.opened_at if self._open is not None else None

    def flush(self, durable: bool = True) -> None:
        if self._open is not None:
            self._open.fh.flush()
            if durable:
                os.fsync(self._open.fh.fileno())

    def detach(self) -> OpenSegment | None:
        """Take the open segment away (to finish elsewhere); the next write starts one."""
        segment, self._open = self._open, None
        if segment is not None:
            segment.fh.flush()
        return segment

    def close_segment(self) -> SegmentInfo | None:
        segment = self.detach()
        return segment.finish(self.dir) if segment is not None else None

    def close(self) -> None:
        self.close_segment()


def seal_open_segments(landing_dir: Path, writer_id: str) -> list[SegmentInfo]:
    """After a crash: close the segments a writer left open, keeping every complete line.

    Lines are acknowledged only after they are fsynced, and each ends in a newline, so the
    complete lines of an ``.open`` file are exactly the acknowledged events (plus, at most,
    a group that was written but not yet acknowledged: harmless, the loader deduplicates on
    ``event_id``). A torn last line is cut off.
    """
    landing_dir = Path(landing_dir)
    sealed = []
    for path in sorted((landing_dir / SEGMENTS).glob(f"*-{writer_id}-*.jsonl.open")):
        data = path.read_bytes()
        keep = data[: data.rfind(b"\n") + 1]
        if len(keep) != len(data):
            with open(path, "r+b") as fh:
                fh.truncate(len(keep))
                os.fsync(fh.fileno())
        final = path.with_suffix("")
        if not keep:
            path.unlink()
            continue
        os.replace(path, final)
        lines = keep.splitlines()
        first = orjson.loads(lines[0]).get("received_at") if lines else None
        last = orjson.loads(lines[-1]).get("received_at") if lines else None
        info = SegmentInfo(
            name=final.name,
            events=sum(len(landed_records(line)) for line in lines),
            bytes=len(keep),
            sha256=hashlib.sha256(keep).hexdigest(),
            first_received_at=first,
            last_received_at=last,
            closed_at=datetime.now(UTC).isoformat(),
        )
        _append_manifest(landing_dir, info)
        sealed.append(info)
    return sealed
