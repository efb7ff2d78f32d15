"""The gateway's route costs, usage reported by the upstream, standard rate-limit headers and
hard limits on any meter, through the real stack (Envoy, the admission listener, the access-log
stream, the demo upstream as a real process)."""

from __future__ import annotations

import uuid

import pytest

from calls import burst, poll
from server.demo_upstream import LLM_PATH
from server.observability import metrics


def _meter(stack, meter_id: str, **fields) -> None:
    body = {"id": meter_id, "name": meter_id, "event_type": "llm_tokens", **fields}
    created = stack.rest("POST", "/billing/meters", body=body)
    assert created.status == 200, created.body


def _plan(stack, **fields) -> str:
    plan_id = f"gw-{uuid.uuid4().hex[:8]}"
    body = {"id": plan_id, "name": "Gateway test", "monthly_fee_cents": "0", "rate_limit_per_minute": 50, **fields}
    created = stack.rest("POST", "/billing/plans", body=body)
    assert created.status == 200, created.body
    return plan_id


def _subscribe(stack, plan_id: str) -> tuple[str, str]:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    body = {"tenant_id": tenant, "plan_id": plan_id, "billing_email": f"{tenant}@example.com"}
    reply = stack.rest("POST", "/billing/subscriptions", body=body)
    assert reply.status == 200, reply.body
    return reply.json()["id"], stack.tenant_key(tenant)


@pytest.fixture
def llm_meter(stack):
    """A SUM meter of the fake LLM's output tokens, archived after the test with the plans that
    charge it (listed by the test): other tests on this stack send llm_tokens events without
    that property, which an active meter of it would refuse."""
    meter_id = f"tokens-{uuid.uuid4().hex[:8]}"
    _meter(stack, meter_id, aggregation="SUM", value_property="output_tokens", group_by=["model"])
    charging: list[str] = []
    yield meter_id, charging
    for plan_id in charging:
        assert stack.rest("DELETE", f"/billing/plans/{plan_id}").status == 200
    assert stack.rest("DELETE", f"/billing/meters/{meter_id}").status == 200


def _meter_total(stack, subscription_id: str, meter_id: str) -> str:
    rows = stack.rest("GET", f"/billing/subscriptions/{subscription_id}/meters/{meter_id}/usage").json()["rows"]
    return rows[0]["value"] if rows else "0"


def test_a_cost_5_route_on_a_50_per_minute_plan_admits_exactly_10_and_meters_their_cost(stack):
    plan_id = _plan(
        stack,
        route_costs=[
            {"method": "*", "path_prefix": "/v1/search", "cost": 5},
            {"method": "GET", "path_prefix": "/v1/search/cheap", "cost": 2},
        ],
    )
    subscription_id, key = _subscribe(stack, plan_id)
    replies = burst(stack, key, 30, path=lambda i: f"/v1/search?q={i}")
    assert sorted(r.status for r in replies) == [200] * 10 + [429] * 20
    ok = [r for r in replies if r.status == 200]
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in ok) == list(range(0, 50, 5))
    poll(lambda: stack.total_requests(subscription_id), lambda n: n == 50)
    # The longest prefix wins, the method must match: a GET under /v1/search/cheap costs 2, and
    # nothing is left in the window for it.
    assert stack.gateway("GET", "/v1/search/cheap", key=key).status == 429


def test_usage_reported_by_the_upstream_is_billed_once_and_never_reaches_the_client(stack, llm_meter):
    meter_id, _ = llm_meter
    subscription_id, key = _subscribe(stack, _plan(stack, rate_limit_per_minute=1000))
    prompt = b"x" * 30  # the fake LLM reports 30 input and 120 output tokens
    replies = [stack.gateway("POST", LLM_PATH, key=key, body=prompt) for _ in range(7)]
    assert [r.status for r in replies] == [200] * 7
    assert all("x-billing-usage" not in r.headers for r in replies)
    poll(lambda: _meter_total(stack, subscription_id, meter_id), lambda total: total == "840")
    assert stack.total_requests(subscription_id) == 7


