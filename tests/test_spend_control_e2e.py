"""Spend control through the real gateway (Envoy, ext_authz, the access-log stream), on SQLite and
PostgreSQL: a PREPAID plan stops at its credit and flows again after a grant, a spend cap stops
and lifts with a higher cap, each within the 5 s bound (polled, never slept); the spend webhooks
are written once per crossing however many requests are refused."""

from __future__ import annotations

import datetime as dt
import uuid

from playhouse.test_utils import count_queries

from calls import BOUND_SECONDS, poll
from server.persistence import db
from server.persistence.models import WebhookEvent
from server.services import spend_control

PRICE_CENTS = 100  # each request


def plan(stack, billing: str) -> str:
    """A plan of no fee whose every request costs PRICE_CENTS."""
    plan_id = f"spend-{uuid.uuid4().hex[:8]}"
    body = {
        "id": plan_id,
        "name": "Pay as you go",
        "monthly_fee_cents": "0",
        "rate_limit_per_minute": 1000,
        "billing": billing,
        "charges": [{"id": "calls", "meter_id": "requests", "model": "PER_UNIT", "unit_price": str(PRICE_CENTS)}],
    }
    reply = stack.rest("POST", "/billing/plans", body=body)
    assert reply.status == 200, reply.body
    return plan_id


def subscribe(stack, tenant_id, plan_id, **extra) -> str:
    body = {"tenant_id": tenant_id, "plan_id": plan_id, "billing_email": f"{tenant_id}@example.com", **extra}
    reply = stack.rest("POST", "/billing/subscriptions", body=body)
    assert reply.status == 200, reply.body
    return reply.json()["id"]


def listen(stack, tenant_id) -> None:
    """A webhook endpoint (never called: the discard port), so the tenant's events are written."""
    body = {"tenant_id": tenant_id, "url": "http://127.0.0.1:9/hooks"}
    assert stack.rest("POST", "/billing/webhooks", body=body).status == 200


def events_of(tenant_id: str) -> list[str]:
    with db.session():
        return sorted(e.type for e in WebhookEvent.select().where(WebhookEvent.tenant_id == tenant_id))


def grant(stack, tenant_id, amount) -> None:
    path = f"/billing/tenants/{tenant_id}/credit-grants"
    assert stack.rest("POST", path, body={"amount_cents": amount}).status == 200


def spend_until(stack, key, status: int):
    """Requests through the gateway until one is answered `status`, within the bound of it being due."""
    return poll(lambda: stack.gateway("GET", "/v1/items", key=key), lambda r: r.status == status)


def accrued(stack, subscription_id) -> int:
    return int(stack.rest("GET", f"/billing/metrics/usage/{subscription_id}").json()["accrued_cents"])


def test_prepaid_stops_at_its_credit_and_flows_again_after_a_grant(stack, tenant_id):
    listen(stack, tenant_id)
    sub = subscribe(stack, tenant_id, plan(stack, "PREPAID"), low_balance_alert_cents=300)
    key = stack.tenant_key(tenant_id)
    refused = stack.gateway("GET", "/v1/items", key=key)
    assert refused.status == 402 and refused.reason() == "CREDITS_EXHAUSTED"  # no credit at all
    euros = {"amount_cents": 5000, "currency": "EUR"}
    assert stack.rest("POST", f"/billing/tenants/{tenant_id}/credit-grants", body=euros).status == 200
    assert stack.gateway("GET", "/v1/items", key=key).status == 402  # credit in another currency pays nothing

    grant(stack, tenant_id, 1000)  # ten requests' worth; Envoy replays the denial until its grant expires
    _, lifted_in = spend_until(stack, key, 200)
    assert lifted_in < BOUND_SECONDS
    reply, _ = spend_until(stack, key, 402)
    assert reply.reason() == "CREDITS_EXHAUSTED"
    assert reply.json()["message"]
    poll(lambda: accrued(stack, sub), lambda cents: cents >= 1000)
    spent = accrued(stack, sub)
    assert spent % PRICE_CENTS == 0 and spent >= 1000  # admitted within the cache's bound, never refused early
    for _ in range(3):  # re-evaluated past the same line: nothing more is announced
        spend_control.invalidate(tenant_id)
        assert stack.gateway("GET", "/v1/items", key=key).status == 402
    assert events_of(tenant_id).count("credits.exhausted") == 1
    assert events_of(tenant_id).count("credits.low") == 1

    grant(stack, tenant_id, spent - 1000 + 500)  # five more requests' worth
    _, lifted_in = spend_until(stack, key, 200)
    assert lifted_in < BOUND_SECONDS
    spend_until(stack, key, 402)
    spend_control.invalidate(tenant_id)
    stack.gateway("GET", "/v1/items", key=key)
    assert events_of(tenant_id).count("credits.exhausted") == 2  # a new grant, a new crossing
    assert events_of(tenant_id).count("credit_grant.created") == 3


