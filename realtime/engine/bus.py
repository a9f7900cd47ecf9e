"""How accepted events reach the real-time engine: one small interface.

The collector calls :meth:`EventBus.publish` with every batch it has made durable. Two
implementations:

* :class:`InProcessBus` (default) hands batches to subscribers in the same process: the
  engine runs beside the collector.
* :class:`RedisStreamBus` appends each batch as one entry to a Redis stream
  (``SITELINE_EVENT_BUS=redis://host:6379/0``), so collectors and engines can run as separate
  processes or machines. Engines read it with a consumer group: each batch goes to one engine
  process of the group.

Publishing never fails or slows a request: the landing already holds the events durably, the
real-time path is best effort. Errors are logged and counted (``errors``, ``dropped``).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import orjson

from ingestion.core.settings import settings

log = logging.getLogger("siteline.bus")

Subscriber = Callable[[Sequence[dict]], None]
STREAM = "siteline:events"


def backlog_limit_bytes() -> int:
    """``SITELINE_ENGINE_BACKLOG_MB`` (default 64) in bytes: the most the real-time path of a
    process keeps queued (the engine's backlog, the Redis bus's send queue), as the events'
    JSON size. Large events fill memory long before their count bounds do."""
    return int(settings().engine_backlog_mb * 1024 * 1024)


class EventBus(Protocol):
    errors: int

    def publish(self, events: Sequence[dict]) -> None: ...

    def subscribe(self, subscriber: Subscriber) -> None: ...


class InProcessBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.errors = 0

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, events: Sequence[dict]) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(events)
            except Exception:
                self.errors += 1
                log.exception("real-time subscriber failed on %d events", len(events))


class RedisStreamBus:
    """Batches as entries of a Redis stream (capped at ``maxlen`` entries, approximately).

    :meth:`publish` only queues (bounded by ``buffer`` batches and ``buffer_bytes``, the
    oldest dropped beyond either); a background thread sends what is queued in one
    pipelined round trip, so a slow or absent Redis never holds a request.
    """

    def __init__(
        self,
        url: str,
        stream: str = STREAM,
        maxlen: int = 100_000,
        buffer: int = 10_000,
        group: str = "engine",
        buffer_bytes: int | None = None,
    ) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.stream = stream
        self.maxlen = maxlen
        self.group = group
        self.errors = 0
        self.dropped = 0
        self.published = 0
        self._queue: collections.deque[bytes] = collections.deque()
        self.buffer = buffer
        self.buffer_bytes = backlog_limit_bytes() if buffer_bytes is None else buffer_bytes
        self.queued_bytes = 0
        self._queue_lock = threading.Lock()  # the producer and the sender both change it
        self._wake = threading.Event()
        self._sender: threading.Thread | None = None
        self._stop = threading.Event()

    # -- producer ---------------------------------------------------------------------------
    def publish(self, events: Sequence[dict]) -> None:
        payload = orjson.dumps(list(events))
        queue = self._queue
        with self._queue_lock:
            queue.append(payload)
            self.queued_bytes += len(payload)
            while len(queue) > self.buffer or self.queued_bytes > self.buffer_bytes:
                self.queued_bytes -= len(queue.popleft())
                self.dropped += 1  # the oldest queued batch falls out
        if self._sender is None:
            self._sender = threading.Thread(target=self._send_loop, daemon=True, name="bus-send")
            self._sender.start()
        self._wake.set()

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._queue_lock:
                batch = list(self._queue)
                self._queue.clear()
                self.queued_bytes = 0
            if not batch:
                continue
            try:
                pipe = self.client.pipeline(transaction=False)
                for payload in batch:
                    pipe.xadd(
                        self.stream, {"events": payload}, maxlen=self.maxlen, approximate=True
                    )
                pipe.execute()
                self.published += len(batch)
            except Exception as exc:
                self.errors += 1
                self.dropped += len(batch)
                log.warning("cannot publish %d batches to %s: %s", len(batch), self.stream, exc)
                self._stop.wait(1.0)  # back off; the landing keeps the events

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued was sent (tests, shutdown)."""
        self._wake.set()
        deadline = threading.Event()
        for _ in range(int(timeout * 100)):
            if not self._queue:
                break
            deadline.wait(0.01)

    # -- consumer -----------------------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber, consumer: str | None = None) -> threading.Thread:
        """Deliver batches to ``subscriber`` from a thread (consumer group ``group``)."""
        import redis

        name = consumer or f"{os.uname().nodename}-{os.getpid()}"

        def join_group() -> None:
            try:
                self.client.xgroup_create(self.stream, self.group, id="$", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        try:
            join_group()  # now, so that batches published from here on reach the group
            joined = True
        except Exception as exc:
            joined = False
            log.warning("cannot join %s yet (will retry): %s", self.stream, exc)

        def loop() -> None:
            nonlocal joined
            while not self._stop.is_set():
                try:
                    if not joined:
                        join_group()  # here, not before: Redis may come up after us
                        joined = True
                    replies = self.client.xreadgroup(
                        self.group, name, {self.stream: ">"}, count=100, block=1000
                    )
                except Exception as exc:
                    self.errors += 1
                    log.warning("cannot read %s: %s", self.stream, exc)
                    self._stop.wait(1.0)
                    continue
                for _, entries in replies or []:
                    for entry_id, fields in entries:
                        try:
                            subscriber(orjson.loads(fields[b"events"]))
                        except Exception:
                            self.errors += 1
                            log.exception("real-time subscriber failed on entry %s", entry_id)
                        self.client.xack(self.stream, self.group, entry_id)

        thread = threading.Thread(target=loop, daemon=True, name="bus-read")
        thread.start()
        return thread

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._wake.set()


def make_bus(spec: str | None = None) -> EventBus:
    """The bus named by ``SITELINE_EVENT_BUS``: ``inprocess`` (default) or a ``redis://`` URL."""
    spec = spec if spec is not None else settings().event_bus
    if spec in ("", "inprocess"):
        return InProcessBus()
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisStreamBus(spec)
    raise ValueError(
        f"SITELINE_EVENT_BUS='{spec}' is not supported; use 'inprocess' or a redis:// URL"
    )
