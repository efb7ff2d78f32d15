"""A small thread-safe cache whose entries are trusted for a fixed time, with the clock injected.

The gateway's hot path reads the same key and the same tenant's plan on every request; caching
them for `ttl` seconds bounds how stale an answer can be (a revoked key or a canceled
subscription is honoured at most `ttl` seconds late) without any invalidation protocol between
replicas.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

# How stale a cached key, tier or plan may be, everywhere it is cached (the gateway's admission,
# the billing API's interceptors): the contract allows 5 s for a revoked key, a plan change or a
# cancel to take effect.
STALENESS_SECONDS = 2.0


class TtlCache(Generic[V]):
    def __init__(self, ttl: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, V]] = {}

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        """The cached value if it is younger than `ttl`, else `load()` (outside the lock), cached.
        An exception from `load` is not cached."""
        now = self._clock()
        entry = self._entries.get(key)  # one dict read is atomic: only writers take the lock
        if entry is not None and now < entry[0]:
            return entry[1]
        value = load()
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries = {k: e for k, e in self._entries.items() if now < e[0]}
                if len(self._entries) >= self._max_entries:
                    self._entries.clear()
            self._entries[key] = (now + self.ttl, value)
        return value
