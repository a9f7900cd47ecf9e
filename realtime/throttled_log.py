"""A log that says each kind of repeated trouble once per interval, with a count.

A public endpoint can be made to fail the same way thousands of times a second; one line (and
one traceback) per kind and interval keeps the log readable and its size bounded, and the count
of the lines left out says how often it happened. Used by the collector (client trouble) and
the engine (lines its replay skips).
"""

from __future__ import annotations

import logging
import time


class _Throttle:
    """Admits each kind at most once per ``interval`` seconds and counts the rest."""

    def __init__(self, interval: float, max_kinds: int = 1024) -> None:
        self.interval = interval
        self.max_kinds = max_kinds
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def admit(self, kind: str, now: float | None = None) -> str | None:
        """None when ``kind`` was admitted less than ``interval`` ago; else the suffix the
        admitted line carries (empty, or how many were left out since the last one)."""
        now = time.monotonic() if now is None else now
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return None
        if last is None and len(self._last) >= self.max_kinds:
            # Kinds are few in practice; a flood of distinct ones must not grow this forever.
            self._last.clear()
            self._left_out.clear()
        self._last[kind] = now
        left_out = self._left_out.pop(kind, 0)
        return (
            f" (and {left_out:,} more like it in the last {self.interval:g} s)" if left_out else ""
        )


class ThrottledLog:
    """At most one record per ``kind`` every ``interval`` seconds on ``logger``; the next one
    after a quiet spell says how many were left out (``... (and 1,234 more like it in the
    last 60 s)``)."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger = logger
        self._throttle = _Throttle(interval)

    def log(
        self, level: int, kind: str, message: str, *args, exc_info=None, now: float | None = None
    ) -> bool:
        """Log ``message % args`` unless ``kind`` was logged less than ``interval`` ago;
        returns whether it was logged."""
        suffix = self._throttle.admit(kind, now)
        if suffix is None:
            return False
        self.logger.log(level, message + suffix.replace("%", "%%"), *args, exc_info=exc_info)
        return True

    def warning(self, kind: str, message: str, *args, **kwargs) -> bool:
        return self.log(logging.WARNING, kind, message, *args, **kwargs)

    def error(self, kind: str, message: str, *args, **kwargs) -> bool:
        return self.log(logging.ERROR, kind, message, *args, **kwargs)


class ThrottleFilter(logging.Filter):
    """The same rule as a logging filter, for loggers that are not ours (uvicorn's "Invalid
    HTTP request received.", "Exception in ASGI application"): a record passes at most once
    per logger, message template and ``interval``."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self._throttle = _Throttle(interval)

    def filter(self, record: logging.LogRecord) -> bool:
        suffix = self._throttle.admit(f"{record.name}:{record.msg}")
        if suffix is None:
            return False
        if suffix:
            record.msg = f"{record.msg}{suffix.replace('%', '%%')}"
        return True