def test_spend_cap_stops_and_a_higher_cap_lifts(stack, tenant_id):
    listen(stack, tenant_id)
    sub = subscribe(stack, tenant_id, plan(stack, "POSTPAID"), spend_cap_cents=500)
    key = stack.tenant_key(tenant_id)
    for _ in range(5):
        assert stack.gateway("GET", "/v1/items", key=key).status == 200
    reply, _ = spend_until(stack, key, 402)
    assert reply.reason() == "SPEND_CAP_REACHED"
    for _ in range(3):
        spend_control.invalidate(tenant_id)
        assert stack.gateway("GET", "/v1/items", key=key).status == 402
    assert events_of(tenant_id).count("spend_cap.reached") == 1

    poll(lambda: accrued(stack, sub), lambda cents: cents >= 500)
    higher = accrued(stack, sub) + 300
    owner = stack.tenant_key(tenant_id)
    assert stack.rest("PUT", f"/billing/subscriptions/{sub}", key=owner, body={"spend_cap_cents": higher}).status == 200
    _, lifted_in = spend_until(stack, key, 200)
    assert lifted_in < BOUND_SECONDS
    reply, _ = spend_until(stack, key, 402)
    assert reply.reason() == "SPEND_CAP_REACHED"
    spend_control.invalidate(tenant_id)
    stack.gateway("GET", "/v1/items", key=key)
    assert events_of(tenant_id).count("spend_cap.reached") == 2  # a new cap, a new crossing
    assert "credits.exhausted" not in events_of(tenant_id)  # never granted credit: no credit lines


def test_a_period_invoiced_early_does_not_spend_its_credit_twice(stack, tenant_id):
    sub = subscribe(stack, tenant_id, plan(stack, "PREPAID"))
    key = stack.tenant_key(tenant_id)
    grant(stack, tenant_id, 1000)
    assert stack.track(sub, [{"endpoint": "/v1/items", "count": 6}]).status == 200
    invoice = stack.generate_invoice(sub).json()
    assert (invoice["subtotal_cents"], invoice["total_cents"], invoice["status"]) == ("600", "0", "PAID")
    # 400 of credit left and the period's 600 already paid from it: traffic still flows.
    assert stack.gateway("GET", "/v1/items", key=key).status == 200
    assert int(stack.rest("GET", f"/billing/metrics/usage/{sub}").json()["credit_balance_cents"]) == 400


def test_the_gateways_spend_check_answers_from_its_cache_until_a_write_invalidates_it(stack, tenant_id):
    """No database query per gateway call: the answer is cached (at most STALENESS_SECONDS), and a
    grant in this process forgets it at once."""
    sub = subscribe(stack, tenant_id, plan(stack, "PREPAID"))
    now = dt.datetime.now(dt.timezone.utc)

    def queries() -> tuple[object, int]:
        with count_queries() as counted:
            answer = spend_control.denial(tenant_id, sub, now)
        return answer, counted.count

    first, asked = queries()
    assert first is not None and first.reason == "CREDITS_EXHAUSTED" and asked > 0
    for _ in range(5):
        again, asked = queries()
        assert again is not None and again.reason == "CREDITS_EXHAUSTED" and asked == 0
    grant(stack, tenant_id, 500)
    assert queries()[0] is None
