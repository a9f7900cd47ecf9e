from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import event as note_event
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.core.enrich import bot_reason, client_ip, country_of
from ingestion.core.sites import Site
from realtime.collector.ratelimit import RateLimiter
from realtime.collector.schema import (
    MAX_AMOUNT,
    MAX_DEPTH,
    NUMBER_RANGES,
    OBJECTS,
    REQUIRED,
    TEXT_LIMITS,
    Invalid,
    batch_valid,
    compiled_batch,
    decode_body,
    parse_time,
    validate_envelope,
    validate_event,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
BASE = {
    "event_id": "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed",
    "occurred_at": "2026-11-24T09:59:59Z",
    "visitor_id": "v1",
}


def check(**fields):
    return validate_event({**BASE, **fields}, 2, NOW)


VALID_EVENTS = [
    {"type": "page_view", "url": "https://a.example/"},
    {"type": "event", "category": "video", "action": "play", "value": 3, "label": None},
    {"type": "transaction", "order_id": "o1", "revenue": 10.5, "currency": "EUR",
     "items": [{"sku": "A", "price": 10.5, "quantity": 1}]},
    {"type": "identify", "user_id": "u1", "traits": {"plan": "gold"}},
    {"type": "page_ping", "engaged_seconds": 15},
    {"type": "consent", "granted": False},
    {"type": "page_view", "url": "https://a.example/", "future_field": {"kept": True}},
]  # fmt: skip

# Values the warehouse's types cannot hold (numeric(14, 2), integer): each is refused by name.
_ORDER = {"type": "transaction", "order_id": "o"}
OUT_OF_RANGE = [
    ({**_ORDER, "revenue": 1e13}, "events[2].revenue: must be at most 999,999,999,999.99"),
    ({**_ORDER, "revenue": 10**12}, "events[2].revenue: must be at most 999,999,999,999.99"),
    ({**_ORDER, "revenue": 999_999_999_999.991}, "events[2].revenue: must be at most"),
    ({**_ORDER, "revenue": 1.7e308}, "events[2].revenue: must be at most"),
    ({**_ORDER, "revenue": 1, "shipping": 2e12}, "events[2].shipping: must be at most"),
    ({**_ORDER, "revenue": 1, "tax": 1e300}, "events[2].tax: must be at most"),
    ({**_ORDER, "revenue": 1, "items": [{"sku": "a", "price": 1e13}]},
     "events[2].items[0].price: must be at most 999,999,999,999.99"),
    ({**_ORDER, "revenue": 1, "items": [{"sku": "a", "price": 1_000_000, "quantity": 1_000_000}]},
     "events[2].items[0]: price x quantity must be at most 999,999,999,999.99"),
    ({**_ORDER, "revenue": 1, "items": [{"sku": "a", "price": MAX_AMOUNT, "quantity": 2}]},
     "events[2].items[0]: price x quantity must be at most"),
    ({"type": "event", "category": "c", "action": "a", "value": 1e308},
     "events[2].value: must be at most 999,999,999,999.99"),
    ({"type": "event", "category": "c", "action": "a", "value": -1e13},
     "events[2].value: must be at least -999,999,999,999.99"),
    ({**_ORDER, "revenue": 1, "items": [{"sku": "a", "quantity": 1_000_001}]},
     "events[2].items[0].quantity: must be a whole number from 1 to 1,000,000"),
    ({**_ORDER, "revenue": 1, "items": [{"sku": "a", "quantity": 2**31}]},
     "events[2].items[0].quantity: must be a whole number from 1 to 1,000,000"),
    ({"type": "page_view", "url": "x", "performance": {"dns_ms": "x"}},
     "events[2].performance.dns_ms: must be a whole number from 0 to 3,600,000"),
    ({"type": "page_view", "url": "x", "performance": {"ttfb_ms": 1.5}},
     "events[2].performance.ttfb_ms: must be a whole number from 0 to 3,600,000"),
    ({"type": "page_view", "url": "x", "performance": {"load_ms": 3_600_001}},
     "events[2].performance.load_ms: must be a whole number"),
    ({"type": "page_view", "url": "x", "performance": {"connect_ms": -1}},
     "events[2].performance.connect_ms: must be a whole number"),
    ({"type": "page_view", "url": "x", "performance": {"dom_interactive_ms": 1e300}},
     "events[2].performance.dom_interactive_ms: must be a whole number"),
]  # fmt: skip
# The largest values of each: accepted by both rule sets.
AT_THE_BOUNDS = [
    {**_ORDER, "revenue": MAX_AMOUNT, "shipping": MAX_AMOUNT, "tax": 0,
     "items": [{"sku": "a", "price": MAX_AMOUNT}, {"sku": "b", "price": 0.5, "quantity": 1_000_000},
               {"sku": "c", "price": 999_999.99, "quantity": 1_000_000}]},
    {"type": "event", "category": "c", "action": "a", "value": -MAX_AMOUNT},
    {"type": "page_view", "url": "x", "performance": {
        "dns_ms": 0, "connect_ms": 3_600_000, "ttfb_ms": None, "future_ms": 1.5}},
]  # fmt: skip


@pytest.mark.parametrize("fields", VALID_EVENTS + AT_THE_BOUNDS)
def test_valid_events_pass_unchanged(fields):
    event = {**BASE, **fields}
    assert validate_event(event, 0, NOW) is event


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "page_view"}, "events[2].url: is required"),
        ({"type": "click", "url": "x"}, "events[2].type: 'click' is not one of"),
        ({"type": "page_view", "url": "x", "event_id": "abc"}, "events[2].event_id: must be a UUID"),
        ({"type": "page_view", "url": "x", "occurred_at": "yesterday"}, "is not an RFC 3339 timestamp"),
        ({"type": "page_view", "url": "x", "occurred_at": "2029-01-01T00:00:00Z"}, "more than a year in the future"),
        ({"type": "page_view", "url": "x", "visitor_id": ""}, "events[2].visitor_id: must not be empty"),
        ({"type": "event", "category": "c"}, "events[2].action: is required"),
        ({"type": "event", "category": "c", "action": "a", "value": True}, "events[2].value: must be a number"),
        ({"type": "transaction", "order_id": "o", "revenue": -1}, "events[2].revenue: must be at least 0"),
        ({"type": "transaction", "order_id": "o", "revenue": 1, "currency": "euro"}, "ISO 4217"),
        ({"type": "transaction", "order_id": "o", "revenue": 1, "items": [{"price": 1}]}, "events[2].items[0].sku: is required"),
        ({"type": "transaction", "order_id": "o", "revenue": 1, "items": [{"sku": "a", "quantity": 0}]}, "items[0].quantity: must be a whole number"),
        ({"type": "identify"}, "events[2].user_id: is required"),
        ({"type": "page_ping", "engaged_seconds": 4000}, "engaged_seconds: must be at most 3600"),
        ({"type": "consent", "granted": "yes"}, "events[2].granted: must be true or false"),
        ({"type": "page_view", "url": "x" * 9000}, "events[2].url: longer than 8192 characters"),
        *[(fields, message) for fields, message in OUT_OF_RANGE],
    ],
)  # fmt: skip
def test_invalid_events_name_the_event_and_field(fields, message):
    with pytest.raises(Invalid, match=None) as exc:
        check(**fields)
    assert message in str(exc.value)


