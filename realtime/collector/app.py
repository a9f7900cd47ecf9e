"""The collection server: ``POST /collect``, the ``GET /collect`` pixel, ``/t.js``, ``/health``
and the landing manifest for remote loaders.

Every request ends in a 2xx only after its accepted events are on disk (group commit, see
``durable.py``). Every rejected payload is quarantined in the ``bad_events`` stream with its
reason. A client's garbage gets a 4xx naming what was wrong, never a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ingestion.core.enrich import (
    MAX_USER_AGENT,
    bot_reason,
    client_ip,
    country_of,
    network_key,
    network_key_secret,
)
from ingestion.core.landing import (
    FORMAT_VERSION,
    SCHEMA_VERSION,
    SEGMENTS,
    RequestRecords,
    read_manifest,
    request_line,
)
from ingestion.core.sites import Site, SitesConfig, load_sites, site_keys
from realtime.collector.durable import DurableStream, LandingUnavailable
from realtime.collector.ratelimit import RateLimiter
from realtime.collector.schema import (
    MAX_URL,
    Batch,
    Invalid,
    batch_valid,
    compiled_batch,
    decode_body,
    validate_envelope,
    validate_event,
)
from realtime.collector.throttled_log import ThrottledLog, ThrottleFilter
from realtime.engine.api import EngineAPI, add_routes
from realtime.engine.bus import EventBus, make_bus
from realtime.engine.engine import Engine
from realtime.replies import Reply
from realtime.replies import error_reply as _error
from realtime.replies import json_reply as _json

log = logging.getLogger("siteline.collector")
throttled = ThrottledLog(log)

MAX_BODY = 1024 * 1024
MAX_EVENT = 64 * 1024
QUARANTINE_PAYLOAD = 64 * 1024  # bytes of a rejected body kept for diagnosis
# Header values the collector keeps, parses, caches or lands, cut to these lengths first: a
# client string is not the collector's to store whole (docs/tracker.md).
CLIENT_HEADER_LIMITS = {"user-agent": MAX_USER_AGENT, "origin": 512}
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
    # Closed segments older than this are deleted (0 keeps them all): the warehouse keeps
    # the events; the landing is the buffer in front of it.
    retention_days: float = field(
        default_factory=lambda: _env_float("SITELINE_LANDING_RETENTION_DAYS", 30)
    )
    rate_per_ip: float = field(default_factory=lambda: _env_float("SITELINE_RATE_LIMIT", 50))
    rate_burst: float = field(default_factory=lambda: _env_float("SITELINE_RATE_BURST", 200))
    durable: bool = field(default_factory=lambda: os.environ.get("SITELINE_DURABLE", "1") != "0")
    landing_token: str | None = field(
        default_factory=lambda: os.environ.get("SITELINE_LANDING_TOKEN") or None
    )
    noop_endpoint: bool = field(
        default_factory=lambda: os.environ.get("SITELINE_COLLECTOR_NOOP") == "1"
    )
    # The real-time engine runs in this process unless SITELINE_ENGINE=0 (then it runs
    # elsewhere, reading the Redis event bus).
    engine: bool = field(default_factory=lambda: os.environ.get("SITELINE_ENGINE", "1") != "0")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Clock:
    """The collector's clock to the millisecond, as a datetime and as ``received_at`` text,
    worked out once per millisecond: a busy collector stamps dozens of requests in one."""

    def __init__(self) -> None:
        self._ms = -1
        self._value: tuple[datetime, str] = (_now(), "")

    def now(self) -> tuple[datetime, str]:
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            stamp = datetime.fromtimestamp(ms / 1000, UTC)
            self._ms, self._value = ms, (stamp, _iso(stamp))
        return self._value


@dataclass(frozen=True)
class Req:
    """What the collector reads of a request, independent of the web framework."""

    headers: dict[str, str]  # lower-case names
    peer: str | None
    path: str

    @classmethod
    def from_starlette(cls, request: Request) -> Req:
        return cls(
            _clipped(dict(request.headers)),
            request.client.host if request.client else None,
            request.url.path[:MAX_URL],
        )

    @classmethod
    def from_scope(cls, scope: dict) -> Req:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        return cls(_clipped(headers), client[0] if client else None, scope["path"][:MAX_URL])


def _clipped(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the client strings the collector keeps cut to their limits."""
    for name, limit in CLIENT_HEADER_LIMITS.items():
        value = headers.get(name)
        if value is not None and len(value) > limit:
            headers[name] = value[:limit]
    return headers


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
        self.inflight = 0  # requests being answered now (the engine yields to them)
        self.last_request_at = 0.0
        self.client_facts = lru_cache(maxsize=65536)(self._client_facts)
        self.clock = _Clock()

    def _client_facts(
        self, site_id: str, peer: str | None, forwarded_for: str | None, user_agent: str
    ) -> tuple[str | None, str | None, str | None, str]:
        """(stored IP, country, bot reason, network key) of a client; cached, as clients send
        many requests.

        The country and the network key (the logfile loader's keyed hash of IP + user agent)
        come from the full address; only the policy-reduced one is stored.
        """
        site = self.sites[site_id]
        ip = client_ip(peer, forwarded_for, site)
        return (
            site.ip_policy.apply(ip), country_of(ip), bot_reason(user_agent),
            network_key(ip, user_agent, network_key_secret()),
        )  # fmt: skip

    def enrichment(
        self, request: Req, site: Site, sent_at: str | None, received_at: str
    ) -> dict[str, object]:
        """What the collector adds to every event of a request (docs/tracker.md)."""
        user_agent = request.headers.get("user-agent") or ""
        stored_ip, country, reason, net_key = self.client_facts(
            site.id, request.peer, request.headers.get("x-forwarded-for"), user_agent
        )
        return {
            "site_id": site.id,
            "sent_at": sent_at,
            "received_at": received_at,
            "ip": stored_ip,
            "user_agent": user_agent,
            "country": country,
            "network_key": net_key,
            "bot_reason": reason,
            "is_bot": reason is not None,
            "schema_version": SCHEMA_VERSION,
        }

    async def start(self) -> None:
        s = self.settings
        common = {
            "max_bytes": int(s.segment_max_mb * 1024 * 1024),
            "max_seconds": s.segment_max_seconds,
            "durable": s.durable,
            "retention_days": s.retention_days,
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
        close = getattr(self.bus, "close", None)
        if close:
            close()

    async def quarantine(
        self,
        request: Req,
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
        peer = request.peer
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
            "path": request.path,
        }
        await self.bad.append([orjson.dumps(record) + b"\n"], record["received_at"])

    async def accept(
        self, request: Req, body: bytes, payload: object, pixel: bool = False
    ) -> Reply:
        """Validate a decoded payload; land what is valid; quarantine what is not."""
        received, received_at = self.clock.now()
        try:
            site_id, sent_at, events = validate_envelope(payload, received)
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
            return _json({"accepted": 0, "dropped": len(events), "reason": "do_not_track"}, cors)
        if len(body) > MAX_EVENT:
            for index, event in enumerate(events):
                if len(orjson.dumps(event)) > MAX_EVENT:
                    message = f"events[{index}]: larger than {MAX_EVENT // 1024} KB"
                    await self.quarantine(request, 413, message, body, site=site)
                    return _error(413, message, cors)
        enrichment = self.enrichment(request, site, sent_at, received_at)
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
        await self.events.append(lines, received_at)
        self.counters["accepted"] += len(accepted)
        self.bus.publish(accepted)
        if pixel:
            return Reply(200, PIXEL, {"Cache-Control": "no-store"}, "image/gif")
        if not errors:
            return Reply(200, _ACCEPTED.get(len(accepted)) or _accepted(len(accepted)), cors)
        return _json(
            {"accepted": len(accepted), "rejected": len(errors), "errors": errors[:20]}, cors
        )

    async def accept_batch(self, request: Req, body: bytes, batch: Batch) -> Reply | None:
        """The fast path: a body whose every event passed the compiled rules lands as one
        line, the body verbatim (``request_line``; the readers parse it as
        :func:`decode_body` did). None when anything needs the full path (times out of
        bounds, unknown site, foreign origin, Do-Not-Track, a large body), which then answers
        exactly as :meth:`accept` does."""
        received, received_at = self.clock.now()
        site = self.sites.get(batch.site_id)
        headers = request.headers
        origin = headers.get("origin")
        if (
            site is None
            or len(body) > MAX_EVENT
            or (origin and origin not in site.origins)
            or (site.respect_do_not_track and ("dnt" in headers or "sec-gpc" in headers))
            or not batch_valid(batch, received)
        ):
            return None
        enrichment = self.enrichment(request, site, batch.sent_at, received_at)
        count = len(batch.events)
        line = request_line(orjson.dumps(enrichment), body)
        await self.events.append([line], received_at, count)
        self.counters["accepted"] += count
        self.bus.publish(RequestRecords(enrichment, body, count))
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}
        return Reply(200, _ACCEPTED.get(count) or _accepted(count), cors)

    def busy(self) -> bool:
        """Whether requests are being answered or keep arriving (within the last 5 ms)."""
        return self.inflight > 0 or time.monotonic() - self.last_request_at < 0.005

    async def collect(self, request: Req, body: bytes | None) -> Reply:
        """``POST /collect``, answered so that a browser can read every status."""
        self.inflight += 1
        self.last_request_at = time.monotonic()
        try:
            reply = await self._collect(request, body)
        except LandingUnavailable as exc:
            reply = _unavailable(exc)
        finally:
            self.inflight -= 1
        origin = request.headers.get("origin")
        if origin:
            # Errors carry CORS headers too: a tracker that cannot read a 4xx would take it
            # for a network error and retry it forever. The allow-list is enforced by the 403.
            reply.headers.setdefault("Access-Control-Allow-Origin", origin)
            reply.headers.setdefault("Vary", "Origin")
        return reply

    async def _collect(self, request: Req, body: bytes | None) -> Reply:
        self.counters["requests"] += 1
        key = request.peer or "unknown"
        if not self.limiter.allow(key):
            retry = self.limiter.retry_after(key)
            await self.quarantine(request, 429, "rate limit exceeded", b"")
            return _error(429, "too many requests from this address", {"Retry-After": str(retry)})
        if body is None:
            message = f"body larger than {MAX_BODY // 1024} KB"
            await self.quarantine(request, 413, message, None)
            return _error(413, message)
        try:
            payload = decode_body(body)
        except Invalid as exc:
            await self.quarantine(request, 400, str(exc), body)
            return _error(400, str(exc))
        batch = compiled_batch(payload)
        if batch is not None:
            reply = await self.accept_batch(request, body, batch)
            if reply is not None:
                return reply
        # Something is wrong (or needs a closer look): the rules say what, event by event.
        return await self.accept(request, body, payload)

    async def refuse_head(self, request: Req, message: str) -> None:
        """Quarantine a request whose head the server refused (``headlimit``)."""
        try:
            await self.quarantine(request, 431, message, None)
        except Exception:  # the client has its answer; say why the record is missing
            throttled.error("quarantine", "could not quarantine a refused head", exc_info=True)


