"""Logfile lines in batches, as Arrow tables: parsing, enrichment and exclusion by column.

A batch of lines (tens of thousands) goes through three steps:

1. :func:`parse_batch` — the Apache/NCSA family (``common``, ``combined``,
   ``vhost_combined``) is matched by RE2 over the whole batch (``pyarrow.compute``); a line
   the strict pattern does not take (escaped quotes, absolute-form targets, ``-`` status,
   comments, garbage) goes through the format's line parser in :mod:`.parsers`, which also
   reads every other format. Both give the same fields for the same line (a unit test checks
   it), so the fast path is an optimisation, not a second definition.
2. :meth:`Enricher.enrich` — user agent facts, bot reason, country, IP policy, visitor key,
   referrer host and campaign parameters are computed once per *distinct* value in the batch
   (and remembered across batches), then spread over the rows with ``take``.
3. :meth:`Enricher.enrich` also applies the source's exclusions, in the order a line-by-line
   reader would, counting each reason.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import Counter
from collections.abc import Callable, Sequence
from urllib.parse import parse_qs

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.core.enrich import bot_reason, country_of, network_key, url_parts, user_agent_facts
from ingestion.core.sites import IpPolicy, LogSource, compile_pattern
from ingestion.logfiles.parsers import Hit, RegexParser, Rejected, decode

STATIC = (
    r"\.(?:css|js|mjs|map|png|jpe?g|gif|svg|webp|avif|ico|woff2?|ttf|eot|otf|mp4|webm|mp3|"
    r"pdf|zip|gz|txt|xml|json)$"
)
UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
AGENT_FACTS = ("browser", "browser_version", "os", "os_version", "device_family", "device_type")

# The fields of a parsed line (parsers.Hit) as Arrow columns.
HIT_FIELDS = pa.schema([
    ("time", pa.timestamp("us", tz="UTC")), ("ip", pa.string()), ("method", pa.string()),
    ("host", pa.string()), ("path", pa.string()), ("query", pa.string()),
    ("protocol", pa.string()), ("status", pa.int64()), ("bytes", pa.int64()),
    ("referrer", pa.string()), ("user_agent", pa.string()), ("time_taken_ms", pa.float64()),
    ("user", pa.string()), ("row", pa.int64()),
])  # fmt: skip

# raw_logfiles.hits, in column order (nullability as the dlt hints say: no warning per batch).
HITS = pa.schema([
    pa.field("hit_id", pa.string(), nullable=False), ("site_id", pa.string()),
    ("source", pa.string()),
    pa.field("requested_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ("visitor_key", pa.string()),
    ("ip", pa.string()), ("country", pa.string()), ("method", pa.string()),
    ("host", pa.string()), ("path", pa.string()), ("query", pa.string()),
    ("protocol", pa.string()), ("status", pa.int64()), ("bytes", pa.int64()),
    ("referrer", pa.string()), ("referrer_host", pa.string()), ("user_agent", pa.string()),
    ("time_taken_ms", pa.float64()), ("remote_user", pa.string()),
    *((name, pa.string()) for name in AGENT_FACTS),
    ("is_bot", pa.bool_()), ("bot_reason", pa.string()), ("is_static", pa.bool_()),
    *((name, pa.string()) for name in UTM),
    ("file_name", pa.string()), ("file_fingerprint", pa.string()),
    ("byte_offset", pa.int64()), ("line_number", pa.int64()),
])  # fmt: skip

# The strict shape of an Apache/NCSA line that needs no unescaping, has an origin-form
# request target and no quote before the request: RE2 syntax (pyarrow.compute). Lines of that
# shape are cut at their quotes and spaces by column; every other line goes to the line parser.
_WORD = r'[^\s"]+'
_PLAIN = r'"[^"\\]*"'
_STRICT_COMMON = (
    rf'[^#\s"][^\s"]* {_WORD} {_WORD} '
    r"\[\d\d/[A-Z][a-z][a-z]/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
    r'"[A-Z]+ /[^ ?"\\]*(?:\?[^ "\\]*)? HTTP/[0-9.]+" '
    r"\d{3} (?:\d+|-)"
)
STRICT = {
    "common": "^" + _STRICT_COMMON + r"\s*$",
    "combined": "^" + _STRICT_COMMON + f" {_PLAIN} {_PLAIN}" + r"(?: .*)?\r?$",
    "vhost_combined": (
        r'^[^\s:"]+(?::\d+)? ' + _STRICT_COMMON + f" {_PLAIN} {_PLAIN}" + r"(?: .*)?\r?$"
    ),
}
APACHE_TIME = "%d/%b/%Y:%H:%M:%S %z"
TARGET = r"^(?P<path>[^?]*)(?:\?(?P<query>.*))?$"


def text_of(raw: bytes) -> str:
    """A line as the line parsers read it: :func:`.parsers.decode`, a trailing CR dropped."""
    text = decode(raw)
    return text[:-1] if text.endswith("\r") else text


def decode_lines(raws: Sequence[bytes]) -> list[str]:
    return [text_of(raw) for raw in raws]


def arrow_lines(raws: Sequence[bytes]) -> pa.StringArray:
    """The lines as one Arrow string array, built from their bytes without Python strings;
    in a batch that is not all UTF-8, each line is decoded as :func:`.parsers.decode` does."""
    data = b"".join(raws)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raws = [decode(raw).encode() for raw in raws]
        data = b"".join(raws)
    offsets = np.zeros(len(raws) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, raws), dtype=np.int64, count=len(raws)), out=offsets[1:])
    return pa.LargeStringArray.from_buffers(
        len(raws), pa.py_buffer(offsets), pa.py_buffer(data)
    ).cast(pa.string())


def _nullify(arr: pa.Array, *empty: str) -> pa.Array:
    """``-`` (and the given values) as null."""
    mask = pc.is_in(arr, value_set=pa.array(["-", *empty]))
    return pc.if_else(mask, pa.scalar(None, arr.type), arr)


def _split(arr: pa.Array, sep: str, count: int, max_splits: int | None = None) -> list:
    """The first ``count`` parts of each value split at ``sep``, as columns. Each column is
    a ``take`` from the split's flat values (at each list's start + i): the same result as
    ``list_element``, which is slower. Every value must have ``count`` parts (the strict
    shape guarantees it)."""
    parts = pc.split_pattern(arr, sep, max_splits=max_splits)
    if isinstance(parts, pa.ChunkedArray):
        parts = parts.combine_chunks()
    if parts.null_count:  # a null value: list_element gives null parts for it
        return [pc.list_element(parts, i) for i in range(count)]
    if len(parts) and pc.min(pc.list_value_length(parts)).as_py() < count:
        raise ValueError(f"a value has fewer than {count} parts split at {sep!r}")
    starts = parts.offsets.to_numpy()[:-1]
    values = parts.values
    return [pc.take(values, pa.array(starts + i)) for i in range(count)]


def _fast_parse(name: str, lines: pa.Array) -> tuple[pa.Table, np.ndarray]:
    """The lines of the strict shape as hit fields (with their index in ``row``), and a mask
    of the lines left to the line parser."""
    ok = pc.match_substring_regex(lines, STRICT[name])
    rows = pc.indices_nonzero(ok)
    strict = lines if len(rows) == len(lines) else pc.take(lines, rows)  # usually all of them
    head, request, middle, referrer, _, agent = _split(
        strict, '"', 6 if name != "common" else 3
    ) + ([None] * 3 if name == "common" else [])
    host = None
    if name == "vhost_combined":
        vhost, ip, _, user, stamp = _split(head, " ", 5, max_splits=4)
        host = _nullify(_split(vhost, ":", 1, max_splits=1)[0])
    else:
        ip, _, user, stamp = _split(head, " ", 4, max_splits=3)
    times = pc.strptime(
        pc.utf8_slice_codeunits(stamp, 1, -2), format=APACHE_TIME, unit="us", error_is_null=True
    )  # fmt: skip
    method, target, protocol = _split(request, " ", 3)
    target = pc.extract_regex(target, TARGET)
    status, size = _split(pc.utf8_trim_whitespace(middle), " ", 2, max_splits=1)
    n = len(rows)
    nulls = pa.nulls(n, pa.string())
    table = pa.table({
        "time": times.cast(pa.timestamp("us", tz="UTC")),
        "ip": _nullify(ip),
        "method": method,
        "host": host if host is not None else nulls,
        "path": target.field("path"),
        "query": _nullify(target.field("query"), ""),
        "protocol": protocol,
        "status": status.cast(pa.int64()),
        "bytes": _nullify(size).cast(pa.int64()),
        "referrer": _nullify(referrer, "") if referrer is not None else nulls,
        "user_agent": _nullify(agent, "") if agent is not None else nulls,
        "time_taken_ms": pa.nulls(n, pa.float64()),
        "user": _nullify(user),
        "row": rows.cast(pa.int64()),
    }, schema=HIT_FIELDS)  # fmt: skip
    if times.null_count:  # a time the strict shape allows but no calendar has
        good = times.is_valid()
        table = table.filter(good)
        ok = ok.to_numpy(zero_copy_only=False).copy()
        ok[pc.filter(rows, pc.invert(good)).to_numpy()] = False
        return table, ~ok
    return table, ~ok.to_numpy(zero_copy_only=False)


def hits_table(hits: list[Hit], rows: list[int]) -> pa.Table:
    """Hits read line by line, as the same columns."""
    columns = {
        f.name: pa.array([getattr(h, f.name) for h in hits], f.type)
        for f in HIT_FIELDS
        if f.name != "row"
    }
    columns["row"] = pa.array(rows, pa.int64())
    return pa.table(columns, schema=HIT_FIELDS)


# The mark pull.line_batches puts on a line longer than 1 MiB (then only its first 8 KB
# follow): it can never be a line of the strict shape, and no line parser sees it.
OVERLONG = b'"\x00line longer than 1 MiB\x00'


def parse_batch(parser, raws: Sequence[bytes]) -> tuple[pa.Table, list[tuple[int, str, str]], int]:
    """Parse a batch of lines: (hit fields with the line's index in ``row``, in line order;
    the rejected lines as (index, reason, text); the number of lines skipped by design)."""
    fast = isinstance(parser, RegexParser) and parser.name in STRICT and len(raws)
    if fast:
        table, unread = _fast_parse(parser.name, arrow_lines(raws))
        slow_rows = np.flatnonzero(unread).tolist()
    else:
        table, slow_rows = None, range(len(raws))
    hits, rows, rejected, skipped = [], [], [], 0
    for i in slow_rows:
        if raws[i].startswith(OVERLONG):  # see pull.line_batches: its first 8 KB only
            rejected.append((i, "line longer than 1 MiB", text_of(raws[i][len(OVERLONG) :])))
            continue
        text = text_of(raws[i])
        try:
            hit = parser.parse(text)
        except Rejected as exc:
            rejected.append((i, str(exc), text))
            continue
        if hit is None:
            skipped += 1
            continue
        hits.append(hit)
        rows.append(i)
    if table is None:
        return hits_table(hits, rows), rejected, skipped
    if hits:
        table = pa.concat_tables([table, hits_table(hits, rows)]).sort_by("row")
    return table, rejected, skipped


class _Memo:
    """Values computed once per distinct input, kept across batches (bounded)."""

    def __init__(self, compute: Callable, limit: int = 200_000) -> None:
        self.compute = compute
        self.limit = limit
        self.known: dict = {}

    def over(self, arr: pa.Array) -> tuple[list, pa.Array]:
        """(the computed value of each distinct input, each row's index into that list)."""
        encoded = pc.dictionary_encode(arr, null_encoding="encode")
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        if len(self.known) > self.limit:
            self.known.clear()
        known, compute = self.known, self.compute
        values = []
        for value in encoded.dictionary.to_pylist():
            result = known.get(value, known)
            if result is known:
                result = known[value] = compute(value)
            values.append(result)
        return values, encoded.indices


IPV4 = r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
# The host part of an IPv4 address zeroed by column, for the prefixes on octet boundaries.
ZERO_HOST = {24: (r"\.\d+$", ".0"), 16: (r"\.\d+\.\d+$", ".0.0"), 8: (r"\..*$", ".0.0.0")}


def anonymise(ip: pa.Array, policy: IpPolicy) -> pa.Array:
    """``policy.apply`` over a column: IPv4 addresses by column where the prefix allows, any
    other value (IPv6, odd prefixes, garbage) once per distinct value."""
    if policy.mode == "drop":
        return pa.nulls(len(ip), pa.string())
    v4 = pc.fill_null(pc.match_substring_regex(ip, IPV4), False)
    if policy.mode == "full" or policy.ipv4_prefix == 32:
        fast = ip
    elif policy.ipv4_prefix in ZERO_HOST:
        pattern, zeros = ZERO_HOST[policy.ipv4_prefix]
        fast = pc.replace_substring_regex(ip, pattern, zeros)
    else:
        fast, v4 = ip, pc.and_(v4, False)
    if pc.all(v4).as_py():
        return fast
    rest = pc.if_else(v4, pa.scalar(None, pa.string()), ip)
    if isinstance(rest, pa.ChunkedArray):
        rest = rest.combine_chunks()
    encoded = pc.dictionary_encode(rest)
    values = pa.array([policy.apply(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.if_else(v4, fast, pc.take(values, encoded.indices))


def _spread(values: list, indices: pa.Array, typ: pa.DataType) -> pa.Array:
    return pc.take(pa.array(values, typ), indices)


class Enricher:
    """Enrichment and exclusion of parsed hits, defined once for every log source."""

    def __init__(self, site_id: str, source: LogSource, ip_policy: IpPolicy, key: bytes) -> None:
        self.site_id = site_id
        self.source = source
        ex = source.exclude
        # The operator's patterns meet visitors' paths and user agents: RE2 (linear time).
        self.ex_paths = [compile_pattern(p) for p in ex.paths]
        self.ex_agents = [compile_pattern(p) for p in ex.user_agents]
        self.ex_status = sorted(ex.status)
        self.ex_nets = [ipaddress.ip_network(n, strict=False) for n in ex.ip_ranges]
        self.policy = ip_policy
        self.robots: set[str] = set()  # visitor keys that asked for /robots.txt
        self.agents = _Memo(lambda ua: (user_agent_facts(ua or ""), bot_reason(ua)))
        self.countries = _Memo(country_of)
        self.keys = _Memo(lambda pair: network_key(*pair.split("\x00", 1), key))
        self.referrers = _Memo(lambda ref: url_parts(ref)[0])
        self.queries = _Memo(self._campaign)
        self.paths = _Memo(lambda p: any(rx.search(p) for rx in self.ex_paths))
        self.agent_excluded = _Memo(lambda ua: any(rx.search(ua) for rx in self.ex_agents))
        self.ip_excluded = _Memo(self._in_ranges)

    @staticmethod
    def _campaign(query: str | None) -> tuple:
        if not query or "utm_" not in query:
            return (None,) * len(UTM)
        values = parse_qs(query, keep_blank_values=False)
        return tuple((values.get(name) or [None])[0] for name in UTM)

    def _in_ranges(self, ip: str | None) -> bool:
        try:
            addr = ipaddress.ip_address(ip or "")
        except ValueError:
            return False
        return any(addr in net for net in self.ex_nets)

    def enrich(self, hits: pa.Table) -> tuple[pa.Table, Counter]:
        """Hit fields → the enriched columns of raw_logfiles.hits (without the file columns),
        without the excluded lines; and the number excluded per reason."""
        n = hits.num_rows
        ip, agent, path = hits["ip"], hits["user_agent"], hits["path"]
        agent_values, agent_idx = self.agents.over(agent)
        facts = {
            name: _spread([v[0][name] for v in agent_values], agent_idx, pa.string())
            for name in AGENT_FACTS
        }
        agent_reason = _spread([v[1] for v in agent_values], agent_idx, pa.string())
        country_values, country_idx = self.countries.over(ip)
        pairs = pc.binary_join_element_wise(
            pc.fill_null(ip, ""), pc.fill_null(agent, ""), "\x00"
        )  # fmt: skip
        key_values, key_idx = self.keys.over(pairs)
        visitor_key = _spread(key_values, key_idx, pa.string())
        reason = self._bot_reasons(path, agent_reason, key_values, key_idx, n)
        is_static = pc.fill_null(pc.match_substring_regex(path, STATIC, ignore_case=True), False)
        ref_values, ref_idx = self.referrers.over(hits["referrer"])
        query_values, query_idx = self.queries.over(hits["query"])
        columns = {
            "site_id": pa.array([self.site_id] * n, pa.string()),
            "source": pa.array([self.source.name] * n, pa.string()),
            "requested_at": hits["time"],
            "visitor_key": visitor_key,
            "ip": anonymise(ip, self.policy),
            "country": _spread(country_values, country_idx, pa.string()),
            "method": hits["method"], "host": hits["host"], "path": path,
            "query": hits["query"], "protocol": hits["protocol"], "status": hits["status"],
            "bytes": hits["bytes"], "referrer": hits["referrer"],
            "referrer_host": _spread(ref_values, ref_idx, pa.string()),
            "user_agent": agent, "time_taken_ms": hits["time_taken_ms"],
            "remote_user": hits["user"], **facts,
            "is_bot": reason.is_valid(), "bot_reason": reason, "is_static": is_static,
            **{name: _spread([v[i] for v in query_values], query_idx, pa.string())
               for i, name in enumerate(UTM)},
            "row": hits["row"],
        }  # fmt: skip
        table = pa.table(columns)
        excluded = self._exclusions(table, ip)
        if excluded is None:
            return table, Counter()
        counts = Counter(
            {row["values"]: row["counts"] for row in pc.value_counts(excluded).to_pylist()
             if row["values"] is not None}
        )  # fmt: skip
        return table.filter(excluded.is_null()), counts

    def _bot_reasons(self, path, agent_reason, key_values, key_idx, n) -> pa.Array:
        """The user-agent list's reason, else ``/robots.txt`` asked now or earlier (in this
        pull) by the same visitor key."""
        robots = pc.fill_null(pc.equal(path, "/robots.txt"), False).to_numpy(
            zero_copy_only=False
        )  # fmt: skip
        idx = np.asarray(key_idx.to_numpy(zero_copy_only=False))
        first = np.full(len(key_values), n, dtype=np.int64)
        for k, value in enumerate(key_values):
            if value in self.robots:
                first[k] = -1
        where = np.flatnonzero(robots)
        np.minimum.at(first, idx[where], where)
        earlier = first[idx] < np.arange(n)
        self.robots.update(key_values[k] for k in np.unique(idx[where]).tolist())
        none = pa.scalar(None, pa.string())
        return pc.coalesce(
            agent_reason,
            pc.if_else(pa.array(robots), pa.scalar("requested /robots.txt"), none),
            pc.if_else(pa.array(earlier), pa.scalar("requested /robots.txt earlier"), none),
        )

    def _exclusions(self, table, ip) -> pa.Array | None:
        """Each row's exclusion reason (null when kept), first reason first."""
        ex = self.source.exclude
        none = pa.scalar(None, pa.string())
        reasons = []
        if ex.static_assets:
            reasons.append(pc.if_else(table["is_static"], pa.scalar("static asset"), none))
        if self.source.bots == "drop":
            reasons.append(pc.if_else(table["is_bot"], pa.scalar("bot"), none))
        if self.ex_status:
            status = table["status"]
            hit = pc.fill_null(pc.is_in(status, value_set=pa.array(self.ex_status)), False)
            reasons.append(pc.if_else(hit, pc.binary_join_element_wise(
                "status ", status.cast(pa.string()), ""), none))  # fmt: skip
        if self.ex_paths:
            values, idx = self.paths.over(table["path"])
            reasons.append(pc.if_else(_spread(values, idx, pa.bool_()), "path", none))
        if self.ex_agents:
            values, idx = self.agent_excluded.over(pc.fill_null(table["user_agent"], ""))
            hit = pc.and_(_spread(values, idx, pa.bool_()), table["user_agent"].is_valid())
            reasons.append(pc.if_else(hit, "user agent", none))
        if self.ex_nets:
            values, idx = self.ip_excluded.over(ip)
            reasons.append(pc.if_else(pc.fill_null(_spread(values, idx, pa.bool_()), False),
                                      "ip range", none))  # fmt: skip
        if not reasons:
            return None
        return pc.coalesce(*reasons) if len(reasons) > 1 else reasons[0]


def file_key(source: str, fp: str, generation: int) -> str:
    """The part of a hit id that names the file's content: (source, fingerprint, generation)."""
    return hashlib.sha1(f"{source}|{fp}|{generation}".encode()).hexdigest()[:16]


def hit_ids(source: str, fp: str, generation: int, offsets: np.ndarray) -> pa.Array:
    """Stable ids ``<file key>:<byte offset>``: the same bytes always get the same id."""
    digits = pa.array(offsets, pa.int64()).cast(pa.string())
    return pc.binary_join_element_wise(f"{file_key(source, fp, generation)}:", digits, "")


def hit_id(source: str, fp: str, generation: int, offset: int) -> str:
    return f"{file_key(source, fp, generation)}:{offset}"
