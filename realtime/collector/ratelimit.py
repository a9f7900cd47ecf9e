"""Per-client token buckets: a flood from one address gets 429, everyone else is served."""

from __future__ import annotations

import time


class RateLimiter:
    """``rate`` requests per second per key, bursts up to ``burst``; 0 disables it."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets.clear()  # bounded memory; a reset only ever lets traffic through
        self._buckets[key] = (tokens - 1, now)
        return True

    def retry_after(self, key: str) -> int:
        tokens, _ = self._buckets.get(key, (0.0, 0.0))
        return max(1, int((1 - tokens) / self.rate) + 1) if self.rate > 0 else 0
