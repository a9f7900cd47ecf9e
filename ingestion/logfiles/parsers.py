"""Web-server log line parsers: Apache/NCSA, Nginx, IIS/W3C, AWS ELB/ALB/CloudFront/S3, HAProxy,
Gandi, JSON lines (Nginx, Caddy, Traefik), custom Apache ``LogFormat`` strings and named-group
regexes.

Pure functions over text, no I/O. A parser turns one line into a :class:`Hit`, returns
``None`` for lines that carry no request by design (comments, W3C headers), or raises
:class:`Rejected` with the reason — so every line is accounted for. Times become UTC;
formats without an offset use the source's time zone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from ingestion.core.sites import compile_pattern

FORMATS = (
    "common", "combined", "vhost_combined", "iis", "w3c", "elb", "alb", "cloudfront", "s3",
    "haproxy", "gandi", "nginx_json", "caddy_json", "traefik_json",
)  # fmt: skip


class Rejected(ValueError):
    """A line that cannot be read as a request; the message is the reason."""


@dataclass(slots=True)
class Hit:
    time: datetime  # UTC
    ip: str | None
    method: str | None
    host: str | None
    path: str
    query: str | None
    protocol: str | None
    status: int | None
    bytes: int | None
    referrer: str | None
    user_agent: str | None
    time_taken_ms: float | None = None
    user: str | None = None


# -- shared helpers -------------------------------------------------------------------------------

MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}


@lru_cache(maxsize=8192)
def apache_time(value: str, default_tz: tzinfo = UTC) -> datetime:
    """``10/Feb/2012:16:42:07 -0500`` (also with ``+0530`` offsets) → UTC; a time without an
    offset (HAProxy's, a custom LogFormat's) is in ``default_tz``, the source's zone."""
    try:
        day, month, year = int(value[0:2]), MONTHS[value[3:6]], int(value[7:11])
        hour, minute, second = int(value[12:14]), int(value[15:17]), int(value[18:20])
        rest = value[20:].strip()
        zone = default_tz
        if rest:
            sign = -1 if rest[0] == "-" else 1
            offset = sign * timedelta(hours=int(rest[1:3]), minutes=int(rest[3:5]))
            zone = timezone(offset)
        local = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except (KeyError, ValueError, IndexError):
        raise Rejected(f"time '{value[:40]}' is not [dd/Mon/yyyy:HH:MM:SS +hhmm]") from None
    return local.astimezone(UTC)


def iso_time(value: str, default_tz: tzinfo = UTC) -> datetime:
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected(f"time '{value[:40]}' is not ISO 8601") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=default_tz)
    return ts.astimezone(UTC)


def any_time(value: str, default_tz: tzinfo = UTC) -> datetime:
    """Apache, ISO 8601 or epoch seconds, whichever the value is."""
    value = value.strip()
    if len(value) >= 20 and value[2] == "/" and value[6] == "/":
        return apache_time(value, default_tz)
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        return iso_time(value, default_tz)


def dash(value: str | None) -> str | None:
    return None if value in (None, "", "-") else value


def number(value, kind=int):
    if value in (None, "", "-"):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise Rejected(f"'{str(value)[:20]}' is not a number") from None


