"""The collector's ASGI application (``create_app``, run by ``siteline collector``): the
service, the real-time engine beside it, the routers and the fast path in front of them.

Where a request is answered: ``fastpath.py`` (``POST /collect``, the engine's ``/v1`` reads),
``routes/`` (everything else, one router per area), ``service.py`` (what the collector does
with a request), ``realtime/engine/api.py`` (the engine's ``/v1`` routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from fastapi import FastAPI

from ingestion.core.landing import SCHEMA_VERSION
from ingestion.core.sites import SitesConfig, load_sites, site_keys
from realtime.collector.fastpath import FastPath
from realtime.collector.routes import collect, health, landing, pages
from realtime.collector.service import Collector, build_engine, log
from realtime.collector.settings import CollectorSettings
from realtime.engine.api import EngineAPI, add_routes
from realtime.engine.bus import EventBus, make_bus
from realtime.throttled_log import ThrottleFilter


def create_app(
    sites: SitesConfig | None = None,
    settings: CollectorSettings | None = None,
    bus: EventBus | None = None,
) -> FastPath:
    """The collector's application; what is not given comes from the environment."""
    settings = settings or CollectorSettings.from_environment()
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
    app.include_router(collect.router(collector))
    app.include_router(pages.router(api, settings.demo_page))
    app.include_router(health.router(collector, engine))
    app.include_router(landing.router(settings))
    return FastPath(app, collector, api)
