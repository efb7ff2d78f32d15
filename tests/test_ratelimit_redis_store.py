"""The Redis backend's Python side on a real Redis, with its monotonic clock replaced: keys and
connection settings, the Decision it builds, and the back-off after a failure (fail fast for
exactly RETRY_AFTER_FAILURE_SECONDS, one warning per outage, Redis tried again at its end)."""

from __future__ import annotations

import logging
import types
import uuid

import pytest
import redis

from server.ratelimit import redis_store
from server.ratelimit.algorithm import LimiterUnavailable, Quota
from server.ratelimit.redis_store import RETRY_AFTER_FAILURE_SECONDS, RedisRateLimiter
from stores import REDIS_URL, closed_port_url, redis_unreachable_reason

MESSAGE = "rate-limit store unavailable"


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """The module's monotonic clock, set by the test (0.0 at first)."""
    now = [0.0]
    monkeypatch.setattr(redis_store, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    return now


@pytest.fixture
def live():
    reason = redis_unreachable_reason()
    if reason:
        pytest.skip(reason)
    store = RedisRateLimiter(REDIS_URL, prefix=f"test:store:{uuid.uuid4().hex[:8]}:")
    yield store
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{store.prefix}*"):
        client.delete(key)
    client.close()
    store.close()


def test_keys_carry_the_prefix_and_the_tenant_as_a_hash_tag():
    store = RedisRateLimiter(closed_port_url(), prefix="p:")
    assert store.key("acme") == "p:{acme}"
    assert RedisRateLimiter(closed_port_url()).key("acme") == "billing:rl:{acme}"


def test_socket_timeouts_bound_every_call_to_a_dead_or_silent_redis():
    settings = RedisRateLimiter(closed_port_url())._client.connection_pool.connection_kwargs
    assert (settings["socket_timeout"], settings["socket_connect_timeout"]) == (0.5, 0.5)
    custom = RedisRateLimiter(closed_port_url(), timeout=0.2)._client.connection_pool.connection_kwargs
    assert (custom["socket_timeout"], custom["socket_connect_timeout"]) == (0.2, 0.2)


def test_a_decision_reports_the_limit_it_was_asked_about(live, clock):
    made = live.hit("t", 5, 100.0)
    assert (made.allowed, made.limit, made.remaining, made.reset_seconds, made.quota_exhausted) == (
        True,
        5,
        4,
        60,
        False,
    )
    peeked = live.peek("t", 5, 100.0)
    assert (peeked.limit, peeked.remaining) == (5, 4)


def test_a_quota_counter_lives_at_least_a_second(live, clock):
    live.hit("q", 10, 100.0, quota=Quota(name="n", included=5, floor=0, expires_in=0))
    assert redis.Redis.from_url(REDIS_URL).ttl(live.key("q") + ":quota:n") == 1


def test_after_a_failure_calls_fail_fast_for_exactly_the_back_off_then_redis_is_tried_again(clock, caplog):
    store = RedisRateLimiter(closed_port_url())
    tried = []

    def script(**kwargs):
        tried.append(clock[0])
        raise redis.ConnectionError("refused")

    store._script = script
    clock[0] = 100.0
    with caplog.at_level(logging.WARNING, logger="billing.ratelimit"), pytest.raises(LimiterUnavailable) as first:
        store.hit("t", 5)
    assert str(first.value) == MESSAGE and isinstance(first.value.__cause__, redis.ConnectionError)
    clock[0] = 100.0 + RETRY_AFTER_FAILURE_SECONDS - 0.001
    with pytest.raises(LimiterUnavailable) as fast:
        store.peek("t", 5)
    assert str(fast.value) == MESSAGE and fast.value.__cause__ is None
    assert tried == [100.0]
    clock[0] = 100.0 + RETRY_AFTER_FAILURE_SECONDS  # the back-off is over: Redis again, and a new warning
    with caplog.at_level(logging.WARNING, logger="billing.ratelimit"), pytest.raises(LimiterUnavailable):
        store.hit("t", 5)
    assert tried == [100.0, 100.0 + RETRY_AFTER_FAILURE_SECONDS]
    assert [r.getMessage() for r in caplog.records if r.name == "billing.ratelimit"] == [
        f"{MESSAGE}: refused",
        f"{MESSAGE}: refused",
    ]


def test_a_new_limiter_tries_redis_at_once(live, clock):
    clock[0] = 0.0  # a host whose monotonic clock starts at 0: nothing to back off from
    assert live.hit("t", 1, 100.0).allowed