def fast_path_accepts(body: bytes) -> bool:
    try:
        batch = compiled_batch(decode_body(body))
    except Invalid:
        return False
    return batch is not None and batch_valid(batch, NOW)


@pytest.mark.parametrize("fields", VALID_EVENTS + AT_THE_BOUNDS)
def test_the_compiled_rules_accept_valid_events(fields):
    body = orjson.dumps({"site_id": "demo", "events": [{**BASE, **fields}]})
    assert fast_path_accepts(body)
    upper = {**BASE, **fields, "event_id": BASE["event_id"].upper()}
    assert fast_path_accepts(orjson.dumps({"site_id": "demo", "events": [upper]}))


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "page_view"},
        {"type": "page_view", "url": "x", "event_id": "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4be"},
        {"type": "page_view", "url": "x", "event_id": "1b9d6bcd bbfd-4b2d-9b5d-ab8dfbbd4bed"},
        {"type": "page_view", "url": "x", "event_id": "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4beg"},
        {"type": "page_view", "url": "x", "occurred_at": "2029-01-01T00:00:00Z"},
        {"type": "page_view", "url": "x", "occurred_at": "2027-11-25T22:00:00Z"},  # 12 h over
        {"type": "page_view", "url": "x", "occurred_at": "2026-13-01T00:00:00Z"},
        {"type": "page_view", "url": "x", "visitor_id": ""},
        {"type": "event", "category": "c", "action": "a", "value": True},
        {"type": "transaction", "order_id": "o", "revenue": -1},
        {"type": "transaction", "order_id": "o", "revenue": 1, "currency": "eur"},
        {"type": "transaction", "order_id": "o", "revenue": 1, "items": [{"price": 1}]},
        {"type": "transaction", "order_id": "o", "revenue": 1, "items": [{"sku": "a", "quantity": 1.0}]},
        {"type": "page_ping", "engaged_seconds": 3600.5},
        {"type": "consent", "granted": None},
        {"type": "page_view", "url": "x", "screen": "x" * 65},
        {"type": "page_view", "url": "x", "properties": []},
        {"type": "page_view", "url": "x", "performance": []},
        *[fields for fields, _ in OUT_OF_RANGE],
    ],
)  # fmt: skip
def test_the_compiled_rules_refuse_what_the_rules_refuse(fields):
    body = orjson.dumps({"site_id": "demo", "events": [{**BASE, **fields}]})
    assert not fast_path_accepts(body)
    with pytest.raises(Invalid):
        check(**fields)


