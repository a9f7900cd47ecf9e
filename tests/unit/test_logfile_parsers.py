from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ingestion.logfiles.parsers import (
    Hit,
    Rejected,
    decode,
    detect_format,
    logformat_regex,
    make_parser,
)

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
COMBINED = f'85.214.3.77 - - [24/Nov/2026:10:15:00 +0100] "GET /p/jacket?utm_source=news HTTP/1.1" 200 5123 "https://www.google.com/" "{UA}"'


def parse(fmt: str, line: str, **kwargs) -> Hit | None:
    return make_parser(fmt, **kwargs).parse(line)


def test_combined_line_to_utc_fields():
    hit = parse("combined", COMBINED)
    assert hit.time == datetime(2026, 11, 24, 9, 15, tzinfo=UTC)
    assert (hit.ip, hit.method, hit.path, hit.query, hit.protocol) == (
        "85.214.3.77",
        "GET",
        "/p/jacket",
        "utm_source=news",
        "HTTP/1.1",
    )
    assert (hit.status, hit.bytes, hit.referrer, hit.user_agent) == (
        200,
        5123,
        "https://www.google.com/",
        UA,
    )


@pytest.mark.parametrize(
    ("line", "check"),
    [
        # IPv6 client, "-" bytes, "-" referrer and user agent
        ('2001:db8::1 - - [24/Nov/2026:10:15:00 +0000] "HEAD / HTTP/1.0" 304 - "-" "-"',
         lambda h: h.ip == "2001:db8::1" and h.bytes is None and h.referrer is None and h.user_agent is None),
        # escaped quotes inside the user agent
        ('1.2.3.4 - - [24/Nov/2026:10:15:00 +0000] "GET / HTTP/1.1" 200 1 "-" "Evil \\"quoted\\" agent"',
         lambda h: h.user_agent == 'Evil "quoted" agent'),
        # +0530 offset
        ('1.2.3.4 - bob [24/Nov/2026:10:15:00 +0530] "GET / HTTP/1.1" 200 1 "-" "x"',
         lambda h: h.time == datetime(2026, 11, 24, 4, 45, tzinfo=UTC) and h.user == "bob"),
        # a very long URL
        ('1.2.3.4 - - [24/Nov/2026:10:15:00 +0000] "GET /s?q=' + "a" * 20000 + ' HTTP/1.1" 200 1 "-" "x"',
         lambda h: len(h.query) == 20002),
        # absolute-form request target (proxies)
        ('1.2.3.4 - - [24/Nov/2026:10:15:00 +0000] "GET http://shop.example/p?x=1 HTTP/1.1" 200 1 "-" "x"',
         lambda h: (h.host, h.path, h.query) == ("shop.example", "/p", "x=1")),
    ],
)  # fmt: skip
def test_nasty_combined_lines(line, check):
    assert check(parse("combined", line))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('1.2.3.4 - - [24/Nov/2026:10:15:00 +0000] "\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03" 400 226 "-" "-"', "request line is not an HTTP request"),
        ('1.2.3.4 - - [31/Foo/2026:10:15:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"', "is not [dd/Mon/yyyy:HH:MM:SS +hhmm]"),
        ("garbage that is no log line", "line does not match the combined format"),
    ],
)  # fmt: skip
def test_unreadable_lines_are_rejected_with_a_reason(line, reason):
    with pytest.raises(Rejected, match=None) as exc:
        parse("combined", line)
    assert reason in str(exc.value)


def test_comments_and_blank_lines_are_skipped_not_rejected():
    assert parse("combined", "") is None
    assert parse("combined", "# a comment") is None


def test_a_time_without_an_offset_is_in_the_sources_zone():
    line = '1.2.3.4 - - [24/Nov/2026:10:15:00] "GET /a HTTP/1.1" 200 1 "-" "x"'
    assert parse("combined", line).time == datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
    berlin = parse("combined", line, default_tz=ZoneInfo("Europe/Berlin"))
    assert berlin.time == datetime(2026, 11, 24, 9, 15, tzinfo=UTC)
    with_offset = line.replace("10:15:00]", "10:15:00 +0000]")  # its own offset wins
    assert parse("combined", with_offset, default_tz=ZoneInfo("Europe/Berlin")).time.hour == 10


def test_common_and_vhost_combined():
    hit = parse("common", '1.2.3.4 - - [24/Nov/2026:10:15:00 +0000] "GET /a HTTP/1.1" 404 12')
    assert (hit.status, hit.referrer) == (404, None)
    hit = parse(
        "vhost_combined",
        'shop.example:443 1.2.3.4 - - [24/Nov/2026:10:15:00 +0000] "GET /a HTTP/1.1" 200 12 "-" "x"',
    )
    assert (hit.host, hit.path, hit.user_agent) == ("shop.example", "/a", "x")


