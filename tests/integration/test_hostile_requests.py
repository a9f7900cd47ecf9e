"""Hostile requests get a 4xx and a quarantine record, and stop nothing: not the engine, not
a load of the landing, not a restart. A line no reader can take (landed by an older collector,
or copied in from elsewhere) is quarantined by the loader and skipped by the engine's replay."""

import http.client
import os
import socket
import time
import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from ingestion.collector_events import collector_events
from ingestion.core.landing import SEGMENTS, SegmentWriter, request_line
from ingestion.core.warehouse import connect
from tests.integration.servers import free_port, isolated_pipeline, start_collector, stop

pytestmark = pytest.mark.integration


def _now() -> str:
    return datetime.now(UTC).isoformat()


def page_view(**fields) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "page_view",
        "occurred_at": _now(),
        "visitor_id": "hostile-test",
        "url": "https://shop.siteline.test/",
        **fields,
    }


def transaction(**fields) -> dict:
    return page_view(**{"type": "transaction", "order_id": "o-1", "revenue": 10, **fields})


def body_with(tail: bytes) -> bytes:
    """A valid one-event body with ``tail`` spliced in as the event's last field(s)."""
    body = orjson.dumps({"site_id": "demo", "events": [page_view()]})
    return body[:-3] + b"," + tail + b"}]}"


def nested(depth: int) -> bytes:
    return b'"deep":' + b"[" * depth + b"]" * depth


HOSTILE_BODIES = [
    (body_with(b'"future_field": 1e400'), "body is not valid JSON: number is infinity"),
    (body_with(b'"future_field": ' + b"7" * 320), "body is not valid JSON: number is infinity"),
    (body_with(b'"future_field": "\xc3\x28"'), "body is not valid JSON: str is not valid UTF-8"),
    (body_with(b'"title": "caf\xe9"'), "body is not valid JSON: str is not valid UTF-8"),
    (body_with(nested(100)), "body: objects and arrays nested deeper than 64 levels"),
    (body_with(nested(100_000)), "body is not valid JSON: depth limit exceeded"),
    (
        orjson.dumps(
            {
                "site_id": "demo",
                "sent_at": "9999-12-31T23:59:59Z",
                "events": [page_view(occurred_at="0001-01-01T00:00:00Z")],
            }
        ),
        "sent_at: '9999-12-31T23:59:59Z' is more than a year in the future",
    ),
    (
        orjson.dumps({"site_id": "demo", "events": [page_view(occurred_at="0001-01-01T00:00Z")]}),
        "events[0].occurred_at: '0001-01-01T00:00Z' is before 2000-01-01",
    ),
    # Values the warehouse's numeric(14, 2) and integer columns cannot hold, and a time the
    # loader cannot read (seconds in the offset).
    (
        orjson.dumps({"site_id": "demo", "events": [transaction(revenue=1e13)]}),
        "events[0].revenue: must be at most 999,999,999,999.99",
    ),
    (
        orjson.dumps(
            {"site_id": "demo", "events": [transaction(items=[{"sku": "a", "price": 1e300}])]}
        ),
        "events[0].items[0].price: must be at most 999,999,999,999.99",
    ),
    (
        orjson.dumps(
            {"site_id": "demo", "events": [transaction(items=[{"sku": "a", "quantity": 2**31}])]}
        ),
        "events[0].items[0].quantity: must be a whole number from 1 to 1,000,000",
    ),
    (
        orjson.dumps(
            {
                "site_id": "demo",
                "events": [transaction(items=[{"sku": "a", "price": 1e9, "quantity": 10_000}])],
            }
        ),
        "events[0].items[0]: price x quantity must be at most 999,999,999,999.99",
    ),
    (
        orjson.dumps(
            {
                "site_id": "demo",
                "events": [
                    page_view(type="event", category="ecommerce", action="add_to_cart", value=1e308)
                ],
            }
        ),
        "events[0].value: must be at most 999,999,999,999.99",
    ),
    (
        orjson.dumps({"site_id": "demo", "events": [page_view(performance={"dns_ms": "x"})]}),
        "events[0].performance.dns_ms: must be a whole number from 0 to 3,600,000",
    ),
    (
        orjson.dumps({"site_id": "demo", "events": [page_view(performance={"load_ms": 1.5})]}),
        "events[0].performance.load_ms: must be a whole number from 0 to 3,600,000",
    ),
    (
        orjson.dumps(
            {"site_id": "demo", "events": [page_view(occurred_at="2026-01-01 00:00:00+05:30:15")]}
        ),
        "events[0].occurred_at: '2026-01-01 00:00:00+05:30:15' is not an RFC 3339 timestamp",
    ),
]


