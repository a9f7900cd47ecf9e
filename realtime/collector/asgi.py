"""The collector's HTTP plumbing, shared by the ASGI fast path and the FastAPI routes: what
the collector reads of a request (:class:`Req`), its body (:func:`read_body`) and sending a
:class:`~realtime.replies.Reply` over ASGI. CORS headers: ``realtime.replies.cors_headers``."""

from __future__ import annotations

from dataclasses import dataclass

from ingestion.core.enrich import MAX_USER_AGENT
from realtime.collector.schema import MAX_URL
from realtime.replies import Reply

MAX_BODY = 1024 * 1024
# Header values the collector keeps, parses, caches or lands, cut to these lengths first: a
# client string is not the collector's to store whole (docs/tracker.md).
CLIENT_HEADER_LIMITS = {"user-agent": MAX_USER_AGENT, "origin": 512}


@dataclass(frozen=True)
class Req:
    """What the collector reads of a request, independent of the web framework."""

    headers: dict[str, str]  # lower-case names
    peer: str | None
    path: str

    @classmethod
    def from_scope(cls, scope: dict) -> Req:
        """From an ASGI scope (a FastAPI route passes ``request.scope``)."""
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


async def read_body(scope, receive, limit: int = MAX_BODY) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (read no further than that).

    The fast path passes its ASGI ``scope`` and ``receive``, a FastAPI route its request's
    (``request.scope``, ``request.receive``)."""
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


async def send_reply(send, reply: Reply) -> None:
    """Send ``reply`` as the whole answer of an ASGI request."""
    headers = [
        (b"content-type", reply.media_type.encode()),
        (b"content-length", b"%d" % len(reply.body)),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