def _candidates(field: str) -> list:
    """Values for one field: valid ones, the limits on both sides, other types."""
    if field in TEXT_LIMITS:
        limit = TEXT_LIMITS[field]
        return ["x", "", "x" * limit, "x" * (limit + 1), None, 3, True]
    if field in NUMBER_RANGES:
        return [0, 1.5, 15, -0.0, -1, -0.5, 3600, 3600.5, MAX_AMOUNT, 999_999_999_999.991,
                10**12, 1e13, 1.2e21, 1e308, True, "3", None]  # fmt: skip
    if field in OBJECTS:
        return [{}, {"a": [1, {"b": None}]}, [], "x", None, {"dns_ms": 0, "load_ms": 3_600_000},
                {"dns_ms": "x"}, {"ttfb_ms": 1.5}, {"load_ms": 3_600_001}, {"connect_ms": -1},
                {"dom_interactive_ms": True}, {"dns_ms": None, "other_ms": 1.5}]  # fmt: skip
    return {
        "items": [[], [{"sku": "a"}], [{"sku": "a", "quantity": 2, "price": 0.5, "name": "n"}],
                  [{"sku": "a", "quantity": 0}], [{"sku": "a", "quantity": 1.0}],
                  [{"sku": "a", "quantity": True}], [{"price": 1}], [{"sku": None}],
                  [{"sku": "a", "price": -1}], [{"sku": "x" * 1025}], [{"sku": "a", "name": 3}],
                  [{"sku": "a", "quantity": None}], [{"sku": ""}], "x", [1], None,
                  [{"sku": "a", "quantity": 1_000_000, "price": MAX_AMOUNT}],
                  [{"sku": "a", "quantity": 1_000_000, "price": 999_999.99}],
                  [{"sku": "a", "quantity": 1_000_000, "price": 1_000_000}],
                  [{"sku": "a", "quantity": 1_000_001}], [{"sku": "a", "quantity": 2**31}],
                  [{"sku": "a", "price": 1e12}], [{"sku": "a", "price": 999_999_999_999.991}],
                  [{"sku": "a"}] * 201],
        "currency": ["EUR", "eur", "EURO", "EUR\n", "", 3, None],
        "granted": [True, False, None, "yes", 0],
        "event_id": [BASE["event_id"], BASE["event_id"].upper(), BASE["event_id"].replace("-", ""),
                     BASE["event_id"][:-1], BASE["event_id"][:-1] + "g",
                     BASE["event_id"][:-1] + "\n", None, 3],
        "occurred_at": ["2026-11-24T10:00:00Z", "2026-11-24T10:00:00", "2026-11-24",
                        "0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "2000-01-01T00:00:00Z",
                        "1999-12-31T23:00:00-01:00", "9999-12-31T23:59:59Z",
                        "2026-11-24T10:00:00+01:00", "2029-01-01T00:00:00Z", "soon", "", None,
                        3, "2026-11-24T10:00:00.000000000000000000000000Z",
                        "2026-11-24 10:00:00+05:30:15", "2026-11-24T10:00:00.123456789+05:30",
                        "2026-11-24 10:00", "2026-11-24T10:00:00+0530", "2026-11-24T10:00:00+05",
                        "20261124T100000Z", "2026-11-24t10:00:00z", "2026-11-24T10:00:00Z\n",
                        "2026-11-24T10:00:00.1234567890Z", "2026-11-24T10:00:00+24:00",
                        "\u0662026-11-24T10:00:00Z"],
        "type": [*sorted(REQUIRED), "click", None, 3],
        "extra": [None, "x", {"deep": [[[1]]]}, 1e30],
    }[field]  # fmt: skip


