"""The landing export for remote loaders: each stream's manifest of closed segments and the
segments themselves, behind the bearer token ``SITELINE_LANDING_TOKEN`` (off without one)."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ingestion.core.landing import FORMAT_VERSION, SEGMENTS, read_manifest
from realtime.collector.settings import CollectorSettings
from realtime.replies import Reply, error_reply

STREAMS = ("events", "bad_events")


def router(settings: CollectorSettings) -> APIRouter:
    """The routes of ``/landing``."""
    routes = APIRouter()
    landing = settings.landing_dir

    @routes.get("/landing/{stream}/manifest.json", summary="Closed segments of a landing stream")
    async def manifest(stream: str, request: Request) -> Response:
        denied = denial(settings.landing_token, request.headers.get("authorization"))
        if denied or stream not in STREAMS:
            return (denied or error_reply(404, f"no landing stream '{stream}'")).to_response()
        # A thread: the manifest grows with the retention, and parsing it must not stall
        # the event loop that answers the trackers.
        segments = await asyncio.to_thread(read_manifest, landing / stream)
        return JSONResponse({"version": FORMAT_VERSION, "segments": [s.__dict__ for s in segments]})

    @routes.get("/landing/{stream}/segments/{name}", summary="One closed segment")
    async def segment(stream: str, name: str, request: Request) -> Response:
        denied = denial(settings.landing_token, request.headers.get("authorization"))
        if denied:
            return denied.to_response()
        missing = error_reply(404, f"no closed segment '{name[:200]}' in stream '{stream[:40]}'")
        if stream not in STREAMS:
            return missing.to_response()
        listed = await asyncio.to_thread(read_manifest, landing / stream)
        if name not in {s.name for s in listed}:
            return missing.to_response()
        return FileResponse(landing / stream / SEGMENTS / name)

    return routes


def denial(token: str | None, authorization: str | None) -> Reply | None:
    """The answer refusing a request with ``authorization`` (its header), or None: it may read."""
    if not token:
        return error_reply(404, "landing export is disabled (set SITELINE_LANDING_TOKEN)")
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        return error_reply(401, "missing or wrong bearer token")
    return None
