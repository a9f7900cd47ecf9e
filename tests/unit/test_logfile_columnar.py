"""The batch (Arrow) path reads every line exactly as the line parser does, and enriches and
excludes by column what a line-by-line reader would."""

from datetime import UTC, datetime

import pytest

from ingestion.core.sites import IpPolicy, LogSource
from ingestion.logfiles.columnar import Enricher, anonymise, arrow_lines, decode_lines, parse_batch
from ingestion.logfiles.parsers import Rejected, make_parser

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
T = "[24/Nov/2026:10:15:00 +0100]"

COMBINED = [
    f'85.214.3.77 - - {T} "GET /p/jacket?utm_source=news&utm_campaign=bf HTTP/1.1" 200 5123 "https://www.Google.com:443/x" "{UA}"',
    f'2001:db8::1 - - {T} "HEAD / HTTP/1.0" 304 - "-" "-"',
    f'1.2.3.4 - - {T} "GET / HTTP/1.1" 200 1 "-" "Evil \\"quoted\\" agent"',  # unescaped by the line parser
    '1.2.3.4 - bob [24/Nov/2026:10:15:00 +0530] "GET /a?b?c HTTP/1.1" 200 1 "" ""',
    f'1.2.3.4 - - {T} "GET http://shop.example/p?x=1 HTTP/1.1" 200 1 "-" "x"',  # absolute form
    f'1.2.3.4 - - {T} "GET /s?q=' + "a" * 5000 + ' HTTP/1.1" 200 1 "-" "x"',
    f'1.2.3.4 - - {T} "GET /? HTTP/1.1" 200 1 "-" "x" extra fields here',
    "",  # skipped
    "# a comment",  # skipped
    f'1.2.3.4 - - {T} "\\x16\\x03\\x01" 400 226 "-" "-"',  # rejected: TLS bytes
    '1.2.3.4 - - [31/Foo/2026:10:15:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"',  # rejected: time
    "garbage that is no log line",  # rejected
    '1.2.3.4 - - [24/Nov/2026:10:15:00] "GET /no-offset HTTP/1.1" 200 1 "-" "x"',
    f'1.2.3.4 - - {T} "GET /x HTTP/1.1" - 1 "-" "x"',  # "-" status: left to the line parser
    f'1.2.3.4 - - {T} "post /lower HTTP/1.1" 200 1 "-" "x"',  # rejected: method
    f'9.9.9.9 - - {T} "GET /caf\u00e9/\u00fc HTTP/2.0" 200 1 "-" "{BOT}"',
]
FIELDS = ("time", "ip", "method", "host", "path", "query", "protocol", "status", "bytes",
          "referrer", "user_agent", "time_taken_ms", "user")  # fmt: skip


def line_by_line(fmt: str, lines: list[str]):
    parser, hits, rejected, skipped = make_parser(fmt), [], [], 0
    for i, line in enumerate(lines):
        try:
            hit = parser.parse(line)
        except Rejected as exc:
            rejected.append((i, str(exc), line))
            continue
        if hit is None:
            skipped += 1
        else:
            hits.append({"row": i, **{f: getattr(hit, f) for f in FIELDS}})
    return hits, rejected, skipped


@pytest.mark.parametrize(
    ("fmt", "lines"),
    [
        ("combined", COMBINED),
        ("common", [f'1.2.3.4 - - {T} "GET /a HTTP/1.1" 404 12', f'1.2.3.4 - u {T} "GET /b?c=d HTTP/1.1" 200 -  ',
                    f'1.2.3.4 - - {T} "GET /a HTTP/1.1" 404 12 "-" "x"']),
        ("vhost_combined", [f'shop.example:443 1.2.3.4 - - {T} "GET /a HTTP/1.1" 200 12 "-" "x"',
                            f'shop.example 1.2.3.4 - - {T} "GET /b HTTP/1.1" 200 12',
                            f'- 1.2.3.4 - - {T} "GET /c HTTP/1.1" 200 12 "https://r.example/" "y"']),
        ("w3c", ["#Fields: date time c-ip cs-method cs-uri-stem cs-uri-query sc-status cs(User-Agent)",
                 "2026-11-24 09:15:00 1.2.3.4 GET /a x=1 200 Mozilla/5.0+(X11)", "bad line"]),
    ],
)  # fmt: skip
def test_the_batch_parser_reads_every_line_as_the_line_parser(fmt, lines):
    table, rejected, skipped = parse_batch(make_parser(fmt), [line.encode() for line in lines])
    expected_hits, expected_rejected, expected_skipped = line_by_line(fmt, lines)
    got = table.to_pylist()
    assert [r["row"] for r in got] == [r["row"] for r in expected_hits]
    assert got == expected_hits
    assert (rejected, skipped) == (expected_rejected, expected_skipped)