_FIELDS = sorted({*TEXT_LIMITS, *NUMBER_RANGES, *OBJECTS, "items", "currency", "granted",
                  "event_id", "occurred_at", "type", "extra"})  # fmt: skip
_CHANGE = st.sampled_from(_FIELDS).flatmap(
    lambda field: st.tuples(st.just(field), st.sampled_from(_candidates(field)))
)
_EVENTS = st.builds(
    lambda valid, changes: {**BASE, **valid, **dict(changes)},
    st.sampled_from(VALID_EVENTS),  # a valid event of each type ...
    st.lists(_CHANGE, max_size=3),  # ... with fields changed
)  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(
    events=st.lists(_EVENTS, min_size=1, max_size=3),
    sent_at=st.sampled_from(
        [
            None,
            "2026-11-24T10:00:00Z",
            "soon",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2000-01-01T00:00:00+00:00",
            "2026-11-24 10:00:00+05:30:15",
            "2026-11-24 10:00:00.5-01:00",
        ]
    ),
)
def test_whatever_the_compiled_rules_accept_the_rules_accept(events, sent_at):
    """The fast path lands a body without the per-event rules: it must never accept what
    they refuse (the reverse only costs the slow path)."""
    body = orjson.dumps({"site_id": "demo", "sent_at": sent_at, "events": events})
    accepted = fast_path_accepts(body)
    note_event("fast path: accepted" if accepted else "fast path: refused")
    if accepted:
        _, _, decoded = validate_envelope(orjson.loads(body), NOW)
        for index, event in enumerate(decoded):
            validate_event(event, index, NOW)  # raises if the rules refuse it


def test_envelope():
    assert validate_envelope({"site_id": "demo", "events": [{}]}) == ("demo", None, [{}])
    with pytest.raises(Invalid, match="at most 500 events"):
        validate_envelope({"site_id": "demo", "events": [{}] * 501})
    with pytest.raises(Invalid, match="sent_at: 'soon' is not an RFC 3339"):
        validate_envelope({"site_id": "demo", "sent_at": "soon", "events": [{}]})


