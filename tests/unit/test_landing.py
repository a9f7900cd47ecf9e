import errno
import hashlib
import os
import resource
import signal
from datetime import datetime

import orjson
import pytest

from ingestion.core import landing
from ingestion.core.landing import (
    MANIFEST,
    SEGMENTS,
    RequestRecords,
    SegmentWriter,
    UnreadableLine,
    expire_segments,
    iter_segment,
    landed_records,
    read_manifest,
    remove_segments,
    request_line,
    seal_open_segments,
)


def test_segments_rotate_and_are_listed_in_the_manifest(tmp_path):
    writer = SegmentWriter(tmp_path, writer_id="t", max_events=3)
    for i in range(7):
        writer.write({"event_id": str(i), "received_at": f"2026-11-01T00:00:0{i}Z"})
    writer.close()
    segments = read_manifest(tmp_path)
    assert [s.events for s in segments] == [3, 3, 1]
    assert segments[0].first_received_at == "2026-11-01T00:00:00Z"
    assert segments[0].last_received_at == "2026-11-01T00:00:02Z"
    ids = [
        orjson.loads(line)["event_id"]
        for seg in segments
        for _, line in iter_segment(tmp_path / SEGMENTS / seg.name)
    ]
    assert ids == [str(i) for i in range(7)]
    assert not list((tmp_path / SEGMENTS).glob("*.open"))


def test_a_reopened_writer_continues_the_manifest(tmp_path):
    first = SegmentWriter(tmp_path, writer_id="t")
    first.write({"event_id": "a"})
    first.close()
    second = SegmentWriter(tmp_path, writer_id="t")
    second.write({"event_id": "b"})
    second.close()
    names = [s.name for s in read_manifest(tmp_path)]
    assert len(names) == 2 and len(set(names)) == 2


def test_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "seg.jsonl"
    path.write_bytes(b'{"event_id": "1"}\n{"event_id": "2"}\n{"event_id": "3"')
    assert [n for n, _ in iter_segment(path)] == [1, 2]


def test_remove_segments_forgets_only_that_writer(tmp_path):
    for writer_id in ("sim", "collector", "sim"):
        writer = SegmentWriter(tmp_path, writer_id=writer_id)
        writer.write({"event_id": writer_id})
        writer.close()
    removed = remove_segments(tmp_path, "sim")
    assert len(removed) == 2
    left = read_manifest(tmp_path)
    assert [s.name.split("-")[1] for s in left] == ["collector"]
    assert sorted(p.name for p in (tmp_path / SEGMENTS).iterdir()) == [left[0].name]


def test_a_request_line_expands_to_the_records_of_its_events():
    body = (
        b'{"site_id": "demo",\r\n "events": [\n'
        b'  {"event_id": "e1", "type": "page_view", "occurred_at": "2026-11-28T10:00:00Z",'
        b'   "url": "https://a.example/\\nx", "ip": "10.0.0.1", "sent_at": "ignored"},\n'
        b'  {"event_id": "e2", "type": "identify", "occurred_at": "2026-11-28T10:00:01Z"}]}'
    )
    enrichment = {"site_id": "demo", "sent_at": None, "received_at": "2026-11-28T10:00:02Z",
                  "ip": "10.0.0.0"}  # fmt: skip
    line = request_line(orjson.dumps(enrichment), body)
    assert line.count(b"\n") == 1 and line.endswith(b"\n") and b"\r" not in line
    first, second = landed_records(line)
    # what the collector adds wins; sent_at falls back to the device's occurred_at
    assert first == {"event_id": "e1", "type": "page_view", "occurred_at": "2026-11-28T10:00:00Z",
                     "url": "https://a.example/\nx", "ip": "10.0.0.0", "site_id": "demo",
                     "sent_at": "2026-11-28T10:00:00Z",
                     "received_at": "2026-11-28T10:00:02Z"}  # fmt: skip
    assert second["event_id"] == "e2" and second["sent_at"] == "2026-11-28T10:00:01Z"
    # an event line (format 1, and format 2 when some events of a request were rejected)
    event = {"event_id": "e3", "type": "page_view", "request": {"events": "a field"},
             "received_at": "2026-11-28T10:00:02Z"}  # fmt: skip
    assert landed_records(orjson.dumps(event) + b"\n") == [event]
    lazy = RequestRecords(enrichment, body, 2)
    assert len(lazy) == 2 and list(lazy) == [first, second] and lazy[1] == second


