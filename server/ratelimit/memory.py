"""In-process backend: one lock, one deque of admission times per key.

The lock is held for a few microseconds per call (evict + append), so one lock for all keys
is simpler than per-key locks and not a bottleneck next to a gRPC call. Memory per key is
bounded by its limit; a key whose window empties is dropped. Quota counters live under the same
lock (one integer per capped subscription period) and are dropped once their period is over.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from server.ratelimit.algorithm import WINDOW_SECONDS, Decision, Quota, check

SWEEP_QUOTAS_ABOVE = 1024


class InProcessRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, window: float = WINDOW_SECONDS) -> None:
        self._clock = clock
        self._window = window
        self._lock = threading.Lock()
        self._logs: dict[str, collections.deque] = {}
        self._quotas: dict[str, tuple[int, float]] = {}  # name -> (admitted, expires at)

    def _counted(self, quota: Quota, now: float) -> int:
        counted, expires_at = self._quotas.get(quota.name, (0, now))
        return counted if now < expires_at else 0

    def _count(self, quota: Quota, counted: int, now: float) -> None:
        if quota.name not in self._quotas and len(self._quotas) >= SWEEP_QUOTAS_ABOVE:
            self._quotas = {k: v for k, v in self._quotas.items() if now < v[1]}
        self._quotas[quota.name] = (quota.after_admission(counted), now + quota.expires_in)

    def _check(self, key: str, limit: int, now: float | None, consume: bool, quota: Quota | None = None) -> Decision:
        with self._lock:
            now = self._clock() if now is None else now
            log = self._logs.get(key)
            if log is None:
                log = self._logs[key] = collections.deque()
            counted = self._counted(quota, now) if quota else 0
            decision = check(
                log,
                limit,
                now,
                consume=consume,
                window=self._window,
                quota_exhausted=quota is not None and quota.exhausted(counted),
            )
            if quota and consume and decision.allowed:
                self._count(quota, counted, now)
            if not log:
                del self._logs[key]
            return decision

    def hit(self, key: str, limit: int, now: float | None = None, quota: Quota | None = None) -> Decision:
        return self._check(key, limit, now, consume=True, quota=quota)

    def peek(self, key: str, limit: int, now: float | None = None) -> Decision:
        return self._check(key, limit, now, consume=False)
