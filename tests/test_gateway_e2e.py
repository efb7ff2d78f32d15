"""The gateway through the real stack: Envoy's gateway listener, its Lua admission, the grants and the access-log
stream answered by the billing server, the demo upstream as a real process. Each test uses its
own tenant; the stack's limiter is shared."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from calls import BOUND_SECONDS, burst, poll
from factories import subscription_from_now
from server import envoy_launcher
from server.persistence import db
from server.services import keys
from server.services.gateway import GRANT_SECONDS, Gateway
from server.transport.gateway import GATEWAY_KEY_HEADER, EnvoyCaller, Granter


def access_logs_written(stack) -> int:
    """Entries Envoy's gateway has handed to its access-log stream so far (its admin stats)."""
    _, stats = envoy_launcher.admin(stack.workdir, "/stats?filter=logs_written")
    return int(stats.split(": ")[1])


def test_admitted_request_reaches_upstream_with_tenant_headers_and_no_key(stack, tenant_id):
    subscription_from_now(tenant_id)
    key = stack.tenant_key(tenant_id)
    reply = stack.gateway(
        "GET",
        "/v1/items/42?x=1",
        key=key,
        headers={
            "x-tenant-id": "someone-else",
            "x-request-id": "chosen-by-client",
            "x-billing-plan": "enterprise",
            "x-api-key": key,
        },
    )
    assert reply.status == 200, reply.body
    echoed = reply.json()
    assert echoed["method"] == "GET" and echoed["path"] == "/v1/items/42?x=1"
    upstream = echoed["headers"]
    assert upstream["x-tenant-id"] == tenant_id
    assert upstream["x-billing-plan"] == "standard"
    assert upstream["x-request-id"] != "chosen-by-client"
    assert upstream["x-request-id"] == reply.headers["x-request-id"]
    assert "authorization" not in upstream and "x-api-key" not in upstream
    assert key not in reply.body.decode()
    assert reply.headers["x-ratelimit-limit"] == "200"
    assert reply.headers["x-ratelimit-remaining"] == "199"
    assert 0 < int(reply.headers["x-ratelimit-reset"]) <= 60


def test_x_api_key_header_is_accepted_and_removed(stack, tenant_id):
    subscription_from_now(tenant_id)
    reply = stack.gateway("POST", "/v1/things", headers={"x-api-key": stack.tenant_key(tenant_id)})
    assert reply.status == 200
    assert reply.json()["method"] == "POST"
    assert "x-api-key" not in reply.json()["headers"]


def test_denials_are_status_json_with_reasons_and_never_forwarded(stack, tenant_id):
    key = stack.tenant_key(tenant_id)  # no subscription yet
    cases = [
        (None, 401, "MISSING_API_KEY"),
        ("bk_not-a-key", 401, "INVALID_API_KEY"),
        (stack.admin_key, 403, "ADMIN_KEY"),
        (key, 403, "NO_ACTIVE_SUBSCRIPTION"),
    ]
    for sent, status, expected in cases:
        reply = stack.gateway("GET", "/v1/items/1", key=sent)
        assert (reply.status, reply.reason()) == (status, expected), reply.body
        assert reply.headers["content-type"] == "application/json"
        body = reply.json()
        assert set(body) == {"code", "message", "details"} and body["message"]
        assert "headers" not in body  # the demo upstream never answered


@pytest.mark.parametrize("plan, limit", [("free", 50), ("standard", 200), ("premium", 500), ("enterprise", 2000)])
def test_exact_tier_limit_under_16_concurrent_clients(stack, tenant_id, plan, limit):
    subscription_from_now(tenant_id, plan)
    replies = burst(stack, stack.tenant_key(tenant_id), limit + 40)
    ok = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status == 429]
    assert (len(ok), len(refused)) == (limit, 40)
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in ok) == list(range(limit))
    assert all(r.headers["x-ratelimit-limit"] == str(limit) for r in replies)
    refusal = refused[0]
    assert refusal.reason() == "RATE_LIMITED"
    assert refusal.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(refusal.headers["retry-after"]) <= 60


