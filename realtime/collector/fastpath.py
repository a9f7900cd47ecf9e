"""The collector's ASGI fast path: answers ``POST /collect`` and the engine's ``/v1`` reads
before FastAPI, whose routing, dependency injection and response classes cost more than the
collector's own work. Everything else goes to the FastAPI app.

:data:`ROUTES` is the one table of what the fast path answers: the collector's rows and the
engine's (``realtime/engine/api.py``'s ``ENGINE_ROUTES``, from which the engine API also
answers its reads). The fast path dispatches from it, the FastAPI routes that document these
requests in OpenAPI carry its paths and summaries, and ``tests/unit/test_collector_routes.py``
fails when they differ.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from fastapi import FastAPI

from realtime.collector.asgi import Req, read_body, send_reply
from realtime.collector.service import Collector, throttled
from realtime.engine.api import (
    API_PREFIX,
    ENGINE_ROUTES,
    PREFLIGHT,
    STREAM,
    EngineAPI,
    EngineRoute,
)
from realtime.replies import Reply, error_reply

# The fast path's handlers.
COLLECT = "collect"  # the collector takes the request (Collector.collect)
NOOP = "noop"  # read the body, land nothing (benchmarks only: this server's ceiling)
ENGINE_GET = "engine_get"  # the engine API answers (EngineAPI.get, from ENGINE_ROUTES)
ENGINE_PREFLIGHT = "engine_preflight"  # the engine API's CORS preflight


@dataclass(frozen=True)
class FastRoute:
    """A request the fast path answers: its method, its path as OpenAPI writes it, the
    handler, and the summary of the FastAPI route documenting it (None: not documented)."""

    method: str
    path: str
    handler: str
    summary: str | None


def _engine_row(row: EngineRoute) -> FastRoute:
    """The fast path's row of a route of the engine API: EngineAPI.get answers every read."""
    handler = ENGINE_PREFLIGHT if row.handler == PREFLIGHT else ENGINE_GET
    return FastRoute(row.method, row.path, handler, row.summary)


# The engine's rows: ENGINE_ROUTES but the event stream (a streaming response, FastAPI's). The
# fast path takes every GET and OPTIONS under API_PREFIX but the stream's: the engine API
# answers a path it does not know with its own 404.
ROUTES = (
    FastRoute("POST", "/collect", COLLECT, "Receive a batch of tracker events"),
    FastRoute("POST", "/noop", NOOP, None),
    *(_engine_row(row) for row in ENGINE_ROUTES if row.handler != STREAM),
)
(ENGINE_STREAM,) = (row.path for row in ENGINE_ROUTES if row.handler == STREAM)
_ENGINE_HANDLERS = frozenset({ENGINE_GET, ENGINE_PREFLIGHT})

# The headers the engine API reads: decoding every header costs more than its lookup.
_API_HEADERS = frozenset({b"authorization", b"origin"})


def route(name: str) -> FastRoute:
    """The row of :data:`ROUTES` answering ``name`` (``POST /collect``)."""
    method, path = name.split(" ", 1)
    return next(r for r in ROUTES if r.method == method and r.path == path)


class FastPath:
    """The ASGI application the server runs: the rows of :data:`ROUTES` that are on (``/noop``
    with ``SITELINE_COLLECTOR_NOOP``, ``/v1`` with the engine in this process) in front of
    the FastAPI ``app``."""

    def __init__(self, app: FastAPI, collector: Collector, api: EngineAPI | None = None) -> None:
        self.app = app
        self.collector = collector
        self.api = api
        self.state = app.state
        on = {COLLECT} | ({NOOP} if collector.settings.noop_endpoint else set())
        self._exact = {r.path: (r.method, r.handler) for r in ROUTES if r.handler in on}
        self._engine = (
            {r.method: r.handler for r in ROUTES if r.handler in _ENGINE_HANDLERS}
            if api is not None
            else None
        )
        self._refusals: set[asyncio.Task] = set()

    def handler(self, method: str, path: str) -> str | None:
        """The handler that answers ``method path`` here, or None: the FastAPI app does."""
        exact = self._exact.get(path)
        if exact is not None:
            return exact[1] if exact[0] == method else None
        if self._engine is not None and path.startswith(API_PREFIX):
            handler = self._engine.get(method)
            return None if handler is ENGINE_GET and path == ENGINE_STREAM else handler
        return None

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
        # Each handler inline: a call per handler would cost a coroutine per request.
        if scope["type"] == "http":
            handler = self.handler(scope["method"], scope["path"])
            if handler is COLLECT:
                body = await read_body(scope, receive)
                try:
                    reply = await self.collector.collect(Req.from_scope(scope), body)
                except Exception as exc:
                    # Not the client's fault (client garbage is a 4xx): say so once per kind
                    # and minute, not with a traceback per request.
                    throttled.error(
                        _failure_kind(exc), "POST /collect failed: %r", exc, exc_info=True
                    )
                    reply = error_reply(500, "the collector failed to store the request; retry it")
                await send_reply(send, reply)
                return
            if handler is ENGINE_GET or handler is ENGINE_PREFLIGHT:
                self.collector.last_request_at = time.monotonic()  # the engine yields to reads too
                headers = {
                    k.decode("latin-1"): v.decode("latin-1")
                    for k, v in scope["headers"]
                    if k in _API_HEADERS
                }
                if handler is ENGINE_PREFLIGHT:
                    answer = self.api.preflight(headers)
                else:
                    query = scope.get("query_string", b"").decode("latin-1")
                    answer = await self.api.get(scope["path"], query, headers)
                await send_reply(send, answer)
                return
            if handler is NOOP:
                await read_body(scope, receive)
                await send_reply(send, Reply(204, b""))
                return
        await self.app(scope, receive, send)


def _failure_kind(exc: BaseException) -> str:
    """An exception's type and where it was raised: one kind of failure for the log."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
    return f"{type(exc).__name__}@{where}"