def test_the_combined_batch_holds_the_expected_values():
    table, rejected, skipped = parse_batch(make_parser("combined"), [x.encode() for x in COMBINED])
    rows = {r["row"]: r for r in table.to_pylist()}
    assert rows[0]["time"] == datetime(2026, 11, 24, 9, 15, tzinfo=UTC)
    assert (rows[0]["path"], rows[0]["query"], rows[0]["status"], rows[0]["bytes"]) == (
        "/p/jacket", "utm_source=news&utm_campaign=bf", 200, 5123,
    )  # fmt: skip
    assert (rows[1]["bytes"], rows[1]["referrer"], rows[1]["user_agent"]) == (None, None, None)
    assert rows[2]["user_agent"] == 'Evil "quoted" agent'
    assert (rows[3]["path"], rows[3]["query"], rows[3]["user"]) == ("/a", "b?c", "bob")
    assert (rows[4]["host"], rows[4]["path"]) == ("shop.example", "/p")
    assert rows[6]["query"] is None
    assert rows[12]["time"] == datetime(2026, 11, 24, 10, 15, tzinfo=UTC)  # no offset: UTC
    assert rows[15]["path"] == "/café/ü"
    assert rows[13]["status"] is None  # "-" status: read by the line parser
    assert [i for i, _, _ in rejected] == [9, 10, 11, 14] and skipped == 2


def source(**kwargs) -> LogSource:
    return LogSource(name="web1", url="file:///x", **kwargs)


def enrich(lines, src=None, policy=None):
    enricher = Enricher("shop", src or source(), policy or IpPolicy(), b"secret")
    table, _, _ = parse_batch(make_parser("combined"), [line.encode() for line in lines])
    return enricher, *enricher.enrich(table)


def test_enrichment_by_column():
    _, table, excluded = enrich(COMBINED)
    rows = {r["row"]: r for r in table.to_pylist()}
    first = rows[0]
    assert (first["site_id"], first["source"], first["ip"]) == ("shop", "web1", "85.214.3.0")
    assert (first["browser"], first["os"], first["device_type"]) == ("Chrome", "Linux", "desktop")
    assert (first["referrer_host"], first["utm_source"], first["utm_campaign"]) == (
        "www.google.com", "news", "bf",
    )  # fmt: skip
    assert (first["is_bot"], first["bot_reason"], first["is_static"]) == (False, None, False)
    assert len(first["visitor_key"]) == 32
    assert rows[1]["bot_reason"] == "empty user agent" and rows[1]["ip"] == "2001:db8::"
    assert rows[15]["is_bot"] and "Googlebot" in rows[15]["bot_reason"]
    assert excluded == {}


def test_robots_txt_marks_the_same_visitor_from_then_on():
    line = f'5.6.7.8 - - {T} "GET {{}} HTTP/1.1" 200 1 "-" "{UA}"'
    other = f'5.6.7.9 - - {T} "GET /after HTTP/1.1" 200 1 "-" "{UA}"'
    enricher, table, _ = enrich([line.format("/before"), line.format("/robots.txt"),
                                 line.format("/after"), other])  # fmt: skip
    assert table.column("bot_reason").to_pylist() == [
        None, "requested /robots.txt", "requested /robots.txt earlier", None,
    ]  # fmt: skip
    # the next batch of the same pull remembers it
    later = [line.format("/later").encode()]
    table, _ = enricher.enrich(parse_batch(make_parser("combined"), later)[0])
    assert table.column("bot_reason").to_pylist() == ["requested /robots.txt earlier"]


def test_exclusions_are_counted_by_first_reason():
    lines = [
        f'1.2.3.4 - - {T} "GET /style.css HTTP/1.1" 200 1 "-" "{UA}"',
        f'1.2.3.4 - - {T} "GET /a HTTP/1.1" 200 1 "-" "{BOT}"',
        f'1.2.3.4 - - {T} "GET /b HTTP/1.1" 404 1 "-" "{UA}"',
        f'1.2.3.4 - - {T} "GET /admin/x HTTP/1.1" 200 1 "-" "{UA}"',
        f'1.2.3.4 - - {T} "GET /c HTTP/1.1" 200 1 "-" "Monitor/1.0"',
        f'10.1.2.3 - - {T} "GET /d HTTP/1.1" 200 1 "-" "{UA}"',
        f'1.2.3.4 - - {T} "GET /kept HTTP/1.1" 200 1 "-" "{UA}"',
        f'1.2.3.4 - - {T} "GET /admin/y.css HTTP/1.1" 404 1 "-" "{UA}"',
    ]
    src = source(bots="drop", exclude={
        "static_assets": True, "status": [404], "paths": ["^/admin"],
        "user_agents": ["^Monitor"], "ip_ranges": ["10.0.0.0/8"],
    })  # fmt: skip
    _, table, excluded = enrich(lines, src)
    assert table.column("path").to_pylist() == ["/kept"]
    assert excluded == {"static asset": 2, "bot": 1, "status 404": 1, "path": 1,
                        "user agent": 1, "ip range": 1}  # fmt: skip


