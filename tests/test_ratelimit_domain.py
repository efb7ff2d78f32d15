"""The sliding-window log, pure and in-process: exact under concurrency, rolling with an
injected clock (no sleeps)."""

from __future__ import annotations

import collections

import pytest

from calls import fire
from plan_terms import TIER_LIMITS
from server.ratelimit.algorithm import Quota, check, reset_after
from server.ratelimit.memory import SWEEP_QUOTAS_ABOVE, InProcessRateLimiter
from server.transport.rate_limit_headers import decision_headers, refusal_headers


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
    assert decision_headers(decision) == {
        "x-ratelimit-limit": "50",
        "x-ratelimit-remaining": "49",
        "x-ratelimit-reset": "60",
    }
    assert refusal_headers(decision, 7) == {**decision_headers(decision), "retry-after": "7"}


def test_the_limit_th_call_passes_and_the_next_waits_for_the_window_edge():
    """Calls at t = 0, 1, 2 fill a limit of 3; the 4th is refused until exactly 0 + window, then admitted."""
    log = collections.deque()
    assert [check(log, 3, float(t), consume=True, window=10.0).remaining for t in range(3)] == [2, 1, 0]
    assert not check(log, 3, 9.999, consume=True, window=10.0).allowed
    edge = check(log, 3, 10.0, consume=True, window=10.0)
    assert (edge.allowed, edge.remaining, edge.reset_seconds) == (True, 0, 1)  # 1.0 leaves at 11.0
    assert list(log) == [1.0, 2.0, 10.0]


def test_a_shorter_window_rolls_sooner():
    log = collections.deque([0.0])
    decision = check(log, 1, 5.0, consume=False, window=5.0)
    assert (decision.allowed, decision.reset_seconds) == (True, 0)
    log = collections.deque([0.0])
    assert check(log, 2, 1.0, consume=False, window=5.0).reset_seconds == 4


def test_an_entry_is_never_logged_before_the_last_one():
    """A clock read a hair before the lock may be older than the newest entry: the log stays ordered."""
    log = collections.deque()
    check(log, 5, 10.0, consume=True)
    check(log, 5, 9.5, consume=True)
    assert list(log) == [10.0, 10.0]


def test_reset_after_is_zero_once_the_oldest_entry_is_due():
    assert reset_after(None, 5.0) == 0
    assert reset_after(0.0, 60.0) == 0
    assert reset_after(0.0, 61.0) == 0
    assert reset_after(0.0, 59.5) == 1


@pytest.mark.parametrize("skew", [2.5e-7, 4e-7, -2.5e-7])
def test_reset_is_never_61_from_float_noise(skew):
    """An entry stamped a hair after `now` (clock noise) still leaves the window in 60 s."""
    now = 1_764_090_000.123456
    assert reset_after(now + skew, now) == 60
    assert reset_after(now + 0.5, now) == 61  # a real half second later is still rounded up


def test_a_window_that_just_started_resets_in_exactly_the_window():
    # 211.60322905771815 + 60 rounds up across 256: the naive sum gave 60.00000000000003, ceil 61.
    for now in (211.60322905771815, 4057.123456, 1.795e9):
        assert reset_after(now, now) == 60


def test_expired_quota_counters_are_swept_when_a_new_one_would_pass_the_bound():
    limiter = InProcessRateLimiter()

    def hit(name: str, now: float, expires_in: float = 10) -> None:
        limiter.hit(name, 10, now, quota=Quota(name=name, included=5, floor=0, expires_in=expires_in))

    for n in range(SWEEP_QUOTAS_ABOVE - 1):
        hit(f"q{n}", 0.0, expires_in=10 if n % 2 else 100)  # odd ones end at exactly 10.0
    hit("last", 10.0)  # one under the bound: no sweep
    assert len(limiter._quotas) == SWEEP_QUOTAS_ABOVE
    hit("q1", 10.0)  # a known name: no sweep either
    assert len(limiter._quotas) == SWEEP_QUOTAS_ABOVE
    hit("new", 10.0)  # a new one at the bound: the ended ones go (ended at exactly now included)
    assert set(limiter._quotas) == {f"q{n}" for n in range(0, SWEEP_QUOTAS_ABOVE - 1, 2)} | {"last", "q1", "new"}


def test_the_in_process_limiter_rolls_its_own_window():
    limiter = InProcessRateLimiter(window=10.0)
    assert limiter.hit("t", 1, 0.0).allowed
    refused = limiter.hit("t", 1, 9.5)
    assert (refused.allowed, refused.reset_seconds) == (False, 1)
    assert limiter.hit("t", 1, 10.0).allowed  # one 10 s window later, not 60 s