def test_sealing_counts_the_events_of_request_lines(tmp_path):
    enrichment = orjson.dumps({"site_id": "demo", "received_at": "2026-11-28T10:00:02Z"})
    body = orjson.dumps({"events": [{"event_id": f"e{i}"} for i in range(3)]})
    segments = tmp_path / SEGMENTS
    segments.mkdir()
    open_segment = segments / "20261128T100000000000-t-000001.jsonl.open"
    event = orjson.dumps({"event_id": "e9", "received_at": "2026-11-28T10:00:03Z"})
    open_segment.write_bytes(request_line(enrichment, body) + event + b"\n" + b'{"torn')
    (sealed,) = seal_open_segments(tmp_path, "t")
    assert sealed.events == 4
    assert sealed.first_received_at == "2026-11-28T10:00:02Z"
    assert sealed.last_received_at == "2026-11-28T10:00:03Z"


def test_a_manifest_of_an_unknown_version_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text('{"version": 3, "segments": []}')
    with pytest.raises(ValueError, match="landing format version 3 is not supported"):
        read_manifest(tmp_path)


def test_expired_segments_leave_the_manifest_and_the_disk(tmp_path):
    writer = SegmentWriter(tmp_path, writer_id="t")
    for n in range(3):
        writer.write({"event_id": f"e{n}", "received_at": "2026-11-28T10:00:00Z"})
        writer.close_segment()
    old, kept_a, kept_b = read_manifest(tmp_path)
    cutoff = datetime.fromisoformat(kept_a.closed_at)
    assert expire_segments(tmp_path, cutoff) == [old.name]
    assert [s.name for s in read_manifest(tmp_path)] == [kept_a.name, kept_b.name]
    assert sorted(p.name for p in (tmp_path / SEGMENTS).iterdir()) == [kept_a.name, kept_b.name]
    assert expire_segments(tmp_path, cutoff) == []


def _quarantine_line(n: int) -> bytes:
    record = {"bad_event_id": f"b{n}", "received_at": f"2026-11-28T10:00:0{n}Z", "status": 400,
              "reason": "events[0].type: unknown", "payload": '{"site_id": "demo"}'}  # fmt: skip
    return orjson.dumps(record) + b"\n"


def test_sealing_reads_every_kind_of_line_of_either_stream(tmp_path):
    """A quarantine record used to be read as a request line (KeyError 'request'), which
    stopped the collector's start with the segment renamed but never listed."""
    segments = tmp_path / SEGMENTS
    segments.mkdir()
    enrichment = orjson.dumps({"site_id": "demo", "received_at": "2026-11-28T10:00:01Z"})
    body = orjson.dumps({"events": [{"event_id": f"e{i}"} for i in range(3)]})
    lines = [
        _quarantine_line(0),
        request_line(enrichment, body),  # 3 events
        orjson.dumps({"event_id": "e9", "received_at": "2026-11-28T10:00:02Z"}) + b"\n",
        b'{"site_id": "demo", "request": {"ev\n',  # torn mid-file: unreadable, kept
        b"[1, 2]\n",  # not an object: unreadable, kept
        _quarantine_line(3),
    ]
    open_segment = segments / "20261128T100000000000-t-000001.jsonl.open"
    open_segment.write_bytes(b"".join(lines) + b'{"bad_event_id": "torn')
    (sealed,) = seal_open_segments(tmp_path, "t")
    assert sealed.events == 1 + 3 + 1 + 1
    assert sealed.first_received_at == "2026-11-28T10:00:00Z"
    assert sealed.last_received_at == "2026-11-28T10:00:03Z"
    closed = segments / "20261128T100000000000-t-000001.jsonl"
    assert closed.read_bytes() == b"".join(lines)  # only the torn last line is cut off
    assert sealed.bytes == closed.stat().st_size
    assert [s.name for s in read_manifest(tmp_path)] == [closed.name]


def test_a_segment_renamed_but_never_listed_is_listed_by_the_next_seal(tmp_path):
    """A crash (or a failed start) between the rename and the listing left a closed segment
    no reader ever saw."""
    writer = SegmentWriter(tmp_path, writer_id="t")
    writer.write({"event_id": "listed", "received_at": "2026-11-28T10:00:00Z"})
    (listed,) = [writer.close_segment()]
    orphan = tmp_path / SEGMENTS / "20261128T110000000000-t-000002.jsonl"
    orphan.write_bytes(_quarantine_line(1) + _quarantine_line(2))
    other = tmp_path / SEGMENTS / "20261128T110000000000-u-000001.jsonl"
    other.write_bytes(_quarantine_line(3))  # another writer's (running) close: not ours
    (sealed,) = seal_open_segments(tmp_path, "t")
    assert (sealed.name, sealed.events, sealed.bytes) == (orphan.name, 2, orphan.stat().st_size)
    assert [s.name for s in read_manifest(tmp_path)] == [listed.name, orphan.name]
    assert seal_open_segments(tmp_path, "t") == []  # nothing is listed twice


