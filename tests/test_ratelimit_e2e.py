"""Tier rate limits through the real stack: Envoy's 429 and headers, gRPC metadata and RetryInfo,
admin keys, plan changes at once, and endpoint 18. The stack's limiter is in-process and shared
by all tests, so each test uses its own tenant."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from google.rpc import error_details_pb2

from billing.v1 import plan_pb2, plan_pb2_grpc, rate_limit_pb2, rate_limit_pb2_grpc
from calls import BOUND_SECONDS, plan_reads_metadata, poll
from factories import subscription_from_now
from grpc_errors import grpc_details
from processes import in_process_server
from server.config import Settings
from server.domain.ttl_cache import STALENESS_SECONDS
from server.persistence import db
from server.persistence.models import Subscription

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def rest_burst(stack, key: str, calls: int):
    with futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda _: stack.rest("GET", "/billing/plans/free", key=key), range(calls)))


def test_free_tenant_gets_exactly_50_then_429_through_envoy(stack, tenant_id):
    key = stack.tenant_key(tenant_id)
    replies = rest_burst(stack, key, 70)
    ok = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status == 429]
    assert (len(ok), len(refused)) == (50, 20)
    assert all(r.headers["x-ratelimit-limit"] == "50" for r in ok)
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in ok) == list(range(50))
    assert all(0 < int(r.headers["x-ratelimit-reset"]) <= 60 for r in ok)

    refusal = refused[0]
    assert refusal.headers["x-ratelimit-limit"] == "50"
    assert refusal.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(refusal.headers["retry-after"]) <= 60
    assert refusal.headers["retry-after"] == refusal.headers["x-ratelimit-reset"]
    body = refusal.json()
    assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "50" in body["message"]
    details = {d["@type"]: d for d in body["details"]}
    assert details["type.googleapis.com/google.rpc.ErrorInfo"]["reason"] == "RATE_LIMITED"
    assert details[RETRY_INFO]["retry_delay"] == f"{refusal.headers['retry-after']}s"


def test_grpc_metadata_and_retry_info(stack, tenant_id):
    stub = stack.stub(plan_pb2_grpc.PlanServiceStub)
    auth = stack.auth(stack.tenant_key(tenant_id))
    reads = plan_reads_metadata(stack.channel, auth, 50)
    assert [(sent["x-ratelimit-limit"], sent["x-ratelimit-remaining"]) for sent in reads] == [
        ("50", str(remaining)) for remaining in range(49, -1, -1)
    ]
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetPlan(plan_pb2.GetPlanRequest(plan_id="free"), metadata=auth)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(refused.value.trailing_metadata())
    assert trailers["x-ratelimit-remaining"] == "0"
    [retry] = grpc_details(refused.value, error_details_pb2.RetryInfo)
    assert retry.retry_delay.seconds == int(trailers["retry-after"]) >= 1


def test_an_admitted_call_that_fails_still_carries_its_limit(stack, tenant_id):
    """The headers leave with the call's last batch (server/transport/initial_metadata.py), an
    error's too: gRPC initial metadata, and the REST error's headers."""
    key = stack.tenant_key(tenant_id)
    with pytest.raises(grpc.RpcError) as missing:
        stack.stub(plan_pb2_grpc.PlanServiceStub).GetPlan(
            plan_pb2.GetPlanRequest(plan_id="no-such-plan"), metadata=stack.auth(key)
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    sent = dict(missing.value.initial_metadata())
    assert (sent["x-ratelimit-limit"], sent["x-ratelimit-remaining"]) == ("50", "49")
    reply = stack.rest("GET", "/billing/plans/no-such-plan", key=key)
    assert reply.status == 404
    assert (reply.headers["x-ratelimit-limit"], reply.headers["x-ratelimit-remaining"]) == ("50", "48")


def test_refused_call_does_nothing(stack, tenant_id):
    """Over the limit the handler never runs: a subscription create is refused, not created."""
    key = stack.tenant_key(tenant_id)
    assert sum(r.status == 200 for r in rest_burst(stack, key, 50)) == 50
    reply = stack.rest(
        "POST",
        "/billing/subscriptions",
        key=key,
        body={"tenant_id": tenant_id, "plan_id": "premium", "billing_email": "b@example.com"},
    )
    assert reply.status == 429
    with db.session():
        assert Subscription.select().where(Subscription.tenant_id == tenant_id).count() == 0


def test_admin_keys_are_not_limited_and_get_no_headers(stack):
    replies = rest_burst(stack, "admin", 60)
    assert all(r.status == 200 for r in replies)
    assert not any("x-ratelimit-limit" in r.headers for r in replies)


def test_health_is_not_limited(stack):
    for _ in range(55):
        assert stack.rest("GET", "/billing/health", key=None).status == 200


def test_plan_change_and_cancel_apply_within_the_bound(stack, tenant_id):
    """The interceptor caches a tenant's tier for STALENESS_SECONDS: a plan change or a cancel
    sets the limit that late at most (the contract allows 5 s)."""
    key = stack.tenant_key(tenant_id)
    sub_id = subscription_from_now(tenant_id, "premium")

    def limit_becomes(expected: str) -> float:
        reply, took = poll(
            lambda: stack.rest("GET", "/billing/plans/free", key=key),
            lambda r: r.headers["x-ratelimit-limit"] == expected,
        )
        assert int(reply.headers["x-ratelimit-remaining"]) < int(expected)  # the window keeps earlier calls
        return took

    limit_becomes("500")
    took = []
    for plan, limit in (("enterprise", "2000"), ("standard", "200")):
        assert stack.rest("PUT", f"/billing/subscriptions/{sub_id}", body={"plan_id": plan}).status == 200
        took.append(limit_becomes(limit))
    assert stack.rest("DELETE", f"/billing/subscriptions/{sub_id}").status == 200
    took.append(limit_becomes("50"))
    assert max(took) <= STALENESS_SECONDS + 0.5 < BOUND_SECONDS


def test_get_rate_limit_reports_without_consuming(stack, tenant_id):
    key = stack.tenant_key(tenant_id)
    subscription_from_now(tenant_id, "premium")
    for _ in range(3):
        assert stack.rest("GET", "/billing/plans/free", key=key).status == 200
    for _ in range(3):  # admin reads consume nothing
        reply = stack.rest("GET", f"/billing/rate-limits/{tenant_id}")
        assert reply.status == 200
        assert reply.json() == {
            "tenant_id": tenant_id,
            "tier": "PREMIUM",
            "limit_per_minute": 500,
            "remaining": 497,
            "reset_seconds": 0,
        }
    # The owner's own call counts, and the report includes it (as its header does).
    own = stack.rest("GET", f"/billing/rate-limits/{tenant_id}", key=key)
    assert own.json()["remaining"] == 496 == int(own.headers["x-ratelimit-remaining"])
    # Another tenant's key: 403.
    other = stack.rest("GET", f"/billing/rate-limits/{tenant_id}", key=stack.tenant_key(tenant_id + "-x"))
    assert other.status == 403


def test_get_rate_limit_when_exhausted_over_grpc(stack, tenant_id):
    key = stack.tenant_key(tenant_id)
    assert sum(r.status == 200 for r in rest_burst(stack, key, 55)) == 50
    stub = stack.stub(rate_limit_pb2_grpc.RateLimitServiceStub)
    state = stub.GetRateLimit(
        rate_limit_pb2.GetRateLimitRequest(tenant_id=tenant_id), metadata=stack.auth(stack.admin_key)
    )
    assert (state.tier, state.limit_per_minute, state.remaining) == (plan_pb2.FREE, 50, 0)
    assert 1 <= state.reset_seconds <= 60


def test_rate_limits_can_be_turned_off(stack, tenant_id):
    with (
        in_process_server(stack.settings, rate_limits=False) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        reads = plan_reads_metadata(channel, stack.auth(stack.tenant_key(tenant_id)), 55)
    assert all("x-ratelimit-limit" not in sent for sent in reads)


def test_settings_without_redis_use_the_in_process_limiter():
    from server.ratelimit.factory import build_limiter
    from server.ratelimit.memory import InProcessRateLimiter

    assert isinstance(build_limiter(Settings()), InProcessRateLimiter)


def test_handler_error_after_admission_keeps_its_status_body(stack, tenant_id):
    """Initial metadata already sent, then the handler fails: still a JSON google.rpc.Status."""
    reply = stack.rest("GET", "/billing/plans/platinum", key=stack.tenant_key(tenant_id))
    assert reply.status == 404
    assert reply.json()["details"][0]["reason"] == "PLAN_NOT_FOUND"
    assert reply.headers["x-ratelimit-remaining"] == "49"