_DEFAULT_SITE_POLICY = Site(id="unknown", domains=["unknown"]).ip_policy


def _unavailable(exc: LandingUnavailable) -> Reply:
    """The landing cannot take the request now (a full disk): nothing of it is kept, and the
    tracker sends it again (it retries 5xx answers)."""
    return _error(503, str(exc), {"Retry-After": "10"})


def _accepted(n: int) -> bytes:
    return b'{"accepted":%d,"rejected":0}' % n


_ACCEPTED = {n: _accepted(n) for n in range(1, 101)}


def _demo_page(engine: Engine, api: EngineAPI) -> str:
    import html

    from ingestion.demo_traffic.catalogue import products

    site = api.sites["demo"]
    key = next(k.decode() for k, s in api.keys if s.id == "demo")
    customers = engine.customers.examples("demo") if engine.customers else []
    options = (
        "".join(
            f'<option value="{html.escape(user)}">{html.escape(user)} '
            f"(lifetime €{revenue:,.2f})</option>"
            for user, revenue in customers
        )
        or '<option value="cust-0000001">cust-0000001 (no customers in the warehouse yet)</option>'
    )
    shelf = [
        {k: p[k] for k in ("sku", "name", "category", "price", "slug")} for p in products()[:12]
    ]
    page = (STATIC / "demo.html").read_text()
    for name, value in (
        ("{site_id}", site.id),
        ("{domain}", site.domains[0]),
        ("{api_key}", key),
        ("{products}", orjson.dumps(shelf).decode()),
        ("{customer_options}", options),
    ):
        page = page.replace(name, value)
    return page


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


