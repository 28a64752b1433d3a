"""Per-peer token buckets for inbound requests."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token bucket per key: ``rate`` requests per second with bursts of ``burst``.

    Bounded memory: the least recently used keys beyond ``max_keys`` are forgotten (a
    forgotten key starts again with a full bucket, which is no worse than a new peer).

    Parameters
    ----------
    rate : float
        Sustained requests per second per key.
    burst : float
        Bucket size.
    max_keys : int, default 100000
        Keys remembered.
    clock : callable, default time.monotonic
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, key: Hashable, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens for ``key``; False when the bucket is empty."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed
