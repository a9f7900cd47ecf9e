"""A log that says each kind of repeated trouble once per interval, with a count.

A public endpoint can be made to fail the same way thousands of times a second; one line (and
one traceback) per kind and interval keeps the log readable and its size bounded, and the count
of the lines left out says how often it happened.
"""

from __future__ import annotations

import logging
import time


class ThrottledLog:
    """At most one record per ``kind`` every ``interval`` seconds on ``logger``; the next one
    after a quiet spell says how many were left out (``... (and 1,234 more like it in the
    last 60 s)``)."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, max_kinds: int = 1024):
        self.logger = logger
        self.interval = interval
        self.max_kinds = max_kinds
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def log(
        self, level: int, kind: str, message: str, *args, exc_info=None, now: float | None = None
    ) -> bool:
        """Log ``message % args`` unless ``kind`` was logged less than ``interval`` ago;
        returns whether it was logged."""
        now = time.monotonic() if now is None else now
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return False
        if last is None and len(self._last) >= self.max_kinds:
            # Kinds are few in practice; a flood of distinct ones must not grow this forever.
            self._last.clear()
            self._left_out.clear()
        left_out = self._left_out.pop(kind, 0)
        if left_out:
            message += f" (and {left_out:,} more like it in the last {self.interval:g} s)"
        self._last[kind] = now
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(self, kind: str, message: str, *args, **kwargs) -> bool:
        return self.log(logging.WARNING, kind, message, *args, **kwargs)

    def error(self, kind: str, message: str, *args, **kwargs) -> bool:
        return self.log(logging.ERROR, kind, message, *args, **kwargs)
