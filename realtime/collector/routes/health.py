"""``GET /health``: liveness, the landing streams' state, counters, the bus and the engine."""

from __future__ import annotations

from fastapi import APIRouter

from realtime.collector.service import Collector
from realtime.engine.engine import Engine


def router(collector: Collector, engine: Engine | None) -> APIRouter:
    """The health route (``Collector.health`` says what it answers)."""
    routes = APIRouter()

    @routes.get("/health", summary="Liveness and landing state")
    async def health() -> dict:
        return collector.health(engine)

    return routes
