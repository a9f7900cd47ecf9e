"""Group commit on top of the landing segments: acknowledge only what is on disk.

Requests hand their lines to :meth:`DurableStream.append` and wait. At the end of the
event loop's turn, everything queued in that turn is written to the open segment in one
``write``, and one ``fdatasync`` makes it durable; the requests are woken when it is done.
While a sync runs, the next group gathers, so each request waits for at most two syncs
however many arrive, and throughput grows with load instead of being capped at one request
per sync.

The sync runs in a helper process (``fsyncd.py``), so the event loop never blocks on the
disk and no thread competes with it for the interpreter lock. If the helper cannot be
started or dies, the loop syncs itself (slower, never less durable), and a new helper is
started at the next sync.

A segment that cannot be closed (a full disk) stays queued, in order, and closing is retried
with backoff until it works; meanwhile ``/health`` names the problem. A write or sync that
fails answers its requests with :class:`LandingUnavailable` (the collector says 503): nothing
is acknowledged that is not on disk, and nothing on disk is left unlisted for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingestion.core.landing import (
    SEGMENTS,
    OpenSegment,
    SegmentInfo,
    SegmentWriter,
    expire_segments,
    seal_open_segments,
)

log = logging.getLogger("siteline.collector")

HELPER = Path(__file__).with_name("fsyncd.py")
HELPER_RETRY_SECONDS = 5.0
EXPIRY_INTERVAL = 3600.0  # seconds between two expiries of old segments
CLOSE_RETRY_FIRST = 0.5  # seconds before closing a segment is tried again; doubles each time
CLOSE_RETRY_MAX = 10.0  # ... up to this


class LandingUnavailable(Exception):
    """The landing could not make a request's lines durable (a full disk, an I/O error):
    nothing of that request is acknowledged, and the client should send it again later."""


class _SyncHelper:
    """The collector's side of one fsync helper process."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_reply) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", str(HELPER), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self.loop = loop
        self.file = None  # the file whose descriptor the helper holds
        loop.add_reader(ours.fileno(), on_reply)

    def request(self, fh) -> None:
        """Ask for a sync of ``fh`` (the reply arrives through ``on_reply``)."""
        if fh is not self.file:
            socket.send_fds(self.sock, [b"S"], [fh.fileno()])
            self.file = fh
        else:
            self.sock.send(b"S")

    def read_reply(self) -> bytes:
        """``K``, ``E<message>``, or empty when the helper is gone."""
        try:
            return self.sock.recv(1024)
        except BlockingIOError:
            return b"?"  # woken without a reply: nothing to do yet
        except OSError:
            return b""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()  # the helper sees end of file and exits
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.file = None