def test_forwarded_for_is_used_only_behind_a_trusted_proxy():
    open_site = Site(id="a", domains=["a.example"])
    proxied = Site(id="b", domains=["b.example"], trusted_proxies=["10.0.0.0/8"])
    assert client_ip("203.0.113.9", "1.2.3.4", open_site) == "203.0.113.9"
    assert client_ip("10.1.1.1", "1.2.3.4", open_site) == "10.1.1.1"
    assert client_ip("10.1.1.1", "1.2.3.4", proxied) == "1.2.3.4"
    # a client cannot spoof: the right-most untrusted hop wins
    assert client_ip("10.1.1.1", "6.6.6.6, 1.2.3.4, 10.2.2.2", proxied) == "1.2.3.4"
    assert client_ip("203.0.113.9", "1.2.3.4", proxied) == "203.0.113.9"  # untrusted peer
    assert client_ip("10.1.1.1", "garbage", proxied) == "10.1.1.1"


def test_geography_and_bots():
    assert country_of("91.64.3.4") == "DE"
    assert country_of("24.0.1.2") == "US"
    assert country_of("192.168.1.1") is None
    assert country_of("not an ip") is None
    assert "Googlebot" in bot_reason(
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    )
    assert bot_reason("") == "empty user agent"
    assert (
        bot_reason(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
        )
        is None
    )


def test_a_bot_is_named_by_the_first_crawler_pattern_it_matches():
    """As crawler-user-agents' own matching_crawlers(...)[0] would name it (that function
    recompiles all 1,504 patterns per call; bot_reason finds the pattern through chunks)."""
    import re

    import crawleruseragents

    crawlers = crawleruseragents.CRAWLER_USER_AGENTS_DATA
    patterns = [re.compile(c["pattern"]) for c in crawlers]
    agents = [c["instances"][0] for c in crawlers[::5] if c.get("instances")]
    assert len(agents) > 250
    for agent in agents:
        first = next(
            c["pattern"] for c, rx in zip(crawlers, patterns, strict=True) if rx.search(agent)
        )
        assert bot_reason(agent) == f"user agent matches crawler pattern '{first}'", agent


def test_rate_limiter_refills():
    limiter = RateLimiter(rate=2, burst=3)
    assert [limiter.allow("ip", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after("ip") >= 1
    assert limiter.allow("ip", now=0.5) is True  # one token back after half a second
    assert limiter.allow("other", now=0.5) is True
    assert RateLimiter(rate=0, burst=0).allow("ip") is True


def test_a_configured_maxmind_database_is_used(tmp_path, monkeypatch):
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    from ingestion.core import enrich

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "NZ"}})
    writer.insert_network(IPSet(["91.64.0.0/14"]), {"country": {"iso_code": "AT"}})
    path = tmp_path / "test.mmdb"
    writer.to_db_file(str(path))
    monkeypatch.setenv("SITELINE_GEOIP_MMDB", str(path))
    enrich._geo.cache_clear()
    try:
        assert country_of("203.0.113.7") == "NZ"
        assert country_of("91.64.3.4") == "AT"  # the configured file wins over the bundled one
        assert country_of("24.0.1.2") is None  # not in this file
    finally:
        enrich._geo.cache_clear()


def test_an_unreadable_maxmind_database_is_a_clear_error(tmp_path, monkeypatch):
    from ingestion.core import enrich
    from ingestion.core.errors import SitelineError

    bad = tmp_path / "broken.mmdb"
    bad.write_bytes(b"not a database")
    monkeypatch.setenv("SITELINE_GEOIP_MMDB", str(bad))
    enrich._geo.cache_clear()
    try:
        with pytest.raises(
            SitelineError,
            match=r"SITELINE_GEOIP_MMDB=.*broken.mmdb: cannot open it as a MaxMind database",
        ):
            country_of("1.2.3.4")
    finally:
        enrich._geo.cache_clear()


