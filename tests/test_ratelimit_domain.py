"""The sliding-window log, pure and in-process: exact under concurrency, rolling with an
injected clock (no sleeps)."""

from __future__ import annotations

import collections
import threading

import pytest

from server.domain.ratelimit import TIER_LIMITS, check, reset_after
from server.ratelimit.memory import InProcessRateLimiter


def fire(limiter, key: str, limit: int, calls: int, threads: int = 16, now: float | None = None,
         quota=None) -> int:
    """`calls` hits from `threads` threads released together; returns how many were admitted."""
    admitted = collections.Counter()
    barrier = threading.Barrier(threads)

    def worker(share: int) -> None:
        barrier.wait()
        for _ in range(share):
            if limiter.hit(key, limit, now, quota=quota).allowed:
                admitted[threading.get_ident()] += 1

    shares = [calls // threads + (1 if i < calls % threads else 0) for i in range(threads)]
    pool = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(admitted.values())


@pytest.mark.parametrize("tier", list(TIER_LIMITS))
def test_concurrent_callers_get_exactly_the_tier_limit(tier):
    limit = TIER_LIMITS[tier]
    limiter = InProcessRateLimiter()
    assert fire(limiter, f"tenant-{tier}", limit, calls=limit * 2 + 37) == limit
    state = limiter.peek(f"tenant-{tier}", limit)
    assert (state.allowed, state.remaining) == (False, 0)


def test_window_rolls_with_the_injected_clock():
    clock = [1000.0]
    limiter = InProcessRateLimiter(clock=lambda: clock[0])
    for i in range(5):
        clock[0] = 1000.0 + i * 10  # admitted at 1000, 1010, 1020, 1030, 1040
        decision = limiter.hit("t", 5)
        assert decision.allowed and decision.remaining == 4 - i
    clock[0] = 1059.5
    refused = limiter.hit("t", 5)
    assert (refused.allowed, refused.remaining, refused.reset_seconds) == (False, 0, 1)  # 1000 leaves at 1060
    clock[0] = 1060.0  # the first entry has left: exactly one slot
    assert limiter.hit("t", 5).allowed
    assert not limiter.hit("t", 5).allowed
    clock[0] = 1070.0
    decision = limiter.peek("t", 5)
    assert (decision.allowed, decision.remaining, decision.reset_seconds) == (True, 1, 10)


def test_no_2x_burst_at_a_minute_boundary():
    """A fixed window would admit 5 at 59.9 s and 5 more at 60.1 s; the rolling window does not."""
    limiter = InProcessRateLimiter()
    assert sum(limiter.hit("t", 5, 59.9).allowed for _ in range(5)) == 5
    assert sum(limiter.hit("t", 5, 60.1).allowed for _ in range(5)) == 0
    assert sum(limiter.hit("t", 5, 119.9).allowed for _ in range(10)) == 5


def test_refused_calls_are_not_logged_and_peek_consumes_nothing():
    log = collections.deque()
    for _ in range(3):
        check(log, 3, 0.0, consume=True)
    assert not check(log, 3, 30.0, consume=True).allowed
    assert len(log) == 3
    limiter = InProcessRateLimiter()
    for _ in range(10):
        assert limiter.peek("t", 2, 0.0).remaining == 2
    assert limiter.hit("t", 2, 0.0).remaining == 1


def test_reset_is_rounded_up_and_zero_when_empty():
    limiter = InProcessRateLimiter()
    assert limiter.peek("t", 2, 0.0).reset_seconds == 0
    limiter.hit("t", 2, 0.0)
    assert limiter.peek("t", 2, 0.2).reset_seconds == 60  # 59.8 s left, rounded up
    assert limiter.peek("t", 2, 59.01).reset_seconds == 1


def test_keys_are_independent_and_an_emptied_key_is_dropped():
    limiter = InProcessRateLimiter()
    assert limiter.hit("a", 1, 0.0).allowed
    assert limiter.hit("b", 1, 0.0).allowed
    assert not limiter.hit("a", 1, 1.0).allowed
    limiter.peek("a", 1, 61.0)
    assert "a" not in limiter._logs


def test_decision_headers():
    decision = InProcessRateLimiter().hit("t", 50, 0.0)
    assert decision.headers() == {"x-ratelimit-limit": "50", "x-ratelimit-remaining": "49",
                                  "x-ratelimit-reset": "60"}


def test_a_window_that_just_started_resets_in_exactly_the_window():
    # 211.60322905771815 + 60 rounds up across 256: the naive sum gave 60.00000000000003, ceil 61.
    for now in (211.60322905771815, 4057.123456, 1.795e9):
        assert reset_after(now, now) == 60
