"""The rate-limit algorithm: the sliding-window log, pure, with the clock injected.

Why a sliding-window LOG (one timestamp per admitted call, kept for one window):

- It is exact: at most `limit` calls are admitted in ANY rolling 60 s, bursts included. A
  fixed window (one counter per clock minute) admits `limit` at 00:59 and `limit` again at
  01:00, i.e. 2x in one second at the boundary; the sliding-window COUNTER only approximates
  the previous minute by weighting it, so it can over- or under-admit under bursts.
- Its memory is bounded by the limit: a key never holds more than `limit` timestamps (2,000 for
  ENTERPRISE, ~16 KiB in a deque), which the tier limits make cheap.
- Its report is simple and true: remaining = limit - entries in the window; reset = seconds
  (rounded up) until the oldest entry leaves the window, which is when `remaining` next grows.
  GCRA is as exact and stores one number, but it spaces calls evenly (a "minute" budget is
  not a burst budget) unless tuned with a burst size, and its remaining/reset are derived.

An entry admitted at t counts while now < t + window; it leaves at now >= t + window.
Refused calls are not logged: a client hammering while limited does not extend its own ban.

A call may also carry a `Quota` (the gateway's cap on a period's admissions for plans without
overage): the backend checks and counts it in the same atomic step as the window, so the cap is
exact under concurrency and across replicas, not eventually consistent with metering.

Backends implement `RateLimiter`: in-process (memory.py: a lock and a deque per key) and Redis
(redis_store.py: a ZSET per key, updated by one atomic Lua script). `now` is seconds on the
backend's clock; None means "read the backend's own clock" (monotonic in-process, Redis TIME in
Redis, so that replicas sharing Redis agree on time even when their own clocks drift).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Protocol

from server.domain.errors import DomainError

WINDOW_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class Decision:
    """The outcome of one check: whether the call is admitted, and the state after it."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the oldest entry leaves the window; 0 when the window is empty
    quota_exhausted: bool = False  # refused because the call's Quota is used up


@dataclasses.dataclass(frozen=True)
class Quota:
    """A cap on admissions per billing period, counted with the window in one atomic step.

    `name` identifies the period's counter (subscription and period start); `floor` is the
    period's recorded usage, which the counter never reports less than (so a counter that starts
    late, or usage tracked by other means, is still counted); `expires_in` is seconds to the
    period's end, after which the counter is dropped."""

    name: str
    included: int
    floor: int
    expires_in: int

    def exhausted(self, counted: int) -> bool:
        return max(counted, self.floor) >= self.included

    def after_admission(self, counted: int) -> int:
        return max(counted, self.floor) + 1


class LimiterUnavailable(DomainError):
    """The shared limiter state cannot be reached (Redis down): the interceptor fails open."""

    code = "UNAVAILABLE"
    default_reason = "RATE_LIMITER_UNAVAILABLE"


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int, now: float | None = None, quota: Quota | None = None) -> Decision:
        """Admit one call for `key` if fewer than `limit` were admitted in the window (and, with
        a `quota`, fewer than `quota.included` in its period), counting it in both."""

    def peek(self, key: str, limit: int, now: float | None = None) -> Decision:
        """The state of `key` without consuming anything (`allowed`: would a call pass now)."""


def reset_after(oldest: float | None, now: float, window: float = WINDOW_SECONDS) -> int:
    """Whole seconds until the oldest entry leaves the window. Rounded to the microsecond first:
    float noise (an entry stamped a nanosecond after `now`) must not turn 60 into 61."""
    if oldest is None:
        return 0
    # (oldest - now) first: `oldest + window` can round up past a power of two; then to the
    # microsecond, so clock noise (an entry stamped a hair after `now`) never turns 60 into 61.
    return max(0, math.ceil(round((oldest - now) + window, 6)))


def evict(log: collections.deque, now: float, window: float = WINDOW_SECONDS) -> None:
    """Drop the entries that have left the window (the log is in admission order)."""
    horizon = now - window
    while log and log[0] <= horizon:
        log.popleft()


def check(
    log: collections.deque,
    limit: int,
    now: float,
    *,
    consume: bool,
    window: float = WINDOW_SECONDS,
    quota_exhausted: bool = False,
) -> Decision:
    """One step of the sliding-window log on `log` (mutated); the caller holds any lock. A call
    whose quota is exhausted is refused and consumes nothing."""
    evict(log, now, window)
    allowed = len(log) < limit and not quota_exhausted
    if allowed and consume:
        # Time never runs backwards in the log: a caller's clock read before the lock may be
        # a hair older than the last entry; keeping the order keeps eviction correct.
        log.append(max(now, log[-1]) if log else now)
    return Decision(
        allowed=allowed,
        limit=limit,
        remaining=max(0, limit - len(log)),
        reset_seconds=reset_after(log[0] if log else None, now, window),
        quota_exhausted=quota_exhausted,
    )
