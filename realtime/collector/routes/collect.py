"""Collection: ``POST /collect`` (answered by the fast path; this route documents it and
answers the same way), the ``GET /collect`` pixel and the CORS preflight of ``/collect``."""

from __future__ import annotations

import contextlib
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from realtime.collector.asgi import Req, read_body
from realtime.collector.durable import LandingUnavailable
from realtime.collector.fastpath import route
from realtime.collector.service import PIXEL, Collector, iso, unavailable, utc_now
from realtime.replies import cors_headers

COLLECT = route("POST /collect")


def router(collector: Collector) -> APIRouter:
    """The routes of ``/collect``."""
    routes = APIRouter()

    async def collect(request: Request) -> Response:
        body = await read_body(request.scope, request.receive)
        return (await collector.collect(Req.from_scope(request.scope), body)).to_response()

    routes.add_api_route(COLLECT.path, collect, methods=[COLLECT.method], summary=COLLECT.summary)

    @routes.get("/collect", summary="Pixel: one event from query parameters (no-JS, e-mail opens)")
    async def pixel(request: Request) -> Response:
        collector.counters["requests"] += 1
        key = request.client.host if request.client else "unknown"
        if not collector.limiter.allow(key):
            return Response(PIXEL, status_code=429, media_type="image/gif")
        params = dict(request.query_params)
        site_id = params.pop("site_id", None)
        event = {"type": "page_view", **params}
        event.setdefault("event_id", str(uuid.uuid4()))
        event.setdefault("occurred_at", iso(utc_now()))
        event.setdefault("visitor_id", params.get("visitor_id") or "pixel")
        if "value" in event:
            with contextlib.suppress(ValueError):
                event["value"] = float(event["value"])
        payload = {"site_id": site_id, "events": [event]}
        raw = str(request.url.query).encode()
        try:
            reply = await collector.accept(Req.from_scope(request.scope), raw, payload, pixel=True)
        except LandingUnavailable as exc:
            reply = unavailable(exc)
        if reply.status >= 400:
            return Response(PIXEL, status_code=reply.status, media_type="image/gif")
        return reply.to_response()

    @routes.options("/collect", include_in_schema=False)
    async def preflight(request: Request) -> Response:
        origin = request.headers.get("origin")
        if not origin or origin not in collector.origins:
            return Response(status_code=403)
        return Response(status_code=204, headers=cors_headers(origin, "POST, GET, OPTIONS"))

    return routes
