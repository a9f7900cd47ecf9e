"""No input makes the collector answer 5xx or die; kill -9 loses no acknowledged event and no
quarantine record."""

import os
import re
import signal
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.collector_events import collector_events
from ingestion.core.landing import read_manifest
from ingestion.core.warehouse import connect
from tests.integration.servers import collector, free_port, isolated_pipeline, start_collector, stop

pytestmark = pytest.mark.integration

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.one_of(st.uuids().map(str), st.text(max_size=40), st.integers()),
        "type": st.sampled_from(
            ["page_view", "event", "transaction", "identify", "page_ping", "consent", "x", ""]
        ),
        "occurred_at": st.one_of(
            st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=30), st.integers()
        ),
        "visitor_id": st.one_of(st.text(max_size=200), st.integers(), st.none()),
        "url": st.one_of(st.text(max_size=100), st.none(), st.lists(st.integers())),
        "revenue": json_values,
        "order_id": json_values,
        "items": st.one_of(st.lists(json_values, max_size=3), json_values),
        "engaged_seconds": json_values,
        "granted": json_values,
        "category": json_values,
        "action": json_values,
        "user_id": json_values,
    },
)
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "site_id": st.sampled_from(["demo", "nope", ""]),
            "events": st.lists(event_like, max_size=5),
        },
        optional={"sent_at": st.one_of(st.text(max_size=30), st.integers())},
    ),
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    with (
        collector(tmp_path_factory.mktemp("fuzz"), SITELINE_RATE_LIMIT="0") as (url, proc),
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        yield client, proc


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=payloads)
def test_no_json_payload_yields_a_5xx(fuzz_server, payload):
    client, proc = fuzz_server
    response = client.post("/collect", json=payload)
    assert response.status_code < 500, response.text
    assert proc.poll() is None


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=2000),
    query=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5),
)
def test_no_bytes_or_query_yield_a_5xx(fuzz_server, body, query):
    client, proc = fuzz_server
    assert client.post("/collect", content=body).status_code < 500
    assert client.get("/collect", params=query).status_code < 500
    assert proc.poll() is None


def _traffic(
    port: int, kind: str, acknowledged: list[str], quarantined: list[str], stop: threading.Event
) -> None:
    """Send one kind of request until told to stop; note what each answer acknowledged:
    event ids (landed), and markers of payloads the answer said were quarantined."""
    url = f"http://127.0.0.1:{port}/collect"

    def event(**fields) -> dict:
        return {"event_id": str(uuid.uuid4()), "type": "page_view",
                "occurred_at": datetime.now(UTC).isoformat(), "visitor_id": f"v-{kind}",
                "url": "https://shop.siteline.test/", **fields}  # fmt: skip

    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            marker = f"q-{uuid.uuid4()}"
            try:
                if kind == "batch":  # all valid: one request line
                    events = [event() for _ in range(3)]
                    response = client.post(url, json={"site_id": "demo", "events": events})
                    if response.status_code == 200:
                        acknowledged.extend(e["event_id"] for e in events)
                elif kind == "mixed":  # one event line, one quarantine record
                    good, bad = event(), event(event_id=marker, type="nope")
                    response = client.post(url, json={"site_id": "demo", "events": [good, bad]})
                    if response.status_code == 200 and response.json()["rejected"] == 1:
                        acknowledged.append(good["event_id"])
                        quarantined.append(marker)
                elif kind == "garbage":  # not JSON: a quarantine record
                    body = b'{"site_id": "demo", "events": [' + marker.encode()
                    if client.post(url, content=body).status_code == 400:
                        quarantined.append(marker)
                else:  # the pixel: one event line
                    single = event()
                    params = {"site_id": "demo", "event_id": single["event_id"],
                              "url": single["url"], "visitor_id": single["visitor_id"]}  # fmt: skip
                    if client.get(url, params=params).status_code == 200:
                        acknowledged.append(single["event_id"])
            except httpx.HTTPError:
                continue  # not acknowledged: the client would retry


