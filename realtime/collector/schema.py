"""The collector's wire format, version 1: validation of ``POST /collect`` payloads.

A public contract (docs/tracker.md): fields may be added, never removed or changed in meaning.
Unknown fields are kept (a newer tracker may send them) within the size limits. Validation is
hand-written rather than pydantic: it runs for every event on the hot path, and its messages
name the event and the field (``events[3].revenue: must be a number``).

One definition of a valid body: :func:`decode_body` parses it exactly as every reader of the
landing does (orjson), so a body it refuses is never landed, and a body it accepts is landed
only if the value it parsed passes the rules (compiled or in Python). The landing can then
hold no line a reader cannot read back.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
import orjson

EVENT_TYPES = frozenset({"page_view", "event", "transaction", "identify", "page_ping", "consent"})
MAX_EVENTS_PER_BATCH = 500
MAX_ID = 128
MAX_URL = 8192
MAX_TEXT = 1024
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_FUTURE = timedelta(days=1)
# The window of every time a client sends (occurred_at, sent_at): device clocks are corrected
# later, but a time before 2000 or more than a year ahead is garbage, not drift, and would
# overflow the warehouse's clock correction.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_AHEAD = MAX_FUTURE + timedelta(days=365)
# The time formats a client may send: a strict subset of RFC 3339 that the loader (dlt) reads
# to the same instant as the collector: date, ``T`` or a space, hours and minutes, optional
# seconds with up to 9 fractional digits, then ``Z``, ``+HH:MM``, ``-HH:MM`` or nothing (UTC).
# ASCII digits only; ``\Z``, not ``$``, so that no trailing newline passes.
TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?\Z"
)
TIME = re.compile(TIME_PATTERN)
# Money (revenue, shipping, tax, an item's price and line value price x quantity): the
# warehouse keeps it as numeric(14, 2), which holds at most 999,999,999,999.99; every amount
# at or below this bound rounds into it. An event's value (a cart line's value) has the same
# bound either side of 0, so that sums in the engine stay finite.
MAX_AMOUNT = 999_999_999_999.99
# An item's quantity: a whole number the warehouse's integer holds, with room for sums.
MAX_QUANTITY = 1_000_000
# Page performance timings (Navigation Timing, rounded by the tracker): whole milliseconds,
# at most an hour. The warehouse keeps them as integers.
PERFORMANCE_TIMINGS = ("dns_ms", "connect_ms", "ttfb_ms", "dom_interactive_ms", "load_ms")
MAX_TIMING_MS = 3_600_000
# Containers (objects, arrays) nest at most this deep in a body, the body itself being level
# 1: every reader and writer of the landing (orjson, the warehouse's jsonb) handles it.
MAX_DEPTH = 64


class Invalid(ValueError):
    """A payload or event that breaks the wire format; the message names where."""


def decode_body(body: bytes) -> object:
    """The body as the landing's readers parse it (orjson: RFC 8259 JSON, UTF-8, numbers
    within a double), nested at most :data:`MAX_DEPTH` deep; or :class:`Invalid`."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"body is not valid JSON: {exc}") from None
    # Depth needs at least as many opening brackets: most bodies have too few to walk.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _deeper_than(payload, MAX_DEPTH):
        raise Invalid(f"body: objects and arrays nested deeper than {MAX_DEPTH} levels")
    return payload


_CONTAINERS = (dict, list)


def _deeper_than(value: object, limit: int) -> bool:
    level = [value]
    for _ in range(limit):
        level = [
            item
            for container in level
            for item in (container.values() if type(container) is dict else container)
            if type(item) in _CONTAINERS
        ]
        if not level:
            return False
    return True


