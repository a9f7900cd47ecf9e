"""The collector's wire format, version 1: validation of ``POST /collect`` payloads.

A public contract (docs/tracker.md): fields may be added, never removed or changed in meaning.
Unknown fields are kept (a newer tracker may send them) within the size limits. Validation is
hand-written rather than pydantic: it runs for every event on the hot path, and its messages
name the event and the field (``events[3].revenue: must be a number``).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

SCHEMA_VERSION = 1
EVENT_TYPES = frozenset({"page_view", "event", "transaction", "identify", "page_ping", "consent"})
MAX_EVENTS_PER_BATCH = 500
MAX_ID = 128
MAX_URL = 8192
MAX_TEXT = 1024
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_FUTURE = timedelta(days=1)


class Invalid(ValueError):
    """A payload or event that breaks the wire format; the message names where."""


def parse_time(value: object, where: str) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise Invalid(f"{where}: must be an ISO 8601 timestamp string")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{where}: '{value[:40]}' is not an ISO 8601 timestamp") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts


def _text(event: dict, key: str, where: str, limit: int, required: bool = False) -> None:
    value = event.get(key)
    if value is None:
        if required:
            raise Invalid(f"{where}.{key}: is required")
        return
    if not isinstance(value, str):
        raise Invalid(f"{where}.{key}: must be a string")
    if required and not value:
        raise Invalid(f"{where}.{key}: must not be empty")
    if len(value) > limit:
        raise Invalid(f"{where}.{key}: longer than {limit} characters")


def _number(event: dict, key: str, where: str, required: bool = False, minimum=None) -> None:
    value = event.get(key)
    if value is None:
        if required:
            raise Invalid(f"{where}.{key}: is required")
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"{where}.{key}: must be a number")
    if minimum is not None and value < minimum:
        raise Invalid(f"{where}.{key}: must be at least {minimum}")


def _object(event: dict, key: str, where: str) -> None:
    value = event.get(key)
    if value is not None and not isinstance(value, dict):
        raise Invalid(f"{where}.{key}: must be an object")


def _items(event: dict, where: str) -> None:
    items = event.get("items")
    if items is None:
        return
    if not isinstance(items, list) or len(items) > 200:
        raise Invalid(f"{where}.items: must be a list of at most 200 items")
    for i, item in enumerate(items):
        at = f"{where}.items[{i}]"
        if not isinstance(item, dict):
            raise Invalid(f"{at}: must be an object")
        _text(item, "sku", at, MAX_ID, required=True)
        _text(item, "name", at, MAX_TEXT)
        _text(item, "category", at, MAX_TEXT)
        _number(item, "price", at, minimum=0)
        qty = item.get("quantity", 1)
        if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
            raise Invalid(f"{at}.quantity: must be a whole number of at least 1")


def validate_event(event: object, index: int, received_at: datetime) -> dict:
    """Check one event; return it (unchanged) or raise :class:`Invalid`."""
    where = f"events[{index}]"
    if not isinstance(event, dict):
        raise Invalid(f"{where}: must be an object")
    event_id = event.get("event_id")
    if not isinstance(event_id, str) or not UUID.match(event_id):
        raise Invalid(f"{where}.event_id: must be a UUID string")
    etype = event.get("type")
    if etype not in EVENT_TYPES:
        allowed = ", ".join(sorted(EVENT_TYPES))
        raise Invalid(f"{where}.type: '{str(etype)[:40]}' is not one of {allowed}")
    occurred = parse_time(event.get("occurred_at"), f"{where}.occurred_at")
    if occurred - received_at > MAX_FUTURE + timedelta(days=365):
        # Device clocks are corrected later, but a year ahead is garbage, not drift.
        raise Invalid(f"{where}.occurred_at: more than a year in the future")
    _text(event, "visitor_id", where, MAX_ID, required=True)
    _text(event, "session_id", where, MAX_ID)
    _text(event, "user_id", where, MAX_ID)
    _text(event, "url", where, MAX_URL, required=etype == "page_view")
    _text(event, "referrer", where, MAX_URL)
    _text(event, "title", where, MAX_TEXT)
    for key in ("screen", "viewport", "language", "timezone", "connection"):
        _text(event, key, where, 64)
    _object(event, "performance", where)
    _object(event, "properties", where)
    if etype == "event":
        _text(event, "category", where, MAX_TEXT, required=True)
        _text(event, "action", where, MAX_TEXT, required=True)
        _text(event, "label", where, MAX_TEXT)
        _number(event, "value", where)
    elif etype == "transaction":
        _text(event, "order_id", where, MAX_ID, required=True)
        _number(event, "revenue", where, required=True, minimum=0)
        _number(event, "shipping", where, minimum=0)
        _number(event, "tax", where, minimum=0)
        currency = event.get("currency")
        if currency is not None and (not isinstance(currency, str) or not CURRENCY.match(currency)):
            raise Invalid(f"{where}.currency: must be an ISO 4217 code like 'EUR'")
        _items(event, where)
    elif etype == "identify":
        _text(event, "user_id", where, MAX_ID, required=True)
        _object(event, "traits", where)
    elif etype == "page_ping":
        _number(event, "engaged_seconds", where, required=True, minimum=0)
        if event["engaged_seconds"] > 3600:
            raise Invalid(f"{where}.engaged_seconds: must be at most 3600")
    elif etype == "consent" and not isinstance(event.get("granted"), bool):
        raise Invalid(f"{where}.granted: must be true or false")
    return event


def validate_envelope(payload: object) -> tuple[str, str | None, list]:
    """(site_id, sent_at, events) of a batch, or :class:`Invalid` for the whole request."""
    if not isinstance(payload, dict):
        raise Invalid("body: must be a JSON object with site_id and events")
    site_id = payload.get("site_id")
    if not isinstance(site_id, str) or not site_id:
        raise Invalid("site_id: is required")
    events = payload.get("events")
    if not isinstance(events, list) or not events:
        raise Invalid("events: must be a non-empty list")
    if len(events) > MAX_EVENTS_PER_BATCH:
        raise Invalid(f"events: at most {MAX_EVENTS_PER_BATCH} events per request")
    sent_at = payload.get("sent_at")
    if sent_at is not None:
        parse_time(sent_at, "sent_at")
    return site_id, sent_at, events
