"""The collector service: validates what trackers send, lands what is valid, quarantines what
is not (:class:`Collector`), and builds the real-time engine it feeds (:func:`build_engine`).

Every request ends in a 2xx only after its accepted events are on disk (group commit, see
``durable.py``). Every rejected payload is quarantined in the ``bad_events`` stream with its
reason. A client's garbage gets a 4xx naming what was wrong, never a 5xx.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from functools import lru_cache

import orjson

from ingestion.core.enrich import bot_reason, client_ip, country_of, network_key, network_key_secret
from ingestion.core.landing import SCHEMA_VERSION, RequestRecords, request_line
from ingestion.core.sites import Site, SitesConfig
from realtime.collector.asgi import MAX_BODY, Req
from realtime.collector.durable import DurableStream, LandingUnavailable
from realtime.collector.ratelimit import RateLimiter
from realtime.collector.schema import (
    Batch,
    Invalid,
    batch_valid,
    compiled_batch,
    decode_body,
    validate_envelope,
    validate_event,
)
from realtime.collector.settings import CollectorSettings
from realtime.engine.bus import EventBus
from realtime.engine.engine import Engine
from realtime.replies import Reply, cors_headers, error_reply, json_reply
from realtime.throttled_log import ThrottledLog

log = logging.getLogger("siteline.collector")
throttled = ThrottledLog(log)

MAX_EVENT = 64 * 1024
QUARANTINE_PAYLOAD = 64 * 1024  # bytes of a rejected body kept for diagnosis
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """``ts`` as the collector writes times: ISO 8601 to the millisecond, ``Z`` for UTC."""
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Clock:
    """The collector's clock to the millisecond, as a datetime and as ``received_at`` text,
    worked out once per millisecond: a busy collector stamps many requests in one."""

    def __init__(self) -> None:
        self._ms = -1
        self._value: tuple[datetime, str] = (utc_now(), "")

    def now(self) -> tuple[datetime, str]:
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            stamp = datetime.fromtimestamp(ms / 1000, UTC)
            self._ms, self._value = ms, (stamp, iso(stamp))
        return self._value


class Collector:
    """The collector: its sites, landing streams, rate limiter and event bus, and what it
    does with a request (``collect``, ``accept``, ``quarantine``), shared by the routes."""

    def __init__(self, sites: SitesConfig, settings: CollectorSettings, bus: EventBus) -> None:
        self.sites = {site.id: site for site in sites.sites}
        self.origins = {origin for site in sites.sites for origin in site.origins}
        self.settings = settings
        self.bus = bus
        self.limiter = RateLimiter(settings.rate_per_ip, settings.rate_burst)
        self.events: DurableStream | None = None
        self.bad: DurableStream | None = None
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
        settings = self.settings
        common = {
            "max_bytes": int(settings.segment_max_mb * 1024 * 1024),
            "max_seconds": settings.segment_max_seconds,
            "durable": settings.durable,
            "retention_days": settings.retention_days,
        }
        self.events = DurableStream(settings.landing_dir / "events", settings.writer_id, **common)
        self.bad = DurableStream(settings.landing_dir / "bad_events", settings.writer_id, **common)
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
        received = utc_now()
        record = {
            "bad_event_id": str(uuid.uuid4()),
            "received_at": iso(received),
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
            return error_reply(400, str(exc))
        site = self.sites.get(site_id)
        if site is None:
            message = f"site_id: unknown site '{site_id[:64]}'"
            await self.quarantine(request, 400, message, body, site_id=site_id[:64])
            return error_reply(400, message)
        origin = request.headers.get("origin")
        if origin and origin not in site.origins and not pixel:
            message = f"origin '{origin[:200]}' is not allowed for site '{site.id}'"
            await self.quarantine(request, 403, message, body, site=site)
            return error_reply(403, message)
        cors = cors_headers(origin)
        if site.respect_do_not_track and (
            request.headers.get("dnt") == "1" or request.headers.get("sec-gpc") == "1"
        ):
            # The visitor asked not to be tracked: store nothing, and say so.
            self.counters["dropped_dnt"] += len(events)
            return json_reply(
                {"accepted": 0, "dropped": len(events), "reason": "do_not_track"}, cors
            )
        if len(body) > MAX_EVENT:
            for index, event in enumerate(events):
                if len(orjson.dumps(event)) > MAX_EVENT:
                    message = f"events[{index}]: larger than {MAX_EVENT // 1024} KB"
                    await self.quarantine(request, 413, message, body, site=site)
                    return error_reply(413, message, cors)
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
            return error_reply(400, "; ".join(errors[:5]), cors)
        await self.events.append(lines, received_at)
        self.counters["accepted"] += len(accepted)
        self.bus.publish(accepted)
        if pixel:
            return Reply(200, PIXEL, {"Cache-Control": "no-store"}, "image/gif")
        if not errors:
            return Reply(200, _ACCEPTED.get(len(accepted)) or _accepted(len(accepted)), cors)
        return json_reply(
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
        cors = cors_headers(origin)
        return Reply(200, _ACCEPTED.get(count) or _accepted(count), cors)

    def health(self, engine: Engine | None) -> dict:
        """What ``GET /health`` answers: degraded while a landing stream cannot write, sync,
        close or seal (a full disk; the collector goes on trying, and says why here)."""
        streams = [
            (name, stream)
            for name, stream in (("events", self.events), ("bad_events", self.bad))
            if stream is not None
        ]
        problems = [
            f"landing {name}: {problem}"
            for name, stream in streams
            for problem in stream.problems.values()
        ]
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "writer_id": self.settings.writer_id,
            "counters": self.counters,
            "commits": self.events.commits if self.events else 0,
            "landing": {name: stream.stats() for name, stream in streams},
            "bus": {
                "kind": type(self.bus).__name__,
                "errors": self.bus.errors,
                "dropped": getattr(self.bus, "dropped", 0),
            },
            "engine": engine.stats() if engine is not None else None,
        }

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
            reply = unavailable(exc)
        finally:
            self.inflight -= 1
        origin = request.headers.get("origin")
        if origin and "Access-Control-Allow-Origin" not in reply.headers:
            # Errors carry CORS headers too: a tracker that cannot read a 4xx would take it
            # for a network error and retry it forever. The allow-list is enforced by the 403.
            reply.headers.update(cors_headers(origin))
        return reply

    async def _collect(self, request: Req, body: bytes | None) -> Reply:
        self.counters["requests"] += 1
        key = request.peer or "unknown"
        if not self.limiter.allow(key):
            retry = self.limiter.retry_after(key)
            await self.quarantine(request, 429, "rate limit exceeded", b"")
            return error_reply(
                429, "too many requests from this address", {"Retry-After": str(retry)}
            )
        if body is None:
            message = f"body larger than {MAX_BODY // 1024} KB"
            await self.quarantine(request, 413, message, None)
            return error_reply(413, message)
        try:
            payload = decode_body(body)
        except Invalid as exc:
            await self.quarantine(request, 400, str(exc), body)
            return error_reply(400, str(exc))
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


def unavailable(exc: LandingUnavailable) -> Reply:
    """The landing cannot take the request now (a full disk): nothing of it is kept, and the
    tracker sends it again (it retries 5xx answers)."""
    return error_reply(503, str(exc), {"Retry-After": "10"})


def _accepted(n: int) -> bytes:
    return b'{"accepted":%d,"rejected":0}' % n


_ACCEPTED = {n: _accepted(n) for n in range(1, 101)}


def build_engine(sites: SitesConfig, settings: CollectorSettings) -> Engine:
    """The real-time engine with the store and customer source the settings name."""
    from realtime.engine.customers import CustomerStates
    from realtime.engine.store import make_store

    return Engine(
        sites,
        store=make_store(snapshot=settings.engine_snapshot),
        customers=CustomerStates(customer_source(settings)),
        snapshot_seconds=settings.engine_snapshot_seconds,
    )


def customer_source(settings: CollectorSettings) -> str | None:
    """Where the engine reads customer state: ``SITELINE_ENGINE_WAREHOUSE_URL`` (``none``
    turns it off), else the warehouse as the read-only ``bi_reader``."""
    url = settings.engine_warehouse_url
    if url:
        return None if url == "none" else url
    from ingestion.core.warehouse import bi_reader_url

    return bi_reader_url()
