"""The collection server: ``POST /collect``, the ``GET /collect`` pixel, ``/t.js``, ``/health``
and the landing manifest for remote loaders.

Every request ends in a 2xx only after its accepted events are on disk (group commit, see
``durable.py``). Every rejected payload is quarantined in the ``bad_events`` stream with its
reason. A client's garbage gets a 4xx naming what was wrong, never a 5xx.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ingestion.site_config import Site, SitesConfig, load_sites
from realtime.collector.durable import DurableStream
from realtime.collector.enrich import bot_reason, client_ip, country_of
from realtime.collector.landing import SEGMENTS, read_manifest
from realtime.collector.ratelimit import RateLimiter
from realtime.collector.schema import SCHEMA_VERSION, Invalid, validate_envelope, validate_event
from realtime.engine.bus import EventBus, InProcessBus

log = logging.getLogger("siteline.collector")

MAX_BODY = 1024 * 1024
MAX_EVENT = 64 * 1024
QUARANTINE_PAYLOAD = 64 * 1024  # bytes of a rejected body kept for diagnosis
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
STATIC = Path(__file__).parent / "static"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass
class CollectorSettings:
    """Collector settings, from the environment unless given."""

    landing_dir: Path
    writer_id: str = field(
        default_factory=lambda: (
            os.environ.get("SITELINE_COLLECTOR_ID")
            or f"collector_{socket.gethostname().replace('-', '_')}"
        )
    )
    segment_max_seconds: float = field(
        default_factory=lambda: _env_float("SITELINE_SEGMENT_MAX_SECONDS", 60)
    )
    segment_max_mb: float = field(default_factory=lambda: _env_float("SITELINE_SEGMENT_MAX_MB", 64))
    rate_per_ip: float = field(default_factory=lambda: _env_float("SITELINE_RATE_LIMIT", 50))
    rate_burst: float = field(default_factory=lambda: _env_float("SITELINE_RATE_BURST", 200))
    durable: bool = field(default_factory=lambda: os.environ.get("SITELINE_DURABLE", "1") != "0")
    landing_token: str | None = field(
        default_factory=lambda: os.environ.get("SITELINE_LANDING_TOKEN") or None
    )
    noop_endpoint: bool = field(
        default_factory=lambda: os.environ.get("SITELINE_COLLECTOR_NOOP") == "1"
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


class Collector:
    """State shared by the routes: sites, landing streams, rate limiter, event bus."""

    def __init__(self, sites: SitesConfig, settings: CollectorSettings, bus: EventBus) -> None:
        self.sites = {site.id: site for site in sites.sites}
        self.origins = {origin for site in sites.sites for origin in site.origins}
        self.settings = settings
        self.bus = bus
        self.limiter = RateLimiter(settings.rate_per_ip, settings.rate_burst)
        self.events: DurableStream | None = None
        self.bad: DurableStream | None = None
        self.tracker_js = _minified_tracker()
        self.counters = {"accepted": 0, "rejected": 0, "requests": 0, "dropped_dnt": 0}

    async def start(self) -> None:
        s = self.settings
        common = {
            "max_bytes": int(s.segment_max_mb * 1024 * 1024),
            "max_seconds": s.segment_max_seconds,
            "durable": s.durable,
        }
        self.events = DurableStream(s.landing_dir / "events", s.writer_id, **common)
        self.bad = DurableStream(s.landing_dir / "bad_events", s.writer_id, **common)
        for stream in (self.events, self.bad):
            stream.start()
            if stream.recovered:
                log.warning(
                    "recovered %d segment(s) left open in %s", len(stream.recovered), stream.dir
                )

    async def stop(self) -> None:
        for stream in (self.events, self.bad):
            if stream is not None:
                await stream.close()

    async def quarantine(
        self,
        request: Request,
        status: int,
        reason: str,
        payload: bytes | str | None,
        site: Site | None = None,
        site_id: str | None = None,
    ) -> None:
        """Keep a rejected payload with its reason (→ raw_collector.bad_events)."""
        self.counters["rejected"] += 1
        if isinstance(payload, bytes):
            payload = payload[:QUARANTINE_PAYLOAD].decode("utf-8", errors="replace")
        peer = request.client.host if request.client else None
        policy = site.ip_policy if site else _DEFAULT_SITE_POLICY
        received = _now()
        record = {
            "bad_event_id": str(uuid.uuid4()),
            "received_at": _iso(received),
            "site_id": site.id if site else site_id,
            "status": status,
            "reason": reason,
            "payload": payload,
            "ip": policy.apply(peer),
            "user_agent": request.headers.get("user-agent"),
            "origin": request.headers.get("origin"),
            "path": request.url.path,
        }
        await self.bad.append([orjson.dumps(record) + b"\n"], record["received_at"])

    async def accept(
        self, request: Request, body: bytes, payload: object, pixel: bool = False
    ) -> Response:
        """Validate a decoded payload; land what is valid; quarantine what is not."""
        received = _now()
        try:
            site_id, sent_at, events = validate_envelope(payload)
        except Invalid as exc:
            await self.quarantine(request, 400, str(exc), body)
            return _error(400, str(exc))
        site = self.sites.get(site_id)
        if site is None:
            message = f"site_id: unknown site '{site_id[:64]}'"
            await self.quarantine(request, 400, message, body, site_id=site_id[:64])
            return _error(400, message)
        origin = request.headers.get("origin")
        if origin and origin not in site.origins and not pixel:
            message = f"origin '{origin[:200]}' is not allowed for site '{site.id}'"
            await self.quarantine(request, 403, message, body, site=site)
            return _error(403, message)
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}
        if site.respect_do_not_track and (
            request.headers.get("dnt") == "1" or request.headers.get("sec-gpc") == "1"
        ):
            # The visitor asked not to be tracked: store nothing, and say so.
            self.counters["dropped_dnt"] += len(events)
            return JSONResponse(
                {"accepted": 0, "dropped": len(events), "reason": "do_not_track"}, headers=cors
            )
        if len(body) > MAX_EVENT:
            for index, event in enumerate(events):
                if len(orjson.dumps(event)) > MAX_EVENT:
                    message = f"events[{index}]: larger than {MAX_EVENT // 1024} KB"
                    await self.quarantine(request, 413, message, body, site=site)
                    return _error(413, message, cors)
        headers = request.headers
        peer = request.client.host if request.client else None
        ip = client_ip(peer, headers.get("x-forwarded-for"), site)
        user_agent = headers.get("user-agent") or ""
        enrichment = {
            "site_id": site.id,
            "sent_at": sent_at,
            "received_at": _iso(received),
            "ip": site.ip_policy.apply(ip),
            "user_agent": user_agent,
            "country": country_of(ip),
            "bot_reason": bot_reason(user_agent),
            "schema_version": SCHEMA_VERSION,
        }
        enrichment["is_bot"] = enrichment["bot_reason"] is not None
        accepted: list[dict] = []
        lines: list[bytes] = []
        errors: list[str] = []
        for index, event in enumerate(events):
            try:
                validate_event(event, index, received)
            except Invalid as exc:
                errors.append(str(exc))
                continue
            record = {**event, **enrichment}
            if record["sent_at"] is None:  # server-side tracking: no device clock to correct
                record["sent_at"] = record["occurred_at"]
            accepted.append(record)
            lines.append(orjson.dumps(record) + b"\n")
        for message in errors:
            await self.quarantine(request, 400, message, body, site=site)
        if not accepted:
            return _error(400, "; ".join(errors[:5]), cors)
        await self.events.append(lines, enrichment["received_at"])
        self.counters["accepted"] += len(accepted)
        self.bus.publish(accepted)
        if pixel:
            return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})
        body_out = {"accepted": len(accepted), "rejected": len(errors)}
        if errors:
            body_out["errors"] = errors[:20]
        return JSONResponse(body_out, headers=cors)


_DEFAULT_SITE_POLICY = Site(id="unknown", domains=["unknown"]).ip_policy


def _minified_tracker() -> bytes:
    import rjsmin

    source = (STATIC / "tracker.js").read_text()
    return rjsmin.jsmin(source).encode()


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (read no further than that)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    sites: SitesConfig | None = None,
    settings: CollectorSettings | None = None,
    bus: EventBus | None = None,
) -> FastAPI:
    if settings is None:
        from orchestration.runtime import landing_dir

        settings = CollectorSettings(landing_dir=landing_dir())
    collector = Collector(sites or load_sites(), settings, bus or InProcessBus())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await collector.start()
        yield
        await collector.stop()

    app = FastAPI(
        title="Siteline collector",
        version=str(SCHEMA_VERSION),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.collector = collector

    def limited(request: Request) -> str | None:
        key = request.client.host if request.client else "unknown"
        return None if collector.limiter.allow(key) else key

    @app.post("/collect", summary="Receive a batch of tracker events")
    async def collect(request: Request) -> Response:
        collector.counters["requests"] += 1
        key = limited(request)
        if key:
            retry = collector.limiter.retry_after(key)
            await collector.quarantine(request, 429, "rate limit exceeded", b"")
            return _error(429, "too many requests from this address", {"Retry-After": str(retry)})
        body = await _read_body(request, MAX_BODY)
        if body is None:
            message = f"body larger than {MAX_BODY // 1024} KB"
            await collector.quarantine(request, 413, message, None)
            return _error(413, message)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            message = f"body is not valid JSON: {exc}"
            await collector.quarantine(request, 400, message, body)
            return _error(400, message)
        return await collector.accept(request, body, payload)

    @app.get("/collect", summary="Pixel: one event from query parameters (no-JS, e-mail opens)")
    async def pixel(request: Request) -> Response:
        collector.counters["requests"] += 1
        if limited(request):
            return Response(PIXEL, status_code=429, media_type="image/gif")
        params = dict(request.query_params)
        site_id = params.pop("site_id", None)
        event = {"type": "page_view", **params}
        event.setdefault("event_id", str(uuid.uuid4()))
        event.setdefault("occurred_at", _iso(_now()))
        event.setdefault("visitor_id", params.get("visitor_id") or "pixel")
        if "value" in event:
            with contextlib.suppress(ValueError):
                event["value"] = float(event["value"])
        payload = {"site_id": site_id, "events": [event]}
        raw = str(request.url.query).encode()
        response = await collector.accept(request, raw, payload, pixel=True)
        if response.status_code >= 400:
            return Response(PIXEL, status_code=response.status_code, media_type="image/gif")
        return response

    @app.options("/collect", include_in_schema=False)
    async def preflight(request: Request) -> Response:
        origin = request.headers.get("origin")
        if not origin or origin not in collector.origins:
            return Response(status_code=403)
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "86400",
                "Vary": "Origin",
            },
        )

    @app.get("/t.js", summary="The tracker script (minified)")
    async def tracker() -> Response:
        return Response(
            collector.tracker_js,
            media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"},
        )

    @app.get("/health", summary="Liveness and landing state")
    async def health() -> dict:
        return {
            "status": "ok",
            "writer_id": settings.writer_id,
            "counters": collector.counters,
            "commits": collector.events.commits if collector.events else 0,
        }

    @app.get("/landing/{stream}/manifest.json", summary="Closed segments of a landing stream")
    async def manifest(stream: str, request: Request) -> Response:
        denied = _landing_denied(request)
        if denied or stream not in ("events", "bad_events"):
            return denied or _error(404, f"no landing stream '{stream}'")
        segments = read_manifest(settings.landing_dir / stream)
        return JSONResponse({"version": 1, "segments": [s.__dict__ for s in segments]})

    @app.get("/landing/{stream}/segments/{name}", summary="One closed segment")
    async def segment(stream: str, name: str, request: Request) -> Response:
        denied = _landing_denied(request)
        if denied:
            return denied
        names = {s.name for s in read_manifest(settings.landing_dir / stream)}
        if stream not in ("events", "bad_events") or name not in names:
            return _error(404, f"no closed segment '{name}' in stream '{stream}'")
        return FileResponse(settings.landing_dir / stream / SEGMENTS / name)

    def _landing_denied(request: Request) -> Response | None:
        if not settings.landing_token:
            return _error(404, "landing export is disabled (set SITELINE_LANDING_TOKEN)")
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), settings.landing_token.encode()):
            return _error(401, "missing or wrong bearer token")
        return None

    if settings.noop_endpoint:

        @app.post("/noop", include_in_schema=False)
        async def noop(request: Request) -> Response:
            await request.body()
            return Response(status_code=204)

    return app
