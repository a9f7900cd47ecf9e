"""The FastAPI route of ``POST /collect`` (documenting the fast path in OpenAPI) answers as the
fast path does: both read the body and take the request the same way."""

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from ingestion.core.landing import landed_records
from ingestion.core.sites import Site, SitesConfig
from realtime.collector.app import create_app
from realtime.collector.settings import CollectorSettings
from realtime.engine.bus import InProcessBus

pytestmark = pytest.mark.integration
SHOP = "https://shop.example"


def event(**fields) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "page_view",
        "occurred_at": datetime.now(UTC).isoformat(),
        "visitor_id": "v1",
        "url": f"{SHOP}/p/1",
        **fields,
    }


def test_the_openapi_route_answers_as_the_fast_path(tmp_path, monkeypatch):
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "home"))
    settings = CollectorSettings.from_environment(
        landing_dir=tmp_path / "landing", engine_warehouse_url="none", rate_per_ip=0.0
    )
    fast = create_app(SitesConfig(sites=[Site(id="shop", domains=["shop.example"])]), settings,
                      InProcessBus())  # fmt: skip
    sent_at = datetime.now(UTC).isoformat()
    requests = [
        ({"json": {"site_id": "shop", "sent_at": sent_at, "events": [event()]}}, SHOP),
        ({"json": {"site_id": "shop", "events": [event(), event(type="zz")]}}, SHOP),
        ({"json": {"site_id": "shop", "events": [event()]}}, "https://evil.example"),
        ({"content": b"x" * (1024 * 1024 + 1)}, SHOP),
        ({"content": b"{not json"}, None),
    ]

    async def both() -> list[tuple[httpx.Response, httpx.Response]]:
        async with (
            fast.app.router.lifespan_context(fast.app),
            httpx.AsyncClient(transport=httpx.ASGITransport(fast), base_url="http://c") as a,
            httpx.AsyncClient(transport=httpx.ASGITransport(fast.app), base_url="http://c") as b,
        ):
            answers = []
            for kwargs, origin in requests:
                headers = {"origin": origin} if origin else {}
                answers.append(
                    (
                        await a.post("/collect", headers=headers, **kwargs),
                        await b.post("/collect", headers=headers, **kwargs),
                    )
                )
            return answers

    answers = asyncio.run(both())
    assert [a.status_code for a, _ in answers] == [200, 200, 403, 413, 400]
    for fast_answer, route_answer in answers:
        assert route_answer.status_code == fast_answer.status_code
        assert route_answer.content == fast_answer.content
        assert dict(route_answer.headers) == dict(fast_answer.headers)
    assert answers[0][0].json() == {"accepted": 1, "rejected": 0}
    assert answers[0][0].headers["access-control-allow-origin"] == SHOP
    landed = [
        record
        for path in sorted((tmp_path / "landing" / "events").rglob("*.jsonl"))
        for line in path.read_bytes().splitlines()
        for record in landed_records(line)
    ]
    assert len(landed) == 4  # twice (fast path, route) one event of each accepted request
