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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from realtime.collector.landing import SegmentWriter, expire_segments, seal_open_segments

log = logging.getLogger("siteline.collector")

HELPER = Path(__file__).with_name("fsyncd.py")
HELPER_RETRY_SECONDS = 5.0
EXPIRY_INTERVAL = 3600.0  # seconds between two expiries of old segments


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
        self.recovered = seal_open_segments(self.dir, writer_id)
        self._writer = SegmentWriter(
            self.dir, writer_id=writer_id, max_events=max_events, max_bytes=max_bytes,
            close_when_full=False,
        )  # fmt: skip
        # Full segments are synced, renamed and listed here, one at a time and in order: the
        # manifest rewrite grows with the number of segments and must not stall the loop.
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="land-close")
        self._finishing: set[asyncio.Future] = set()
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
        }

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._rotator = self._loop.create_task(self._rotate_by_age())
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
        except Exception as exc:  # disk full, I/O error: fail those requests (5xx)
            log.error("cannot write to %s: %s", self.dir, exc)
            _fail(futures, exc)
            return
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
            _resolve(group)
        elif reply.startswith(b"E"):
            group, self._syncing = self._syncing or [], None
            message = reply[1:].decode(errors="replace")
            log.error("cannot sync %s: %s", self.dir, message)
            _fail(group, OSError(f"fsync failed: {message}"))
        else:
            self._helper_lost("it exited")
            self._sync_here()
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
                log.error("cannot sync %s: %s", self.dir, exc)
                _fail(group, exc)
        else:
            self.commits += 1
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

    def _rotate(self) -> asyncio.Future | None:
        """Start a new segment with the next write; sync, rename and list the old one in
        the finishing thread, then acknowledge what waited for it."""
        segment = self._writer.detach()
        if segment is None:
            return None
        waiting, self._written = self._written, []  # in the old file: durable once finished
        finishing = self._loop.run_in_executor(self._finisher, self._finish, segment)
        self._finishing.add(finishing)

        def finished(done: asyncio.Future) -> None:
            self._finishing.discard(done)
            exc = done.exception()
            if exc is not None:
                log.error("cannot close segment %s: %s", segment.path.name, exc)
                _fail(waiting, exc)
            elif waiting:
                self.commits += 1
                _resolve(waiting)

        finishing.add_done_callback(finished)
        return finishing

    def _finish(self, segment) -> None:
        """(In the finishing thread.) List the segment; at most hourly, expire old ones."""
        segment.finish(self.dir)
        now = time.monotonic()
        if self.retention_days and now - self._expired_at >= EXPIRY_INTERVAL:
            self._expired_at = now
            cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
            expired = expire_segments(self.dir, cutoff)
            if expired:
                log.info("deleted %d landing segments closed before %s from %s",
                         len(expired), cutoff.isoformat(timespec="seconds"), self.dir)  # fmt: skip

    async def _rotate_by_age(self) -> None:
        """Close a segment after ``max_seconds`` so loaders see events within that time."""
        while True:
            await asyncio.sleep(min(1.0, self.max_seconds / 2))
            opened = self._writer.opened_at
            if opened is not None and time.monotonic() - opened >= self.max_seconds:
                self._rotate()

    async def close(self) -> None:
        if self._rotator:
            self._rotator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotator
        while self._queued or self._written or self._syncing is not None:
            await asyncio.sleep(0.005)
        self._rotate()
        if self._finishing:
            await asyncio.wait(set(self._finishing))
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
