"""The collector's FastAPI routers, one per area: collection (``collect``), the tracker script
and demo page (``pages``), ``health`` and the landing export (``landing``)."""
