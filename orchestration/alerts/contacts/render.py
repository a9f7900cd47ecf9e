"""What every contact point says, in one place: the subject, a value in its unit, one line
per alert (SMS, chat), the Superset link, and the Jinja templates of the mail."""

from __future__ import annotations

import math
from collections import Counter
from functools import cache
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SEVERITY_ORDER = ("critical", "warning", "info")
KIND_WORD = {"firing": "FIRING", "repeat": "FIRING", "resolved": "RESOLVED", "test": "TEST"}


def value_text(value, unit: str | None, currency: str | None = None) -> str:
    """A metric value as people read it: ``1,377``, ``812 EUR``, ``41.2%``, ``850 ms``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no data"
    value = float(value)
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "currency":
        return (
            f"{value:,.2f} {currency or ''}".strip()
            if abs(value) < 100
            else (f"{value:,.0f} {currency or ''}".strip())
        )
    if unit == "seconds":
        return f"{value:,.1f} s"
    if unit == "milliseconds":
        return f"{value:,.0f} ms"
    return f"{value:,.0f}" if value == int(value) or abs(value) >= 100 else f"{value:,.2f}"


def is_firing(item: dict) -> bool:
    return item.get("kind") in ("firing", "repeat")


def subject(items: list[dict]) -> str:
    """``[FIRING:2] critical - Revenue drop (demo)``, ``[RESOLVED] ...``,
    ``[FIRING:1, RESOLVED:1] ...``; several rules or sites are counted, not listed."""
    if not items:
        return "[SILENCED] no alert to tell"
    kinds = Counter(KIND_WORD.get(item.get("kind"), "FIRING") for item in items)
    if set(kinds) == {"TEST"}:
        return f"[TEST] Siteline alerts - {items[0].get('rule_name') or 'test message'}"
    firing, resolved = kinds.get("FIRING", 0), kinds.get("RESOLVED", 0)
    if firing and resolved:
        tag = f"[FIRING:{firing}, RESOLVED:{resolved}]"
    elif firing:
        tag = f"[FIRING:{firing}]"
    else:
        tag = "[RESOLVED]" if resolved == 1 else f"[RESOLVED:{resolved}]"
    severities = {item.get("severity") for item in items if is_firing(item)} or {
        item.get("severity") for item in items
    }
    severity = next((s for s in SEVERITY_ORDER if s in severities), "warning")
    rules = list(dict.fromkeys(item.get("rule_name") or item.get("rule_id") for item in items))
    sites = list(dict.fromkeys(item.get("site_name") or item.get("site_id") for item in items))
    what = rules[0] if len(rules) == 1 else f"{len(rules)} rules"
    where = sites[0] if len(sites) == 1 else f"{len(sites)} sites"
    return f"{tag} {severity} - {what} ({where})"


def instance_name(item: dict) -> str:
    """``Revenue drop - demo (channel=paid)``: the rule, the site, the dimension value."""
    rule = item.get("rule_name") or item.get("rule_id")
    name = f"{rule} - {item.get('site_name') or item.get('site_id')}"
    if item.get("dimension"):
        name += f" ({item['dimension']}={item.get('dimension_value')})"
    return name


def one_line(item: dict, limit: int = 160) -> str:
    """One alert in at most ``limit`` characters (an SMS, a chat line)."""
    word = KIND_WORD.get(item.get("kind"), "FIRING")
    head = f"{word} {item.get('severity', '')} {instance_name(item)}: ".replace("  ", " ")
    reason = item.get("reason") or value_text(
        item.get("value"), item.get("unit"), item.get("currency")
    )
    line = head + reason
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def period_text(item: dict) -> str:
    """``2026-12-06 (Europe/Berlin)`` for a day, ``2026-12-06 14:00-15:00 (...)`` for hours."""
    start, end = str(item.get("period_start") or ""), str(item.get("period_end") or "")
    tz = item.get("timezone") or "UTC"
    if item.get("grain") == "day" or (start.endswith("00:00:00") and end.endswith("00:00:00")
                                      and item.get("grain") in ("week", "month")):  # fmt: skip
        return f"{start[:10]} ({tz})"
    return f"{start[:16].replace('T', ' ')}-{end[11:16]} ({tz})"


def dashboard_url(item: dict, base_url: str) -> str:
    """The item's own link, or the Superset dashboard of its metric (``metrics.py``)."""
    if item.get("dashboard_url"):
        return item["dashboard_url"]
    from ingestion.core.metrics import METRICS

    metric = METRICS.get(item.get("metric") or "")
    slug = metric.dashboard if metric else "traffic"
    return f"{base_url.rstrip('/')}/superset/dashboard/{slug}/"


def superset_base_url() -> str:
    """Superset's address in messages: ``SITELINE_PUBLIC_SUPERSET_URL``, else the local one
    of ``siteline up``."""
    from ingestion.core.settings import settings

    config = settings()
    return config.public_superset_url or f"http://127.0.0.1:{config.superset_port}"


@cache
def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["value"] = lambda item, key="value": value_text(
        item.get(key), item.get("unit"), item.get("currency")
    )
    env.globals.update(instance_name=instance_name, period_text=period_text,
                       kind_word=KIND_WORD, is_firing=is_firing)  # fmt: skip
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
