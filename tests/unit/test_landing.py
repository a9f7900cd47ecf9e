from datetime import datetime

import orjson
import pytest

from realtime.collector.landing import (
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