def _body_with(tail: bytes) -> bytes:
    """A valid one-event body with ``tail`` spliced in as the event's last field(s)."""
    body = orjson.dumps({"site_id": "demo", "events": [{**BASE, **VALID_EVENTS[0]}]})
    return body[:-3] + b"," + tail + b"}]}"


def _nested(depth: int) -> bytes:
    return b'"deep":' + b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b'"future_field": 1e400', "body is not valid JSON: number is infinity when parsed"),
        (b'"future_field": ' + b"9" * 310, "body is not valid JSON: number is infinity"),
        (b'"future_field": "\xff\xfe"', "body is not valid JSON: str is not valid UTF-8"),
        (b'"title": "\xff"', "body is not valid JSON: str is not valid UTF-8"),
        (b'"future_field": "\\ud800"', "body is not valid JSON: no low surrogate"),
        (_nested(MAX_DEPTH - 2), f"body: objects and arrays nested deeper than {MAX_DEPTH} levels"),
        (_nested(5000), "body is not valid JSON: depth limit exceeded"),
    ],
)
def test_a_body_the_readers_cannot_read_is_refused_by_both_rules(tail, message):
    """One definition of a valid body: what orjson (every reader of the landing) refuses,
    the collector refuses too, on the fast path as on the other (they both start from
    decode_body), and it names what is wrong."""
    body = _body_with(tail)
    with pytest.raises(Invalid) as exc:
        decode_body(body)
    assert message in str(exc.value)
    assert not fast_path_accepts(body)


def test_the_deepest_allowed_body_is_accepted_and_written_back():
    body = _body_with(_nested(MAX_DEPTH - 3))  # and body, events, event: 3 levels
    assert fast_path_accepts(body)
    assert orjson.loads(orjson.dumps(decode_body(body))) == orjson.loads(body)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"sent_at": "9999-12-31T23:59:59Z"}, "sent_at: '9999-12-31T23:59:59Z' is more than a year"),
        ({"sent_at": "1999-12-31T23:59:59Z"}, "sent_at: '1999-12-31T23:59:59Z' is before 2000-01-01"),
        ({"sent_at": "2000-01-01T00:30:00+01:00"}, "is before 2000-01-01"),
        ({"events": [{**BASE, **VALID_EVENTS[0], "occurred_at": "0001-01-01T00:00:00Z"}]},
         "events[0].occurred_at: '0001-01-01T00:00:00Z' is before 2000-01-01"),
    ],
)  # fmt: skip
def test_every_time_a_client_sends_is_bounded(payload, message):
    body = {"site_id": "demo", "events": [{**BASE, **VALID_EVENTS[0]}], **payload}
    with pytest.raises(Invalid) as exc:
        _, _, events = validate_envelope(body, NOW)
        for index, event in enumerate(events):
            validate_event(event, index, NOW)
    assert message in str(exc.value)
    assert not fast_path_accepts(orjson.dumps(body))


def test_the_earliest_and_latest_times_are_accepted():
    event = {**BASE, **VALID_EVENTS[0], "occurred_at": "2000-01-01T00:00:00Z"}
    body = {"site_id": "demo", "sent_at": "2027-11-25T09:59:59Z", "events": [event]}
    validate_envelope(body, NOW)
    validate_event(event, 0, NOW)
    assert fast_path_accepts(orjson.dumps(body))


def test_a_throttled_log_says_each_kind_once_per_interval_with_a_count(caplog):
    import logging

    from realtime.throttled_log import ThrottledLog

    log = ThrottledLog(logging.getLogger("test.throttled"), interval=60)
    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        said = [log.warning("a", "trouble %d", i, now=float(i)) for i in range(100)]
        said.append(log.warning("b", "other trouble", now=99.0))
        said.append(log.warning("a", "trouble again", now=130.0))
    assert said.count(True) == 4 and said[0] and said[60] and said[-2] and said[-1]
    assert [r.getMessage() for r in caplog.records] == [
        "trouble 0",
        "trouble 60 (and 59 more like it in the last 60 s)",
        "other trouble",
        "trouble again (and 39 more like it in the last 60 s)",
    ]


