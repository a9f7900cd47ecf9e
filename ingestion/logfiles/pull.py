"""Incremental, idempotent pulls: only the new part of each logfile, every line accounted for.

Each file is known by a fingerprint: the SHA-256 of its first KB (of the decompressed content
for ``.gz``/``.bz2``), or of all of it while it is shorter, matched as a prefix later so a
growing small file keeps its identity. The state per fingerprint is the byte offset reached
(after the last complete line), the line count and a generation. So:

* appended lines are read from the offset (HTTP Range, FTP REST, SFTP seek);
* a rotated file (``access.log`` → ``access.log.1`` → ``access.log.2.gz``) has the same first
  KB: it is recognised, and only lines added before the rotation are read;
* a truncated or replaced file that starts alike but is now shorter than the offset starts a
  new generation from byte 0.

A hit's id is derived from (source, fingerprint, generation, byte offset): loading the same
bytes twice yields the same ids, which the load merges on.
"""

from __future__ import annotations

import bz2
import hashlib
import ipaddress
import itertools
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from ingestion.logfiles.parsers import Hit, Rejected, decode, detect_format, make_parser
from ingestion.logfiles.remote import RemoteFile
from ingestion.site_config.schema import IpPolicy, LogSource
from realtime.collector.enrich import (
    bot_reason,
    country_of,
    network_key,
    url_parts,
    user_agent_facts,
)

