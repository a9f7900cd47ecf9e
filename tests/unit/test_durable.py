"""Group commit: what is acknowledged is in the segment, with or without the fsync helper."""

import asyncio
import errno
import os
import resource
import signal
import threading
from dataclasses import replace

import orjson
import pytest

from ingestion.core import landing
from ingestion.core.landing import (
    SEGMENTS,
    SegmentWriter,
    iter_segment,
    read_manifest,
    write_manifest,
)
from realtime.collector import durable
from realtime.collector.durable import DurableStream, LandingUnavailable


def _lines(n: int, start: int = 0) -> list[bytes]:
    return [orjson.dumps({"n": i, "received_at": "2026-11-28T10:00:00Z"}) + b"\n"
            for i in range(start, start + n)]  # fmt: skip


def _landed(stream_dir) -> list[int]:
    numbers = []
    for path in sorted((stream_dir / SEGMENTS).iterdir()):
        numbers += [orjson.loads(line)["n"] for _, line in iter_segment(path)]
    return sorted(numbers)


def test_concurrent_appends_share_one_write_and_one_sync(tmp_path):
    async def run() -> DurableStream:
        stream = DurableStream(tmp_path / "events", "t")
        stream.start()
        await asyncio.gather(*(stream.append(_lines(1, i), None) for i in range(50)))
        assert stream.commits == 1  # all 50 arrived in one turn of the loop
        assert stream.committed_events == 50
        await stream.append(_lines(3, 50), None)
        assert stream.commits == 2
        await stream.close()
        return stream

    stream = asyncio.run(run())
    assert _landed(stream.dir) == list(range(53))
    assert [s.events for s in read_manifest(stream.dir)] == [53]


def test_events_count_lines_that_hold_several(tmp_path):
    async def run() -> None:
        stream = DurableStream(tmp_path / "events", "t")
        stream.start()
        await stream.append(_lines(2), None, events=40)
        assert stream.committed_events == 40
        await stream.close()

    asyncio.run(run())
    assert [s.events for s in read_manifest(tmp_path / "events")] == [40]


def test_a_dead_helper_is_replaced_and_nothing_acknowledged_is_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(durable, "HELPER_RETRY_SECONDS", 0.0)

    async def run() -> DurableStream:
        stream = DurableStream(tmp_path / "events", "t")
        stream.start()
        await stream.append(_lines(5), None)
        first = stream._helper.proc
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        # The sync in flight finds the helper gone: the loop syncs itself and acknowledges.
        await asyncio.wait_for(stream.append(_lines(5, 5), None), 5)
        await asyncio.wait_for(stream.append(_lines(5, 10), None), 5)
        assert stream._helper is not None and stream._helper.proc.pid != first.pid
        assert stream.stats()["syncs_by"] == "helper" and stream.stats()["helper_restarts"] == 1
        await asyncio.wait_for(stream.append(_lines(5, 15), None), 5)
        helper = stream._helper.proc
        await stream.close()
        assert helper.poll() == 0  # told to stop by the closed socket
        return stream

    stream = asyncio.run(run())
    assert _landed(stream.dir) == list(range(20))


def test_a_helper_dying_while_nothing_is_syncing_is_replaced_without_an_error(
    tmp_path, monkeypatch
):
    """A helper lost with no sync in flight (it is stopped with the collector's process group,
    say) used to raise AttributeError in the loop's reader callback: there was no file to sync."""
    monkeypatch.setattr(durable, "HELPER_RETRY_SECONDS", 0.0)
    errors = []

    async def run() -> DurableStream:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
        stream = DurableStream(tmp_path / "events", "t")
        stream.start()
        first = stream._helper.proc
        os.kill(first.pid, signal.SIGKILL)  # before anything was ever written
        first.wait()
        for _ in range(500):  # the loop reads the helper's end of file
            await asyncio.sleep(0.01)
            if stream.stats()["syncs_by"] == "loop":
                break
        assert stream.stats()["syncs_by"] == "loop"
        await asyncio.wait_for(stream.append(_lines(3), None), 5)
        await asyncio.wait_for(stream.append(_lines(0), None), 5)  # the next one: a new helper
        assert stream.stats()["helper_restarts"] == 1
        await stream.close()
        return stream

    stream = asyncio.run(run())
    assert errors == []
    assert _landed(stream.dir) == [0, 1, 2]


