"""HTTP answers of the collector and the real-time API, independent of the web framework:
both serve their hot paths on a raw ASGI fast path and share these shapes, so every error
reads the same (``{"error": ..., "status": ...}``), and their CORS headers."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"

    def to_response(self):
        from fastapi.responses import Response

        return Response(self.body, self.status, self.headers, self.media_type)


def json_reply(data, headers: dict | None = None, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(data), headers or {})


def error_reply(status: int, message: str, headers: dict | None = None) -> Reply:
    return json_reply({"error": message, "status": status}, headers, status)


# For what any page may load (the tracker script).
ANY_ORIGIN = {"Access-Control-Allow-Origin": "*"}


def cors_headers(
    origin: str | None, preflight: str | None = None, allow_headers: str = "Content-Type"
) -> dict[str, str]:
    """The CORS headers of an answer to ``origin`` (none without one): the origin is allowed
    and caches keep answers apart by origin. With ``preflight`` (the methods allowed), those
    of a preflight's answer, allowing ``allow_headers``. Whether the origin may send is the
    caller's check."""
    if not origin:
        return {}
    if preflight is None:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": preflight,
        "Access-Control-Allow-Headers": allow_headers,
        "Access-Control-Max-Age": "86400",
        "Vary": "Origin",
    }