def engine_warehouse_url() -> str | None:
    """Where the engine reads customer state: ``SITELINE_ENGINE_WAREHOUSE_URL`` (``none``
    turns it off), else the warehouse as the read-only ``bi_reader``."""
    url = os.environ.get("SITELINE_ENGINE_WAREHOUSE_URL")
    if url:
        return None if url == "none" else url
    from ingestion.core.warehouse import bi_reader_url

    return bi_reader_url()


def build_engine(sites: SitesConfig, settings: CollectorSettings) -> Engine:
    """The real-time engine with the store and customer source the environment names."""
    from realtime.engine.customers import CustomerStates
    from realtime.engine.store import make_store

    snapshot = Path(
        os.environ.get("SITELINE_ENGINE_SNAPSHOT")
        or settings.landing_dir.parent / "realtime" / f"sessions-{settings.writer_id}.json"
    )
    return Engine(
        sites,
        store=make_store(snapshot=snapshot),
        customers=CustomerStates(engine_warehouse_url()),
        snapshot_seconds=_env_float("SITELINE_ENGINE_SNAPSHOT_SECONDS", 60),
    )


def create_app(
    sites: SitesConfig | None = None,
    settings: CollectorSettings | None = None,
    bus: EventBus | None = None,
) -> FastAPI:
    if settings is None:
        from ingestion.core.home import landing_dir

        settings = CollectorSettings(landing_dir=landing_dir())
    sites = sites or load_sites()
    # The server's own complaints about clients (malformed HTTP, an exception in a route) are
    # client-driven too: once per kind and minute.
    server_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ThrottleFilter) for f in server_log.filters):
        server_log.addFilter(ThrottleFilter())
    collector = Collector(sites, settings, bus or make_bus())
    engine = api = None
    if settings.engine:
        engine = build_engine(sites, settings)
        api = EngineAPI(engine, sites, site_keys(sites))
        # In this process the engine applies events between requests (Engine.submit); from a
        # Redis stream, on the bus's reader thread.
        in_process = not getattr(collector.bus, "url", None)
        collector.bus.subscribe(engine.submit if in_process else engine.handle)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await collector.start()
        housekeeping = None
        if engine is not None:
            engine.attach(asyncio.get_running_loop(), busy=collector.busy)
            engine.restore(settings.landing_dir / "events")
            housekeeping = asyncio.create_task(engine.run())
        # Long-lived start-up objects (sites, geo database, app) leave the collector's view,
        # and young collections run less often: request garbage dies young, and full
        # collections over the geo database were the tail of the latency distribution.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
        yield
        await collector.stop()
        if engine is not None:
            housekeeping.cancel()
            try:
                engine.close()
            except OSError as exc:  # a full disk: the stop goes on; the snapshot only saves time
                log.error("cannot write the engine's snapshot at shutdown (%s); the next start "
                          "replays the landing from the last snapshot instead", exc)  # fmt: skip

    app = FastAPI(
        title="Siteline collector",
        version=str(SCHEMA_VERSION),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.collector = collector
    app.state.engine = engine
    if api is not None:
        add_routes(app, api)

    def limited(request: Request) -> str | None:
        key = request.client.host if request.client else "unknown"
        return None if collector.limiter.allow(key) else key

    @app.post("/collect", summary="Receive a batch of tracker events")
    async def collect(request: Request) -> Response:
        # Served by the ASGI fast path (FastCollect); this route documents it in OpenAPI.
        body = await _read_body(request, MAX_BODY)
        return (await collector.collect(Req.from_starlette(request), body)).to_response()

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
        try:
            reply = await collector.accept(Req.from_starlette(request), raw, payload, pixel=True)
        except LandingUnavailable as exc:
            reply = _unavailable(exc)
        if reply.status >= 400:
            return Response(PIXEL, status_code=reply.status, media_type="image/gif")
        return reply.to_response()

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

    if api is not None and os.environ.get("SITELINE_DEMO_PAGE") == "1" and "demo" in api.sites:

        @app.get("/demo/", include_in_schema=False)
        async def demo_page() -> Response:
            """The demo site's shop page with a live panel of the real-time API (the demo
            only: it carries the demo site's read-only API key)."""
            return Response(
                await asyncio.to_thread(_demo_page, engine, api), media_type="text/html"
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
        # Degraded while a landing stream cannot write, sync, close or seal (a full disk):
        # the collector goes on trying, and says why here.
        problems = [
            f"landing {name}: {problem}"
            for name, stream in (("events", collector.events), ("bad_events", collector.bad))
            if stream is not None
            for problem in stream.problems.values()
        ]
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "writer_id": settings.writer_id,
            "counters": collector.counters,
            "commits": collector.events.commits if collector.events else 0,
            "landing": {
                name: stream.stats()
                for name, stream in (("events", collector.events), ("bad_events", collector.bad))
                if stream is not None
            },
            "bus": {
                "kind": type(collector.bus).__name__,
                "errors": collector.bus.errors,
                "dropped": getattr(collector.bus, "dropped", 0),
            },
            "engine": engine.stats() if engine is not None else None,
        }

    @app.get("/landing/{stream}/manifest.json", summary="Closed segments of a landing stream")
    async def manifest(stream: str, request: Request) -> Response:
        denied = _landing_denied(request)
        if denied or stream not in ("events", "bad_events"):
            return (denied or _error(404, f"no landing stream '{stream}'")).to_response()
        # A thread: the manifest grows with the retention, and parsing it must not stall
        # the event loop that answers the trackers.
        segments = await asyncio.to_thread(read_manifest, settings.landing_dir / stream)
        return JSONResponse({"version": FORMAT_VERSION, "segments": [s.__dict__ for s in segments]})

    @app.get("/landing/{stream}/segments/{name}", summary="One closed segment")
    async def segment(stream: str, name: str, request: Request) -> Response:
        denied = _landing_denied(request)
        if denied:
            return denied.to_response()
        missing = _error(404, f"no closed segment '{name[:200]}' in stream '{stream[:40]}'")
        if stream not in ("events", "bad_events"):
            return missing.to_response()
        listed = await asyncio.to_thread(read_manifest, settings.landing_dir / stream)
        if name not in {s.name for s in listed}:
            return missing.to_response()
        return FileResponse(settings.landing_dir / stream / SEGMENTS / name)

    def _landing_denied(request: Request) -> Reply | None:
        if not settings.landing_token:
            return _error(404, "landing export is disabled (set SITELINE_LANDING_TOKEN)")
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), settings.landing_token.encode()):
            return _error(401, "missing or wrong bearer token")
        return None

    return FastCollect(app, collector, api)