FINGERPRINT_BYTES = 1024
STATIC = re.compile(
    r"\.(?:css|js|mjs|map|png|jpe?g|gif|svg|webp|avif|ico|woff2?|ttf|eot|otf|mp4|webm|mp3|"
    r"pdf|zip|gz|txt|xml|json)$",
    re.I,
)
UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def fingerprint(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()[:32]


def _decompressor(name: str):
    if name.endswith(".gz"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name.endswith(".bz2"):
        return bz2.BZ2Decompressor()
    return None


def content(chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
    """The file's content, decompressed when its name says so."""
    decompressor = _decompressor(name)
    if decompressor is None:
        yield from chunks
        return
    for chunk in chunks:
        data = decompressor.decompress(chunk)
        if data:
            yield data


@dataclass
class FileState:
    fingerprint: str
    fp_len: int
    offset: int = 0
    lines: int = 0
    generation: int = 0
    name: str = ""

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class PullStats:
    """What one pull of one file did (a row of raw_logfiles.files)."""

    file_name: str
    fingerprint: str
    generation: int
    start_offset: int
    end_offset: int = 0
    bytes_read: int = 0
    lines_read: int = 0
    loaded: int = 0
    skipped: int = 0
    rejected: int = 0
    bots: int = 0
    excluded: Counter = field(default_factory=Counter)
    rejected_reasons: Counter = field(default_factory=Counter)


def match_state(head: bytes, states: dict[str, dict]) -> FileState | None:
    for state in states.values():
        n = state["fp_len"]
        if len(head) >= n and fingerprint(head[:n]) == state["fingerprint"]:
            return FileState(**state)
    return None


class Enricher:
    """Per-hit enrichment and exclusion, defined once for every log source."""

    def __init__(self, site_id: str, source: LogSource, ip_policy: IpPolicy, key: bytes) -> None:
        self.site_id = site_id
        self.source = source
        self.policy = ip_policy
        self.key = key
        ex = source.exclude
        self.ex_paths = [re.compile(p) for p in ex.paths]
        self.ex_agents = [re.compile(p) for p in ex.user_agents]
        self.ex_status = set(ex.status)
        self.ex_nets = [ipaddress.ip_network(n, strict=False) for n in ex.ip_ranges]
        self.robots: set[str] = set()
        self._countries: dict[str | None, str | None] = {}

    def exclusion(self, hit: Hit, is_static: bool, is_bot: bool) -> str | None:
        ex = self.source.exclude
        if ex.static_assets and is_static:
            return "static asset"
        if is_bot and self.source.bots == "drop":
            return "bot"
        if hit.status in self.ex_status:
            return f"status {hit.status}"
        if any(p.search(hit.path) for p in self.ex_paths):
            return "path"
        if hit.user_agent and any(p.search(hit.user_agent) for p in self.ex_agents):
            return "user agent"
        if self.ex_nets and hit.ip:
            try:
                ip = ipaddress.ip_address(hit.ip)
            except ValueError:
                return None
            if any(ip in net for net in self.ex_nets):
                return "ip range"
        return None

    def visitor_key(self, ip: str | None, agent: str | None) -> str:
        return network_key(ip, agent, self.key)

    def row(self, hit: Hit) -> dict:

        is_static = bool(STATIC.search(hit.path))
        key = self.visitor_key(hit.ip, hit.user_agent)
        reason = bot_reason(hit.user_agent)
        if hit.path == "/robots.txt":
            self.robots.add(key)
            reason = reason or "requested /robots.txt"
        elif reason is None and key in self.robots:
            reason = "requested /robots.txt earlier"
        agent = user_agent_facts(hit.user_agent or "")
        country = self._countries.get(hit.ip, "?")
        if country == "?":
            if len(self._countries) > 100_000:
                self._countries.clear()
            country = self._countries[hit.ip] = country_of(hit.ip)
        query = parse_qs(hit.query or "", keep_blank_values=False) if hit.query else {}
        return {
            "site_id": self.site_id,
            "source": self.source.name,
            "requested_at": hit.time,
            "visitor_key": key,
            "ip": self.policy.apply(hit.ip),
            "country": country,  # looked up from the full address, which is not kept
            "method": hit.method,
            "host": hit.host,
            "path": hit.path,
            "query": hit.query,
            "protocol": hit.protocol,
            "status": hit.status,
            "bytes": hit.bytes,
            "referrer": hit.referrer,
            "referrer_host": url_parts(hit.referrer)[0],
            "user_agent": hit.user_agent,
            "time_taken_ms": hit.time_taken_ms,
            "remote_user": hit.user,
            **agent,
            "is_bot": reason is not None,
            "bot_reason": reason,
            "is_static": is_static,
            **{name: (query.get(name) or [None])[0] for name in UTM},
        }


def hit_id(source: str, fp: str, generation: int, offset: int) -> str:
    return hashlib.sha1(f"{source}|{fp}|{generation}|{offset}".encode()).hexdigest()[:24]


def read_file(
    remote,
    f: RemoteFile,
    state: FileState,
    start: int,
    parser_factory: Callable[[list[str]], object],
    enricher: Enricher,
    emit_rejected: Callable[[dict], None],
    stats: PullStats,
    progress: Callable[[int], None] | None = None,
) -> Iterator[dict]:
    """Yield the hits of ``f``'s complete lines from ``start`` (content offset); rejected
    lines go to ``emit_rejected``; ``stats`` and ``state`` are updated as lines are read."""
    compressed = _decompressor(f.name) is not None
    # Compressed files are read from byte 0 and the known part is skipped after decompression.
    chunks = content(remote.read(f, 0 if compressed else start), f.name)
    complete = compressed or enricher.source.last_line == "read"
    complete = compressed or enricher.source.last_line == "read"
    offset, line_no = start, state.lines
    stream = _lines(chunks, start if compressed else 0, complete, stats)
    head = list(itertools.islice(stream, 50))  # the format is detected from these
    parser = parser_factory([decode(raw) for raw, _ in head]) if head else None
    for raw, length in itertools.chain(head, stream):
        line_no += 1
        line_offset = offset
        offset += length
        stats.lines_read += 1
        if progress is not None and stats.lines_read % 1000 == 0:
            progress(1000)
        text = decode(raw).rstrip("\r")
        ident = hit_id(enricher.source.name, state.fingerprint, state.generation, line_offset)
        try:
            hit = parser.parse(text)
        except Rejected as exc:
            stats.rejected += 1
            stats.rejected_reasons[str(exc)] += 1
            emit_rejected({
                "line_id": ident, "site_id": enricher.site_id, "source": enricher.source.name,
                "file_name": f.name, "file_fingerprint": state.fingerprint,
                "line_number": line_no, "byte_offset": line_offset, "reason": str(exc),
                "raw": text[:8192],
            })  # fmt: skip
            continue
        if hit is None:
            stats.skipped += 1
            continue
        row = enricher.row(hit)
        reason = enricher.exclusion(hit, row["is_static"], row["is_bot"])
        if reason:
            stats.excluded[reason] += 1
            continue
        stats.bots += row["is_bot"]
        row.update(hit_id=ident, file_name=f.name, file_fingerprint=state.fingerprint,
                   byte_offset=line_offset, line_number=line_no)  # fmt: skip
        stats.loaded += 1
        yield row
    if progress is not None:
        progress(stats.lines_read % 1000)
    state.offset, state.lines, state.name = offset, line_no, f.name
    stats.end_offset = offset


def _lines(
    chunks: Iterator[bytes], skip: int, complete: bool, stats: PullStats
) -> Iterator[tuple[bytes, int]]:
    """(line without newline, bytes it occupies) for each complete line after ``skip``
    bytes; for a complete file also its last line without a newline (its real length)."""
    pending = b""
    for chunk in chunks:
        if skip:
            if len(chunk) <= skip:
                skip -= len(chunk)
                continue
            chunk, skip = chunk[skip:], 0
        stats.bytes_read += len(chunk)
        data = pending + chunk
        end = data.rfind(b"\n")
        if end < 0:
            pending = data
            continue
        pending = data[end + 1 :]
        for raw in data[:end].split(b"\n"):
            yield raw, len(raw) + 1
    if complete and pending:
        yield pending, len(pending)


def head_of(remote, f: RemoteFile) -> bytes:
    head = b""
    for chunk in content(remote.read(f, 0), f.name):
        head += chunk
        if len(head) >= FINGERPRINT_BYTES:
            break
    return head[:FINGERPRINT_BYTES]


def rotation_order(files: list[RemoteFile]) -> list[RemoteFile]:
    """Oldest first: ``access.log.3.gz``, ``access.log.2``, ``access.log.1``, ``access.log``."""

    def key(f: RemoteFile):
        numbers = re.findall(r"\.(\d+)(?:\.(?:gz|bz2))?$", f.name)
        return (-int(numbers[0]) if numbers else 0, f.name)

    return sorted(files, key=key)


def pull_source(
    remote,
    site_id: str,
    source: LogSource,
    ip_policy: IpPolicy,
    key: bytes,
    states: dict[str, dict],
    emit_rejected: Callable[[dict], None],
    results: list[PullStats],
    site_timezone: str = "UTC",
    progress: Callable[[int], None] | None = None,
) -> Iterator[dict]:
    """Yield the new hits of every file of a source; ``states`` (fingerprint → state) is
    updated and one :class:`PullStats` per file appended to ``results``."""
    tz = ZoneInfo(source.timezone or site_timezone)

    def parser_factory(sample: list[str]):
        name = source.format if source.format != "auto" else detect_format(sample)
        return make_parser(name, source.log_format, source.regex, default_tz=tz)

    enricher = Enricher(site_id, source, ip_policy, key)
    seen: set[str] = set()
    for f in rotation_order(remote.list()):
        head = head_of(remote, f)
        if not head:
            continue
        state = match_state(head, states)
        if state is None:
            n = min(len(head), FINGERPRINT_BYTES)
            state = FileState(fingerprint(head[:n]), n)
            start = 0
        else:
            if state.fingerprint in seen:
                continue  # the same file under two names in one listing (e.g. .1 and .1.gz)
            compressed = _decompressor(f.name) is not None
            if f.size is not None and not compressed and f.size < state.offset:
                state.generation += 1  # truncated or replaced: read it again from the start
                state.offset = state.lines = 0
            start = state.offset
        seen.add(state.fingerprint)
        stats = PullStats(f.name, state.fingerprint, state.generation, start)
        results.append(stats)
        yield from read_file(
            remote, f, state, start, parser_factory, enricher, emit_rejected, stats, progress
        )
        states[state.fingerprint] = state.as_dict()


def now() -> datetime:
    return datetime.now(UTC)