def raw_request(port: int, head: bytes, stop_after: int | None = None) -> tuple[bytes, int]:
    """Send ``head`` (a request head, perhaps never finished) over a plain socket; return what
    the server answered and how many bytes it took before it closed the connection."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            for start in range(0, len(head), 65536):
                sent += sock.send(head[start : start + 65536])
                if stop_after is not None and sent >= stop_after:
                    break
        except OSError:  # the server closed the connection: it will not read the rest
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer, sent


def bad_events(landing) -> list[dict]:
    found = []
    for path in sorted((landing / "bad_events" / SEGMENTS).glob("*.jsonl*")):
        found += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return found


def engine_events(client: httpx.Client) -> int:
    return client.get("/health").json()["engine"]["events"]


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_hostile_requests_are_refused_quarantined_and_stop_nothing(tmp_path, warehouse):
    landing = tmp_path / "landing"
    port = free_port()
    env = {
        **os.environ,
        "SITELINE_LANDING_DIR": str(landing),
        "SITELINE_SEGMENT_MAX_SECONDS": "0.3",
        "SITELINE_COLLECTOR_ID": "hostile",
        "SITELINE_RATE_LIMIT": "0",
        "SITELINE_ENGINE_WAREHOUSE_URL": "none",
    }
    proc = start_collector(port, env)
    good: list[str] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for body, reason in HOSTILE_BODIES:
                response = client.post("/collect", content=body)
                assert response.status_code == 400, (reason, response.text)
                assert reason in response.json()["error"]

            # A head over 32 KB: refused after reading 32 KB of it, not 50 MB.
            huge = b"POST /collect HTTP/1.1\r\nhost: x\r\nuser-agent: " + b"A" * 50_000_000
            answer, sent = raw_request(port, huge)
            assert sent < 10_000_000
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            # A whole head over 32 KB in one read (one send of head and body) is refused
            # too, and the request never reaches the collector (its event is not landed).
            refused = orjson.dumps({"site_id": "demo", "events": [page_view()]})
            whole = (
                b"POST /collect HTTP/1.1\r\nhost: x\r\nuser-agent: " + b"A" * 40_000 + b"\r\n"
                b"content-type: text/plain\r\ncontent-length: %d\r\n\r\n%s"
            ) % (len(refused), refused)
            answer, sent = raw_request(port, whole)
            assert sent == len(whole)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            assert b"request head larger than 32 KB (at least 40,0" in answer
            unfinished = b"POST /collect HTTP/1.1\r\nhost: x\r\nx-padding: " + b"p" * 40_000
            answer, _ = raw_request(port, unfinished, stop_after=len(unfinished))
            assert answer.startswith(b"HTTP/1.1 431 ")
            assert b"request head larger than 32 KB" in answer
            for _ in range(5):  # the server logs malformed HTTP once a minute, not each time
                answer, _ = raw_request(port, b"NOT HTTP AT ALL\r\n\r\n")
                assert answer.startswith(b"HTTP/1.1 400 ")

            # A long user agent within the head limit is cut before it is parsed and landed.
            event = page_view()
            response = client.post(
                "/collect",
                json={"site_id": "demo", "events": [event]},
                headers={"user-agent": "Mozilla/5.0 " + "x" * 20_000},
            )
            assert response.status_code == 200, response.text
            good.append(event["event_id"])

            # The engine goes on applying valid events sent afterwards: 20 requests of 50
            # events on one connection, each written in one send (http.client does that with
            # a bytes body), so the server reads a whole 60 KB request at once: body bytes
            # that arrive with a head are not head bytes.
            applied = engine_events(client)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for _ in range(20):
                more = [page_view(title="t" * 1000) for _ in range(50)]
                body = orjson.dumps({"site_id": "demo", "events": more})
                connection.request("POST", "/collect", body, {"content-type": "text/plain"})
                response = connection.getresponse()
                assert orjson.loads(response.read()) == {"accepted": 50, "rejected": 0}
                good += [e["event_id"] for e in more]
            connection.close()
            wait_for(lambda: engine_events(client) >= applied + 1000)
            assert engine_events(client) >= applied + 1000
            assert client.get("/health").json()["status"] == "ok"
            wait_for(lambda: len(bad_events(landing)) >= len(HOSTILE_BODIES) + 3)
    finally:
        stop(proc)
    assert proc.stdout.read().count("Invalid HTTP request received.") == 1

    reasons = [record["reason"] for record in bad_events(landing)]
    for _, reason in HOSTILE_BODIES:
        assert any(reason in r for r in reasons), reason
    refused_heads = [r for r in bad_events(landing) if r["status"] == 431]
    assert len(refused_heads) == 3
    assert {r["path"] for r in refused_heads} == {"/collect"}
    assert all("request head larger than 32 KB" in r["reason"] for r in refused_heads)

    # A segment from elsewhere (an older collector landed such lines): one good line, one
    # no reader can take. The engine's replay skips it; the loader quarantines it.
    foreign = SegmentWriter(landing / "events", writer_id="foreign")
    enrichment = {"site_id": "demo", "sent_at": None, "received_at": _now(), "user_agent": "x"}
    readable = page_view(**enrichment)
    unreadable = request_line(orjson.dumps(enrichment), body_with(b'"future_field": 1e400'))
    foreign.write_lines([orjson.dumps(readable) + b"\n", unreadable], enrichment["received_at"])
    foreign.close_segment()
    good.append(readable["event_id"])
    foreign_bad = SegmentWriter(landing / "bad_events", writer_id="foreign")
    foreign_bad.write_lines([b'{"bad_event_id": 5, "reason": "not a string id"}\n'], _now())
    foreign_bad.close_segment()

    proc = start_collector(port, env)  # the engine's restore replays the foreign segment
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["engine"]["replay_skipped"] == 1
        assert health["engine"]["replayed"] >= 1
    finally:
        stop(proc)
    log = proc.stdout.read()
    assert "replay: skipped" in log and "line 2: not valid JSON: number is infinity" in log

    pipeline = isolated_pipeline("test_hostile", "test_hostile_collector", warehouse, tmp_path)
    pipeline.run(collector_events(landing_dir=str(landing)))
    with connect(warehouse) as conn:
        loaded = {
            row[0]: row[1]
            for row in conn.execute(
                "select event_id, user_agent from test_hostile_collector.events"
            )
        }
        quarantined = conn.execute(
            "select reason, status, segment, segment_line, payload "
            "from test_hostile_collector.bad_events"
        ).fetchall()
    assert set(loaded) == set(good)
    assert loaded[good[0]] == ("Mozilla/5.0 " + "x" * 20_000)[:512]
    for _, reason in HOSTILE_BODIES:
        assert any(reason in row[0] for row in quarantined), reason
    unreadable_rows = [row for row in quarantined if "landing (events)" in row[0]]
    assert len(unreadable_rows) == 1
    reason, status, segment, line, payload = unreadable_rows[0]
    assert "not valid JSON: number is infinity" in reason and status is None
    assert "-foreign-" in segment and line == 2 and '"future_field": 1e400' in payload
    unreadable_bad = [row for row in quarantined if "(bad_events)" in row[0]]
    assert len(unreadable_bad) == 1
    assert "not a quarantine record (bad_event_id)" in unreadable_bad[0][0]
    assert '"bad_event_id": 5' in unreadable_bad[0][4] and unreadable_bad[0][3] == 1
    assert len(quarantined) == len(HOSTILE_BODIES) + 3 + 2
