"""The small chart of an alert mail: the instance's recent series, its baseline band (or
threshold) and the period that breached (or recovered), as a PNG.

Drawn from a Vega-Lite spec by vl-convert (no browser, no network: the renderer is compiled
into the wheel), so the mail carries the picture itself, as an inline ``cid:`` part - mail
clients block remote images and most refuse ``data:`` URIs.
"""

from __future__ import annotations

import math
from datetime import datetime

WIDTH, HEIGHT = 520, 150
# Colours that survive dark and light mail themes.
LINE, BAND, BOUND = "#1f5fa8", "#9ec1e6", "#6b7b8c"
MARK = {"firing": "#c62828", "repeat": "#c62828", "resolved": "#2e7d32", "test": "#ef6c00"}


def _number(value) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _iso(value) -> str:
    """A period start as one spelling (``2026-12-06T00:00:00``), whatever it came as."""
    text = str(value or "")
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None).isoformat()
    except ValueError:
        return text


def chart_spec(item: dict) -> dict | None:
    """The Vega-Lite spec of one item's chart (``AlertNews.payload()``), or None when its
    series has no value to draw."""
    rows = []
    for point in item.get("series") or []:
        period, value, lower, upper = (list(point) + [None] * 4)[:4]
        rows.append({"period": _iso(period), "value": _number(value), "lower": _number(lower),
                     "upper": _number(upper)})  # fmt: skip
    if not any(row["value"] is not None for row in rows):
        return None
    marked = _iso(item.get("period_start"))
    for row in rows:
        row["marked"] = row["period"] == marked
    label = item.get("metric_label") or item.get("metric") or "value"
    # a tick per period, at most about eight (a week of days, a few hours of a day's hours)
    grain = item.get("grain") or "day"
    interval = {"hour": "hours", "week": "week", "month": "month"}.get(grain, "day")
    ticks = {"interval": interval, "step": max(1, math.ceil(len(rows) / 8))}
    x = {"field": "period", "type": "temporal", "title": None,
         "axis": {"format": "%H:%M" if grain == "hour" else "%d %b", "tickCount": ticks,
                  "labelColor": "#444", "grid": False}}  # fmt: skip
    y = {"type": "quantitative", "title": None, "axis": {"labelColor": "#444", "tickCount": 4}}
    layers = [
        # the band where the condition has both bounds (anomaly's baseline band)
        {"transform": [{"filter": "isValid(datum.lower) && isValid(datum.upper)"}],
         "mark": {"type": "area", "color": BAND, "opacity": 0.5},
         "encoding": {"x": x, "y": {**y, "field": "lower"}, "y2": {"field": "upper"}}},
        # a single bound (a threshold, or one side of a comparison): a dashed line
        *({"transform": [{"filter": f"isValid(datum.{bound})"}],
           "mark": {"type": "line", "color": BOUND, "strokeDash": [4, 3], "strokeWidth": 1},
           "encoding": {"x": x, "y": {**y, "field": bound}}} for bound in ("lower", "upper")),
        {"transform": [{"filter": "isValid(datum.value)"}],
         "mark": {"type": "line", "color": LINE, "strokeWidth": 2, "point": {"size": 12}},
         "encoding": {"x": x, "y": {**y, "field": "value", "title": None}}},
        # the period this message is about
        {"transform": [{"filter": "datum.marked && isValid(datum.value)"}],
         "mark": {"type": "point", "filled": True, "size": 110,
                  "color": MARK.get(item.get("kind"), MARK["firing"])},
         "encoding": {"x": x, "y": {**y, "field": "value"}}},
    ]  # fmt: skip
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": {"text": label, "fontSize": 12, "anchor": "start", "color": "#222"},
        "width": WIDTH,
        "height": HEIGHT,
        "background": "white",
        "config": {"view": {"stroke": None}, "font": "sans-serif"},
        "data": {"values": rows},
        "layer": layers,
    }


def chart_png(item: dict) -> bytes | None:
    """The chart of one item as PNG bytes, or None when there is nothing to draw."""
    spec = chart_spec(item)
    if spec is None:
        return None
    import vl_convert

    return vl_convert.vegalite_to_png(spec, scale=1.5)
