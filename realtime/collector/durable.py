"""Group commit on top of the landing segments: acknowledge only what is on disk.

Requests hand their lines to :meth:`DurableStream.append` and wait. One writer thread takes
everything queued so far, writes it in one ``write`` and one ``fsync``, and wakes all those
requests at once; while it syncs, the next group gathers. So each request waits for at most
two fsyncs however many arrive, and throughput grows with load instead of being capped at
one request per fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from realtime.collector.landing import SegmentWriter, seal_open_segments


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
    ) -> None:
        self.dir = Path(stream_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer_id = writer_id
        self.max_seconds = max_seconds
        self.durable = durable
        self.recovered = seal_open_segments(self.dir, writer_id)
        self._writer = SegmentWriter(
            self.dir, writer_id=writer_id, max_events=max_events, max_bytes=max_bytes
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"land-{writer_id}")
        self._pending: list[tuple[list[bytes], str | None, asyncio.Future]] = []
        self._flushing = False
        self._flusher: asyncio.Task | None = None
        self._rotator: asyncio.Task | None = None
        self.commits = 0
        self.committed_events = 0

    def start(self) -> None:
        self._rotator = asyncio.get_running_loop().create_task(self._rotate_by_age())

    async def append(self, lines: list[bytes], received_at: str | None) -> None:
        """Return once ``lines`` are written (and fsynced when durable)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((lines, received_at, future))
        if not self._flushing:
            self._flushing = True
            self._flusher = loop.create_task(self._flush())  # keep a reference: no GC mid-flush
        await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                group, self._pending = self._pending, []
                lines = [line for item in group for line in item[0]]
                last_received = next((r for _, r, _ in reversed(group) if r), None)
                try:
                    await loop.run_in_executor(self._executor, self._commit, lines, last_received)
                except Exception as exc:  # disk full, I/O error: fail those requests (5xx)
                    for _, _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.commits += 1
                self.committed_events += len(lines)
                for _, _, future in group:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._flushing = False

    def _commit(self, lines: list[bytes], received_at: str | None) -> None:
        self._writer.write_lines(lines, received_at)
        self._writer.flush(durable=self.durable)

    async def _rotate_by_age(self) -> None:
        """Close a segment after ``max_seconds`` so loaders see events within that time."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.max_seconds / 2))
            opened = self._writer.opened_at
            if opened is not None and time.monotonic() - opened >= self.max_seconds:
                await loop.run_in_executor(self._executor, self._writer.close_segment)

    async def close(self) -> None:
        if self._rotator:
            self._rotator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotator
        while self._flushing or self._pending:
            await asyncio.sleep(0.01)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._writer.close)
        self._executor.shutdown(wait=True)