def test_iis_with_header_changes_mid_file():
    parser = make_parser("iis")
    assert parser.parse("#Software: Microsoft Internet Information Services 10.0") is None
    assert (
        parser.parse(
            "#Fields: date time c-ip cs-method cs-uri-stem cs-uri-query sc-status cs(User-Agent) time-taken"
        )
        is None
    )
    hit = parser.parse(
        "2026-11-24 09:00:01 1.2.3.4 GET /default.aspx id=3 200 Mozilla/5.0+(Windows+NT+10.0) 15"
    )
    assert (hit.time, hit.path, hit.query, hit.user_agent, hit.time_taken_ms) == (
        datetime(2026, 11, 24, 9, 0, 1, tzinfo=UTC),
        "/default.aspx",
        "id=3",
        "Mozilla/5.0 (Windows NT 10.0)",
        15.0,
    )
    parser.parse("#Fields: date time c-ip cs-method cs-uri-stem sc-status sc-bytes")
    hit = parser.parse("2026-11-24 09:00:02 1.2.3.5 POST /api 201 99")
    assert (hit.method, hit.status, hit.bytes, hit.user_agent) == ("POST", 201, 99, None)
    with pytest.raises(Rejected, match="5 values for 7 #Fields"):
        parser.parse("2026-11-24 09:00:02 1.2.3.5 POST /api")


def test_w3c_quoted_values_and_local_time():
    parser = make_parser("w3c", default_tz=ZoneInfo("Europe/Berlin"))
    parser.parse(
        "#Fields: date-local time-local c-ip cs-method cs-uri-stem cs(User-Agent) sc-status TimeTakenMS"
    )
    hit = parser.parse('2026-07-01 12:00:00.500 1.2.3.4 GET /x "Agent with spaces" 200 7')
    assert hit.time == datetime(2026, 7, 1, 10, 0, 0, 500000, tzinfo=UTC)  # CEST = UTC+2
    assert (hit.user_agent, hit.time_taken_ms) == ("Agent with spaces", 7.0)
    with pytest.raises(Rejected, match="before any #Fields header"):
        make_parser("w3c").parse("2026-07-01 12:00:00 1.2.3.4 GET /x")


def test_cloudfront():
    parser = make_parser("cloudfront")
    parser.parse(
        "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query time-taken"
    )
    hit = parser.parse(
        "2026-11-24\t09:00:00\tFRA2\t182\t192.0.2.10\tGET\td1.cloudfront.net\t/a.html\t200\t-\tMozilla/5.0%2520(X11)\tq=1\t0.002"
    )
    assert (hit.host, hit.user_agent, hit.query, hit.time_taken_ms) == (
        "d1.cloudfront.net",
        "Mozilla/5.0 (X11)",
        "q=1",
        2.0,
    )


def test_elb_and_alb():
    elb = parse(
        "elb",
        '2026-11-24T09:00:00.000001Z my-lb 1.2.3.4:2817 10.0.0.1:80 0.000086 0.001048 0.001337 200 200 0 57 "GET https://www.example.com:443/path?x=1 HTTP/1.1" "curl/8.0" - -',
    )
    assert (elb.ip, elb.host, elb.path, elb.query, elb.status, elb.bytes) == (
        "1.2.3.4",
        "www.example.com",
        "/path",
        "x=1",
        200,
        57,
    )
    assert elb.time_taken_ms == pytest.approx(2.471)
    alb = parse(
        "alb",
        'https 2026-11-24T09:00:00.127531Z app/my-alb/abc 1.2.3.4:2817 10.0.0.1:80 0.001 0.102 0.000 200 200 225 24950 "GET https://www.example.com:443/i.html HTTP/1.1" "Mozilla/5.0" ECDHE TLSv1.2 arn:aws:x',
    )
    assert (alb.path, alb.bytes, alb.user_agent) == ("/i.html", 24950, "Mozilla/5.0")
    with pytest.raises(Rejected, match="not an HTTP request"):  # a TCP listener line
        parse(
            "elb",
            '2026-11-24T09:00:00Z my-lb 1.2.3.4:2817 10.0.0.1:80 0.001 0.1 0.1 - - 82 305 "- - - " "-" - -',
        )


