"""The collector's assembly: the fast path's route table (with the engine API's) against the
FastAPI routes and the engine API's dispatch, its settings view, CORS headers (built in one
place) and the landing export's token check."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson
import pytest

from ingestion.core.errors import SitelineError
from ingestion.core.sites import Site, SitesConfig
from realtime.collector.app import create_app
from realtime.collector.fastpath import (
    COLLECT,
    ENGINE_GET,
    ENGINE_PREFLIGHT,
    NOOP,
    ROUTES,
    FastPath,
)
from realtime.collector.routes.landing import denial
from realtime.collector.settings import CollectorSettings, default_writer_id
from realtime.engine.api import ENGINE_ROUTES, PREFLIGHT, STREAM, EngineRoute, _reads
from realtime.engine.bus import InProcessBus
from realtime.replies import cors_headers

ROOT = Path(__file__).resolve().parents[2]
SITES = SitesConfig(sites=[Site(id="shop", domains=["shop.example"], api_key_env="SHOP_KEY")])
KEY = "k" * 32


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in ("SITELINE_COLLECTOR_ID", "SITELINE_ENGINE_SNAPSHOT", "SITELINE_LANDING_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHOP_KEY", KEY)


def app(tmp_path, **given) -> FastPath:
    settings = CollectorSettings.from_environment(
        landing_dir=tmp_path / "landing", engine_warehouse_url="none", **given
    )
    return create_app(SITES, settings, InProcessBus())


def sample(path: str) -> str:
    """A request path that an OpenAPI path template matches."""
    return re.sub(r"\{[^}]+\}", "x", path)


@pytest.mark.parametrize("noop", [False, True])
def test_the_fast_path_answers_exactly_the_fastapi_routes_of_its_table(tmp_path, noop):
    fast = app(tmp_path, noop_endpoint=noop)
    # The routes OpenAPI documents that the fast path answers before FastAPI is reached.
    shadowed = {
        (method.upper(), path): operation["summary"]
        for path, operations in fast.app.openapi()["paths"].items()
        for method, operation in operations.items()
        if fast.handler(method.upper(), sample(path)) is not None
    }
    documented = {(r.method, r.path): r.summary for r in ROUTES if r.summary is not None}
    assert shadowed == documented
    assert set(documented) == {
        ("POST", "/collect"),
        ("GET", "/v1/sessions/{session_id}"),
        ("GET", "/v1/visitors/{visitor_id}/state"),
        ("GET", "/v1/active"),
        ("GET", "/v1/metrics/windows"),
    }
    for row in ROUTES:
        expected = None if row.handler == NOOP and not noop else row.handler
        assert fast.handler(row.method, sample(row.path)) == expected


def test_what_the_fast_path_leaves_to_fastapi(tmp_path):
    fast = app(tmp_path)
    assert fast.handler("POST", "/collect") == COLLECT
    assert fast.handler("GET", "/collect") is None  # the pixel
    assert fast.handler("OPTIONS", "/collect") is None
    assert fast.handler("GET", "/v1/no-such-thing") == ENGINE_GET  # the engine's own 404
    assert fast.handler("GET", "/v1/stream") is None
    assert fast.handler("OPTIONS", "/v1/stream") == ENGINE_PREFLIGHT
    assert fast.handler("POST", "/v1/active") is None
    assert fast.handler("POST", "/noop") is None
    assert fast.handler("GET", "/health") is None
    without_engine = app(tmp_path, engine=False)
    assert without_engine.handler("GET", "/v1/active") is None
    assert without_engine.handler("POST", "/collect") == COLLECT


def asgi_get(fast: FastPath, path: str) -> tuple[int, dict]:
    """GET ``path`` with the site's key from the ASGI application ``fast``: status, JSON body."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "path": path, "query_string": b"",
        "headers": [(b"authorization", f"Bearer {KEY}".encode())], "client": ("127.0.0.1", 1),
    }  # fmt: skip
    asyncio.run(fast(scope, receive, send))
    return sent[0]["status"], orjson.loads(sent[1]["body"])


def test_the_engine_routes_are_the_ones_answered_and_documented(tmp_path):
    fast = app(tmp_path)
    no_such = "no such resource"
    reads = [r for r in ENGINE_ROUTES if r.method == "GET" and r.handler != STREAM]
    assert [r.path for r in reads] == [
        "/v1/sessions/{session_id}", "/v1/visitors/{visitor_id}/state", "/v1/active",
        "/v1/metrics/windows",
    ]  # fmt: skip
    headers = {"authorization": f"Bearer {KEY}"}
    for row in reads:
        status, body = asgi_get(fast, sample(row.path))  # through the fast path
        assert no_such not in body.get("error", ""), row
        direct = asyncio.run(fast.api.get(sample(row.path), "", headers))
        assert no_such not in orjson.loads(direct.body).get("error", ""), row
        assert direct.status == status
    assert asgi_get(fast, "/v1/sessions/x") == (
        404, {"error": "no active session 'x' on site 'shop'", "status": 404},
    )  # fmt: skip
    assert asgi_get(fast, "/v1/active")[0] == 200
    # What no row matches: the engine API's own 404.
    for path in ("/v1/sessions/", "/v1/visitors/x/other", "/v1/visitors//state", "/v1/active/",
                 "/v1/", "/v1/stream/x", "/v1/nothing", "/v1/metrics", "/v1/metrics/other"):  # fmt: skip
        message = f"no such resource '{path}'; see /docs"
        assert asgi_get(fast, path) == (404, {"error": message, "status": 404}), path
    # OpenAPI documents exactly the rows with a summary, with their paths and summaries.
    documented = {
        (method.upper(), path): operation["summary"]
        for path, operations in fast.app.openapi()["paths"].items()
        if path.startswith("/v1/")
        for method, operation in operations.items()
    }
    assert documented == {(r.method, r.path): r.summary for r in ENGINE_ROUTES if r.summary}
    assert {r.handler for r in ENGINE_ROUTES if r.summary is None} == {PREFLIGHT}


