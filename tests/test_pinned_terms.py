"""A subscription keeps the terms of the plan version it is pinned to wherever they are read: the
rate-limit interceptor, endpoint 9, the usage-alert e-mails and the threshold webhooks. Each test
publishes a newer version that changes the rate limit and the included requests, and checks the
subscription on the older one keeps its own."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from concurrent import futures

import pytest

from factories import insert_subscription
from server.config import Settings
from server.domain.access import KeyScope, Principal
from server.persistence import db
from server.persistence.models import OutboxMessage, Subscription, UsagePeriod
from server.scheduler.jobs import run_job
from server.services import plans

ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
UTC = dt.timezone.utc


def terms(plan_id: str, *, rate_limit: int, included: int) -> dict:
    return {
        "id": plan_id,
        "name": "Pinned",
        "rate_limit_per_minute": rate_limit,
        "charges": [
            {
                "id": "requests",
                "meter_id": "requests",
                "model": "PER_UNIT",
                "included": included,
                "unit_price": "50",
                "unit_size": 1000,
            }
        ],
    }


@pytest.fixture
def plan_id() -> str:
    return f"pin-{uuid.uuid4().hex[:10]}"


def test_the_rate_limit_and_included_requests_are_the_pinned_versions(stack, plan_id):
    assert stack.rest("POST", "/billing/plans", body=terms(plan_id, rate_limit=5, included=100)).status == 200
    old_tenant, new_tenant = f"t-{uuid.uuid4().hex[:10]}", f"t-{uuid.uuid4().hex[:10]}"
    body = {"plan_id": plan_id, "billing_email": "ops@example.com"}
    old = stack.rest("POST", "/billing/subscriptions", body={**body, "tenant_id": old_tenant}).json()
    assert (
        stack.rest("PUT", f"/billing/plans/{plan_id}", body=terms(plan_id, rate_limit=500, included=10**6)).status
        == 200
    )
    new = stack.rest("POST", "/billing/subscriptions", body={**body, "tenant_id": new_tenant}).json()
    assert (old["plan_version"], new["plan_version"]) == (1, 2)

    key = stack.tenant_key(old_tenant)
    with futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: stack.rest("GET", f"/billing/plans/{plan_id}", key=key), range(8)))
    assert sorted(r.status for r in replies) == [200] * 5 + [429] * 3
    assert {r.headers["x-ratelimit-limit"] for r in replies} == {"5"}
    fresh = stack.rest("GET", f"/billing/plans/{plan_id}", key=stack.tenant_key(new_tenant))
    assert fresh.headers["x-ratelimit-limit"] == "500"

    usage = stack.rest("GET", f"/billing/metrics/usage/{old['id']}").json()
    assert usage["included_requests"] == "100"


def test_usage_alerts_read_the_pinned_versions_included_requests(own_database_url, plan_id):
    """90 requests: 90% of version 1's 100 included (one alert, 80%); 0.009% of version 2's."""
    now = dt.datetime.now(UTC)
    with db.session():
        plans.create_plan(ADMIN, terms(plan_id, rate_limit=5, included=100), now=now)
    pinned = insert_subscription(f"t-{uuid.uuid4().hex[:10]}", plan=plan_id)
    with db.session():
        plans.publish_version(ADMIN, plan_id, terms(plan_id, rate_limit=5, included=10**6), now=now)
        later = insert_subscription(f"t-{uuid.uuid4().hex[:10]}", plan=plan_id)
        Subscription.update(plan_version=2).where(Subscription.id == later.id).execute()
        for subscription in (pinned, later):
            UsagePeriod.create(
                subscription=subscription.id, period_start=subscription.current_period_start, requests=90
            )
    assert run_job("usage_alerts", now, Settings())["rows"] == 1
    with db.session():
        [alert] = OutboxMessage.select().where(OutboxMessage.template == "usage_alert")
    payload = json.loads(alert.payload)
    assert (payload["subscription_id"], payload["threshold"], payload["included"]) == (pinned.id, 80, 100)