class DurableStream:
    """One landing stream (e.g. ``events`` or ``bad_events``) with group commit."""

    def __init__(
        self,
        stream_dir: Path,
        writer_id: str,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_events: int = 1_000_000,
        max_seconds: float = 60.0,
        durable: bool = True,
        retention_days: float = 0,
    ) -> None:
        self.dir = Path(stream_dir)
        self.retention_days = retention_days  # 0: keep every segment
        self._expired_at = -EXPIRY_INTERVAL
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer_id = writer_id
        self.max_seconds = max_seconds
        self.durable = durable
        self.problems: dict[str, str] = {}  # what fails now, by step ("write", "close", ...)
        self._leftovers: set[str] | None = None  # names a failed start could not seal yet
        try:
            self.recovered = seal_open_segments(self.dir, writer_id)
        except OSError as exc:
            # A full disk at start: start anyway (requests get 503 while writes fail) and
            # seal the last run's leftovers from the closing task once the disk lets it.
            self.recovered = []
            self._leftovers = {
                path.name.removesuffix(".open")
                for path in (self.dir / SEGMENTS).glob(f"*-{writer_id}-*.jsonl*")
            }
            self._problem("recover", f"cannot seal the segments of the last run: {_reason(exc)}")
        self._writer = SegmentWriter(
            self.dir, writer_id=writer_id, max_events=max_events, max_bytes=max_bytes,
            close_when_full=False, buffered=False,
        )  # fmt: skip
        # Full segments are synced, renamed and listed in this thread, one at a time and in
        # order: the manifest rewrite grows with the number of segments and must not stall
        # the loop. Each waits in ``_closing`` (with the requests it holds) until it is listed.
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="land-close")
        self._closing: deque[tuple[OpenSegment, list[asyncio.Future]]] = deque()
        self._closer: asyncio.Task | None = None
        self._wake = asyncio.Event()  # a segment to close, or stopping
        self._retry_now = asyncio.Event()  # cut the backoff short (space is back, stopping)
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queued: list[tuple[list[bytes], str | None, int | None, asyncio.Future]] = []
        self._write_scheduled = False
        self._written: list[asyncio.Future] = []  # in the file, waiting for a sync
        self._syncing: list[asyncio.Future] | None = None  # covered by the sync in flight
        self._syncing_file = None
        self._helper: _SyncHelper | None = None
        self._helper_failed_at = -HELPER_RETRY_SECONDS
        self._rotator: asyncio.Task | None = None
        self.commits = 0
        self.committed_events = 0
        self.helper_restarts = 0

    def stats(self) -> dict:
        """For ``/health``: group commits, and whether the fsync helper is doing the syncs
        (``loop`` after it failed: slower until a new one is running)."""
        return {
            "commits": self.commits,
            "events": self.committed_events,
            "open_segment_events": self._writer.open_events,
            "syncs_by": "none" if not self.durable else "helper" if self._helper else "loop",
            "helper_restarts": self.helper_restarts,
            "unlisted_segments": len(self._closing),
            "problems": list(self.problems.values()),
        }

    def _problem(self, step: str, message: str) -> None:
        """Note what fails now; logged once per problem, not once per request or retry."""
        if self.problems.get(step) != message:
            log.error("landing %s: %s", self.dir, message)
            self.problems[step] = message

    def _solved(self, step: str) -> bool:
        """Whether ``step`` had failed until now."""
        message = self.problems.pop(step, None)
        if message is not None:
            log.warning("landing %s: works again (was: %s)", self.dir, message)
        return message is not None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._rotator = self._loop.create_task(self._rotate_by_age())
        self._closer = self._loop.create_task(self._close_segments())
        if self.durable:
            self._start_helper()

    async def append(
        self, lines: list[bytes], received_at: str | None, events: int | None = None
    ) -> None:
        """Return once ``lines`` are written (and synced when durable). ``events`` is how
        many events the lines hold when that is not one per line."""
        future = self._loop.create_future()
        self._queued.append((lines, received_at, events, future))
        if not self._write_scheduled:
            # After the requests of this turn of the loop have queued theirs: one write.
            self._write_scheduled = True
            self._loop.call_soon(self._write_queued)
        await future

    # -- writing and syncing (all on the event loop) ------------------------------------------
    def _write_queued(self) -> None:
        self._write_scheduled = False
        group, self._queued = self._queued, []
        if not group:
            return
        lines = [line for item in group for line in item[0]]
        events = sum(len(item[0]) if item[2] is None else item[2] for item in group)
        last_received = next((item[1] for item in reversed(group) if item[1]), None)
        futures = [item[3] for item in group]
        try:
            self._writer.write_lines(lines, last_received, events)
            self._writer.flush(durable=False)  # to the OS now; the sync follows
        except Exception as exc:  # disk full, I/O error: fail those requests (503)
            if "write" not in self.problems:
                self._wake.set()  # the closing task finds out when writes work again
            self._problem("write", f"cannot write: {_reason(exc)}")
            _fail(futures, LandingUnavailable(f"cannot write to the landing: {_reason(exc)}"))
            return
        if self._solved("write") and self._closing:
            self._retry_now.set()  # space is back: close what waits now, not after the backoff
        self.committed_events += events
        self._written += futures
        if self._writer.full:
            self._rotate()  # those just written are acknowledged once it is finished
        elif not self.durable:
            self._settle_written()
        elif self._syncing is None:
            self._request_sync()

    def _settle_written(self) -> None:
        written, self._written = self._written, []
        self.commits += 1
        _resolve(written)

    def _request_sync(self) -> None:
        fh = self._writer.file
        if fh is None or not self._written:
            return  # (a rotation took what was written: its finishing acknowledges them)
        self._syncing, self._written = self._written, []
        self._syncing_file = fh
        if self._helper is None and time.monotonic() - self._helper_failed_at > (
            HELPER_RETRY_SECONDS
        ):
            self._start_helper()
            self.helper_restarts += self._helper is not None
        if self._helper is not None:
            try:
                self._helper.request(fh)
                return
            except OSError as exc:
                self._helper_lost(f"cannot reach it: {exc}")
        self._sync_here()

    def _on_reply(self) -> None:
        reply = self._helper.read_reply()
        if reply == b"?":
            return
        if reply == b"K":
            group, self._syncing = self._syncing or [], None
            self.commits += 1
            self._solved("sync")
            _resolve(group)
        elif reply.startswith(b"E"):
            group, self._syncing = self._syncing or [], None
            message = reply[1:].decode(errors="replace")
            self._problem("sync", f"cannot sync: {message}")
            _fail(group, LandingUnavailable(f"cannot sync the landing: {message}"))
        else:
            self._helper_lost("it exited")
            if self._syncing is not None:  # the sync it was doing is the loop's now
                self._sync_here()
            elif self._written:
                self._request_sync()
            return
        if self._written:
            self._request_sync()

    def _sync_here(self) -> None:
        """Sync on the event loop (no helper): blocks it for one fsync."""
        group, self._syncing = self._syncing or [], None
        fh = self._syncing_file
        try:
            if not fh.closed:  # a closed segment was synced when it closed
                os.fdatasync(fh.fileno())
        except (OSError, ValueError) as exc:
            if fh.closed:  # finished meanwhile (synced, then closed)
                self.commits += 1
                _resolve(group)
            else:
                self._problem("sync", f"cannot sync: {_reason(exc)}")
                _fail(group, LandingUnavailable(f"cannot sync the landing: {_reason(exc)}"))
        else:
            self.commits += 1
            self._solved("sync")
            _resolve(group)
        if self._written:
            self._request_sync()

    def _start_helper(self) -> None:
        try:
            self._helper = _SyncHelper(self._loop, self._on_reply)
        except (OSError, AttributeError) as exc:  # AttributeError: no SOCK_SEQPACKET here
            self._helper_failed_at = time.monotonic()
            log.warning("no fsync helper for %s (syncing in the event loop): %s", self.dir, exc)

    def _helper_lost(self, why: str) -> None:
        log.warning("the fsync helper of %s failed (%s); syncing in the event loop", self.dir, why)
        helper, self._helper = self._helper, None
        self._helper_failed_at = time.monotonic()
        with contextlib.suppress(Exception):
            helper.close()

    def _rotate(self) -> None:
        """Start a new segment with the next write; queue the old one for closing (sync,
        rename, list, in the finishing thread), with the requests that wait for it. No I/O
        here: it cannot fail."""
        segment = self._writer.detach()
        if segment is None:
            return
        waiting, self._written = self._written, []  # in the old file: durable once synced
        self._closing.append((segment, waiting))
        self._wake.set()

    async def _close_segments(self) -> None:
        """Close the queued segments in order, each retried with backoff until it is listed:
        a full disk delays closing, never ends it. When stopping, each gets one more try;
        what still fails is left for the next start to seal.

        With nothing to close after a write failed, it tries a small write of its own now and
        then, so that ``/health`` says ok again once space is back, before the next request."""
        delay = CLOSE_RETRY_FIRST
        while True:
            if self._leftovers is None and not self._closing:
                if self._stopping:
                    return
                if "write" not in self.problems:
                    await self._wake.wait()
                    self._wake.clear()
                    continue
                self._wake.clear()  # from now on, a segment to close (or stopping) ends the pause
                try:
                    await self._loop.run_in_executor(self._finisher, self._probe)
                except OSError:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    delay = min(delay * 2, CLOSE_RETRY_MAX)
                else:
                    self._solved("write")
                    delay = CLOSE_RETRY_FIRST
                continue
            self._retry_now.clear()  # from now on, space coming back (or stopping) ends the pause
            try:
                if self._leftovers is not None:
                    listed = await self._loop.run_in_executor(
                        self._finisher, seal_open_segments, self.dir, self.writer_id,
                        self._leftovers,
                    )  # fmt: skip
                    self.recovered += listed
                    self._leftovers = None
                    self._solved("recover")
                else:
                    segment, waiting = self._closing[0]
                    listed = await self._loop.run_in_executor(self._finisher, self._finish, segment)
                    self._closing.popleft()
                    self._solved("close")
                    if waiting:
                        self.commits += 1
                        _resolve(waiting)
                if listed:  # the manifest was rewritten: the disk takes writes again
                    self._solved("write")
            except Exception as exc:
                self._not_closed(exc)
                if self._stopping:
                    self._give_up()
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry_now.wait(), delay)
                delay = min(delay * 2, CLOSE_RETRY_MAX)
                continue
            delay = CLOSE_RETRY_FIRST

    def _not_closed(self, exc: Exception) -> None:
        if self._leftovers is not None:
            self._problem("recover", f"cannot seal the segments of the last run: {_reason(exc)}")
            return
        segment, waiting = self._closing[0]
        name = segment.path.with_suffix("").name
        self._problem("close", f"cannot close segment {name}: {_reason(exc)}")
        if waiting:
            # Synced (the file is closed only after its sync): acknowledged, as it will be
            # listed by a retry or, at the latest, the next start. Else never acknowledged.
            self._closing[0] = (segment, [])
            if segment.fh.closed:
                self.commits += 1
                _resolve(waiting)
            else:
                _fail(waiting, LandingUnavailable(f"cannot sync the landing: {_reason(exc)}"))

    def _give_up(self) -> None:
        """(Stopping.) Leave what could not be closed for the next start to seal."""
        if self._leftovers is not None:
            self._leftovers = None
        else:
            segment, _ = self._closing.popleft()
            log.warning("landing %s: segment %s left for the next start to seal",
                        self.dir, segment.path.with_suffix("").name)  # fmt: skip

    def _probe(self) -> None:
        """(In the finishing thread.) Write, sync and delete a page: the disk takes writes."""
        probe = self.dir / f".probe-{self.writer_id}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, bytes(4096))
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            probe.unlink(missing_ok=True)

    def _finish(self, segment: OpenSegment) -> SegmentInfo | None:
        """(In the finishing thread.) List the segment; at most hourly, expire old ones."""
        info = segment.finish(self.dir)
        now = time.monotonic()
        if self.retention_days and now - self._expired_at >= EXPIRY_INTERVAL:
            self._expired_at = now
            cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
            try:
                expired = expire_segments(self.dir, cutoff)
            except OSError as exc:  # the segment is listed; expiry tries again next time
                log.warning("landing %s: cannot delete old segments: %s", self.dir, exc)
                self._expired_at = now - EXPIRY_INTERVAL
                return info
            if expired:
                log.info("deleted %d landing segments closed before %s from %s",
                         len(expired), cutoff.isoformat(timespec="seconds"), self.dir)  # fmt: skip
        return info

    async def _rotate_by_age(self) -> None:
        """Close a segment after ``max_seconds`` so loaders see events within that time."""
        while True:
            await asyncio.sleep(min(1.0, self.max_seconds / 2))
            try:
                opened = self._writer.opened_at
                if opened is not None and time.monotonic() - opened >= self.max_seconds:
                    self._rotate()
            except Exception:  # never the end of closing by age
                log.exception("landing %s: cannot queue the open segment for closing", self.dir)

    async def close(self) -> None:
        """Close the open segment and what waits to be closed; on a disk that still fails,
        after one more try each, leave them for the next start to seal (never hang)."""
        if self._rotator:
            self._rotator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotator
        while self._queued or self._written or self._syncing is not None:
            await asyncio.sleep(0.005)
        self._rotate()
        self._stopping = True
        self._wake.set()
        self._retry_now.set()
        if self._closer is not None:
            await self._closer
        self._finisher.shutdown(wait=True)
        if self._helper is not None:
            self._helper.close()
            self._helper = None


def _resolve(futures: list[asyncio.Future]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _fail(futures: list[asyncio.Future], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)


def _reason(exc: BaseException) -> str:
    """``No space left on device`` rather than the errno and path around it."""
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
