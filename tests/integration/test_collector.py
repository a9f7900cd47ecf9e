"""The collection server over real HTTP: accepted, rejected and quarantined, then loaded."""

import time
import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from ingestion.collector_events import collector_events
from ingestion.core.landing import (
    SEGMENTS,
    SegmentWriter,
    expire_segments,
    landed_records,
    read_manifest,
)
from ingestion.core.warehouse import connect
from tests.integration.servers import collector, isolated_pipeline

pytestmark = pytest.mark.integration
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def now() -> str:
    return datetime.now(UTC).isoformat()


def page_view(**fields) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "page_view",
        "occurred_at": now(),
        "visitor_id": "visitor-1",
        "session_id": "session-1",
        "url": "https://shop.siteline.test/p/1",
        **fields,
    }


def batch(*events, site_id="demo") -> dict:
    return {"site_id": site_id, "sent_at": now(), "events": list(events)}


def landed(landing, stream="events") -> list[dict]:
    """Every record in closed and open segments of a stream."""
    records = []
    for path in sorted((landing / stream / SEGMENTS).glob("*.jsonl*")):
        if stream == "events":
            records += [r for line in path.read_bytes().splitlines() for r in landed_records(line)]
        else:
            records += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return records


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    landing = tmp_path_factory.mktemp("landing")
    with (
        collector(landing, SITELINE_RATE_LIMIT="0") as (url, _),
        httpx.Client(base_url=url, headers={"user-agent": UA}, timeout=10) as client,
    ):
        yield client, landing


def test_accepted_event_is_landed_enriched_and_anonymised(server):
    client, landing = server
    event = page_view(title="Product 1", performance={"ttfb_ms": 120})
    response = client.post(
        "/collect", json=batch(event), headers={"x-forwarded-for": "85.214.3.77"}
    )
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "rejected": 0}
    (record,) = [r for r in landed(landing) if r["event_id"] == event["event_id"]]
    assert record["site_id"] == "demo"
    assert record["ip"] == "127.0.0.0"  # peer address (no trusted proxy), anonymised to /24
    assert record["user_agent"] == UA and record["is_bot"] is False
    assert record["performance"] == {"ttfb_ms": 120}
    # received_at is stamped to the millisecond (truncated): the same millisecond may come
    # out earlier than the microseconds the event was made at
    occurred = datetime.fromisoformat(event["occurred_at"])
    occurred = occurred.replace(microsecond=occurred.microsecond // 1000 * 1000)
    assert datetime.fromisoformat(record["received_at"]) >= occurred
    assert record["schema_version"] == 1


def test_bots_are_flagged_not_dropped(server):
    client, landing = server
    event = page_view()
    ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    assert client.post("/collect", json=batch(event), headers={"user-agent": ua}).status_code == 200
    (record,) = [r for r in landed(landing) if r["event_id"] == event["event_id"]]
    assert record["is_bot"] is True and "Googlebot" in record["bot_reason"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"{not json", {}, 400, "body is not valid JSON"),
        (b"[1, 2]", {}, 400, "body: must be a JSON object with site_id and events"),
        (
            orjson.dumps({"site_id": "demo", "events": []}),
            {},
            400,
            "events: must be a non-empty list",
        ),
        (orjson.dumps(batch(page_view(), site_id="nope")), {}, 400, "site_id: unknown site 'nope'"),
        (
            orjson.dumps(batch(page_view())),
            {"origin": "https://evil.example"},
            403,
            "origin 'https://evil.example' is not allowed for site 'demo'",
        ),
        (b"x" * (1024 * 1024 + 1), {}, 413, "body larger than 1024 KB"),
        (
            orjson.dumps(batch(page_view(properties={"blob": "y" * 70_000}))),
            {},
            413,
            "events[0]: larger than 64 KB",
        ),
        (
            orjson.dumps(batch({**page_view(), "event_id": "not-a-uuid"})),
            {},
            400,
            "events[0].event_id: must be a UUID string",
        ),
    ],
)
def test_rejections_name_the_problem_and_are_quarantined(server, body, headers, status, reason):
    client, landing = server
    before = len(landed(landing, "bad_events"))
    response = client.post("/collect", content=body, headers=headers)
    assert response.status_code == status
    assert reason in response.json()["error"]
    bad = landed(landing, "bad_events")
    assert len(bad) == before + 1
    assert bad[-1]["status"] == status and reason in bad[-1]["reason"]


def test_a_bad_event_does_not_sink_its_batch(server):
    client, landing = server
    good = page_view()
    bad = {**page_view(), "type": "transaction", "order_id": "o-1", "revenue": "lots"}
    response = client.post("/collect", json=batch(good, bad))
    assert response.status_code == 200
    assert response.json()["accepted"] == 1 and response.json()["rejected"] == 1
    assert response.json()["errors"] == ["events[1].revenue: must be a number"]
    assert any(r["event_id"] == good["event_id"] for r in landed(landing))
    assert landed(landing, "bad_events")[-1]["reason"] == "events[1].revenue: must be a number"