def parse_time(value: object, where: str, received_at: datetime | None = None) -> datetime:
    """A client's timestamp in the form of :data:`TIME_PATTERN` (UTC when it names no zone),
    within :data:`EARLIEST` and :data:`LATEST_AHEAD` after ``received_at`` (now when not
    given); or :class:`Invalid`."""
    if not isinstance(value, str) or len(value) > 40:
        raise Invalid(f"{where}: must be an RFC 3339 timestamp string")
    try:
        if not TIME.match(value):
            raise ValueError
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(
            f"{where}: '{value[:40]}' is not an RFC 3339 timestamp "
            "(YYYY-MM-DDTHH:MM[:SS[.fraction]], then Z, +HH:MM, -HH:MM or nothing for UTC)"
        ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    if ts < EARLIEST:
        raise Invalid(f"{where}: '{value}' is before {EARLIEST.date().isoformat()}")
    if ts - (received_at or datetime.now(UTC)) > LATEST_AHEAD:
        raise Invalid(f"{where}: '{value}' is more than a year in the future")
    return ts


# One rule per known field, whatever the event type (a field name has one meaning).
TEXT_LIMITS = {
    "visitor_id": MAX_ID, "session_id": MAX_ID, "user_id": MAX_ID, "order_id": MAX_ID,
    "url": MAX_URL, "referrer": MAX_URL,
    "title": MAX_TEXT, "category": MAX_TEXT, "action": MAX_TEXT, "label": MAX_TEXT,
    "screen": 64, "viewport": 64, "language": 64, "timezone": 64, "connection": 64,
}  # fmt: skip
# (minimum, maximum) of each number field; None: no bound.
NUMBER_RANGES = {
    "value": (-MAX_AMOUNT, MAX_AMOUNT), "revenue": (0, MAX_AMOUNT), "shipping": (0, MAX_AMOUNT),
    "tax": (0, MAX_AMOUNT), "engaged_seconds": (0, None),
}  # fmt: skip
OBJECTS = frozenset({"performance", "properties", "traits"})
REQUIRED = {
    "page_view": ("visitor_id", "url"),
    "event": ("visitor_id", "category", "action"),
    "transaction": ("visitor_id", "order_id", "revenue"),
    "identify": ("visitor_id", "user_id"),
    "page_ping": ("visitor_id", "engaged_seconds"),
    "consent": ("visitor_id", "granted"),
}


def _check_number(value: object, at: str, minimum, maximum=None) -> None:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise Invalid(f"{at}: must be a number")
    if minimum is not None and value < minimum:
        raise Invalid(f"{at}: must be at least {minimum:,}")
    if maximum is not None and value > maximum:
        raise Invalid(f"{at}: must be at most {maximum:,}")


def _whole_number(value: object, at: str, minimum: int, maximum: int) -> None:
    if type(value) is not int or not minimum <= value <= maximum:
        raise Invalid(f"{at}: must be a whole number from {minimum:,} to {maximum:,}")


def _performance(performance: dict, where: str) -> None:
    # Other keys are kept unchecked (a newer tracker may send more timings).
    for key in PERFORMANCE_TIMINGS:
        value = performance.get(key)
        if value is not None:
            _whole_number(value, f"{where}.performance.{key}", 0, MAX_TIMING_MS)


def _items(items: object, where: str) -> None:
    if not isinstance(items, list) or len(items) > 200:
        raise Invalid(f"{where}.items: must be a list of at most 200 items")
    for i, item in enumerate(items):
        at = f"{where}.items[{i}]"
        if not isinstance(item, dict):
            raise Invalid(f"{at}: must be an object")
        sku = item.get("sku")
        if sku is None:
            raise Invalid(f"{at}.sku: is required")
        for key in ("sku", "name", "category"):
            value = item.get(key)
            if value is not None and (type(value) is not str or len(value) > MAX_TEXT):
                raise Invalid(f"{at}.{key}: must be a string of at most {MAX_TEXT} characters")
        price, quantity = item.get("price"), item.get("quantity", 1)
        if price is not None:
            _check_number(price, f"{at}.price", 0, MAX_AMOUNT)
        _whole_number(quantity, f"{at}.quantity", 1, MAX_QUANTITY)
        if price is not None and price * quantity > MAX_AMOUNT:
            raise Invalid(f"{at}: price x quantity must be at most {MAX_AMOUNT:,}")


def validate_event(event: object, index: int, received_at: datetime) -> dict:
    """Check one event; return it (unchanged) or raise :class:`Invalid`.

    One pass over the event's own fields against the rules above (this runs for every
    event on the collector's hot path), then the fields its type requires.
    """
    where = f"events[{index}]"
    if type(event) is not dict:
        raise Invalid(f"{where}: must be an object")
    event_id = event.get("event_id")
    if type(event_id) is not str or not UUID.match(event_id):
        raise Invalid(f"{where}.event_id: must be a UUID string")
    etype = event.get("type")
    required = REQUIRED.get(etype) if type(etype) is str else None
    if required is None:
        allowed = ", ".join(sorted(EVENT_TYPES))
        raise Invalid(f"{where}.type: '{str(etype)[:40]}' is not one of {allowed}")
    parse_time(event.get("occurred_at"), f"{where}.occurred_at", received_at)
    for key, value in event.items():
        if value is None:
            continue
        limit = TEXT_LIMITS.get(key)
        if limit is not None:
            if type(value) is not str:
                raise Invalid(f"{where}.{key}: must be a string")
            if len(value) > limit:
                raise Invalid(f"{where}.{key}: longer than {limit} characters")
        elif key in NUMBER_RANGES:
            _check_number(value, f"{where}.{key}", *NUMBER_RANGES[key])
        elif key in OBJECTS:
            if type(value) is not dict:
                raise Invalid(f"{where}.{key}: must be an object")
            if key == "performance":
                _performance(value, where)
        elif key == "items":
            _items(value, where)
        elif key == "currency":
            if type(value) is not str or not CURRENCY.match(value):
                raise Invalid(f"{where}.currency: must be an ISO 4217 code like 'EUR'")
        elif key == "granted" and type(value) is not bool:
            raise Invalid(f"{where}.granted: must be true or false")
    for key in required:
        value = event.get(key)
        if value is None:
            raise Invalid(f"{where}.{key}: is required")
        if value == "":
            raise Invalid(f"{where}.{key}: must not be empty")
    if etype == "page_ping" and event["engaged_seconds"] > 3600:
        raise Invalid(f"{where}.engaged_seconds: must be at most 3600")
    return event


def validate_envelope(
    payload: object, received_at: datetime | None = None
) -> tuple[str, str | None, list]:
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
        parse_time(sent_at, "sent_at", received_at)
    return site_id, sent_at, events


# -- The same rules, compiled (msgspec) -----------------------------------------------------------
# The collector's fast path converts the parsed body (:func:`decode_body`) into these types:
# one pass in C checks the whole batch. They are exactly as strict as the rules above or
# stricter, never less: whatever they refuse goes through ``validate_envelope`` and
# ``validate_event``, which name the field and accept or reject each event
# (tests/unit/test_collector_logic.py checks both ways agree). They check the value the
# readers parse, not the bytes: msgspec's own parser skips unknown fields unread, and would
# pass numbers, text and nesting that orjson refuses.


def _str(limit: int | None, minimum: int = 0, pattern: str | None = None):
    return Annotated[str, msgspec.Meta(min_length=minimum, max_length=limit, pattern=pattern)]


_Text = _str(MAX_TEXT) | None
_Short = _str(64) | None
_Id = _str(MAX_ID) | None
_Url = _str(MAX_URL) | None
_Amount = Annotated[float, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
_Time = _str(40, pattern=TIME_PATTERN)
_Timing = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMING_MS)] | None