S3_LINE = (
    "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be shop-assets "
    "[24/Nov/2026:10:15:00 +0100] 192.0.2.3 - 3E57427F3EXAMPLE REST.GET.OBJECT img/a.png "
    '"GET /img/a.png?v=3 HTTP/1.1" 200 - 2662992 3462992 70 10 "https://shop.example/" '
    f'"{UA}" - Ox2c7Eu/Mh0= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader '
    "assets.shop.example TLSv1.2 - -"
)
HAPROXY_LINE = (
    "Nov 24 10:15:00 lb1 haproxy[6801]: 2001:db8::7:55008 [24/Nov/2026:10:15:00.584] "
    "ft_https~ bk_web/web1 0/0/1/71/72 200 7456 - - ---- 5/4/0/1/0 0/0 {shop.example|x} "
    '"POST /cart/add?sku=7 HTTP/1.1"'
)


def test_s3_haproxy_and_gandi():
    s3 = parse("s3", S3_LINE)
    assert s3.time == datetime(2026, 11, 24, 9, 15, tzinfo=UTC)
    assert (s3.ip, s3.host, s3.path, s3.query, s3.status, s3.bytes) == (
        "192.0.2.3",
        "assets.shop.example",
        "/img/a.png",
        "v=3",
        200,
        2662992,
    )  # fmt: skip  (the Host header of newer logs, else the bucket)
    assert (s3.referrer, s3.user_agent, s3.time_taken_ms, s3.user) == (
        "https://shop.example/", UA, 70.0, None,
    )  # fmt: skip
    old = parse("s3", S3_LINE.split(f'"{UA}"')[0] + f'"{UA}"')  # before the Host field
    assert old.host == "shop-assets"

    # HAProxy's time has no offset: the source's zone (Berlin, UTC+1 in November)
    ha = parse("haproxy", HAPROXY_LINE, default_tz=ZoneInfo("Europe/Berlin"))
    assert ha.time == datetime(2026, 11, 24, 9, 15, tzinfo=UTC)
    assert (ha.ip, ha.method, ha.path, ha.query, ha.status, ha.bytes, ha.time_taken_ms) == (
        "2001:db8::7", "POST", "/cart/add", "sku=7", 200, 7456, 72.0,
    )  # fmt: skip
    bare = HAPROXY_LINE.split(": ", 1)[1].replace("2001:db8::7", "10.0.0.9")  # no syslog prefix
    aborted = bare.replace("0/0/1/71/72 200", "0/0/1/-1/+80 -1").replace(" {shop.example|x}", "")
    hit = parse("haproxy", aborted)
    assert (hit.ip, hit.status, hit.time_taken_ms) == ("10.0.0.9", None, 80.0)
    iso = "2026-11-24T10:15:00.123456+01:00 lb1 haproxy[6801]: " + bare  # rsyslog's ISO time
    assert parse("haproxy", iso).ip == "10.0.0.9"
    nosrv = bare.replace("bk_web/web1 0/0/1/71/72 200", "bk_web/<NOSRV> -1/-1/-1/-1/8 503")
    assert (parse("haproxy", nosrv).status, parse("haproxy", nosrv).time_taken_ms) == (503, 8.0)
    truncated = bare.rsplit('"', 1)[0]  # a request too long for the log buffer: no end quote
    assert parse("haproxy", truncated).path == "/cart/add"
    with pytest.raises(Rejected, match="not an HTTP request"):
        parse("haproxy", bare.replace('"POST /cart/add?sku=7 HTTP/1.1"', '"<BADREQ>"'))

    gandi = parse(
        "gandi",
        "shop.example 192.0.2.9 - anna [24/Nov/2026:10:15:00 +0100] (3 s) "
        f'"GET /account HTTP/1.1" 200 1124 "-" "{UA}"',
    )
    assert (gandi.host, gandi.ip, gandi.user, gandi.path, gandi.time_taken_ms) == (
        "shop.example", "192.0.2.9", "anna", "/account", 3000.0,
    )  # fmt: skip
    assert gandi.referrer is None and gandi.user_agent == UA


