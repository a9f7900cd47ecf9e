"""The real-time HTTP API (``/v1/...``), served by the collector process.

:data:`ENGINE_ROUTES` is its one route table. :meth:`EngineAPI.get` answers the reads from it
on the collector's ASGI fast path (no framework routing: a lookup costs less than the framework
would), the collector's fast path takes its rows into its own table, and :func:`add_routes`
registers from it the FastAPI routes that document the reads in OpenAPI (``/docs``) and serve
the server-sent-event stream.

Every route but ``/health`` needs the site's API key as ``Authorization: Bearer <key>``;
``sites.yml`` names the environment variable holding each site's key (``api_key_env``).
The key decides the site: another site's sessions and visitors are simply not found (404).
Browser requests must come from one of the site's allowed origins, as for ``/collect``.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote

import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from ingestion.core.sites import Site, SitesConfig
from realtime.engine.engine import Engine
from realtime.engine.windows import METRICS as WINDOW_METRICS
from realtime.replies import Reply, cors_headers, error_reply, json_reply

log = logging.getLogger("siteline.engine.api")

API_PREFIX = "/v1/"
# What answers a row of ENGINE_ROUTES besides the reads (EngineAPI methods of that name).
STREAM = "stream"  # the event stream: a streaming response, FastAPI's route (add_routes)
PREFLIGHT = "preflight"  # the CORS preflight of every /v1 path (EngineAPI.preflight)


@dataclass(frozen=True)
class EngineRoute:
    """A request of the real-time API: its method, its path as OpenAPI writes it (``{name}``
    is one path segment, passed to the handler unquoted), what answers it (the name of the
    :class:`EngineAPI` method answering a read, :data:`STREAM` or :data:`PREFLIGHT`), and
    the summary of its OpenAPI operation (None: not documented)."""

    method: str
    path: str
    handler: str
    summary: str | None


class EngineAPI:
    def __init__(self, engine: Engine, sites: SitesConfig, keys: dict[str, str]) -> None:
        self.engine = engine
        self.sites = {site.id: site for site in sites.sites}
        self.keys = [(key.encode(), self.sites[site_id]) for site_id, key in keys.items()]
        self.origins = {origin for site in sites.sites for origin in site.origins}

    # -- access -----------------------------------------------------------------------------------
    def authorise(self, headers: dict, query: dict | None = None) -> tuple:
        """(site, None) for a valid key and origin, else (None, the 401/403 answer).

        The query's ``access_token`` counts only where passed (the SSE stream)."""
        origin = headers.get("origin")
        cors = cors_headers(origin)
        given = headers.get("authorization", "")
        token = given[7:].strip() if given[:7].lower() == "bearer " else ""
        if not token and query:
            token = (query.get("access_token") or [""])[0]  # EventSource cannot send headers
        if not token:
            challenge = {**cors, "WWW-Authenticate": 'Bearer realm="siteline"'}
            message = "missing API key: send 'Authorization: Bearer <key>'"
            return None, error_reply(401, message, challenge)
        site = None
        for key, candidate in self.keys:
            if hmac.compare_digest(token.encode(), key):
                site = candidate
        if site is None:
            challenge = {**cors, "WWW-Authenticate": 'Bearer error="invalid_token"'}
            return None, error_reply(401, "wrong API key", challenge)
        if origin and origin not in site.origins:
            message = f"origin '{origin[:200]}' is not allowed for site '{site.id}'"
            return None, error_reply(403, message, cors)
        return site, None

    def preflight(self, headers: dict) -> Reply:
        origin = headers.get("origin")
        if not origin or origin not in self.origins:
            return Reply(403, b"", {})
        return Reply(204, b"", cors_headers(origin, "GET, OPTIONS", "Authorization, Content-Type"))

    # -- reads ------------------------------------------------------------------------------------
    async def get(self, path: str, query_string: str, headers: dict) -> Reply:
        """Answer ``GET /v1/...`` (everything but the stream; ``path`` is under ``/v1/``, as
        the caller routed it): the read of :data:`ENGINE_ROUTES` whose path matches, else a
        404."""
        query = parse_qs(query_string, keep_blank_values=True) if query_string else {}
        site, denied = self.authorise(headers)
        if denied is not None:
            return denied
        cors = cors_headers(headers.get("origin"))
        cors["Cache-Control"] = "no-store"
        parts = path.split("/")
        read = _READS.get(parts[2]) if len(parts) > 2 else None
        if (
            read is None
            or len(parts) != read.count
            or (read.param and not parts[read.param])
            or (read.suffix and not path.endswith(read.suffix))
        ):
            return error_reply(404, f"no such resource '{path[:200]}'; see /docs", cors)
        argument = unquote(parts[read.param]) if read.param else ""
        answer = read.answer(self, site, argument, query, cors)
        return await answer if read.awaits else answer

    # Each read: (site, the path's parameter or "", the query, the answer's headers) → Reply.
    def session(self, site: Site, session_id: str, query: dict, cors: dict) -> Reply:
        data = self.engine.session(site.id, session_id)
        if data is None:
            message = f"no active session '{session_id[:128]}' on site '{site.id}'"
            return error_reply(404, message, cors)
        return json_reply(data, cors)

    async def visitor(self, site: Site, visitor_id: str, query: dict, cors: dict) -> Reply:
        engine = self.engine
        state = engine.visitor_session(site.id, visitor_id)
        user_id = state.user_id if state else None
        customer = None
        if engine.customers is not None:
            customer = engine.customers.peek(site.id, visitor_id, user_id)
            if customer is None or customer.get("stale"):
                customer = await asyncio.to_thread(
                    engine.customers.get, site.id, visitor_id, user_id
                )
        knows_nothing = (
            customer is None
            or customer.get("known") is False
            or customer.get("reason") == "no warehouse configured"
        )
        if state is None and knows_nothing:
            # (With the warehouse unreachable the visitor may exist: 200, customer unavailable.)
            message = f"visitor '{visitor_id[:128]}' is not known on site '{site.id}'"
            return error_reply(404, message, cors)
        session = engine.describe(state, with_customer=False) if state is not None else None
        return json_reply(
            {
                "site_id": site.id,
                "visitor_id": visitor_id,
                "customer_key": (session or {}).get("customer_key")
                or (customer or {}).get("customer_key")
                or visitor_id,
                "active": session is not None,
                "session": session,
                "customer": customer
                or {"status": "unavailable", "reason": "no warehouse configured"},
            },
            cors,
        )

    def active(self, site: Site, _: str, query: dict, cors: dict) -> Reply:
        try:
            minutes = float(query["minutes"][0]) if "minutes" in query else None
            limit = int(query["limit"][0]) if "limit" in query else 50
        except ValueError:
            return error_reply(400, "minutes must be a number and limit a whole number", cors)
        if minutes is not None and not 0 < minutes <= 1440:
            return error_reply(400, "minutes must be more than 0 and at most 1440", cors)
        if not 0 <= limit <= 1000:
            return error_reply(400, "limit must be between 0 and 1000", cors)
        window = minutes * 60 if minutes is not None else None
        return json_reply(self.engine.active(site.id, window, limit), cors)

    def metric_windows(self, site: Site, _: str, query: dict, cors: dict) -> Reply:
        """A real-time alert metric over the window ending now (or at ``at``), the window
        before and the same window in previous weeks (realtime/engine/windows.py)."""
        first = {name: values[0] for name, values in query.items() if values}
        metric = first.get("metric", "")
        if metric not in WINDOW_METRICS:
            known = ", ".join(WINDOW_METRICS)
            return error_reply(400, f"metric must be one of {known} (got '{metric[:64]}')", cors)
        if first.get("site", site.id) != site.id:
            message = f"site '{first['site'][:64]}' is not the site of this API key ('{site.id}')"
            return error_reply(404, message, cors)
        kept = self.engine.windows.weeks
        try:
            window = float(first.get("window", 300))
            weeks = int(first.get("weeks", 4))
            end = _instant(first["at"]) if "at" in first else None
        except ValueError:
            message = (
                "window must be a number of seconds, weeks a whole number and at an ISO 8601 "
                "time or epoch seconds"
            )
            return error_reply(400, message, cors)
        if not 60 <= window <= 3600:
            return error_reply(400, "window must be from 60 to 3600 seconds", cors)
        if not 0 <= weeks <= kept:
            message = (
                f"weeks must be from 0 to {kept} (the engine keeps {kept} weeks: "
                "SITELINE_ENGINE_WINDOW_WEEKS)"
            )
            return error_reply(400, message, cors)
        if end is not None and not time.time() - 3600 <= end <= time.time() + 1:
            return error_reply(400, "at must be in the last hour, not in the future", cors)
        return json_reply(self.engine.metric_windows(site.id, metric, end, window, weeks), cors)