class _Item(msgspec.Struct, gc=False):
    sku: _str(MAX_TEXT)
    name: _Text = None
    category: _Text = None
    price: _Amount | None = None
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)] = 1


class _Performance(msgspec.Struct, gc=False):
    dns_ms: _Timing = None
    connect_ms: _Timing = None
    ttfb_ms: _Timing = None
    dom_interactive_ms: _Timing = None
    load_ms: _Timing = None


class _Event(msgspec.Struct, tag_field="type", kw_only=True, gc=False):
    event_id: _str(36, 36)  # and canonical (batch_valid: faster than a pattern per id)
    occurred_at: _Time
    visitor_id: _str(MAX_ID, 1)  # every type requires one
    session_id: _Id = None
    user_id: _Id = None
    order_id: _Id = None
    url: _Url = None
    referrer: _Url = None
    title: _Text = None
    category: _Text = None
    action: _Text = None
    label: _Text = None
    screen: _Short = None
    viewport: _Short = None
    language: _Short = None
    timezone: _Short = None
    connection: _Short = None
    value: Annotated[float, msgspec.Meta(ge=-MAX_AMOUNT, le=MAX_AMOUNT)] | None = None
    revenue: _Amount | None = None
    shipping: _Amount | None = None
    tax: _Amount | None = None
    engaged_seconds: Annotated[float, msgspec.Meta(ge=0)] | None = None
    performance: _Performance | None = None
    properties: dict | None = None
    traits: dict | None = None
    items: Annotated[list[_Item], msgspec.Meta(max_length=200)] | None = None
    currency: _str(3, pattern=CURRENCY.pattern) | None = None
    granted: bool | None = None


