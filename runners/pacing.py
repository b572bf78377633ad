"""Pacing of backend calls: a token bucket per runner instance and API.

Clouds throttle per account and API (AWS Batch, Google Batch); a runner that paces itself
stays under the limit instead of spending its retries on 429s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """A thread-safe token bucket: ``acquire()`` blocks (through the injected sleep) until a token is free."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1 - 1e-9:  # tolerance: float refills land just under 1
                    self._tokens = max(self._tokens - 1, 0.0)
                    return
                wait = (1 - self._tokens) / self.rate
            self._sleep(wait)