def test_json_formats():
    caddy = parse(
        "caddy_json",
        '{"level":"info","ts":1795597200.5,"logger":"http.log.access","request":{"remote_ip":"1.2.3.4","client_ip":"5.6.7.8","proto":"HTTP/2.0","method":"GET","host":"example.com","uri":"/beta/?a=1","headers":{"User-Agent":["Firefox"],"Referer":["https://r.example/"]}},"status":200,"size":10,"duration":0.0015}',
    )
    assert (
        caddy.ip,
        caddy.path,
        caddy.query,
        caddy.referrer,
        caddy.user_agent,
        caddy.time_taken_ms,
    ) == ("5.6.7.8", "/beta/", "a=1", "https://r.example/", "Firefox", 1.5)
    assert caddy.time == datetime.fromtimestamp(1795597200.5, UTC)
    traefik = parse(
        "traefik_json",
        '{"ClientHost":"1.2.3.4","RequestMethod":"GET","RequestPath":"/x?y=2","RequestHost":"h.example","RequestProtocol":"HTTP/1.1","DownstreamStatus":200,"DownstreamContentSize":15,"request_User-Agent":"Prometheus/2.40","request_Referer":"-","Duration":2000000,"StartUTC":"2026-11-24T09:00:00.123Z"}',
    )
    assert (traefik.host, traefik.path, traefik.query, traefik.referrer, traefik.time_taken_ms) == (
        "h.example",
        "/x",
        "y=2",
        None,
        2.0,
    )
    nginx = parse(
        "nginx_json",
        '{"time_iso8601":"2026-11-24T10:00:00+01:00","remote_addr":"1.2.3.4","request":"GET /n?z=3 HTTP/1.1","status":"200","body_bytes_sent":"42","http_referer":"","http_user_agent":"Safari","request_time":"0.010"}',
    )
    assert (nginx.time, nginx.path, nginx.query, nginx.bytes, nginx.time_taken_ms) == (
        datetime(2026, 11, 24, 9, tzinfo=UTC),
        "/n",
        "z=3",
        42,
        10.0,
    )
    with pytest.raises(Rejected, match="not valid JSON"):
        parse("nginx_json", "{broken")
    with pytest.raises(Rejected, match="caddy_json: field 'request' missing"):
        parse("caddy_json", '{"ts": 1}')


def test_custom_apache_logformat_and_regex():
    fmt = '%v %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i" %D'
    assert logformat_regex(fmt).groupindex.keys() >= {
        "vhost",
        "ip",
        "time",
        "request",
        "status",
        "bytes",
        "referrer",
        "user_agent",
        "time_us",
    }
    hit = parse(
        "custom",
        'shop.example 1.2.3.4 - - [24/Nov/2026:10:15:00 +0000] "GET /c HTTP/1.1" 200 10 "-" "x" 1500',
        log_format=fmt,
    )
    assert (hit.host, hit.path, hit.time_taken_ms) == ("shop.example", "/c", 1.5)
    regex = r"^(?P<ip>\S+) (?P<time>\S+) (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d+)$"
    hit = parse("custom", "1.2.3.4 2026-11-24T09:00:00Z GET /r?k=v 200", regex=regex)
    assert (hit.time, hit.path, hit.query, hit.status) == (
        datetime(2026, 11, 24, 9, tzinfo=UTC),
        "/r",
        "k=v",
        200,
    )
    with pytest.raises(ValueError, match="needs --log-format"):
        make_parser("custom")
    with pytest.raises(ValueError, match="unknown log format 'apache2'"):
        make_parser("apache2")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([COMBINED] * 3, "combined"),
        (['1.2.3.4 - - [24/Nov/2026:10:15:00 +0000] "GET /a HTTP/1.1" 404 12'], "common"),
        (["#Software: Microsoft Internet Information Services 10.0", "#Fields: date time c-ip", "2026-11-24 09:00:00 1.2.3.4"], "iis"),
        (["#Fields: date time x-edge-location c-ip"], "cloudfront"),
        (['{"level":"info","logger":"http.log.access","request":{}}'], "caddy_json"),
        (['{"ClientHost":"1.2.3.4","RequestMethod":"GET"}'], "traefik_json"),
        (['{"remote_addr":"1.2.3.4"}'], "nginx_json"),
        ([S3_LINE], "s3"),
        ([HAPROXY_LINE, HAPROXY_LINE.split(": ", 1)[1]], "haproxy"),
        (['shop.example 192.0.2.9 - - [24/Nov/2026:10:15:00 +0100] (0 s) "GET / HTTP/1.1" 200 1 "-" "-"'], "gandi"),
    ],
)  # fmt: skip
def test_detect_format(lines, expected):
    assert detect_format(lines) == expected


def test_detect_format_gives_up_clearly():
    with pytest.raises(ValueError, match="cannot recognise the log format"):
        detect_format(["what is this", "no idea"])


def test_odd_encodings_never_stop_a_file():
    assert decode("Grüße".encode()) == "Grüße"
    assert decode(b"caf\xe9 \xff\xfe") == "café ÿþ"  # not UTF-8: read as Latin-1