def test_the_engine_api_matches_a_read_by_its_first_segment_count_and_suffix():
    table = (
        EngineRoute("GET", "/v1/a/b", "active", None),
        EngineRoute("GET", "/v1/c/{id}/d/e", "session", None),
    )
    reads = _reads(table)
    assert {name: (r.count, r.param, r.suffix) for name, r in reads.items()} == {
        "a": (4, 0, "/b"), "c": (6, 3, "/d/e"),
    }  # fmt: skip
    for path in ("/v1/{x}", "/v1/a/{x}/{y}", "/v1/a/b/{x}", "/v2/a"):
        with pytest.raises(ValueError, match="a read is /v1/<name>"):
            _reads((EngineRoute("GET", path, "active", None),))
    with pytest.raises(ValueError, match="another read starts /v1/a"):
        _reads((*table, EngineRoute("GET", "/v1/a", "active", None)))


# Where "Access-Control-" may appear outside realtime/replies.py, and why: reading a header,
# never building one.
CORS_READS = {
    "realtime/collector/service.py": "collect() checks whether an answer carries CORS headers",
}


def test_cors_headers_are_built_only_in_replies():
    found = {}
    for path in sorted((ROOT / "realtime").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        lines = [
            line.strip() for line in path.read_text().splitlines() if "Access-Control-" in line
        ]
        if lines and name != "realtime/replies.py":
            found[name] = lines
    assert set(found) == set(CORS_READS)
    for name, lines in found.items():
        for line in lines:  # a membership test of a header name only
            assert re.search(r'"Access-Control-[\w-]+" (not )?in ', line), (name, line)


def test_collector_settings_defaults(tmp_path):
    settings = CollectorSettings.from_environment(landing_dir=tmp_path / "landing")
    assert settings.writer_id == default_writer_id()
    assert re.fullmatch(r"collector_\w+", settings.writer_id)
    assert (settings.segment_max_seconds, settings.segment_max_mb) == (60, 64)
    assert (settings.retention_days, settings.rate_per_ip, settings.rate_burst) == (30, 50, 200)
    assert (settings.durable, settings.engine) == (True, True)
    assert (settings.noop_endpoint, settings.demo_page, settings.landing_token) == (
        False, False, None,
    )  # fmt: skip
    assert settings.engine_snapshot == tmp_path / "realtime" / f"sessions-{settings.writer_id}.json"
    assert settings.engine_snapshot_seconds == 60
    assert settings.engine_warehouse_url is None


def test_collector_settings_from_the_environment(tmp_path, monkeypatch):
    for name, value in {
        "SITELINE_LANDING_DIR": str(tmp_path / "land"),
        "SITELINE_COLLECTOR_ID": "edge1",
        "SITELINE_SEGMENT_MAX_SECONDS": "0.5",
        "SITELINE_RATE_LIMIT": "0",
        "SITELINE_DURABLE": "0",
        "SITELINE_ENGINE": "0",
        "SITELINE_COLLECTOR_NOOP": "1",
        "SITELINE_LANDING_TOKEN": "",  # empty counts as unset
        "SITELINE_ENGINE_WAREHOUSE_URL": "none",
    }.items():
        monkeypatch.setenv(name, value)
    settings = CollectorSettings.from_environment()
    assert settings.landing_dir == tmp_path / "land"
    assert settings.writer_id == "edge1"
    assert settings.segment_max_seconds == 0.5
    assert settings.rate_per_ip == 0  # the limit is off
    assert (settings.durable, settings.engine, settings.noop_endpoint) == (False, False, True)
    assert settings.landing_token is None
    assert settings.engine_snapshot == tmp_path / "realtime" / "sessions-edge1.json"
    assert settings.engine_warehouse_url == "none"


def test_a_bad_collector_setting_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("SITELINE_SEGMENT_MAX_MB", "lots")
    with pytest.raises(SitelineError, match=r"SITELINE_SEGMENT_MAX_MB='lots'"):
        CollectorSettings.from_environment(landing_dir=tmp_path)


def test_cors_headers():
    assert cors_headers(None) == {}
    assert cors_headers("") == {}
    assert cors_headers("https://shop.example") == {
        "Access-Control-Allow-Origin": "https://shop.example",
        "Vary": "Origin",
    }
    assert cors_headers("https://shop.example", "POST, GET, OPTIONS") == {
        "Access-Control-Allow-Origin": "https://shop.example",
        "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "86400",
        "Vary": "Origin",
    }
    engine = cors_headers("https://shop.example", "GET, OPTIONS", "Authorization, Content-Type")
    assert engine["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert engine["Access-Control-Allow-Methods"] == "GET, OPTIONS"


def test_the_landing_export_opens_only_with_its_token():
    off = denial(None, "Bearer anything")
    assert (off.status, off.body) == (
        404, b'{"error":"landing export is disabled (set SITELINE_LANDING_TOKEN)","status":404}',
    )  # fmt: skip
    for authorization in (None, "", "Bearer wrong", "secret-but-longer"):
        refused = denial("secret", authorization)
        assert refused.status == 401
        assert refused.body == b'{"error":"missing or wrong bearer token","status":401}'
    assert denial("secret", "Bearer secret") is None
    assert denial("secret", "secret") is None  # the scheme is optional, as before
