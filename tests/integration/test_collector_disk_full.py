"""A full disk under the landing: requests get 503 and nothing is acknowledged, a segment
that comes due waits to be closed (``/health`` says why), stopping and starting work, and
once space returns the collector recovers by itself with every acknowledged event kept."""

import errno
import os
import subprocess
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from ingestion.collector_events import collector_events
from ingestion.core.landing import read_manifest
from ingestion.core.warehouse import connect
from tests.integration.servers import free_port, isolated_pipeline, start_collector

pytestmark = pytest.mark.integration


@contextmanager
def small_filesystem(path: Path, size: str = "4m"):
    """A tmpfs of ``size`` at ``path``: a disk that really fills up. Mounting needs root,
    which CI and ``make test`` have; without it the test fails (it must not pass unseen)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a {size} tmpfs at {path} (run as root): {mounted.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Write a ballast file until not one byte more fits."""
    ballast = folder / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = 1 << 20
        while chunk:
            try:
                os.write(fd, bytes(chunk))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                chunk //= 2
    finally:
        os.close(fd)
    return ballast


def batch(size: int = 3, padding: int = 0) -> list[dict]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "type": "page_view",
            "occurred_at": datetime.now(UTC).isoformat(),
            "visitor_id": "v-disk",
            "url": "https://shop.siteline.test/" + "p" * padding,
        }
        for _ in range(size)
    ]


def health(client: httpx.Client) -> dict:
    return client.get("/health").json()


def until(condition, what: str):
    """Poll (health, the manifest) until ``condition()`` is true; fail after 60 s."""
    deadline = datetime.now(UTC).timestamp() + 60
    while datetime.now(UTC).timestamp() < deadline:
        value = condition()
        if value:
            return value
        subprocess.run(["sleep", "0.1"], check=True)
    pytest.fail(f"never happened: {what}")


def stop_gracefully(proc: subprocess.Popen) -> str:
    """SIGTERM, and the collector's output once it has exited by itself."""
    proc.terminate()
    output, _ = proc.communicate(timeout=60)
    assert "Traceback" not in output and "shutdown failed" not in output, output
    return output


def test_a_full_disk_recovers_by_itself_and_loses_nothing(tmp_path, warehouse):
    with small_filesystem(tmp_path / "disk") as disk:
        landing = disk / "landing"
        port = free_port()
        env = {
            **os.environ,
            "SITELINE_LANDING_DIR": str(landing),
            "SITELINE_SEGMENT_MAX_SECONDS": "3",
            "SITELINE_COLLECTOR_ID": "full",
            "SITELINE_RATE_LIMIT": "0",
        }
        acknowledged: list[str] = []
        refused: list[str] = []

        def send(client: httpx.Client, events: list[dict]) -> httpx.Response:
            response = client.post("/collect", json={"site_id": "demo", "events": events})
            ids = [event["event_id"] for event in events]
            (acknowledged if response.status_code == 200 else refused).extend(ids)
            return response

        def refused_for_the_disk(response: httpx.Response) -> None:
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "10"
            assert "No space left on device" in response.json()["error"]

        proc = start_collector(port, env)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(20):
                assert send(client, batch()).status_code == 200
            ballast = fill(disk)
            assert health(client)["landing"]["events"]["open_segment_events"] == 60
            # Each request needs a new page of the segment (> 4 KB): none fits any more.
            for _ in range(5):
                refused_for_the_disk(send(client, batch(5, padding=1000)))
            refused_for_the_disk(client.post("/collect", content=b"not json"))  # no quarantine
            # The open segment comes due and cannot be listed: closing waits, and says why.
            problems = until(
                lambda: [p for p in health(client)["problems"] if "cannot close" in p],
                "/health names the segment that cannot be closed",
            )
            assert problems[0].startswith("landing events: cannot close segment ")
            assert problems[0].endswith("-full-000001.jsonl: No space left on device")
            state = health(client)
            assert state["status"] == "degraded"
            assert state["landing"]["events"]["unlisted_segments"] == 1
            assert read_manifest(landing / "events") == []

            ballast.unlink()  # space returns: no restart, no operator
            until(lambda: health(client)["status"] == "ok", "/health ok again")
            assert [s.events for s in read_manifest(landing / "events")] == [60]
            for _ in range(10):
                assert send(client, batch()).status_code == 200

            # Full again, and a stop meanwhile: it ends, and leaves the open segment.
            ballast = fill(disk)
            assert health(client)["landing"]["events"]["open_segment_events"] == 30
            refused_for_the_disk(send(client, batch(5, padding=1000)))
            output = stop_gracefully(proc)
            assert "-full-000002.jsonl left for the next start to seal" in output
            proc = start_collector(port, env)  # starts although the disk is still full
            state = health(client)
            assert state["status"] == "degraded"
            assert state["problems"] == [
                "landing events: cannot seal the segments of the last run: No space left on device"
            ]
            refused_for_the_disk(send(client, batch(5, padding=1000)))
            ballast.unlink()
            until(lambda: health(client)["status"] == "ok", "/health ok again after a start")
            assert [s.events for s in read_manifest(landing / "events")] == [60, 30]
            for _ in range(5):
                assert send(client, batch()).status_code == 200
            garbage = client.post("/collect", content=b"not json")
            assert garbage.status_code == 400  # quarantined again
        stop_gracefully(proc)
        assert not list(landing.glob("*/segments/*.open"))

        pipeline = isolated_pipeline("test_full", "test_full_collector", warehouse, tmp_path)
        pipeline.run(collector_events(landing_dir=str(landing)))
        with connect(warehouse) as conn:
            loaded = [r[0] for r in conn.execute("select event_id from test_full_collector.events")]
            (bad,) = conn.execute("select count(*) from test_full_collector.bad_events").fetchone()
    assert len(acknowledged) == 105 and len(refused) == 35
    assert sorted(loaded) == sorted(acknowledged)  # each once, and nothing refused
    assert bad == 1
