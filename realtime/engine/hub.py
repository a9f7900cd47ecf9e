"""Who hears of a visit's changes: the listeners of ``GET /v1/stream`` (server-sent events).

The engine hands every change to :class:`Hub` once, serialised. With a shared store (Redis)
each engine process publishes its changes on :data:`CHANGES_CHANNEL` instead, and every
process delivers what it hears there to its own listeners (:meth:`Hub.follow`). A message on
the channel is the site id, the session id and the revision, each followed by a newline,
then the change as it goes to a listener (written by ``Engine._announce``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time

log = logging.getLogger("siteline.engine")

CHANGES_CHANNEL = "siteline:rt:changes"


class Hub:
    """Server-sent-event listeners per site; changes are serialised once per event.

    Changes to one session reach a listener in revision order: with a shared store they
    travel through Redis from several processes, and a change may arrive after a newer
    one; the older is then dropped (the newer already carries everything it said)."""

    KEEP = 100_000  # sessions whose last delivered revision is remembered

    def __init__(self, queue_size: int = 1000) -> None:
        self.listeners: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = {}
        self.queue_size = queue_size
        self.dropped = 0
        self.stale = 0
        self._latest: dict[tuple[str, str], float] = {}
        self._order = threading.Lock()
        self.closed = False
        self._follower: threading.Thread | None = None

    def listening(self, site_id: str) -> bool:
        return bool(self.listeners.get(site_id))

    def add(self, site_id: str) -> asyncio.Queue:
        """A listener's queue of changes; ``None`` in it ends the stream (:meth:`close`)."""
        queue: asyncio.Queue = asyncio.Queue(self.queue_size)
        self.listeners.setdefault(site_id, []).append((asyncio.get_running_loop(), queue))
        if self.closed:
            self._end(queue)
        return queue

    def close(self) -> None:
        """The server is stopping: end every open stream now (its client reconnects), so
        that the graceful stop does not wait its whole timeout for streams that never end."""
        self.closed = True
        for listeners in list(self.listeners.values()):
            for loop, queue in list(listeners):
                loop.call_soon_threadsafe(self._end, queue)

    @staticmethod
    def _end(queue: asyncio.Queue) -> None:
        if queue.full():
            queue.get_nowait()  # the stream ends: an undelivered change does not matter
        queue.put_nowait(None)

    def discard(self, site_id: str, queue: asyncio.Queue) -> None:
        self.listeners[site_id] = [x for x in self.listeners.get(site_id, []) if x[1] is not queue]

    def current(self, site_id: str, session_id: str | None, revision: float | None) -> bool:
        """Whether a change of this revision is newer than the last one delivered for the
        session (an ended session takes revision infinity: nothing older follows it)."""
        if session_id is None or revision is None:
            return True
        key = (site_id, session_id)
        with self._order:
            if revision <= self._latest.get(key, -1):
                self.stale += 1
                return False
            self._latest.pop(key, None)  # re-inserted last: the oldest are forgotten first
            self._latest[key] = revision
            if len(self._latest) > self.KEEP:
                for old in list(itertools.islice(self._latest, self.KEEP // 2)):
                    del self._latest[old]
        return True

    def deliver(
        self, site_id: str, payload: bytes, session_id: str | None = None,
        revision: float | None = None,
    ) -> None:  # fmt: skip
        if not self.current(site_id, session_id, revision):
            return
        for loop, queue in list(self.listeners.get(site_id, ())):
            loop.call_soon_threadsafe(self._put, queue, payload)

    def _put(self, queue: asyncio.Queue, payload: bytes) -> None:
        try:
            queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped += 1  # a listener that does not read loses changes, not the engine

    # -- changes from every engine process (a shared store) --------------------------------------
    def follow(self, client) -> None:
        """Deliver the changes every engine process publishes on :data:`CHANGES_CHANNEL`
        (``client``: the shared store's Redis client), from a thread started once."""
        if self._follower is None:
            self._follower = threading.Thread(
                target=self._listen, args=(client,), daemon=True, name="engine-changes"
            )
            self._follower.start()

    def _listen(self, client) -> None:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(CHANGES_CHANNEL)
        while True:
            try:
                message = pubsub.get_message(timeout=1.0)
            except Exception as exc:
                log.warning("change channel: %s", exc)
                time.sleep(1.0)
                continue
            if message and message["type"] == "message":
                site_id, session_id, revision, payload = message["data"].split(b"\n", 3)
                self.deliver(
                    site_id.decode(), payload, session_id.decode() or None,
                    float(revision) if revision else None,
                )  # fmt: skip