class _PageView(_Event, tag="page_view", kw_only=True):
    url: _str(MAX_URL, 1)


class _CustomEvent(_Event, tag="event", kw_only=True):
    category: _str(MAX_TEXT, 1)
    action: _str(MAX_TEXT, 1)


class _Transaction(_Event, tag="transaction", kw_only=True):
    order_id: _str(MAX_ID, 1)
    revenue: _Amount


class _Identify(_Event, tag="identify", kw_only=True):
    user_id: _str(MAX_ID, 1)


class _PagePing(_Event, tag="page_ping", kw_only=True):
    engaged_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)]


class _Consent(_Event, tag="consent", kw_only=True):
    granted: bool


class Batch(msgspec.Struct):
    """A ``POST /collect`` body every event of which is valid (ids and times are checked
    by :func:`batch_valid`)."""

    site_id: _str(None, 1)
    events: Annotated[
        list[_PageView | _CustomEvent | _Transaction | _Identify | _PagePing | _Consent],
        msgspec.Meta(min_length=1, max_length=MAX_EVENTS_PER_BATCH),
    ]
    sent_at: _Time | None = None


def compiled_batch(payload: object) -> Batch | None:
    """The payload (from :func:`decode_body`) as a :class:`Batch`, or None when the compiled
    rules refuse it (the rules in Python then say why)."""
    try:
        return msgspec.convert(payload, Batch)
    except msgspec.ValidationError:
        return None


def batch_valid(batch: Batch, received_at: datetime) -> bool:
    """Whether the batch passes what its types cannot say: event ids in the canonical UUID
    form (``UUID``), times that :func:`parse_time` reads within its window, and item lines
    (price x quantity) within :data:`MAX_AMOUNT`."""
    for event in batch.events:
        if event.items:
            for item in event.items:
                if item.price is not None and item.price * item.quantity > MAX_AMOUNT:
                    return False
    latest = received_at + LATEST_AHEAD
    try:
        times = [event.occurred_at for event in batch.events]
        if batch.sent_at is not None:
            times.append(batch.sent_at)
        for text in times:
            ts = datetime.fromisoformat(text)
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            if ts < EARLIEST or ts > latest:
                return False
    except ValueError:
        return False
    return _canonical_uuids([event.event_id for event in batch.events])


def _canonical_uuids(ids: list[str]) -> bool:
    """All of ``ids`` (36 characters each) match ``UUID``, in a few C calls for the lot."""
    joined, n = "".join(ids), len(ids)
    dashes = "-" * n
    if len(joined) != 36 * n or any(joined[i::36] != dashes for i in (8, 13, 18, 23)):
        return False
    digits = joined.replace("-", "")
    try:
        # fromhex skips whitespace, so a blank in place of a digit shows as a short result
        return len(digits) == 32 * n and len(bytes.fromhex(digits)) == 16 * n
    except ValueError:
        return False