def test_the_helper_outlives_a_stop_signal_until_the_collector_closes_it(tmp_path):
    """Ctrl-C or a stop sent to the collector's process group reached the helper too: it died
    with a KeyboardInterrupt traceback while the collector still synced its last segment."""

    async def run() -> None:
        stream = DurableStream(tmp_path / "events", "t")
        stream.start()
        await asyncio.wait_for(stream.append(_lines(1), None), 5)  # the helper is serving
        helper = stream._helper.proc
        for sig in (signal.SIGINT, signal.SIGTERM):
            os.kill(helper.pid, sig)
        await asyncio.wait_for(stream.append(_lines(2, 1), None), 5)
        assert stream._helper.proc is helper and stream.stats()["helper_restarts"] == 0
        await stream.close()
        assert helper.wait(5) == 0

    asyncio.run(run())


def test_without_a_helper_the_loop_syncs(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no processes left")

    monkeypatch.setattr(durable.subprocess, "Popen", refuse)

    async def run() -> DurableStream:
        stream = DurableStream(tmp_path / "events", "t")
        stream.start()
        assert stream._helper is None and stream.stats()["syncs_by"] == "loop"
        await asyncio.wait_for(asyncio.gather(*(stream.append(_lines(1, i), None)
                                                for i in range(10))), 5)  # fmt: skip
        await stream.close()
        return stream

    stream = asyncio.run(run())
    assert _landed(stream.dir) == list(range(10))


def test_segments_close_by_age_while_appends_continue(tmp_path):
    async def run() -> DurableStream:
        stream = DurableStream(tmp_path / "events", "t", max_seconds=0.2)
        stream.start()
        for i in range(6):
            await stream.append(_lines(1, i), None)
            await asyncio.sleep(0.15)
        await stream.close()
        return stream

    stream = asyncio.run(run())
    segments = read_manifest(stream.dir)
    assert len(segments) >= 2
    assert sum(s.events for s in segments) == 6
    assert _landed(stream.dir) == list(range(6))
    assert not list((stream.dir / SEGMENTS).glob("*.open"))


def test_a_full_segment_is_finished_off_the_event_loop(tmp_path, monkeypatch):
    """Listing a closed segment rewrites the manifest (it grows with every segment): it must
    not stall the requests of the next segment; those in the closed one wait for it."""
    release = threading.Event()
    listed = landing._append_manifest

    def slow_listing(landing_dir, info):
        release.wait(10)
        listed(landing_dir, info)

    monkeypatch.setattr(landing, "_append_manifest", slow_listing)

    async def run() -> DurableStream:
        stream = DurableStream(tmp_path / "events", "t", max_events=3)
        stream.start()
        filling = asyncio.ensure_future(stream.append(_lines(3), None))  # fills segment 1
        await asyncio.sleep(0.05)
        assert not filling.done()  # acknowledged only once segment 1 is synced and listed
        await asyncio.wait_for(stream.append(_lines(1, 3), None), 5)  # segment 2, meanwhile
        assert not filling.done()
        release.set()
        await asyncio.wait_for(filling, 5)
        await stream.close()
        return stream

    stream = asyncio.run(run())
    assert [s.events for s in read_manifest(stream.dir)] == [3, 1]
    assert _landed(stream.dir) == list(range(4))


def test_segments_older_than_the_retention_are_deleted_when_one_closes(tmp_path):
    stream_dir = tmp_path / "events"
    old = SegmentWriter(stream_dir, writer_id="earlier")
    old.write({"event_id": "e0", "received_at": "2026-10-01T10:00:00Z"})
    (listed,) = [old.close_segment()]
    manifest = read_manifest(stream_dir)
    aged = [replace(manifest[0], closed_at="2026-10-01T10:00:00+00:00")]
    write_manifest(stream_dir, aged)  # as if closed two months ago

    async def run() -> None:
        stream = DurableStream(stream_dir, "t", retention_days=30)
        stream.start()
        await stream.append(_lines(2), None)
        await stream.close()

    asyncio.run(run())
    segments = read_manifest(stream_dir)
    assert [s.events for s in segments] == [2]
    assert not (stream_dir / SEGMENTS / listed.name).exists()


class _FullDisk:
    """Makes listing a segment fail as on a full disk while ``full`` is set (the manifest's
    temporary copy is what needs new space)."""

    def __init__(self, monkeypatch) -> None:
        self.full = True
        self.tries = 0
        listed = landing._append_manifest

        def append(landing_dir, info):
            if self.full:
                self.tries += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            listed(landing_dir, info)

        monkeypatch.setattr(landing, "_append_manifest", append)


async def _until(condition, what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def test_a_segment_that_cannot_be_closed_is_retried_until_it_is_listed(tmp_path, monkeypatch):
    """A full disk used to end closing by age for good: nothing was listed again."""
    monkeypatch.setattr(durable, "CLOSE_RETRY_FIRST", 0.02)
    monkeypatch.setattr(durable, "CLOSE_RETRY_MAX", 0.05)
    disk = _FullDisk(monkeypatch)

    async def run() -> DurableStream:
        stream = DurableStream(tmp_path / "events", "t", max_seconds=0.1)
        stream.start()
        await stream.append(_lines(3), None)  # synced: acknowledged
        await _until(lambda: disk.tries >= 3, "three tries to close the due segment")
        (problem,) = stream.stats()["problems"]
        assert problem.startswith("cannot close segment 2")
        assert problem.endswith("-t-000001.jsonl: No space left on device")
        assert stream.stats()["unlisted_segments"] >= 1
        assert not stream._rotator.done()  # closing by age goes on
        await stream.append(_lines(2, 3), None)  # writes still work: a new segment
        disk.full = False
        await _until(lambda: not stream.problems and not stream._closing, "listed")
        assert stream.stats()["problems"] == []
        await stream.close()
        return stream

    stream = asyncio.run(run())
    assert _landed(stream.dir) == list(range(5))
    segments = read_manifest(stream.dir)
    assert sum(s.events for s in segments) == 5
    assert sorted(p.name for p in (stream.dir / SEGMENTS).iterdir()) == [s.name for s in segments]


def test_a_stop_on_a_full_disk_leaves_the_segment_for_the_next_start(tmp_path, monkeypatch):
    monkeypatch.setattr(durable, "CLOSE_RETRY_FIRST", 0.02)
    disk = _FullDisk(monkeypatch)

    async def first_run() -> None:
        stream = DurableStream(tmp_path / "events", "t")
        stream.start()
        await stream.append(_lines(4), None)
        await asyncio.wait_for(stream.close(), 10)  # returns: one more try, then left

    asyncio.run(first_run())
    assert read_manifest(tmp_path / "events") == []

    async def second_run() -> DurableStream:
        stream = DurableStream(tmp_path / "events", "t")  # still full: starts all the same
        assert stream.problems["recover"].endswith("No space left on device")
        stream.start()
        disk.full = False
        await _until(lambda: not stream.problems, "the leftovers sealed")
        await stream.append(_lines(1, 4), None)
        await stream.close()
        return stream

    stream = asyncio.run(second_run())
    assert [s.events for s in stream.recovered] == [4]
    assert [s.events for s in read_manifest(stream.dir)] == [4, 1]
    assert _landed(stream.dir) == list(range(5))


def test_a_write_that_fails_is_not_acknowledged_and_leaves_nothing(tmp_path, monkeypatch):
    """Writes past a file size limit fail as on a full disk: those requests get an error
    (the collector answers 503); the segment keeps exactly what was acknowledged."""
    monkeypatch.setattr(durable, "CLOSE_RETRY_FIRST", 0.02)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    async def run() -> DurableStream:
        stream = DurableStream(tmp_path / "events", "t")
        stream.start()
        await stream.append(_lines(2), None)
        resource.setrlimit(resource.RLIMIT_FSIZE, (120, hard))
        try:
            with pytest.raises(LandingUnavailable, match="cannot write to the landing: File"):
                await stream.append(_lines(5, 2), None)
            assert stream.stats()["problems"] == ["cannot write: File too large"]
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        # Without a request, a write of its own finds the disk taking writes again.
        await _until(lambda: not stream.problems, "the write problem solved")
        await stream.append(_lines(1, 7), None)
        assert stream.problems == {}
        await stream.close()
        return stream

    try:
        stream = asyncio.run(run())
    finally:
        signal.signal(signal.SIGXFSZ, previous)
    assert _landed(stream.dir) == [0, 1, 7]
    (segment,) = read_manifest(stream.dir)
    assert segment.events == 3
