"""HTTP answers of the collector and the real-time API, independent of the web framework:
both serve their hot paths on a raw ASGI fast path and share these shapes, so every error
reads the same (``{"error": ..., "status": ...}``)."""

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
