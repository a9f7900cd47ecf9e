"""The real-time HTTP API (``/v1/...``), served by the collector process.

Reads are answered on the collector's ASGI fast path (no framework routing: a lookup costs
less than the framework would); the FastAPI routes in :func:`add_routes` document them in
OpenAPI (``/docs``) and serve the server-sent-event stream.

Every route but ``/health`` needs the site's API key as ``Authorization: Bearer <key>``;
``sites.yml`` names the environment variable holding each site's key (``api_key_env``).
The key decides the site: another site's sessions and visitors are simply not found (404).
Browser requests must come from one of the site's allowed origins, as for ``/collect``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from urllib.parse import parse_qs, unquote

import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from ingestion.core.sites import Site, SitesConfig
from realtime.engine.engine import Engine
from realtime.replies import Reply, error_reply, json_reply

log = logging.getLogger("siteline.engine.api")


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
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}
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
        return Reply(
            204,
            b"",
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "86400",
                "Vary": "Origin",
            },
        )

    # -- reads ------------------------------------------------------------------------------------
    async def get(self, path: str, query_string: str, headers: dict) -> Reply:
        """Answer ``GET /v1/...`` (everything but the stream)."""
        query = parse_qs(query_string, keep_blank_values=True) if query_string else {}
        site, denied = self.authorise(headers)
        if denied is not None:
            return denied
        origin = headers.get("origin")
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}
        cors["Cache-Control"] = "no-store"
        parts = path.split("/")
        if len(parts) == 4 and parts[2] == "sessions" and parts[3]:
            session_id = unquote(parts[3])
            data = self.engine.session(site.id, session_id)
            if data is None:
                message = f"no active session '{session_id[:128]}' on site '{site.id}'"
                return error_reply(404, message, cors)
            return json_reply(data, cors)
        if len(parts) == 5 and parts[2] == "visitors" and parts[4] == "state" and parts[3]:
            return await self._visitor(site, unquote(parts[3]), cors)
        if parts == ["", "v1", "active"]:
            return self._active(site, query, cors)
        return error_reply(404, f"no such resource '{path[:200]}'; see /docs", cors)

    async def _visitor(self, site: Site, visitor_id: str, cors: dict) -> Reply:
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

    def _active(self, site: Site, query: dict, cors: dict) -> Reply:
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


def add_routes(app, api: EngineAPI) -> None:
    """OpenAPI documentation of the fast-path reads (the collector's ASGI fast path answers
    them before these routes are reached), and the SSE stream."""

    async def read(request: Request) -> Response:
        headers = dict(request.headers)
        return (await api.get(request.url.path, request.url.query, headers)).to_response()

    @app.get("/v1/sessions/{session_id}", tags=["real-time"], summary="A live session's state")
    async def session(session_id: str, request: Request) -> Response:
        """The state of an active session, by its id (the warehouse's session id) or the
        tracker's client session id, with the visitor's customer state."""
        return await read(request)

    @app.get(
        "/v1/visitors/{visitor_id}/state", tags=["real-time"], summary="Live and customer state"
    )
    async def visitor(visitor_id: str, request: Request) -> Response:
        """The visitor's open session (or null) and customer state from the warehouse."""
        return await read(request)

    @app.get("/v1/active", tags=["real-time"], summary="Active sessions and visitors now")
    async def active(request: Request, minutes: float | None = None, limit: int = 50) -> Response:
        """Counts by page, channel and device, and the most recent sessions."""
        return await read(request)

    @app.get("/v1/stream", tags=["real-time"], summary="Server-sent events of state changes")
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

        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}
        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **cors},
        )
