"""How accepted events reach the real-time engine: one small interface.

The collector calls :meth:`EventBus.publish` with every batch it has made durable. The
default :class:`InProcessBus` hands them to subscribers in the same process (the engine runs
beside the collector by default); a Redis Streams bus lets collector and engine run as
separate processes (real-time engine issue). Publishing never fails a request: a subscriber's
error is logged and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

log = logging.getLogger("siteline.bus")

Subscriber = Callable[[Sequence[dict]], None]


class EventBus(Protocol):
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