def test_kill_9_loses_no_acknowledged_event_and_no_quarantine_record(tmp_path, warehouse):
    """Both streams have open segments holding every kind of line (request lines, event
    lines, quarantine records) when the collector is killed; the next start seals them all
    (a quarantine record used to stop it), and the load has each exactly once."""
    landing = tmp_path / "landing"
    port = free_port()
    env = {
        **os.environ,
        "SITELINE_LANDING_DIR": str(landing),
        "SITELINE_SEGMENT_MAX_SECONDS": "0.5",
        "SITELINE_COLLECTOR_ID": "crashy",
        "SITELINE_RATE_LIMIT": "0",
    }
    proc = start_collector(port, env)
    acknowledged: list[str] = []
    quarantined: list[str] = []
    stop_sending = threading.Event()
    kinds = ["batch", "batch", "mixed", "mixed", "garbage", "pixel"]
    threads = [
        threading.Thread(target=_traffic, args=(port, kind, acknowledged, quarantined,
                                                stop_sending))
        for kind in kinds
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    deadline = datetime.now(UTC).timestamp() + 30
    while (len(acknowledged) < 3000 or len(quarantined) < 500) and (
        datetime.now(UTC).timestamp() < deadline
    ):
        threading.Event().wait(0.05)
    helpers = fsync_helpers(proc.pid)
    assert len(helpers) == 2  # one per landing stream (events, bad_events)
    landing_health = httpx.get(f"http://127.0.0.1:{port}/health").json()["landing"]
    assert landing_health["events"]["syncs_by"] == "helper"
    assert landing_health["events"]["commits"] > 0 and landing_health["events"]["events"] >= 1000
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: requests in flight, segments open
    proc.wait()
    for pid in helpers:  # they see the collector's end of their socket close, and exit
        gone = datetime.now(UTC).timestamp() + 5
        while Path(f"/proc/{pid}").exists() and datetime.now(UTC).timestamp() < gone:
            threading.Event().wait(0.05)
        assert not Path(f"/proc/{pid}").exists() or " Z" in _state(pid), f"helper {pid} left"
    stop_sending.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) >= 1000 and len(quarantined) >= 100
    for stream in ("events", "bad_events"):
        assert list((landing / stream / "segments").glob("*.open")), (
            f"the crash should leave an open {stream} segment to recover"
        )

    proc = start_collector(port, env)  # recovery seals what the crash left open
    stop(proc)
    for stream in ("events", "bad_events"):
        files = sorted(p.name for p in (landing / stream / "segments").iterdir())
        assert files == sorted(s.name for s in read_manifest(landing / stream))  # all listed

    pipeline = isolated_pipeline("test_crash", "test_crash_collector", warehouse, tmp_path)
    pipeline.run(collector_events(landing_dir=str(landing)))
    with connect(warehouse) as conn:
        loaded = [r[0] for r in conn.execute("select event_id from test_crash_collector.events")]
        payloads = [
            r[0] for r in conn.execute("select payload from test_crash_collector.bad_events")
        ]
    assert len(loaded) == len(set(loaded))
    missing = set(acknowledged) - set(loaded)
    assert not missing, f"{len(missing)} acknowledged events lost"
    rows_per_marker = Counter(m for p in payloads for m in re.findall(r"q-[0-9a-f-]{36}", p))
    assert max(rows_per_marker.values()) == 1  # none twice (in flight at the kill: 0 or 1)
    lost = [marker for marker in quarantined if rows_per_marker[marker] != 1]
    assert not lost, f"{len(lost)} acknowledged quarantine records lost"


def fsync_helpers(parent: int) -> list[int]:
    """Process ids of the fsync helpers a collector process started."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"fsyncd.py" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _state(pid: int) -> str:
    try:
        return " " + Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def test_nul_characters_are_landed_and_loaded(tmp_path, warehouse):
    """PostgreSQL text and jsonb cannot hold U+0000: an event carrying one (in a typed
    column, an attribute or a key) must still load, not stop every later load."""
    landing = tmp_path / "landing"
    event = {
        "event_id": str(uuid.uuid4()),
        "type": "page_view",
        "occurred_at": datetime.now(UTC).isoformat(),
        "visitor_id": "v\u0000nul",
        "url": "https://shop.siteline.test/a\u0000b",
        "title": "A\u0000B",
        "properties": {"k\u0000ey": "va\u0000lue", "list": ["\u0000"]},
    }
    with (
        collector(landing, SITELINE_RATE_LIMIT="0", SITELINE_SEGMENT_MAX_SECONDS="0.2") as (
            url,
            _proc,
        ),
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        response = client.post("/collect", json={"site_id": "demo", "events": [event]})
        assert response.status_code == 200, response.text
        garbage = client.post("/collect", content=b'{"site_id": "demo", "events": [\x00]}')
        assert garbage.status_code == 400  # quarantined with its NUL byte
        threading.Event().wait(1.0)  # the segments close
    pipeline = isolated_pipeline("test_nul", "test_nul_collector", warehouse, tmp_path)
    pipeline.run(collector_events(landing_dir=str(landing)))
    with connect(warehouse) as conn:
        row = conn.execute(
            "select visitor_id, url, title, attributes::text from test_nul_collector.events"
        ).fetchone()
    assert row[0] == "v\ufffdnul" and row[2] == "A\ufffdB"
    assert row[1] == "https://shop.siteline.test/a\ufffdb"
    assert "k\ufffdey" in row[3] and "va\ufffdlue" in row[3]
    with connect(warehouse) as conn:
        (payload,) = conn.execute("select payload from test_nul_collector.bad_events").fetchone()
    assert payload == '{"site_id": "demo", "events": [\ufffd]}'
