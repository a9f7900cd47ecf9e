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

Every step of closing can be repeated after it failed (a full disk) or was cut short (a
crash): :meth:`OpenSegment.finish` picks up where it stopped, listing a segment twice is a
no-op, and :func:`seal_open_segments` lists at start whatever a writer left open or renamed
but unlisted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

# The version of the event record's fields, written into every landed record.
SCHEMA_VERSION = 1

log = logging.getLogger("siteline.collector")

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
    """List a closed segment; a segment already listed (a retried close) stays as it is."""
    with _manifest_lock(landing_dir):
        segments = read_manifest(landing_dir)
        if all(seg.name != info.name for seg in segments):
            _write_manifest(landing_dir, [*segments, info])


def write_manifest(landing_dir: Path, segments: list[SegmentInfo]) -> None:
    """Replace a landing directory's manifest (for tools that assemble a landing from
    segments copied elsewhere; the files must be in ``segments/`` first)."""
    with _manifest_lock(landing_dir):
        _write_manifest(Path(landing_dir), segments)


def _write_manifest(landing_dir: Path, segments: list[SegmentInfo]) -> None:
    path = landing_dir / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    body = {"version": FORMAT_VERSION, "segments": [seg.__dict__ for seg in segments]}
    try:
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(body, option=orjson.OPT_INDENT_2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        # A full disk: give back the space the half-written copy took (the old manifest
        # is untouched), so that the retry can succeed once space returns.
        tmp.unlink(missing_ok=True)
        raise
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

    @property
    def nbytes(self) -> int:
        """The events' JSON size, as the request body came (the engine's backlog bound)."""
        if self._records is None:
            return len(self._body)
        return sum(len(orjson.dumps(record)) for record in self._records)

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
    """A segment being written: its file and what the manifest will say of it.

    Unbuffered (the collector's), an :meth:`append` is all or nothing: when the disk is full
    the file is cut back to what was there, so it always holds exactly the lines counted and
    hashed. Buffered (the demo simulator's), the lines wait in memory for fewer writes.
    """

    def __init__(self, path: Path, buffered: bool = True) -> None:
        self.path = path
        # The file lives as long as the segment.
        self.fh = open(path, "ab") if buffered else open(path, "ab", buffering=0)  # noqa: SIM115
        self.buffered = buffered
        try:
            _sync_directory(path.parent)  # the new file's name survives a crash too
        except OSError:
            self.fh.close()  # (an empty file: the next start's seal deletes it)
            raise
        self.opened_at = time.monotonic()
        self.events = 0
        self.bytes = 0
        self.hash = hashlib.sha256()
        self.first: str | None = None
        self.last: str | None = None
        self.info: SegmentInfo | None = None  # set once closed; listing may still follow
        self.torn = False  # a failed write may have left part of its lines

    def append(self, data: bytes, events: int, received_at: str | None) -> None:
        if self.buffered:
            self.fh.write(data)
        else:
            self._write_all(data)
        self.hash.update(data)
        self.events += events
        self.bytes += len(data)
        self.first = self.first or received_at
        self.last = received_at or self.last

    def _write_all(self, data: bytes) -> None:
        view, fd = memoryview(data), self.fh.fileno()
        try:
            if self.torn:  # a tail an earlier failure could not cut off then
                self._cut()
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            self.torn = True
            with contextlib.suppress(OSError):  # if not now, before the next write or close
                self._cut()
            raise

    def _cut(self) -> None:
        """Cut off anything written after the last complete append."""
        if os.fstat(self.fh.fileno()).st_size != self.bytes:
            os.ftruncate(self.fh.fileno(), self.bytes)
        self.torn = False

    def finish(self, landing_dir: Path) -> SegmentInfo | None:
        """Sync, close and rename the segment, then list it in the manifest; None for a
        segment that holds nothing (deleted instead). Blocks for the disk: the collector runs
        it off its event loop. After a failure (a full disk) calling it again goes on where
        it stopped."""
        final = self.path.with_suffix("")  # drop ".open"
        if not self.fh.closed:
            self.fh.flush()
            if not self.buffered:
                self._cut()
            os.fsync(self.fh.fileno())
            self.fh.close()
        if self.bytes == 0:
            self.path.unlink(missing_ok=True)
            return None
        if self.info is None:
            if self.path.exists():  # (not renamed yet by an earlier try)
                os.replace(self.path, final)
            _sync_directory(final.parent)  # listed only once the rename is durable
            self.info = SegmentInfo(
                name=final.name,
                events=self.events,
                bytes=self.bytes,
                sha256=self.hash.hexdigest(),
                first_received_at=self.first,
                last_received_at=self.last,
                closed_at=datetime.now(UTC).isoformat(),
            )
        _append_manifest(landing_dir, self.info)
        return self.info


class SegmentWriter:
    """Appends accepted events to segments and closes them by size.

    The collector's group commit builds on :meth:`flush` and closes full segments off its
    event loop (``close_when_full=False``, :meth:`detach`, :meth:`OpenSegment.finish`) and
    writes unbuffered (``buffered=False``: a failed write leaves no trace); the simulator lets
    :meth:`write_lines` close them and syncs only then.
    """

    def __init__(
        self,
        landing_dir: Path,
        writer_id: str = "collector",
        max_events: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
        close_when_full: bool = True,
        buffered: bool = True,
    ) -> None:
        self.dir = Path(landing_dir)
        (self.dir / SEGMENTS).mkdir(parents=True, exist_ok=True)
        self.writer_id = writer_id
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.close_when_full = close_when_full
        self.buffered = buffered
        self._seq = 0
        self._open: OpenSegment | None = None

    def _start(self) -> OpenSegment:
        self._seq += 1
        # Timestamp to the microsecond + writer id + sequence: unique across restarts.
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{self.writer_id}-{self._seq:06d}.jsonl"
        self._open = OpenSegment(self.dir / SEGMENTS / (name + ".open"), self.buffered)
        return self._open

    def write(self, record: dict) -> None:
        self.write_lines([orjson.dumps(record) + b"\n"], record.get("received_at"))

    def write_lines(
        self, lines: list[bytes], received_at: str | None, events: int | None = None
    ) -> None:
        """Append complete lines (each ending in a newline) in one write; ``events`` is
        how many events they hold when that is not one per line. Unbuffered, all of them or
        none (an ``OSError`` such as a full disk)."""
        segment = self._open or self._start()
        segment.append(b"".join(lines), len(lines) if events is None else events, received_at)
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
        """Take the open segment away (to finish elsewhere); the next write starts one.
        No I/O: it cannot fail, also not on a full disk (finishing flushes)."""
        segment, self._open = self._open, None
        return segment

    def close_segment(self) -> SegmentInfo | None:
        segment = self.detach()
        return segment.finish(self.dir) if segment is not None else None

    def close(self) -> None:
        self.close_segment()


def seal_open_segments(
    landing_dir: Path, writer_id: str, only: Collection[str] | None = None
) -> list[SegmentInfo]:
    """After a crash or a failed close: list every segment a writer left behind, keeping
    every complete line. Returns what it listed.

    A writer leaves two kinds behind in ``segments/``: ``.open`` files (a crash while it
    wrote), whose torn last line is cut off before they are renamed; and closed files the
    manifest does not list (a crash or a full disk between the rename and the listing).
    Both end up listed, whatever their lines hold: events, requests, quarantine records,
    even a line no reader understands (counted as no event; the loader reports it). Every
    step can be repeated, so a seal that fails midway leaves nothing the next one does not
    finish. ``only`` limits it to those segment names (without ``.open``); by default it
    takes every leftover of ``writer_id``, which is right only while that writer is stopped.

    Lines are acknowledged only after they are fsynced, and each ends in a newline, so the
    complete lines of an ``.open`` file are exactly the acknowledged events (plus, at most,
    a group that was written but not yet acknowledged: harmless, the loader deduplicates on
    ``event_id`` and ``bad_event_id``).
    """
    landing_dir = Path(landing_dir)
    folder = landing_dir / SEGMENTS

    def wanted(path: Path) -> bool:
        return only is None or path.name.removesuffix(".open") in only

    renamed = False
    for path in sorted(folder.glob(f"*-{writer_id}-*.jsonl.open")):
        if not wanted(path):
            continue
        size = path.stat().st_size
        keep = _complete_size(path, size)
        if keep != size:
            with open(path, "r+b") as fh:
                fh.truncate(keep)
                os.fsync(fh.fileno())
        if keep == 0:
            path.unlink()
            continue
        os.replace(path, path.with_suffix(""))
        renamed = True
    if renamed:
        _sync_directory(folder)  # listed only once the renames are durable
    # A closed file the manifest does not list was renamed by a close that did not get to
    # list it. (A crash while old segments are deleted, between the manifest's rewrite and
    # the unlink, can leave one too: listing it again loads nothing twice, the loader merges.)
    listed = {seg.name for seg in read_manifest(landing_dir)}
    sealed = []
    for path in sorted(folder.glob(f"*-{writer_id}-*.jsonl")):
        if path.name in listed or not wanted(path):
            continue
        info = _closed_segment_info(path)
        if info is None:
            path.unlink()
            continue
        _append_manifest(landing_dir, info)
        sealed.append(info)
    return sealed


def _complete_size(path: Path, size: int) -> int:
    """The length of a file up to and including its last newline."""
    with open(path, "rb") as fh:
        position = size
        while position > 0:
            start = max(0, position - 65536)
            fh.seek(start)
            chunk = fh.read(position - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            position = start
    return 0


def _closed_segment_info(path: Path) -> SegmentInfo | None:
    """What the manifest says of a closed segment, read from its lines; None when empty."""
    data = path.read_bytes()
    if not data:
        return None
    lines = data.split(b"\n")[:-1]  # the part after the last newline is no line
    events = 0
    first = last = None
    unreadable: list[int] = []
    for number, line in enumerate(lines, start=1):
        count, received_at = _line_events(line)
        if count is None:
            unreadable.append(number)
            continue
        events += count
        if received_at is not None:
            first = first or received_at
            last = received_at
    if unreadable:
        log.warning(
            "%s: %d unreadable line(s) (line %s%s), counted as no events",
            path, len(unreadable), unreadable[0], " …" if len(unreadable) > 1 else "",
        )  # fmt: skip
    return SegmentInfo(
        name=path.name,
        events=events,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        first_received_at=first,
        last_received_at=last,
        closed_at=datetime.now(UTC).isoformat(),
    )


def _line_events(line: bytes) -> tuple[int | None, str | None]:
    """(events, received_at) of one landing line of either stream: an event (1), a request
    (its events), a quarantine record (1), any other JSON object (1); (None, None) for a
    line that is not a JSON object or a request without a list of events."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(record, dict):
        return None, None
    received_at = record.get("received_at")
    received_at = received_at if isinstance(received_at, str) else None
    if "event_id" in record or "bad_event_id" in record or "request" not in record:
        return 1, received_at
    request = record["request"]
    events = request.get("events") if isinstance(request, dict) else None
    return (len(events), received_at) if isinstance(events, list) else (None, None)