def test_a_malformed_usage_header_is_counted_and_the_request_still_metered(stack):
    subscription_id, key = _subscribe(stack, _plan(stack, rate_limit_per_minute=1000))
    before = metrics.GATEWAY_MALFORMED_USAGE._value.get()  # the server runs in this process
    for bad in ("api_request; n=1", "llm_tokens; model", "Bad Type; a=1", "llm_tokens; a=1; a=2"):
        reply = stack.gateway("GET", "/v1/echo", key=key, headers={"x-demo-usage": bad})
        assert reply.status == 200 and "x-billing-usage" not in reply.headers
    poll(lambda: stack.total_requests(subscription_id), lambda n: n == 4)
    assert metrics.GATEWAY_MALFORMED_USAGE._value.get() == before + 4


def test_ietf_ratelimit_headers_state_the_window_and_the_capped_period(stack, capped_plan):
    _, key = _subscribe(stack, _plan(stack))
    first = stack.gateway("GET", "/v1/a", key=key)
    assert first.headers["ratelimit-policy"] == '"minute";q=50;w=60'
    assert first.headers["ratelimit"] == f'"minute";r=49;t={first.headers["x-ratelimit-reset"]}'
    _, capped_key = _subscribe(stack, capped_plan)  # 30 included requests, no overage, 1000/min
    reply = stack.gateway("GET", "/v1/a", key=capped_key)
    policy, period = reply.headers["ratelimit-policy"].split(", ")
    assert policy == '"minute";q=1000;w=60'
    assert period.startswith('"period";q=30;w=') and 28 * 86400 <= int(period.rsplit("=", 1)[1]) <= 31 * 86400
    minute, left = reply.headers["ratelimit"].split(", ")
    assert minute.startswith('"minute";r=999;t=')
    assert left.startswith('"period";r=29;t=')
    refused = burst(stack, capped_key, 40)[-1]
    assert refused.status == 429 and refused.headers["ratelimit"].split(", ")[1].startswith('"period";r=0;t=')


def test_a_hard_limit_on_another_meter_denies_within_the_bound(stack, llm_meter):
    meter_id, charging = llm_meter
    charge = {
        "id": "large",
        "meter_id": meter_id,
        "filter": {"model": "m-large"},
        "included": "400",
        "model": "PER_UNIT",
        "unit_price": "0",
        "hard_limit": True,
    }
    charging.append(_plan(stack, rate_limit_per_minute=1000, charges=[charge]))
    subscription_id, key = _subscribe(stack, charging[0])
    for _ in range(4):  # 4 x 120 output tokens = 480 >= 400
        assert stack.gateway("POST", LLM_PATH, key=key, body=b"x" * 30).status == 200
    poll(lambda: _meter_total(stack, subscription_id, meter_id), lambda total: total == "480")
    denied, _ = poll(lambda: stack.gateway("GET", "/v1/a", key=key), lambda reply: reply.status == 429)
    assert denied.reason() == "QUOTA_EXHAUSTED" and int(denied.headers["retry-after"]) > 0


def test_the_key_is_read_from_bearer_first_then_x_api_key(stack):
    _, key = _subscribe(stack, _plan(stack, rate_limit_per_minute=1000))
    cases = [
        ({"authorization": f"Bearer {key}"}, 200),
        ({"authorization": f"bearer  {key} "}, 200),
        ({"x-api-key": key}, 200),
        ({"authorization": f"Bearer {key}", "x-api-key": "bk_wrong"}, 200),
        ({"authorization": "Basic dXNlcjpwdw==", "x-api-key": key}, 200),
        ({"authorization": "Basic dXNlcjpwdw=="}, 401),
        ({"x-api-key": "  "}, 401),
        ({"authorization": "Bearer bk_wrong", "x-api-key": key}, 401),
    ]
    for headers, status in cases:
        assert stack.gateway("GET", "/v1/a", headers=headers).status == status, headers