def split_target(target: str) -> tuple[str | None, str, str | None]:
    """``/p?q=1`` or ``https://host:443/p?q=1`` → (host, path, query)."""
    host = None
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        host, target = (
            parts.hostname,
            (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        )
    path, _, query = target.partition("?")
    return host, path or "/", query or None


def request_line(request: str) -> tuple[str, str | None, str, str | None, str | None]:
    """``GET /p?q HTTP/1.1`` → (method, host, path, query, protocol); TLS bytes etc. rejected."""
    parts = request.split(" ")
    if len(parts) == 3:
        method, target, protocol = parts
    elif len(parts) == 2:  # HTTP/0.9 style
        (method, target), protocol = parts, None
    else:
        raise Rejected("request line is not an HTTP request")
    if not method.isalpha() or not method.isupper() or not target:
        raise Rejected("request line is not an HTTP request")
    host, path, query = split_target(target)
    return method, host, path, query, protocol


def _no_request(line: str) -> bool:
    """Blank lines and ``#`` comments carry no request: skipped, not rejected."""
    return not line.strip() or line.startswith("#")


def unescape(value: str | None) -> str | None:
    if value is None or "\\" not in value:
        return dash(value)
    return value.replace('\\"', '"').replace("\\\\", "\\")


# -- Apache / NCSA / Nginx and custom LogFormat ---------------------------------------------------

QUOTED = r'"((?:[^"\\]|\\.)*)"'
COMMON = (
    r"(?P<ip>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}|-) (?P<bytes>\d+|-)'
)
AGENTS = r' "(?P<referrer>(?:[^"\\]|\\.)*)" "(?P<user_agent>(?:[^"\\]|\\.)*)"'
REGEXES = {
    "common": re.compile("^" + COMMON + r"\s*$"),
    "combined": re.compile("^" + COMMON + AGENTS + r"(?: .*)?$"),
    "vhost_combined": re.compile(
        r"^(?P<vhost>[^\s:]+)(?::(?P<port>\d+))? " + COMMON + f"(?:{AGENTS})?" + r"(?: .*)?$"
    ),
}

# Apache LogFormat directives → regex groups (docs: mod_log_config).
DIRECTIVES = {
    "%h": r"(?P<ip>\S+)", "%a": r"(?P<ip>\S+)", "%l": r"\S+", "%u": r"(?P<user>\S+)",
    "%t": r"\[(?P<time>[^\]]+)\]", "%r": r"(?P<request>(?:[^\"\\]|\\.)*)",
    "%>s": r"(?P<status>\d{3})", "%s": r"(?P<status>\d{3})", "%b": r"(?P<bytes>\d+|-)",
    "%B": r"(?P<bytes>\d+)", "%O": r"(?P<bytes>\d+|-)", "%I": r"\S+",
    "%v": r"(?P<vhost>\S+)", "%V": r"(?P<vhost>\S+)", "%p": r"\d+",
    "%D": r"(?P<time_us>\d+)", "%T": r"(?P<time_s>[\d.]+)", "%m": r"(?P<method>[A-Z]+)",
    "%U": r"(?P<path>\S+)", "%q": r"(?P<query>\S*)", "%H": r"(?P<protocol>\S+)",
    "%{Referer}i": r"(?P<referrer>(?:[^\"\\]|\\.)*)",
    "%{User-Agent}i": r"(?P<user_agent>(?:[^\"\\]|\\.)*)",
    "%{User-agent}i": r"(?P<user_agent>(?:[^\"\\]|\\.)*)",
    "%{Host}i": r"(?P<vhost>\S+)",
}  # fmt: skip
DIRECTIVE = re.compile(r"%(?:>?[a-zA-Z]|\{[^}]+\}[a-zA-Z])")


def logformat_regex(fmt: str) -> re.Pattern:
    """An Apache ``LogFormat`` string as a regex with the groups the parser reads."""
    out, pos, seen = [], 0, set()
    for match in DIRECTIVE.finditer(fmt):
        out.append(re.escape(fmt[pos : match.start()]))
        token = match.group(0)
        piece = DIRECTIVES.get(token)
        if piece is None:  # unknown directive: skip one field of its shape
            piece = r"(?:[^\"\\]|\\.)*" if fmt[match.start() - 1 : match.start()] == '"' else r"\S+"
        name = re.search(r"\?P<(\w+)>", piece)
        if name and name.group(1) in seen:  # the same field twice (e.g. %h and %a)
            piece = re.sub(r"\?P<\w+>", "?:", piece)
        elif name:
            seen.add(name.group(1))
        out.append(piece)
        pos = match.end()
    out.append(re.escape(fmt[pos:]))
    return re.compile("^" + "".join(out) + r"\s*$")


def _from_groups(g: dict, default_tz: tzinfo) -> Hit:
    if g.get("request") is not None:
        method, host, path, query, protocol = request_line(unescape(g["request"]) or "")
    else:
        method, protocol = g.get("method"), g.get("protocol")
        host, path, query = split_target(g.get("path") or "/")
        query = query or dash((g.get("query") or "").lstrip("?"))
    if g.get("time") is None:
        raise Rejected("line has no time")
    time_taken = None
    if g.get("time_us"):
        time_taken = int(g["time_us"]) / 1000
    elif g.get("time_ms") not in (None, "-"):
        time_taken = float(g["time_ms"])
    elif g.get("time_s"):
        time_taken = float(g["time_s"]) * 1000
    return Hit(
        time=any_time(g["time"], default_tz),
        ip=dash(g.get("ip")),
        method=method,
        host=dash(g.get("vhost")) or host or dash(g.get("bucket")),
        path=path,
        query=query,
        protocol=protocol,
        status=number(g.get("status")),
        bytes=number(g.get("bytes")),
        referrer=unescape(g.get("referrer")),
        user_agent=unescape(g.get("user_agent")),
        time_taken_ms=time_taken,
        user=dash(g.get("user")),
    )


class RegexParser:
    """Any line format described by a regex with named groups (ip, time, request or
    method/path/query, status, bytes, referrer, user_agent, vhost, user, time_us, time_s)."""

    def __init__(self, name: str, pattern: re.Pattern, default_tz: tzinfo = UTC) -> None:
        self.name = name
        self.pattern = pattern
        self.default_tz = default_tz

    def parse(self, line: str) -> Hit | None:
        if _no_request(line):
            return None
        match = self.pattern.match(line)
        if match is None:
            raise Rejected(f"line does not match the {self.name} format")
        return self.build(match.groupdict())

    def build(self, g: dict) -> Hit:
        return _from_groups(g, self.default_tz)


# -- AWS load balancers ---------------------------------------------------------------------------

ELB = re.compile(
    r"^(?P<time>\S+) \S+ (?P<ip>[^\s:]+|\[[^\]]+\]):\d+ \S+ (?P<t1>\S+) (?P<t2>\S+) (?P<t3>\S+) "
    r"(?P<status>\S+) \S+ \S+ (?P<bytes>\S+) "
    + QUOTED.replace("(", "(?P<request>", 1)
    + " "
    + QUOTED.replace("(", "(?P<user_agent>", 1)
    + r"(?: .*)?$"
)
ALB = re.compile(r"^(?P<type>h2|https?|wss?|grpcs?) " + ELB.pattern[1:])


class ElbParser(RegexParser):
    def __init__(self, name: str) -> None:
        super().__init__(name, ALB if name == "alb" else ELB)

    def build(self, g: dict) -> Hit:
        method, host, path, query, protocol = request_line(g["request"].strip())
        times = [float(t) for t in (g["t1"], g["t2"], g["t3"]) if t not in ("-1", "-")]
        return Hit(
            time=iso_time(g["time"]), ip=g["ip"].strip("[]"), method=method, host=host,
            path=path, query=query, protocol=protocol, status=number(g["status"]),
            bytes=number(g["bytes"]), referrer=None, user_agent=dash(g["user_agent"]),
            time_taken_ms=round(sum(times) * 1000, 3) if times else None,
        )  # fmt: skip


# -- S3 server access logs, Gandi hosting, HAProxy ------------------------------------------------

_REQUEST = r'"(?P<request>(?:[^"\\]|\\.)*)"'
# bucket owner, bucket, [time], remote IP, requester, request id, operation, key, "request",
# status, error code, bytes sent, object size, total time (ms), turnaround time, "referrer",
# "user agent", then (newer logs) version id, host id, signature, cipher, auth, Host header, ...
S3 = re.compile(
    r"^\S+ (?P<bucket>\S+) \[(?P<time>[^\]]+)\] (?P<ip>\S+) (?P<user>\S+) \S+ \S+ \S+ "
    + _REQUEST
    + r" (?P<status>\d{3}|-) \S+ (?P<bytes>\d+|-) \S+ (?P<time_ms>\d+|-) \S+"
    + AGENTS
    + r"(?: \S+ \S+ \S+ \S+ \S+ (?P<vhost>\S+))?(?: .*)?$"
)
# Gandi Simple Hosting: vhost_combined with the time taken, "(3 s)", after the time.
GANDI = re.compile(
    r"^(?P<vhost>\S+) (?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r"\((?P<taken>\d+(?:\.\d+)?) ?(?P<unit>us|ms|s)\) "
    + _REQUEST
    + r" (?P<status>\d{3}|-) (?P<bytes>\d+|-)"
    + AGENTS
    + r"(?: .*)?$"
)
# HAProxy's HTTP log (`option httplog`), with or without a syslog prefix (BSD or ISO time,
# ending "haproxy[pid]: "): client:port [accept date] frontend backend/server
# Tq/Tw/Tc/Tr/Tt status bytes cookies termination counters queues {captured request
# headers} {captured response headers} "request".
HAPROXY = re.compile(
    r"^(?:.*?: )?(?P<ip>\S+):\d+ "
    r"\[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d)(?:\.\d+)?\] \S+ \S+ "
    r"(?P<timers>[-+\d]+(?:/[-+\d]+)*) (?P<status>-?\d+) \+?(?P<bytes>\d+) \S+ \S+ \S+ \S+ \S+"
    r"(?: \{[^}]*\})?(?: \{[^}]*\})? "
    r'"(?P<request>(?:[^"\\]|\\.)*)"?\s*$'
)


class GandiParser(RegexParser):
    def __init__(self, default_tz: tzinfo = UTC) -> None:
        super().__init__("gandi", GANDI, default_tz)

    def build(self, g: dict) -> Hit:
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[g["unit"]]
        return _from_groups({**g, "time_ms": float(g["taken"]) * scale}, self.default_tz)


class HaproxyParser(RegexParser):
    """HAProxy's time has no offset (its milliseconds are dropped by the pattern): it is
    read in the source's time zone, as any offset-less time."""

    def __init__(self, default_tz: tzinfo = UTC) -> None:
        super().__init__("haproxy", HAPROXY, default_tz)

    def build(self, g: dict) -> Hit:
        total = g["timers"].rsplit("/", 1)[-1].lstrip("+")  # Tt (Ta since 1.7): -1 if aborted
        return _from_groups({
            **g,
            "status": g["status"] if g["status"] != "-1" else None,  # no response to count
            "time_ms": total if total.isdigit() else None,
        }, self.default_tz)  # fmt: skip


# -- W3C extended (IIS, CloudFront, others): driven by the #Fields header -------------------------

W3C_TOKEN = re.compile(r'"([^"]*)"|(\S+)')


class W3CParser:
    """W3C extended log format; the ``#Fields:`` header names the columns and may change
    mid-file (each new header applies to the lines after it)."""

    def __init__(self, name: str = "w3c", default_tz: tzinfo = UTC) -> None:
        self.name = name
        self.fields: list[str] | None = None
        self.default_tz = default_tz

    def parse(self, line: str) -> Hit | None:
        if line.startswith("#"):
            if line.startswith("#Fields:"):
                self.fields = line[len("#Fields:") :].split()
            return None
        if not line.strip():
            return None
        if self.fields is None:
            raise Rejected("W3C line before any #Fields header")
        if "\t" in line:
            values = line.rstrip("\r\n").split("\t")
        elif '"' in line:  # any value may be quoted, with spaces inside
            values = [a if a or not b else b for a, b in W3C_TOKEN.findall(line)]
        else:
            values = line.split()
        if len(values) != len(self.fields):
            raise Rejected(f"{len(values)} values for {len(self.fields)} #Fields")
        row = dict(zip(self.fields, values, strict=True))
        cloudfront = "x-edge-location" in row
        # W3C times are UTC by definition; IIS Advanced Logging may log local time instead.
        date, clock, tz = row.get("date"), row.get("time"), UTC
        if date is None or clock is None:
            date, clock, tz = row.get("date-local"), row.get("time-local"), self.default_tz
        if date is None or clock is None:
            raise Rejected("#Fields has no date and time")
        time = iso_time(f"{date.strip(chr(34))}T{clock.strip(chr(34))}", tz)
        agent = dash(row.get("cs(User-Agent)"))
        if agent and cloudfront:
            agent = unquote(unquote(agent))
        elif agent and "+" in agent and " " not in agent:
            agent = agent.replace("+", " ")
        target = row.get("cs-uri-stem") or row.get("cs-uri") or "/"
        host, path, query = split_target(target)
        taken = number(row.get("time-taken") or row.get("TimeTakenMS"), float)
        if taken is not None and cloudfront:
            taken *= 1000  # CloudFront logs seconds, IIS milliseconds
        return Hit(
            time=time,
            ip=dash(row.get("c-ip")),
            method=dash(row.get("cs-method")),
            host=dash(row.get("cs(Host)") or row.get("cs-host")) or host,
            path=path,
            query=dash(row.get("cs-uri-query")) or query,
            protocol=dash(row.get("cs-version") or row.get("cs-protocol-version")),
            status=number(row.get("sc-status")),
            bytes=number(row.get("sc-bytes")),
            referrer=dash(row.get("cs(Referer)") or row.get("cs(Referrer)")),
            user_agent=agent,
            time_taken_ms=taken,
            user=dash(row.get("cs-username")),
        )


# -- JSON lines -----------------------------------------------------------------------------------


def _first(value):
    return value[0] if isinstance(value, list) and value else value


class JsonParser:
    def __init__(self, name: str, default_tz: tzinfo = UTC) -> None:
        self.name = name
        self.default_tz = default_tz
        self.read: Callable[[dict], Hit] = getattr(self, f"_{name}")

    def parse(self, line: str) -> Hit | None:
        if _no_request(line):
            return None
        try:
            data = json.loads(line)
        except ValueError:
            raise Rejected("line is not valid JSON") from None
        if not isinstance(data, dict):
            raise Rejected("JSON line is not an object")
        try:
            return self.read(data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise Rejected(f"{self.name}: field {exc} missing or of the wrong type") from None

    def _nginx_json(self, d: dict) -> Hit:
        if "request" in d and isinstance(d["request"], str):
            method, host, path, query, protocol = request_line(d["request"])
        else:
            method, protocol = d.get("method") or d.get("request_method"), d.get("protocol")
            host, path, query = split_target(d.get("path") or d.get("uri") or d["request_uri"])
            query = query or dash(d.get("args") or d.get("query_string"))
        stamp = d.get("time_iso8601") or d.get("time_local") or d.get("date") or d.get("time")
        taken = d.get("request_time") or d.get("generation_time_milli")
        return Hit(
            time=any_time(str(stamp), self.default_tz),
            ip=dash(d.get("remote_addr") or d.get("ip")),
            method=method,
            host=dash(d.get("host") or d.get("http_host")) or host,
            path=path,
            query=query,
            protocol=protocol,
            status=number(d.get("status")),
            bytes=number(d.get("body_bytes_sent") or d.get("length") or d.get("bytes_sent")),
            referrer=dash(d.get("http_referer") or d.get("referrer")),
            user_agent=dash(d.get("http_user_agent") or d.get("user_agent")),
            time_taken_ms=(
                None if taken in (None, "", "-")
                else float(taken) if "generation_time_milli" in d else float(taken) * 1000
            ),
            user=dash(d.get("remote_user")),
        )  # fmt: skip

    def _caddy_json(self, d: dict) -> Hit:
        r = d["request"]
        headers = r.get("headers") or {}
        host, path, query = split_target(r["uri"])
        return Hit(
            time=datetime.fromtimestamp(float(d["ts"]), UTC),
            ip=r.get("client_ip") or r.get("remote_ip"),
            method=r.get("method"), host=r.get("host") or host, path=path, query=query,
            protocol=r.get("proto"), status=number(d.get("status")), bytes=number(d.get("size")),
            referrer=_first(headers.get("Referer")), user_agent=_first(headers.get("User-Agent")),
            time_taken_ms=float(d["duration"]) * 1000 if d.get("duration") is not None else None,
            user=dash(d.get("user_id")),
        )  # fmt: skip

    def _traefik_json(self, d: dict) -> Hit:
        host, path, query = split_target(d["RequestPath"])
        stamp = d.get("StartUTC") or d.get("time") or d.get("StartLocal")
        return Hit(
            time=iso_time(str(stamp)), ip=d.get("ClientHost"), method=d.get("RequestMethod"),
            host=d.get("RequestHost") or host, path=path, query=query,
            protocol=d.get("RequestProtocol"), status=number(d.get("DownstreamStatus")),
            bytes=number(d.get("DownstreamContentSize")),
            referrer=dash(d.get("request_Referer")), user_agent=dash(d.get("request_User-Agent")),
            time_taken_ms=float(d["Duration"]) / 1e6 if d.get("Duration") is not None else None,
            user=dash(d.get("ClientUsername")),
        )  # fmt: skip


# -- choosing a parser ----------------------------------------------------------------------------


def make_parser(
    name: str,
    log_format: str | None = None,
    regex: str | None = None,
    default_tz: tzinfo = UTC,
):
    """The parser for a format name (``custom`` needs ``log_format`` or ``regex``)."""
    if name in REGEXES:
        return RegexParser(name, REGEXES[name], default_tz)
    if name in ("elb", "alb"):
        return ElbParser(name)
    if name == "s3":
        return RegexParser("s3", S3, default_tz)
    if name == "gandi":
        return GandiParser(default_tz)
    if name == "haproxy":
        return HaproxyParser(default_tz)
    if name in ("iis", "w3c", "cloudfront"):
        return W3CParser(name, default_tz)
    if name in ("nginx_json", "caddy_json", "traefik_json"):
        return JsonParser(name, default_tz)
    if name == "custom":
        if log_format:
            return RegexParser("custom", logformat_regex(log_format), default_tz)
        if regex:
            try:  # an operator's pattern over visitors' requests: RE2, linear time
                return RegexParser("custom", compile_pattern(regex), default_tz)
            except ValueError as exc:
                raise ValueError(f"--regex: {exc}") from None
        raise ValueError("format 'custom' needs --log-format '<Apache LogFormat>' or --regex")
    raise ValueError(f"unknown log format '{name}'; use auto, {', '.join(FORMATS)} or custom")


def detect_format(lines: Iterable[str]) -> str:
    """The format that reads most of a file's first lines (W3C and JSON by their shape)."""
    sample = [line for line in lines if line.strip()][:50]
    if any(line.startswith("#Fields:") for line in sample):
        fields = next(line for line in sample if line.startswith("#Fields:"))
        if "x-edge-location" in fields:
            return "cloudfront"
        return "iis" if any("Internet Information Services" in line for line in sample) else "w3c"
    body = [line for line in sample if not line.startswith("#")]
    if body and all(line.lstrip().startswith("{") for line in body):
        text = body[0]
        if '"logger"' in text and '"request"' in text:
            return "caddy_json"
        if '"ClientHost"' in text or '"RequestMethod"' in text:
            return "traefik_json"
        return "nginx_json"
    best, best_score = None, 0
    for name in ("alb", "elb", "s3", "haproxy", "gandi", "combined", "vhost_combined", "common"):
        parser = make_parser(name)
        score = 0
        for line in body:
            try:
                parser.parse(line)
                score += 1
            except Rejected:
                pass
        if score > best_score:
            best, best_score = name, score
    if best is None:
        raise ValueError(
            "cannot recognise the log format from the first lines; pass --format "
            f"({', '.join(FORMATS)} or custom)"
        )
    return best


def decode(raw: bytes) -> str:
    """A line as text: UTF-8, else Latin-1 (never fails; odd encodings do not stop a file)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
