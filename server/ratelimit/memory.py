"""In-process backend: one lock, one deque of admission times per key.

The lock is held for a few microseconds per call (evict + append), so one lock for all keys
is simpler than per-key locks and not a bottleneck next to a gRPC call. Memory per key is
bounded by its limit; a key whose window empties is dropped.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable

from server.domain.ratelimit import WINDOW_SECONDS, Decision, check


class InProcessRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, window: float = WINDOW_SECONDS) -> None:
        self._clock = clock
        self._window = window
        self._lock = threading.Lock()
        self._logs: dict[str, collections.deque] = {}

    def _check(self, key: str, limit: int, now: float | None, consume: bool) -> Decision:
        with self._lock:
            now = self._clock() if now is None else now
            log = self._logs.get(key)
            if log is None:
                log = self._logs[key] = collections.deque()
            decision = check(log, limit, now, consume=consume, window=self._window)
            if not log:
                del self._logs[key]
            return decision

    def hit(self, key: str, limit: int, now: float | None = None) -> Decision:
        return self._check(key, limit, now, consume=True)

    def peek(self, key: str, limit: int, now: float | None = None) -> Decision:
        return self._check(key, limit, now, consume=False)
