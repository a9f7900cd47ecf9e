import orjson

from realtime.collector.landing import (
    SEGMENTS,
    SegmentWriter,
    iter_segment,
    read_manifest,
    remove_segments,
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