_API_HEADERS = frozenset({b"authorization", b"origin"})


class FastCollect:
    """ASGI fast path for ``POST /collect``: skips the framework's routing, dependency
    injection and response classes, which cost more than the collector's own work.
    Everything else goes to the FastAPI app. ``POST /noop`` (benchmarks only) takes the
    same path minus the collector, so it measures this server's ceiling."""

    def __init__(self, app: FastAPI, collector: Collector, api: EngineAPI | None = None) -> None:
        self.app = app
        self.collector = collector
        self.api = api
        self.state = app.state
        self.noop = collector.settings.noop_endpoint
        self._refusals: set[asyncio.Task] = set()

    def head_refused(
        self, client: tuple | None, url: bytes, headers: list[tuple[bytes, bytes]], message: str
    ) -> None:
        """Called by the server protocol (``headlimit``) when it refuses a request head that
        is too large: quarantine what it read of it (the answer is the server's)."""
        path = url.split(b"?", 1)[0].decode("latin-1")
        scope = {"headers": headers, "client": client, "path": path}
        task = asyncio.ensure_future(self.collector.refuse_head(Req.from_scope(scope), message))
        self._refusals.add(task)
        task.add_done_callback(self._refusals.discard)

    def server_stopping(self) -> None:
        """Called by the server protocol (``headlimit``) when the graceful stop begins: open
        event streams end now, so the stop need not wait its timeout for them and then skip
        nothing (the lifespan's shutdown closes the segments, writes the snapshot)."""
        if self.api is not None:
            self.api.engine.hub.close()

    async def __call__(self, scope, receive, send) -> None:
        if self.api is not None and scope["type"] == "http" and scope["path"].startswith("/v1/"):
            self.collector.last_request_at = time.monotonic()  # the engine yields to reads too
            method = scope["method"]
            if method == "OPTIONS" or (method == "GET" and scope["path"] != "/v1/stream"):
                # Only the headers the API reads: decoding every header costs more than the
                # lookup itself.
                headers = {
                    k.decode("latin-1"): v.decode("latin-1")
                    for k, v in scope["headers"]
                    if k in _API_HEADERS
                }
                if method == "OPTIONS":
                    answer = self.api.preflight(headers)
                else:
                    query = scope.get("query_string", b"").decode("latin-1")
                    answer = await self.api.get(scope["path"], query, headers)
                await _send(send, answer)
                return
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == "/collect":
                body = await _receive_body(scope, receive, MAX_BODY)
                try:
                    reply = await self.collector.collect(Req.from_scope(scope), body)
                except Exception as exc:
                    # Not the client's fault (client garbage is a 4xx): say so once per kind
                    # and minute, not with a traceback per request.
                    throttled.error(
                        _failure_kind(exc), "POST /collect failed: %r", exc, exc_info=True
                    )
                    reply = _error(500, "the collector failed to store the request; retry it")
                await _send(send, reply)
                return
            if path == "/noop" and self.noop:
                await _receive_body(scope, receive, MAX_BODY)
                await _send(send, Reply(204, b""))
                return
        await self.app(scope, receive, send)


def _failure_kind(exc: BaseException) -> str:
    """An exception's type and where it was raised: one kind of failure for the log."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
    return f"{type(exc).__name__}@{where}"


async def _receive_body(scope, receive, limit: int) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            return None
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.media_type.encode()),
        (b"content-length", b"%d" % len(reply.body)),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
