"""Requests-per-minute and tokens-per-minute limits, shared by all worker threads.

A sliding 60-second window: `acquire(tokens)` blocks until one more request, and `tokens` more tokens,
fit in the window. Tokens are estimated before the request (prompt estimate plus the output cap), which
is what providers count against TPM limits too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ...errors import ConfigError

WINDOW_S = 60.0


class RateLimiter:
    def __init__(
        self,
        rpm: int | None = None,
        tpm: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        for name, value in (("requests per minute", rpm), ("tokens per minute", tpm)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        self.rpm, self.tpm = rpm, tpm
        self._clock, self._sleep = clock, sleep
        self._events: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def acquire(self, tokens: int) -> float:
        """Wait until the request may go; returns the seconds waited."""
        if self.rpm is None and self.tpm is None:
            return 0.0
        if self.tpm is not None:
            tokens = min(tokens, self.tpm)  # a request larger than the whole limit still gets to go alone
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._events and self._events[0][0] <= now - WINDOW_S:
                    self._events.popleft()
                delay = self._delay(now, tokens)
                if delay <= 0:
                    self._events.append((now, tokens))
                    return waited
            self._sleep(delay)
            waited += delay

    def _delay(self, now: float, tokens: int) -> float:
        delays = [0.0]
        if self.rpm is not None and len(self._events) >= self.rpm:
            delays.append(self._events[-self.rpm][0] + WINDOW_S - now)
        if self.tpm is not None:
            used = sum(t for _, t in self._events)
            for at, spent in self._events:  # the wait until enough old tokens leave the window
                if used + tokens <= self.tpm:
                    break
                used -= spent
                delays.append(at + WINDOW_S - now)
        return max(delays)
