"""The pages the collector serves: the tracker script ``/t.js`` and, with
``SITELINE_DEMO_PAGE=1``, the demo shop page ``/demo/``."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from realtime.engine.api import EngineAPI
from realtime.replies import ANY_ORIGIN

STATIC = Path(__file__).parent.parent / "static"


def router(api: EngineAPI | None, demo_page: bool) -> APIRouter:
    """``/t.js``, and ``/demo/`` when asked for and the engine knows a site ``demo``."""
    routes = APIRouter()
    tracker_js = minified_tracker()
    headers = {"Cache-Control": "public, max-age=3600", **ANY_ORIGIN}

    @routes.get("/t.js", summary="The tracker script (minified)")
    async def tracker() -> Response:
        return Response(tracker_js, media_type="application/javascript", headers=headers)

    if api is not None and demo_page and "demo" in api.sites:

        @routes.get("/demo/", include_in_schema=False)
        async def demo() -> Response:
            """The demo site's shop page with a live panel of the real-time API (the demo
            only: it carries the demo site's read-only API key)."""
            return Response(await asyncio.to_thread(render_demo_page, api), media_type="text/html")

    return routes


def minified_tracker() -> bytes:
    """``static/tracker.js``, minified as ``/t.js`` serves it."""
    import rjsmin

    source = (STATIC / "tracker.js").read_text()
    return rjsmin.jsmin(source).encode()


def render_demo_page(api: EngineAPI) -> str:
    """``static/demo.html`` filled in with the demo site, its API key, products and customers."""
    from ingestion.demo_traffic.catalogue import products

    engine = api.engine
    site = api.sites["demo"]
    key = next(k.decode() for k, s in api.keys if s.id == "demo")
    customers = engine.customers.examples("demo") if engine.customers else []
    options = (
        "".join(
            f'<option value="{html.escape(user)}">{html.escape(user)} '
            f"(lifetime €{revenue:,.2f})</option>"
            for user, revenue in customers
        )
        or '<option value="cust-0000001">cust-0000001 (no customers in the warehouse yet)</option>'
    )
    shelf = [
        {k: p[k] for k in ("sku", "name", "category", "price", "slug")} for p in products()[:12]
    ]
    page = (STATIC / "demo.html").read_text()
    for name, value in (
        ("{site_id}", site.id),
        ("{domain}", site.domains[0]),
        ("{api_key}", key),
        ("{products}", orjson.dumps(shelf).decode()),
        ("{customer_options}", options),
    ):
        page = page.replace(name, value)
    return page
