"""A thread-safe token bucket: at most ``rate`` requests per second on average, bursts up to ``burst``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Call :meth:`wait` before each request; threads share one bucket (``rate <= 0``: unlimited)."""

    def __init__(self, rate: float, burst: int = 1, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._clock, self._sleep = clock, sleep
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until a request may go; returns the seconds waited."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            delay = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if delay > 0:
            self._sleep(delay)
        return delay
