"""Collector → real-time hand-over through a real Redis server (separate processes)."""

import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from realtime.engine.bus import RedisStreamBus
from tests.integration.servers import collector, free_port

pytestmark = pytest.mark.integration


@pytest.fixture()
def redis_url(tmp_path):
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (apt-get install redis-server)"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url, proc
    proc.terminate()
    proc.wait(10)


def page_views(n: int) -> list[dict]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "type": "page_view",
            "occurred_at": datetime.now(UTC).isoformat(),
            "visitor_id": "v-bus",
            "url": f"https://shop.siteline.test/{i}",
        }
        for i in range(n)
    ]


def test_accepted_batches_reach_a_subscriber_in_another_process(redis_url, tmp_path):
    url, _ = redis_url
    received: list[dict] = []
    consumer = RedisStreamBus(url)
    consumer.subscribe(received.extend)  # this test process plays the engine
    with collector(
        tmp_path / "landing", SITELINE_EVENT_BUS=url, SITELINE_RATE_LIMIT="0", SITELINE_ENGINE="0"
    ) as (
        base,
        _,
    ):
        sent = page_views(3) + page_views(2)
        assert (
            httpx.post(f"{base}/collect", json={"site_id": "demo", "events": sent[:3]}).status_code
            == 200
        )
        assert (
            httpx.post(f"{base}/collect", json={"site_id": "demo", "events": sent[3:]}).status_code
            == 200
        )
        bad = httpx.post(f"{base}/collect", json={"site_id": "demo", "events": [{"type": "x"}]})
        assert bad.status_code == 400  # rejected events are not published
        deadline = time.monotonic() + 5
        while len(received) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        health = httpx.get(f"{base}/health").json()
    consumer.close()
    assert [e["event_id"] for e in received] == [e["event_id"] for e in sent]
    assert all(
        e["received_at"] and e["site_id"] == "demo" and e["ip"] == "127.0.0.0" for e in received
    )
    assert health["bus"] == {"kind": "RedisStreamBus", "errors": 0, "dropped": 0}


def test_requests_succeed_when_redis_is_down(redis_url, tmp_path):
    url, proc = redis_url
    proc.terminate()
    proc.wait(10)
    with collector(tmp_path / "landing", SITELINE_EVENT_BUS=url, SITELINE_RATE_LIMIT="0") as (
        base,
        _,
    ):
        for _ in range(3):
            response = httpx.post(
                f"{base}/collect", json={"site_id": "demo", "events": page_views(1)}
            )
            assert response.status_code == 200  # the landing has them; real time is best effort
        time.sleep(2.5)
        health = httpx.get(f"{base}/health").json()
    assert health["counters"]["accepted"] == 3
    assert health["bus"]["errors"] >= 1 and health["bus"]["dropped"] >= 1


def test_the_send_queue_is_bounded_in_bytes_while_redis_is_away():
    """No Redis listens: batches queue up for the sender, at most ``buffer_bytes`` of them
    (the oldest are dropped), however large the events."""
    bus = RedisStreamBus(f"redis://127.0.0.1:{free_port()}/0", buffer_bytes=1024 * 1024)
    try:
        batch = [{"event_id": str(uuid.uuid4()), "properties": {"blob": "x" * 60_000}}]
        size = len(orjson.dumps(batch))
        for _ in range(100):
            bus.publish(batch)
            assert bus.queued_bytes <= 1024 * 1024
            assert bus.queued_bytes == size * len(bus._queue)
        assert bus.published == 0 and len(bus._queue) <= 1024 * 1024 // size == 17
        assert bus.dropped > 0  # the oldest, and what the sender could not send
    finally:
        bus._stop.set()
        bus._wake.set()