def test_a_throttle_filter_passes_each_template_once_per_interval():
    import logging

    from realtime.throttled_log import ThrottleFilter

    throttle = ThrottleFilter(interval=3600)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.WARNING, "", 0, msg, (), None)

    passed = [throttle.filter(record("Invalid HTTP request received.")) for _ in range(50)]
    assert passed == [True] + [False] * 49
    assert throttle.filter(record("Exception in ASGI application\n"))


# Each form is read by the loader (dlt) to the instant the collector reads: see TIME_PATTERN.
ACCEPTED_TIMES = {
    "2026-11-24T09:30:00Z": "2026-11-24T09:30:00+00:00",
    "2026-11-24 09:30:00Z": "2026-11-24T09:30:00+00:00",
    "2026-11-24T09:30Z": "2026-11-24T09:30:00+00:00",
    "2026-11-24T09:30": "2026-11-24T09:30:00+00:00",
    "2026-11-24 09:30:00": "2026-11-24T09:30:00+00:00",
    "2026-11-24T09:30:00.123456789Z": "2026-11-24T09:30:00.123456+00:00",
    "2026-11-24T15:00:00.5+05:30": "2026-11-24T09:30:00.500000+00:00",
    "2026-11-24 04:00:00-05:30": "2026-11-24T09:30:00+00:00",
}
REFUSED_TIMES = [
    "2026-11-24 09:30:00+05:30:15",  # seconds in the offset: dlt cannot read it
    "2026-11-24T09:30:00+0530",
    "2026-11-24T09:30:00+05",
    "2026-11-24",
    "20261124T093000Z",
    "2026-11-24t09:30:00z",
    "2026-11-24T09:30:00.1234567890Z",  # 10 fraction digits
    "2026-11-24T09:30:00Z\n",
    "2026-11-24T09:30:00+24:00",
    "2026-11-24T24:00:00Z",
    "\u0662026-11-24T09:30:00Z",  # a non-ASCII digit
    "2026-11-24T09:30:00 Z",
]


@pytest.mark.parametrize(("text", "instant"), ACCEPTED_TIMES.items())
def test_times_in_the_accepted_forms_pass_both_rule_sets(text, instant):
    assert parse_time(text, "sent_at", NOW).astimezone(UTC).isoformat() == instant
    event = {**BASE, **VALID_EVENTS[0], "occurred_at": text}
    body = {"site_id": "demo", "sent_at": text, "events": [event]}
    validate_envelope(body, NOW)
    validate_event(event, 0, NOW)
    assert fast_path_accepts(orjson.dumps(body))


@pytest.mark.parametrize("text", REFUSED_TIMES)
def test_times_in_other_forms_are_refused_by_both_rule_sets(text):
    with pytest.raises(Invalid) as exc:
        validate_event({**BASE, **VALID_EVENTS[0], "occurred_at": text}, 0, NOW)
    assert f"events[0].occurred_at: '{text}' is not an RFC 3339 timestamp" in str(exc.value)
    with pytest.raises(Invalid, match=r"(?s)sent_at: .* is not an RFC 3339 timestamp"):
        validate_envelope({"site_id": "demo", "sent_at": text, "events": [{}]}, NOW)
    event = {**BASE, **VALID_EVENTS[0]}
    assert not fast_path_accepts(
        orjson.dumps({"site_id": "demo", "sent_at": text, "events": [event]})
    )
    event["occurred_at"] = text
    assert not fast_path_accepts(orjson.dumps({"site_id": "demo", "events": [event]}))
