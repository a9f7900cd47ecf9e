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
import itertools
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.core.sites import IpPolicy, LogSource
from ingestion.logfiles.columnar import (
    HITS,
    OVERLONG,
    Enricher,
    decode_lines,
    hit_id,
    hit_ids,
    parse_batch,
)
from ingestion.logfiles.parsers import detect_format, make_parser
from ingestion.logfiles.remote import RemoteFile

FINGERPRINT_BYTES = 1024


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


BATCH_LINES = 50_000
# A line longer than this is rejected, not kept whole (no web server writes one: Apache and
# nginx cap a request line at 8 KB and a header at 8-16 KB).
MAX_LINE_BYTES = 1 << 20


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
) -> Iterator[pa.Table]:
    """Yield the hits of ``f``'s complete lines from ``start`` (content offset) as Arrow
    tables (raw_logfiles.hits' columns); rejected lines go to ``emit_rejected``; ``stats``
    and ``state`` are updated as lines are read."""
    compressed = _decompressor(f.name) is not None
    # Compressed files are read from byte 0 and the known part is skipped after decompression.
    chunks = content(remote.read(f, 0 if compressed else start), f.name)
    complete = compressed or enricher.source.last_line == "read"
    batches = line_batches(chunks, start if compressed else 0, complete, stats)
    first = next(batches, None)
    if first is not None:
        parser = parser_factory(decode_lines(first[0][:50]))  # the format, from the first lines
        # Batch k+1 is parsed on a thread (Arrow kernels release the GIL) while batch k is
        # enriched: the two cores share the work; batches stay in order.
        with ThreadPoolExecutor(1, thread_name_prefix="siteline-parse") as pool:
            pending = None
            for raws, lengths in itertools.chain([first], batches):
                parsed = pool.submit(parse_batch, parser, raws)
                if pending is not None:
                    yield from _finish(*pending, f, state, enricher, emit_rejected, stats, progress)
                pending = (raws, lengths, parsed)
            yield from _finish(*pending, f, state, enricher, emit_rejected, stats, progress)
    state.name = f.name
    stats.end_offset = state.offset


def _finish(raws, lengths, parsed, f, state, enricher, emit_rejected, stats, progress):
    """Account for a parsed batch, enrich it and yield its table; advances ``state``."""
    hits, rejected, skipped = parsed.result()
    source = enricher.source.name
    offset, line_no, n = state.offset, state.lines, len(raws)
    sizes = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(sizes)
    offsets = offset + ends - sizes
    stats.lines_read += n
    stats.skipped += skipped
    for i, reason, text in rejected:
        stats.rejected += 1
        stats.rejected_reasons[reason] += 1
        emit_rejected({
            "line_id": hit_id(source, state.fingerprint, state.generation, int(offsets[i])),
            "site_id": enricher.site_id, "source": source, "file_name": f.name,
            "file_fingerprint": state.fingerprint, "line_number": line_no + i + 1,
            "byte_offset": int(offsets[i]), "reason": reason, "raw": text[:8192],
        })  # fmt: skip
    table, excluded = enricher.enrich(hits)
    stats.excluded.update(excluded)
    rows = table["row"].to_numpy()
    kept = offsets[rows]
    table = (
        table.drop_columns(["row"])
        .append_column("hit_id", hit_ids(source, state.fingerprint, state.generation, kept))
        .append_column("file_name", pa.array([f.name] * len(rows), pa.string()))
        .append_column("file_fingerprint", pa.array([state.fingerprint] * len(rows)))
        .append_column("byte_offset", pa.array(kept, pa.int64()))
        .append_column("line_number", pa.array(line_no + rows + 1, pa.int64()))
        .select(HITS.names)
        .cast(HITS)
    )
    stats.loaded += table.num_rows
    stats.bots += pc.sum(table["is_bot"]).as_py() or 0
    state.offset, state.lines = offset + int(ends[-1]), line_no + n
    if progress is not None:
        progress(n)
    if table.num_rows:
        yield table


def _without_nul(raw: bytes) -> bytes:
    """A line with each NUL byte as U+FFFD: PostgreSQL cannot store NUL in text, and one
    such line failed its load and every load after it."""
    return raw.replace(b"\0", "\ufffd".encode()) if b"\0" in raw else raw


def line_batches(
    chunks: Iterator[bytes], skip: int, complete: bool, stats: PullStats
) -> Iterator[tuple[list[bytes], list[int]]]:
    """Batches of (lines without newline, bytes each occupies) for the complete lines after
    ``skip`` bytes; for a complete file also its last line without a newline (its length).

    Memory stays bounded whatever the file holds: a line longer than :data:`MAX_LINE_BYTES`
    (a binary file, a log line glued to garbage) is not kept; it comes as
    :data:`OVERLONG` + its first 8 KB, with its full length, and is rejected as such."""
    pending = b""
    overlong: list = []  # [first 8 KB, bytes so far] while inside an over-long line
    lines: list[bytes] = []
    lengths: list[int] = []
    for chunk in chunks:
        if skip:
            if len(chunk) <= skip:
                skip -= len(chunk)
                continue
            chunk, skip = chunk[skip:], 0
        stats.bytes_read += len(chunk)
        if overlong:
            newline = chunk.find(b"\n")
            if newline < 0:
                overlong[1] += len(chunk)
                continue
            lines.append(OVERLONG + overlong[0])
            lengths.append(overlong[1] + newline + 1)
            overlong, chunk = [], chunk[newline + 1 :]
        data = pending + chunk if pending else chunk
        end = data.rfind(b"\n")
        if end < 0:
            pending = data
        else:
            pending = data[end + 1 :]
            split = data[:end].split(b"\n")
            lengths += [len(raw) + 1 for raw in split]  # offsets count the bytes as read
            if data.find(b"\0", 0, end) >= 0:
                split = [_without_nul(raw) for raw in split]
            lines += split
        if len(pending) > MAX_LINE_BYTES:
            overlong, pending = [_without_nul(pending[:8192]), len(pending)], b""
        if len(lines) >= BATCH_LINES:
            yield lines, lengths
            lines, lengths = [], []
    if complete and overlong:
        lines.append(OVERLONG + overlong[0])
        lengths.append(overlong[1])
    elif complete and pending:
        lines.append(_without_nul(pending))
        lengths.append(len(pending))
    if lines:
        yield lines, lengths


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