def _instant(text: str) -> float:
    """Epoch seconds of ``at``: a number, or an ISO 8601 time (UTC unless it says)."""
    try:
        return float(text)
    except ValueError:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


ENGINE_ROUTES = (
    EngineRoute("GET", "/v1/sessions/{session_id}", "session", "A live session's state"),
    EngineRoute("GET", "/v1/visitors/{visitor_id}/state", "visitor", "Live and customer state"),
    EngineRoute("GET", "/v1/active", "active", "Active sessions and visitors now"),
    EngineRoute("GET", "/v1/metrics/windows", "metric_windows", "Alert metrics over windows"),
    EngineRoute("GET", "/v1/stream", STREAM, "Server-sent events of state changes"),
    EngineRoute("OPTIONS", "/v1/{path}", PREFLIGHT, None),
)


class _Read:
    """A read of :data:`ENGINE_ROUTES`, ready to match a request path split at ``/``: found by
    its first segment after ``/v1/``, then checked by its count of segments and the literal
    text after its parameter (``/v1/<name>[/{parameter}[/<literal>...]]``)."""

    __slots__ = ("answer", "awaits", "count", "name", "param", "suffix")

    def __init__(self, route: EngineRoute) -> None:
        segments = route.path.split("/")
        params = [i for i, segment in enumerate(segments) if segment.startswith("{")]
        if not route.path.startswith(API_PREFIX) or params not in ([], [3]):
            raise ValueError(f"{route.path}: a read is /v1/<name>, optionally /{{parameter}}/...")
        self.name = segments[2]
        self.count = len(segments)
        self.param = 3 if params else 0  # 0: none (the first segment is always empty)
        after = segments[4:] if params else segments[3:]  # literal: checked as the path's end
        self.suffix = "/" + "/".join(after) if after else ""
        self.answer = getattr(EngineAPI, route.handler)
        self.awaits = inspect.iscoroutinefunction(self.answer)