def test_gateway_window_is_separate_from_the_billing_api_window(stack, tenant_id):
    subscription_from_now(tenant_id, "free")
    key = stack.tenant_key(tenant_id)
    for _ in range(50):
        assert stack.rest("GET", "/billing/plans/free", key=key).status == 200
    assert stack.rest("GET", "/billing/plans/free", key=key).status == 429
    reply = stack.gateway("GET", "/v1/items/1", key=key)
    assert (reply.status, reply.headers["x-ratelimit-remaining"]) == (200, "49")


def test_quota_cap_is_exact_under_concurrency_and_counts_recorded_usage(stack, tenant_id, capped_plan):
    subscription_id = subscription_from_now(tenant_id, capped_plan)
    tracked = stack.track(subscription_id, [{"event_id": f"e{i}", "endpoint": "/v1/reported"} for i in range(10)])
    assert tracked.json()["accepted"] == 10
    replies = burst(stack, stack.tenant_key(tenant_id), 60)
    ok = [r for r in replies if r.status == 200]
    exhausted = [r for r in replies if r.status == 429]
    assert (len(ok), len(exhausted)) == (20, 40)
    assert {r.reason() for r in exhausted} == {"QUOTA_EXHAUSTED"}
    period_end = dt.datetime.fromisoformat(
        stack.rest("GET", f"/billing/subscriptions/{subscription_id}").json()["current_period_end"]
    )
    to_end = (period_end - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert abs(int(exhausted[0].headers["retry-after"]) - to_end) < 60
    poll(lambda: stack.total_requests(subscription_id), lambda total: total == 30)


def test_metering_counts_each_forwarded_request_once_with_normalized_endpoints(stack, tenant_id):
    subscription_id = subscription_from_now(tenant_id, "free")
    key = stack.tenant_key(tenant_id)
    logged_before = access_logs_written(stack)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    replies = burst(stack, key, 60, path=lambda i: f"/v1/items/{i}?page=2" if i % 2 else f"/v1/users/{ids[i % 5]}")
    assert [r.status for r in replies].count(200) == 50
    assert [stack.gateway("GET", "/v1/items/1", key=k).status for k in (None, "bk_bad")] == [401, 401]
    poll(lambda: stack.total_requests(subscription_id), lambda total: total >= 50)
    # A later request of another tenant is metered only after everything logged before it.
    sentinel_tenant = f"{tenant_id}-sentinel"
    sentinel = subscription_from_now(sentinel_tenant)
    assert stack.gateway("GET", "/v1/ping", key=stack.tenant_key(sentinel_tenant)).status == 200
    poll(lambda: stack.total_requests(sentinel), lambda total: total == 1)
    assert stack.total_requests(subscription_id) == 50
    # Envoy ships no request of a denied key; the 10 refused by the limit go (decision metrics,
    # quota.exhausted) and are never metered.
    assert access_logs_written(stack) - logged_before == 61
    top = stack.rest("GET", f"/billing/analytics/{subscription_id}").json()["top_endpoints"]
    assert {e["endpoint"]: int(e["requests"]) for e in top} == {
        "GET /v1/items/{id}": sum(1 for r in replies if r.status == 200 and "/items/" in r.json()["path"]),
        "GET /v1/users/{id}": sum(1 for r in replies if r.status == 200 and "/users/" in r.json()["path"]),
    }


def test_revoke_plan_change_and_cancel_take_effect_within_the_bound(stack, tenant_id):
    subscription_id = subscription_from_now(tenant_id, "standard")
    key = stack.tenant_key(tenant_id)
    assert stack.gateway("GET", "/v1/a", key=key).json()["headers"]["x-billing-plan"] == "standard"

    assert stack.rest("PUT", f"/billing/subscriptions/{subscription_id}", body={"plan_id": "premium"}).status == 200
    reply, changed_in = poll(
        lambda: stack.gateway("GET", "/v1/a", key=key), lambda r: r.json()["headers"]["x-billing-plan"] == "premium"
    )
    assert reply.headers["x-ratelimit-limit"] == "500"

    assert stack.rest("DELETE", f"/billing/subscriptions/{subscription_id}").status == 200
    reply, canceled_in = poll(lambda: stack.gateway("GET", "/v1/a", key=key), lambda r: r.status == 403)
    assert reply.reason() == "NO_ACTIVE_SUBSCRIPTION"

    subscription_from_now(tenant_id, "enterprise")  # the tenant's window already holds the calls above
    other = stack.tenant_key(tenant_id)
    poll(lambda: stack.gateway("GET", "/v1/a", key=other), lambda r: r.status == 200)
    with db.session():
        keys.revoke_key(other, now=dt.datetime.now(dt.timezone.utc))
    reply, revoked_in = poll(lambda: stack.gateway("GET", "/v1/a", key=other), lambda r: r.status == 401)
    assert reply.reason() == "INVALID_API_KEY"
    assert max(changed_in, canceled_in, revoked_in) <= GRANT_SECONDS + 0.5 < BOUND_SECONDS


def test_grants_need_the_gateway_key_and_say_how_long_they_hold(stack, tenant_id):
    """The grant listener is Envoy's alone: a tenant key or no key is refused; Envoy's key gets
    the tenant's terms, trusted for GRANT_SECONDS."""
    subscription_from_now(tenant_id, "standard")
    granter = Granter(Gateway(), EnvoyCaller())
    asked = {"x-billing-key": stack.tenant_key(tenant_id)}
    assert granter("GET", "/grant", asked)[0] == 401
    assert granter("GET", "/grant", {**asked, GATEWAY_KEY_HEADER: stack.tenant_key(tenant_id)})[0] == 403
    assert granter("GET", "/grant", {**asked, GATEWAY_KEY_HEADER: stack.admin_key})[0] == 403  # an admin has the API
    status, headers, _ = granter("GET", "/grant", {**asked, GATEWAY_KEY_HEADER: stack.gateway_key})
    assert status == 200
    assert (headers["x-tenant-id"], headers["x-billing-plan"], headers["x-billing-limit"]) == (
        tenant_id,
        "standard",
        "200",
    )
    assert headers["x-billing-ttl"] == str(GRANT_SECONDS) and "x-billing-quota" not in headers


def test_access_log_stream_needs_the_gateway_key_because_usage_is_billed_from_it(stack, tenant_id):
    subscription_id = subscription_from_now(tenant_id)
    entry = accesslog_pb2.HTTPAccessLogEntry()
    entry.request.request_id = f"forged-{uuid.uuid4().hex}"
    entry.request.path = "/v1/forged"
    entry.common_properties.upstream_remote_address.socket_address.address = "127.0.0.1"
    entry.response.response_code_details = "via_upstream"
    entry.common_properties.start_time.GetCurrentTime()
    entry.common_properties.metadata.filter_metadata["billing"].update({"subscription": subscription_id})
    message = als_pb2.StreamAccessLogsMessage()
    message.http_logs.log_entry.append(entry)
    stream = als_pb2_grpc.AccessLogServiceStub(stack.channel).StreamAccessLogs
    for key, code in [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        (stack.tenant_key(tenant_id), grpc.StatusCode.PERMISSION_DENIED),
        (stack.admin_key, grpc.StatusCode.PERMISSION_DENIED),  # not Envoy's: an admin has the API
    ]:
        with pytest.raises(grpc.RpcError) as refused:
            stream(iter([message]), metadata=stack.auth(key) if key else (), timeout=10)
        assert refused.value.code() == code
    assert stack.total_requests(subscription_id) == 0
    stream(iter([message, message]), metadata=stack.auth(stack.gateway_key), timeout=10)  # sent twice
    assert stack.total_requests(subscription_id) == 1