def test_lines_are_decoded_one_by_one_when_the_batch_is_not_utf8():
    raws = [b"caf\xc3\xa9", b"caf\xe9 \xff\r", b"ok\r"]
    assert decode_lines(raws) == ["café", "café ÿ", "ok"]
    assert arrow_lines(raws).to_pylist() == ["café", "café ÿ\r", "ok\r"]


def test_an_unknown_load_format_is_refused(monkeypatch):
    from ingestion.core.errors import SitelineError
    from ingestion.logfiles import load_format

    monkeypatch.setenv("SITELINE_LOGS_LOAD_FORMAT", "jsonl")
    with pytest.raises(
        SitelineError, match="SITELINE_LOGS_LOAD_FORMAT='jsonl': Input should be 'parquet'"
    ):
        load_format()


ADDRESSES = [
    "1.2.3.4",
    "255.255.255.255",
    "0.0.0.0",
    "85.214.3.77",
    "01.2.3.4",
    "256.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "a.b.c.d",
    None,
    "",
    "2001:db8::1",
    "::ffff:1.2.3.4",
    "1.2.3.04",
    "1.2.3.4 ",
    "\u0663.2.3.4",
]


@pytest.mark.parametrize(
    "policy",
    [IpPolicy(), IpPolicy(ipv4_prefix=16), IpPolicy(ipv4_prefix=8), IpPolicy(ipv4_prefix=20),
     IpPolicy(ipv4_prefix=32), IpPolicy(mode="full"), IpPolicy(mode="drop")],
)  # fmt: skip
def test_the_ip_policy_by_column_is_the_policy_itself(policy):
    import pyarrow as pa

    got = anonymise(pa.array(ADDRESSES, pa.string()), policy).to_pylist()
    assert got == [policy.apply(ip) for ip in ADDRESSES]
    if policy.mode == "anonymize" and policy.ipv4_prefix == 24:
        assert got[:4] == ["1.2.3.0", "255.255.255.0", "0.0.0.0", "85.214.3.0"]
        assert got[4:11] == [None] * 7 and got[11] == "2001:db8::"


def test_an_overlong_line_is_rejected_and_never_held_whole():
    """A 50 MB line (a binary file, a log line glued to garbage) costs no more memory than a
    short one: only its first 8 KB are kept, for the rejection report; the byte offsets of
    the lines after it stay exact."""
    import tracemalloc

    from ingestion.logfiles.columnar import OVERLONG
    from ingestion.logfiles.pull import PullStats, line_batches

    good = COMBINED[0].encode()
    junk = b"x" * 65536

    def chunks():  # 51 MB in 64 KB pieces; the second and last lines are over-long
        yield good + b"\n" + good
        yield from (junk for _ in range(800))
        yield b"\n" + good + b"\n"
        yield from (junk for _ in range(40))  # the last, without a newline: 2.6 MB

    tracemalloc.start()
    batches = list(line_batches(chunks(), 0, True, PullStats("t", "", 0, 0)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4_000_000  # the lines themselves are 52 MB
    raws = [raw for lines, _ in batches for raw in lines]
    lengths = [n for _, sizes in batches for n in sizes]
    assert sum(lengths) == 3 * len(good) + 840 * len(junk) + 3  # every byte accounted for
    assert lengths[:3] == [len(good) + 1, len(good) + 800 * len(junk) + 1, len(good) + 1]
    assert max(len(raw) for raw in raws) == len(OVERLONG) + 8192

    table, rejected, _ = parse_batch(make_parser("combined"), raws)
    assert table["row"].to_pylist() == [0, 2]
    assert [(i, reason) for i, reason, _ in rejected] == [
        (1, "line longer than 1 MiB"), (3, "line longer than 1 MiB"),
    ]  # fmt: skip
    assert rejected[0][2] == (good + junk)[:8192].decode()  # what the report keeps
