"""dlt source: landed tracker events into ``raw_collector.events`` and ``raw_collector.bad_events``.

Reads closed segments listed in a landing manifest (``ingestion.core.landing``), either
from a local directory or from a remote Siteline collector over HTTP(S) (``/landing/<stream>/``
with a bearer token; each segment is checked against the manifest's sha256). Segments already
loaded are skipped (their names live in the resource's dlt state, committed with the load, so
a failed load is retried whole) and rows merge on their id, so loading the same segments twice,
or an event delivered twice by a retrying tracker, adds nothing.

A landed line no reader can take (not JSON, or not an event, request or quarantine record) does
not fail the load: it becomes a ``bad_events`` row with the reason, its segment and line number
and the line itself as ``payload``, and the load goes on.

Each run also appends a row to ``raw_collector.landing_reads`` (in the same load): when it read
the manifest, the segments it took and left, and before when every received event is loaded
with it (``complete_before``), which says up to when a site's data is complete
(``orchestration/completeness.py``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dlt
import orjson

from ingestion.core.enrich import url_parts, user_agent_facts
from ingestion.core.landing import (
    READABLE_VERSIONS,
    SEGMENTS,
    SegmentInfo,
    UnreadableLine,
    iter_segment,
    landed_records,
    read_manifest,
)
from ingestion.core.settings import settings

# Typed columns of raw_collector.events; every other field of an event lands in `attributes`.
EVENT_COLUMNS = {
    "event_id": {"data_type": "text", "nullable": False},
    "type": {"data_type": "text", "nullable": False},
    "site_id": {"data_type": "text", "nullable": False},
    "visitor_id": {"data_type": "text"},
    "session_id": {"data_type": "text"},
    "user_id": {"data_type": "text"},
    "occurred_at": {"data_type": "timestamp"},
    "sent_at": {"data_type": "timestamp"},
    "received_at": {"data_type": "timestamp", "nullable": False},
    "url": {"data_type": "text"},
    "referrer": {"data_type": "text"},
    "title": {"data_type": "text"},
    "user_agent": {"data_type": "text"},
    "ip": {"data_type": "text"},
    "country": {"data_type": "text"},
    "network_key": {"data_type": "text"},
    "is_bot": {"data_type": "bool"},
    "bot_reason": {"data_type": "text"},
    "browser": {"data_type": "text"},
    "browser_version": {"data_type": "text"},
    "os": {"data_type": "text"},
    "os_version": {"data_type": "text"},
    "device_family": {"data_type": "text"},
    "device_type": {"data_type": "text"},
    "page_host": {"data_type": "text"},
    "page_path": {"data_type": "text"},
    "page_query": {"data_type": "text"},
    "referrer_host": {"data_type": "text"},
    "attributes": {"data_type": "json"},
    "segment": {"data_type": "text", "nullable": False},
    "segment_line": {"data_type": "bigint", "nullable": False},
}
# Parsed from the user agent at load time, with the function the logfile loader uses.
_AGENT = {"browser", "browser_version", "os", "os_version", "device_family", "device_type"}
# URL parts, parsed once here rather than by regular expressions in every model run.
_URL = {"page_host", "page_path", "page_query", "referrer_host"}
_TOP = set(EVENT_COLUMNS) - {"attributes", "segment", "segment_line"} - _AGENT - _URL

BAD_EVENT_COLUMNS = {
    "bad_event_id": {"data_type": "text", "nullable": False},
    "received_at": {"data_type": "timestamp", "nullable": False},
    "site_id": {"data_type": "text"},
    "status": {"data_type": "bigint"},
    "reason": {"data_type": "text", "nullable": False},
    "payload": {"data_type": "text"},
    "ip": {"data_type": "text"},
    "user_agent": {"data_type": "text"},
    "origin": {"data_type": "text"},
    "path": {"data_type": "text"},
    "segment": {"data_type": "text", "nullable": False},
    "segment_line": {"data_type": "bigint", "nullable": False},
}


def to_row(record: dict, segment: str, line: int) -> dict:
    """Split a landed event into typed columns and the JSON ``attributes`` of its type."""
    row = {key: record.get(key) for key in _TOP}
    row.update(user_agent_facts(record.get("user_agent") or ""))
    row["page_host"], row["page_path"], row["page_query"] = url_parts(record.get("url"))
    row["referrer_host"] = url_parts(record.get("referrer"))[0]
    row["attributes"] = {k: v for k, v in record.items() if k not in _TOP}
    row["segment"] = segment
    row["segment_line"] = line
    return row


class Landing:
    """Read access to a landing root: a local directory or a remote collector's export."""

    def __init__(self, location: str, token: str | None = None) -> None:
        self.location = location.rstrip("/")
        self.remote = location.startswith(("http://", "https://"))
        self.token = token

    def _get(self, path: str) -> bytes:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = httpx.get(f"{self.location}/{path}", headers=headers, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(
                f"{self.location}/{path}: HTTP {response.status_code}: {response.text[:200]}"
            )
        return response.content

    def manifest(self, stream: str) -> list[SegmentInfo]:
        if not self.remote:
            return read_manifest(Path(self.location) / stream)
        data = orjson.loads(self._get(f"{stream}/manifest.json"))
        if data.get("version") not in READABLE_VERSIONS:
            raise RuntimeError(
                f"{self.location}/{stream}/manifest.json: landing format version "
                f"{data.get('version')} is not supported (this Siteline reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}; upgrade it)"
            )
        return [SegmentInfo(**seg) for seg in data["segments"]]

    def lines(self, stream: str, segment: SegmentInfo) -> Iterator[tuple[int, bytes]]:
        if not self.remote:
            yield from iter_segment(Path(self.location) / stream / SEGMENTS / segment.name)
            return
        data = self._get(f"{stream}/segments/{segment.name}")
        if hashlib.sha256(data).hexdigest() != segment.sha256:
            raise RuntimeError(f"segment {segment.name}: content does not match its sha256")
        for number, line in enumerate(data.splitlines(keepends=True), start=1):
            if line.endswith(b"\n"):
                yield number, line


# bad_event_id of an unreadable line: the same line gets the same id in every load.
_UNREADABLE = uuid.UUID("6f1c1d0e-3b51-4f4e-9a59-5a2b7d3c9e10")
_UNREADABLE_PAYLOAD = 64 * 1024  # bytes of the line kept, as the collector keeps of a body


def unreadable_row(stream: str, segment: SegmentInfo, number: int, line: bytes, why: str) -> dict:
    """The ``bad_events`` row of a landed line no reader can take."""
    payload = line[:_UNREADABLE_PAYLOAD].decode("utf-8", errors="replace").rstrip("\n")
    return {
        "bad_event_id": str(uuid.uuid5(_UNREADABLE, f"{stream}/{segment.name}:{number}")),
        "received_at": segment.first_received_at or segment.closed_at,
        "status": None,
        "reason": f"unreadable line in the landing ({stream}): {why}",
        "payload": payload.replace("\x00", "\ufffd"),
        "segment": segment.name,
        "segment_line": number,
    }


def _segments(
    landing: Landing,
    stream: str,
    to_rows,
    max_segments: int = 0,
    to_table: Callable[[list[dict]], object] = lambda rows: rows,
    unreadable: Callable[[list[dict]], object] = lambda rows: rows,
    read: Callable[[dict], object] | None = None,
) -> Iterator[object]:
    """The rows of new segments, in batches through ``to_table``; the rows of unreadable
    lines through ``unreadable`` (both say which table they go to); last, when ``read`` is
    given, this run's ``landing_reads`` row (:func:`landing_read`) through it."""
    state = dlt.current.resource_state()
    loaded: list[str] = state.setdefault("loaded_segments", [])
    read_at = datetime.now(UTC)  # before the manifest is read: what it lists closed before
    manifest = landing.manifest(stream)
    listed = {segment.name for segment in manifest}
    # Names of segments the collector has since expired never come back: forget them, so
    # the state stays as small as the manifest.
    loaded[:] = [name for name in loaded if name in listed]
    done = set(loaded)
    new = [segment for segment in manifest if segment.name not in done]
    # at most max_segments: the rest waits for the next run (a backlog loads in bounded steps)
    taking = new[:max_segments] if max_segments else new
    for segment in taking:
        batch: list[dict] = []
        bad: list[dict] = []
        for number, line in landing.lines(stream, segment):
            try:
                batch += to_rows(line, segment.name, number)
            except UnreadableLine as exc:
                bad.append(unreadable_row(stream, segment, number, line, str(exc)))
            if len(batch) >= 20_000:
                yield to_table(batch)
                batch = []
        if batch:
            yield to_table(batch)
        if bad:
            yield unreadable(bad)
        loaded.append(segment.name)
    if read is not None:
        yield read(landing_read(read_at, manifest, taking, new[len(taking) :]))


# A segment is closed at most SITELINE_SEGMENT_MAX_SECONDS after it opened, checked every
# second, then synced, renamed and listed (realtime/collector/durable.py, _rotate_by_age):
# this much more allows for the check's interval and the closing's own time.
CLOSE_GRACE_SECONDS = 30.0


def closed_before(at: datetime, segment_max_seconds: float) -> datetime:
    """The time before which every event the collector received was in a closed (listed)
    segment at ``at``: a segment is closed within ``segment_max_seconds`` of its first event."""
    return at - timedelta(seconds=segment_max_seconds + CLOSE_GRACE_SECONDS)


def landing_read(
    read_at: datetime,
    manifest: list[SegmentInfo],
    taken: list[SegmentInfo],
    left: list[SegmentInfo],
    segment_max_seconds: float | None = None,
) -> dict:
    """The ``raw_collector.landing_reads`` row of one run over the events stream: when it read
    the manifest, what it listed, took and left, and ``complete_before``: every event received
    before it is loaded once this run's load is (orchestration/completeness.py). That is
    :func:`closed_before` the read, or earlier when segments were left for the next run (the
    first event of the earliest of them)."""
    if segment_max_seconds is None:
        segment_max_seconds = settings().segment_max_seconds
    complete_before = closed_before(read_at, segment_max_seconds)
    firsts = [datetime.fromisoformat(s.first_received_at) for s in left if s.first_received_at]
    if firsts:
        complete_before = min(complete_before, min(firsts))
    return {
        "read_id": str(uuid.uuid4()),
        "read_at": read_at,
        "stream": "events",
        "segments_listed": len(manifest),
        "segments_taken": len(taken),
        "segments_left": len(left),
        "last_listed": manifest[-1].name if manifest else None,
        "last_taken": taken[-1].name if taken else None,
        "segment_max_seconds": float(segment_max_seconds),
        "complete_before": complete_before,
    }


READ_COLUMNS = {
    "read_id": {"data_type": "text", "nullable": False},
    "read_at": {"data_type": "timestamp", "nullable": False},
    "stream": {"data_type": "text", "nullable": False},
    "segments_listed": {"data_type": "bigint", "nullable": False},
    "segments_taken": {"data_type": "bigint", "nullable": False},
    "segments_left": {"data_type": "bigint", "nullable": False},
    "last_listed": {"data_type": "text"},
    "last_taken": {"data_type": "text"},
    "segment_max_seconds": {"data_type": "double", "nullable": False},
    "complete_before": {"data_type": "timestamp", "nullable": False},
}


def _without_nul(value):
    """``value`` with U+0000 replaced by U+FFFD in every string and key: PostgreSQL text and
    jsonb cannot hold it, and one such event would fail every later load."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _event_rows(line: bytes, segment: str, number: int) -> list[dict]:
    # A line holds one event or a whole request (ingestion/core/landing.py).
    records = landed_records(line)
    if b"\\u0000" in line:  # JSON writes U+0000 only as this escape
        records = [_without_nul(record) for record in records]
    try:
        return [to_row(record, segment, number) for record in records]
    except (TypeError, AttributeError) as exc:  # a field of the wrong type (foreign landing)
        raise UnreadableLine(f"a field has the wrong type: {exc}") from None


def _bad_rows(line: bytes, segment: str, number: int) -> list[dict]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise UnreadableLine(f"not valid JSON: {exc}") from None
    if type(record) is not dict or type(record.get("bad_event_id")) is not str:
        raise UnreadableLine("not a quarantine record (bad_event_id)")
    try:
        datetime.fromisoformat(record.get("received_at"))
    except (TypeError, ValueError):
        raise UnreadableLine("received_at is not an ISO 8601 time") from None
    if b"\\u0000" in line:
        record = _without_nul(record)
    row = {key: record.get(key) for key in BAD_EVENT_COLUMNS}
    row["segment"] = segment
    row["segment_line"] = number
    return [row]


@dlt.source(name="collector_events", max_table_nesting=0)
def collector_events(
    landing_dir: str = dlt.config.value, landing_token: str | None = None, max_segments: int = 0
):
    """Closed landing segments under ``landing_dir`` (a path, or a collector's
    ``https://host/landing`` URL with ``landing_token``); at most ``max_segments`` new
    segments per stream and run when set (``SOURCES__COLLECTOR_EVENTS__MAX_SEGMENTS``)."""
    landing = Landing(landing_dir, landing_token)

    # The columns go with each batch, not on the resource: it also sends the unreadable lines
    # of the events stream to bad_events, which must not take the events' columns.
    @dlt.resource(name="events", write_disposition="merge", primary_key="event_id")
    def events() -> Iterator[object]:
        # the models read the table even when it is empty
        yield _to_events(dlt.mark.materialize_table_schema())
        yield from _segments(
            landing, "events", _event_rows, max_segments, _to_events, _to_bad_events,
            _to_landing_reads,
        )  # fmt: skip

    @dlt.resource(name="bad_events", write_disposition="merge", primary_key="bad_event_id",
                  columns=BAD_EVENT_COLUMNS)  # fmt: skip
    def bad_events() -> Iterator[list[dict]]:
        yield dlt.mark.materialize_table_schema()
        yield from _segments(landing, "bad_events", _bad_rows, max_segments)

    return events, bad_events


def _to_events(rows: object) -> object:
    """Rows of ``raw_collector.events``, with that table's hints."""
    hints = dlt.mark.make_hints(
        table_name="events", write_disposition="merge", primary_key="event_id",
        columns=EVENT_COLUMNS,
    )  # fmt: skip
    return dlt.mark.with_hints(rows, hints, create_table_variant=True)


def _to_landing_reads(row: dict) -> object:
    """The run's row of ``raw_collector.landing_reads`` (appended), committed with its load."""
    # its own primary key: the events resource's (event_id) would be taken over otherwise
    hints = dlt.mark.make_hints(
        table_name="landing_reads", write_disposition="append", primary_key="read_id",
        columns=READ_COLUMNS,
    )  # fmt: skip
    return dlt.mark.with_hints([row], hints, create_table_variant=True)


def _to_bad_events(rows: list[dict]) -> object:
    """Rows the events resource sends to ``raw_collector.bad_events``, with its hints."""
    hints = dlt.mark.make_hints(
        table_name="bad_events", write_disposition="merge", primary_key="bad_event_id",
        columns=BAD_EVENT_COLUMNS,
    )  # fmt: skip
    return dlt.mark.with_hints(rows, hints, create_table_variant=True)


def delete_segments(url: str, segments: list[str]) -> int:
    """Delete the rows of ``raw_collector.events`` loaded from ``segments`` (e.g. demo traffic
    that is being replaced); returns how many. Nothing to do before the first load."""
    from ingestion.core.warehouse import connect

    with connect(url, autocommit=True) as conn:
        if not conn.execute("select to_regclass('raw_collector.events')").fetchone()[0]:
            return 0
        deleted = conn.execute(
            "delete from raw_collector.events where segment = any(%s)", (segments,)
        )
        return deleted.rowcount
