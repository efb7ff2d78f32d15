"""The Redis backend: exact under concurrency, rolling with an injected clock, shared by two
server processes; and what happens when Redis is unreachable (fail open, never a crash)."""

from __future__ import annotations

import dataclasses
import uuid
from concurrent import futures

import grpc
import pytest
import redis

from billing.v1 import (
    plan_pb2,
    plan_pb2_grpc,
    rate_limit_pb2,
    rate_limit_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)
from calls import fire, plan_reads_metadata
from plan_terms import TIER_LIMITS
from processes import ADMIN_KEY, create_tenant_key, in_process_server, two_servers_sharing_redis
from server.ratelimit.algorithm import LimiterUnavailable, Quota
from server.ratelimit.redis_store import RedisRateLimiter
from stores import REDIS_URL, closed_port_url, needs_redis, redis_unreachable_reason


@pytest.fixture
def limiter():
    reason = redis_unreachable_reason()
    if reason:
        pytest.skip(reason)
    prefix = f"test:rl:{uuid.uuid4().hex[:8]}:"
    store = RedisRateLimiter(REDIS_URL, prefix=prefix)
    yield store
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    store.close()


@pytest.mark.parametrize("tier", list(TIER_LIMITS))
def test_concurrent_callers_get_exactly_the_tier_limit(limiter, tier):
    limit = TIER_LIMITS[tier]
    assert fire(limiter, tier, limit, calls=limit + 150, threads=16) == limit
    assert limiter.peek(tier, limit).remaining == 0


def test_window_rolls_with_the_injected_clock(limiter):
    for i in range(5):
        decision = limiter.hit("t", 5, 1000.0 + i * 10)
        assert decision.allowed and decision.remaining == 4 - i
    refused = limiter.hit("t", 5, 1059.5)
    assert (refused.allowed, refused.remaining, refused.reset_seconds) == (False, 0, 1)
    assert limiter.hit("t", 5, 1060.0).allowed
    assert not limiter.hit("t", 5, 1060.0).allowed
    state = limiter.peek("t", 5, 1070.0)
    assert (state.allowed, state.remaining, state.reset_seconds) == (True, 1, 10)
    assert sum(limiter.hit("b", 5, 59.9).allowed for _ in range(5)) == 5
    assert sum(limiter.hit("b", 5, 60.1).allowed for _ in range(5)) == 0  # no 2x at a boundary


def test_deterministic_keys_with_expiry_and_redis_time(limiter):
    assert limiter.key("acme") == f"{limiter.prefix}{{acme}}"
    decision = limiter.hit("acme", 3)  # no `now`: the script reads Redis TIME
    assert (decision.allowed, decision.remaining, decision.reset_seconds) == (True, 2, 60)
    client = redis.Redis.from_url(REDIS_URL)
    assert client.zcard(limiter.key("acme")) == 1
    assert 55_000 < client.pttl(limiter.key("acme")) <= 60_000  # one window, less the calls since
    assert 55_000 < client.pttl(limiter.key("acme") + ":seq") <= 60_000
    assert limiter.peek("acme", 3).remaining == 2


def test_quota_cap_is_exact_across_threads_and_counted_with_the_window(limiter):
    quota = Quota(name="sub_1:0", included=30, floor=10, expires_in=120)
    assert fire(limiter, "gateway:t", 1000, calls=200, quota=quota) == 20
    refused = limiter.hit("gateway:t", 1000, quota=quota)
    assert (refused.allowed, refused.quota_exhausted, refused.remaining) == (False, True, 980)
    client = redis.Redis.from_url(REDIS_URL)
    counter = limiter.key("gateway:t") + ":quota:sub_1:0"
    assert int(client.get(counter)) == 30
    assert 115 < client.ttl(counter) <= 120
    # A floor above the counter (usage recorded by other means) is what counts.
    assert not limiter.hit("gateway:u", 1000, quota=Quota(name="n", included=5, floor=5, expires_in=60)).allowed


def test_unreachable_redis_raises_limiter_unavailable_fast():
    store = RedisRateLimiter(closed_port_url())
    with pytest.raises(LimiterUnavailable):
        store.hit("t", 5)
    with pytest.raises(LimiterUnavailable):  # within the back-off: Redis is not even tried
        store.peek("t", 5)


def test_unreachable_redis_fails_open_and_the_server_keeps_serving(stack, tenant_id):
    settings = dataclasses.replace(stack.settings, redis_url=closed_port_url())
    with in_process_server(settings) as port, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        auth = stack.auth(stack.tenant_key(tenant_id))
        # Over the FREE limit: nothing is enforced without the store.
        assert all("x-ratelimit-limit" not in sent for sent in plan_reads_metadata(channel, auth, 55))
        with pytest.raises(grpc.RpcError) as report:
            rate_limit_pb2_grpc.RateLimitServiceStub(channel).GetRateLimit(
                rate_limit_pb2.GetRateLimitRequest(tenant_id=tenant_id), metadata=auth
            )
        assert report.value.code() == grpc.StatusCode.UNAVAILABLE


@needs_redis
def test_two_server_processes_share_one_limit_per_tier(tmp_path):
    run = uuid.uuid4().hex[:8]
    with two_servers_sharing_redis(tmp_path, REDIS_URL) as (env, first, second):
        channels = [grpc.insecure_channel(first), grpc.insecure_channel(second)]
        try:
            admin = (("authorization", f"Bearer {ADMIN_KEY}"),)
            subs = subscription_pb2_grpc.SubscriptionServiceStub(channels[0])
            for tier, limit in TIER_LIMITS.items():
                tenant = f"two-{run}-{tier.lower()}"
                if tier != "FREE":
                    subs.CreateSubscription(
                        subscription_pb2.CreateSubscriptionRequest(
                            tenant_id=tenant, plan_id=tier.lower(), billing_email="b@example.com"
                        ),
                        metadata=admin,
                    )
                auth = (("authorization", f"Bearer {create_tenant_key(env, tenant)}"),)
                stubs = [plan_pb2_grpc.PlanServiceStub(channel) for channel in channels]

                def call(i: int, stubs=stubs, auth=auth) -> bool:
                    try:
                        stubs[i % 2].GetPlan(plan_pb2.GetPlanRequest(plan_id="free"), metadata=auth, timeout=30)
                        return True
                    except grpc.RpcError as error:
                        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                        return False

                with futures.ThreadPoolExecutor(16) as pool:
                    admitted = sum(pool.map(call, range(limit + 100)))
                assert admitted == limit, tier
                state = rate_limit_pb2_grpc.RateLimitServiceStub(channels[1]).GetRateLimit(
                    rate_limit_pb2.GetRateLimitRequest(tenant_id=tenant), metadata=admin
                )
                assert (state.limit_per_minute, state.remaining) == (limit, 0)
        finally:
            for channel in channels:
                channel.close()