def test_a_seal_cut_short_is_finished_by_the_next(tmp_path, monkeypatch):
    segments = tmp_path / SEGMENTS
    segments.mkdir()
    for n in (1, 2):
        (segments / f"20261128T10000{n}000000-t-00000{n}.jsonl.open").write_bytes(
            _quarantine_line(n)
        )
    full = OSError(errno.ENOSPC, "No space left on device")
    listed = landing._append_manifest
    calls = []

    def first_listing_fails(landing_dir, info):
        calls.append(info.name)
        if len(calls) == 1:
            raise full
        listed(landing_dir, info)

    monkeypatch.setattr(landing, "_append_manifest", first_listing_fails)
    with pytest.raises(OSError, match="No space left on device"):
        seal_open_segments(tmp_path, "t")
    assert not list(segments.glob("*.open"))  # both renamed, none listed
    assert read_manifest(tmp_path) == []
    sealed = seal_open_segments(tmp_path, "t", only={calls[0]})  # only those named
    assert [s.name for s in sealed] == [calls[0]]
    sealed += seal_open_segments(tmp_path, "t")
    assert [s.events for s in read_manifest(tmp_path)] == [1, 1]
    assert sorted(s.name for s in sealed) == sorted(p.name for p in segments.iterdir())


def test_a_failed_close_goes_on_where_it_stopped_and_lists_once(tmp_path, monkeypatch):
    writer = SegmentWriter(tmp_path, writer_id="t", buffered=False)
    writer.write({"event_id": "e1", "received_at": "2026-11-28T10:00:00Z"})
    segment = writer.detach()
    replace_file = os.replace

    def manifest_cannot_be_written(src, dst):
        if str(dst).endswith(MANIFEST):
            raise OSError(errno.ENOSPC, "No space left on device")
        replace_file(src, dst)

    monkeypatch.setattr(landing.os, "replace", manifest_cannot_be_written)
    with pytest.raises(OSError):
        segment.finish(tmp_path)
    assert not (tmp_path / "manifest.json.tmp").exists()  # its space is given back
    monkeypatch.setattr(landing.os, "replace", replace_file)
    info = segment.finish(tmp_path)
    assert segment.finish(tmp_path) == info
    assert read_manifest(tmp_path) == [info]
    assert [orjson.loads(line)["event_id"] for _, line in iter_segment(
        tmp_path / SEGMENTS / info.name)] == ["e1"]  # fmt: skip


def test_a_write_that_does_not_fit_leaves_the_segment_as_it_was(tmp_path):
    """Writes past a file size limit fail as on a full disk, after a partial write: the
    segment must not keep half a line, or its lines, count and hash would disagree."""
    writer = SegmentWriter(tmp_path, writer_id="t", buffered=False)
    writer.write_lines([b'{"event_id": "e1"}\n'], None)
    path = writer.file.name
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))
    try:
        with pytest.raises(OSError):
            writer.write_lines([b'{"event_id": "e2", "pad": "' + b"x" * 200 + b'"}\n'], None)
        assert os.path.getsize(path) == 19  # cut back
        writer.write_lines([b'{"event_id": "e3"}\n'], None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    info = writer.close_segment()
    data = (tmp_path / SEGMENTS / info.name).read_bytes()
    assert data == b'{"event_id": "e1"}\n{"event_id": "e3"}\n'
    assert (info.events, info.bytes, info.sha256) == (2, 38, hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b'{"event_id": "e1", "received_at": "2026-11-28T10:00:02Z", "x": 1e400}\n',
         "not valid JSON: number is infinity"),
        (b'{"event_id": "e1", "received_at": "2026-11-28T10:00:02Z", "x": "\xff"}\n',
         "not valid JSON: str is not valid UTF-8"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"event_id": "e1"}\n', "received_at None is not an ISO 8601 time"),
        (b'{"event_id": "e1", "received_at": "soon"}\n', "received_at 'soon' is not an ISO"),
        (b'{"bad_event_id": "b1", "received_at": "2026-11-28T10:00:02Z", "reason": "r"}\n',
         "neither an event (event_id) nor a request (request.events)"),
        (b'{"received_at": "2026-11-28T10:00:02Z", "request": {"events": [1]}}\n',
         "neither an event"),
    ],
)  # fmt: skip
def test_a_line_no_reader_can_take_raises_one_error_naming_why(line, why):
    with pytest.raises(UnreadableLine) as exc:
        landed_records(line)
    assert why in str(exc.value)