def test_cors_for_allowed_origins_and_server_side_requests(server):
    client, _ = server
    allowed = client.post(
        "/collect", json=batch(page_view()), headers={"origin": "https://shop.siteline.test"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.siteline.test"
    preflight = client.options("/collect", headers={"origin": "https://shop.siteline.test"})
    assert preflight.status_code == 204
    assert client.options("/collect", headers={"origin": "https://evil.example"}).status_code == 403
    server_side = client.post("/collect", json=batch(page_view()))  # no Origin header
    assert server_side.status_code == 200
    # A browser must be able to read a refusal, or the tracker would retry it forever.
    refused = client.post(
        "/collect", json=batch(page_view()), headers={"origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    assert refused.headers["access-control-allow-origin"] == "https://evil.example"


def test_do_not_track_stores_nothing(server):
    client, landing = server
    event = page_view()
    response = client.post("/collect", json=batch(event), headers={"dnt": "1"})
    assert response.json() == {"accepted": 0, "dropped": 1, "reason": "do_not_track"}
    assert not [r for r in landed(landing) if r["event_id"] == event["event_id"]]


def test_pixel_and_tracker_script(server):
    client, landing = server
    pixel = client.get(
        "/collect", params={"site_id": "demo", "url": "https://shop.siteline.test/mail"}
    )
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    assert pixel.content.startswith(b"GIF89a")
    assert any(r["url"] == "https://shop.siteline.test/mail" for r in landed(landing))
    broken = client.get("/collect", params={"site_id": "nope"})
    assert broken.status_code == 400 and broken.content.startswith(b"GIF89a")
    script = client.get("/t.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert b"siteline" in script.content and b"/*" not in script.content[20:]


def test_landing_export_needs_the_token_and_loads_remotely_without_duplicates(server, warehouse):
    client, landing = server
    events = [page_view() for _ in range(5)]
    assert client.post("/collect", json=batch(*events)).status_code == 200
    assert client.post("/collect", json=batch(events[0])).json()["accepted"] == 1  # a retry
    time.sleep(2.5)  # segments close after 1 s
    assert client.get("/landing/events/manifest.json").status_code == 401
    auth = {"authorization": "Bearer test-landing-token"}
    manifest = client.get("/landing/events/manifest.json", headers=auth).json()
    assert manifest["segments"] and manifest["segments"] == [
        s.__dict__ for s in read_manifest(landing / "events")
    ]

    def load():
        pipeline = isolated_pipeline(
            "test_remote_landing", "test_remote_collector", warehouse, landing.parent
        )
        source = collector_events(
            landing_dir=f"{client.base_url}/landing", landing_token="test-landing-token"
        )
        pipeline.run(source)

    load()
    with connect(warehouse) as conn:
        rows, distinct = conn.execute(
            "select count(*), count(distinct event_id) from test_remote_collector.events"
        ).fetchone()
        ids = {r[0] for r in conn.execute("select event_id from test_remote_collector.events")}
        bad = conn.execute("select count(*) from test_remote_collector.bad_events").fetchone()[0]
    assert rows == distinct
    assert {e["event_id"] for e in events} <= ids
    closed = sum(s["events"] for s in manifest["segments"])
    assert rows == closed - 1  # every landed line once; the retried event collapsed
    assert bad >= 8  # the quarantined requests of the rejection tests
    load()  # loading again adds nothing
    with connect(warehouse) as conn:
        assert (
            conn.execute("select count(*) from test_remote_collector.events").fetchone()[0] == rows
        )


def test_rate_limit_answers_429_and_quarantines(tmp_path):
    # One request back every 10 s: a loaded machine's slow requests cannot refill the burst.
    with collector(tmp_path, SITELINE_RATE_LIMIT="0.1", SITELINE_RATE_BURST="10") as (url, _):
        statuses = [
            httpx.post(f"{url}/collect", json=batch(page_view()), timeout=5).status_code
            for _ in range(30)
        ]
        assert statuses[:10] == [200] * 10
        assert 429 in statuses[10:]
        limited = httpx.post(f"{url}/collect", json=batch(page_view()), timeout=5)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
    reasons = [r["reason"] for r in landed(tmp_path, "bad_events")]
    assert reasons.count("rate limit exceeded") == statuses.count(429) + (
        limited.status_code == 429
    )


def test_the_loader_forgets_expired_segments_and_keeps_their_events(tmp_path, warehouse):
    stream = tmp_path / "landing" / "events"

    def land(*ids: str) -> None:
        writer = SegmentWriter(stream, writer_id="t")
        for event_id in ids:
            writer.write({"event_id": event_id, "type": "page_view", "site_id": "demo",
                          "visitor_id": "v", "occurred_at": "2026-11-28T10:00:00Z",
                          "received_at": "2026-11-28T10:00:01Z"})  # fmt: skip
            writer.close_segment()

    pipeline = isolated_pipeline("test_expiry", "test_expiry_collector", warehouse, tmp_path)

    def load() -> list[str]:
        pipeline.run(collector_events(landing_dir=str(tmp_path / "landing")))
        state = pipeline.state["sources"]["collector_events"]["resources"]["events"]
        return state["loaded_segments"]

    land("e1", "e2")
    assert len(load()) == 2
    assert expire_segments(stream, datetime.now(UTC)) and not read_manifest(stream)
    land("e3")
    assert load() == [s.name for s in read_manifest(stream)]  # only the one still listed
    with connect(warehouse) as conn:
        ids = [r[0] for r in conn.execute("select event_id from test_expiry_collector.events")]
    assert sorted(ids) == ["e1", "e2", "e3"]