def _reads(routes: tuple[EngineRoute, ...]) -> dict[str, _Read]:
    """The reads of ``routes`` by their first segment after ``/v1/`` (one each: the lookup is
    one dict lookup)."""
    reads: dict[str, _Read] = {}
    for route in routes:
        if route.handler not in (STREAM, PREFLIGHT):
            read = _Read(route)
            if read.name in reads:
                raise ValueError(f"{route.path}: another read starts /v1/{read.name}")
            reads[read.name] = read
    return reads


_READS = _reads(ENGINE_ROUTES)


def add_routes(app, api: EngineAPI) -> None:
    """The FastAPI routes of :data:`ENGINE_ROUTES` (path, method and summary from the table):
    OpenAPI documentation of the reads (the collector's ASGI fast path answers them before
    these routes are reached) and the SSE stream."""

    async def read(request: Request) -> Response:
        headers = dict(request.headers)
        return (await api.get(request.url.path, request.url.query, headers)).to_response()

    # The functions document the parameters and name the operations.
    async def session(session_id: str, request: Request) -> Response:
        """The state of an active session, by its id (the warehouse's session id) or the
        tracker's client session id, with the visitor's customer state."""
        return await read(request)

    async def visitor(visitor_id: str, request: Request) -> Response:
        """The visitor's open session (or null) and customer state from the warehouse."""
        return await read(request)

    async def active(request: Request, minutes: float | None = None, limit: int = 50) -> Response:
        """Counts by page, channel and device, and the most recent sessions."""
        return await read(request)

    async def metric_windows(
        request: Request,
        metric: str,
        window: float = 300,
        weeks: int = 4,
        at: str | None = None,
        site: str | None = None,
    ) -> Response:
        """A real-time alert metric (``active_visitors``, ``orders``, ``checkout_errors``,
        ``payment_failures``) over the ``window`` seconds ending now (or at ``at``), the window
        before it and the same window in each of the last ``weeks`` weeks: what the real-time
        alert rules judge (docs/alerts.md, "Real-time rules")."""
        return await read(request)

    async def stream(request: Request) -> Response:
        """``event: session`` with the full state after every event of a visit,
        ``event: session_ended`` when a visit ends; first an ``event: active`` summary.
        EventSource cannot send headers: browsers may pass ``?access_token=<key>``."""
        headers = dict(request.headers)
        site, denied = api.authorise(headers, parse_qs(request.url.query))
        if denied is not None:
            return denied.to_response()
        queue = api.engine.hub.add(site.id)
        origin = headers.get("origin")

        async def events():
            try:
                first = orjson.dumps(api.engine.active(site.id))
                yield b"retry: 2000\nevent: active\ndata: " + first + b"\n\n"
                while True:
                    try:
                        change = await asyncio.wait_for(queue.get(), timeout=15)
                    except TimeoutError:
                        change = b": keep-alive\n\n"
                    if change is None:  # the server is stopping (Hub.close)
                        return
                    yield change
            finally:
                api.engine.hub.discard(site.id, queue)

        cors = cors_headers(origin)
        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **cors},
        )

    endpoints = {"session": session, "visitor": visitor, "active": active,
                 "metric_windows": metric_windows, STREAM: stream}  # fmt: skip
    for route in ENGINE_ROUTES:
        if route.summary is not None:
            app.add_api_route(
                route.path,
                endpoints[route.handler],
                methods=[route.method],
                tags=["real-time"],
                summary=route.summary,
            )
