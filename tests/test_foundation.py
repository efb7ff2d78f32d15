"""Plans, health, auth and the error conventions through every door."""

from __future__ import annotations

import datetime as dt
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2 as grpc_health_pb2
from grpc_health.v1 import health_pb2_grpc as grpc_health_pb2_grpc

from billing.v1 import health_pb2, health_pb2_grpc, plan_pb2, plan_pb2_grpc
from calls import BOUND_SECONDS, poll
from processes import BIN
from server.domain.ttl_cache import STALENESS_SECONDS
from server.persistence import catalogue, db
from server.persistence.models import Plan
from server.services import keys

EXPECTED_PLANS = [
    ("free", "FREE", "0", 50, "10000", "0"),
    ("standard", "STANDARD", "2900", 200, "100000", "50"),
    ("premium", "PREMIUM", "9900", 500, "1000000", "30"),
    ("enterprise", "ENTERPRISE", "49900", 2000, "10000000", "10"),
]


def test_rest_lists_plans_free_to_enterprise_in_snake_case(stack):
    reply = stack.rest("GET", "/billing/plans")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert "grpc-status" not in reply.headers
    plans = reply.json()["plans"]
    # Other modules seed test plans (the capped_plan fixture) or publish plans (no tier) into the
    # same stack: set them aside.
    seeded = [p for p in plans if not p["id"].startswith("capped-") and p["tier"] != "TIER_UNSPECIFIED"]
    assert [
        (
            p["id"],
            p["tier"],
            p["monthly_fee_cents"],
            p["rate_limit_per_minute"],
            p["included_requests"],
            p["overage_per_1k_cents"],
        )
        for p in seeded
    ] == EXPECTED_PLANS
    assert {p["currency"] for p in seeded} == {"USD"}  # published plans may be in any currency


def test_rest_get_plan_and_unknown_plan_is_404_with_status_body(stack):
    assert stack.rest("GET", "/billing/plans/premium").json()["monthly_fee_cents"] == "9900"
    reply = stack.rest("GET", "/billing/plans/platinum")
    assert reply.status == 404
    body = reply.json()
    assert body["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert "platinum" in body["message"]
    assert body["details"][0]["reason"] == "PLAN_NOT_FOUND"


@pytest.mark.parametrize("key", [None, "not-a-key"])
def test_rest_missing_or_invalid_key_is_401(stack, key):
    reply = stack.rest("GET", "/billing/plans", key=key)
    assert reply.status == 401
    assert reply.json()["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]


def test_revoked_key_is_401_within_the_bound_and_tenant_key_reads_plans(stack, tenant_id):
    """The servers cache a valid key's principal for STALENESS_SECONDS: a revocation is honoured
    that late at most (the contract allows 5 s)."""
    key = stack.tenant_key(tenant_id)
    assert stack.rest("GET", "/billing/plans", key=key).status == 200
    with db.session():
        keys.revoke_key(key, now=dt.datetime.now(dt.timezone.utc))
    _, revoked_in = poll(lambda: stack.rest("GET", "/billing/plans", key=key), lambda r: r.status == 401)
    assert revoked_in <= STALENESS_SECONDS + 0.5 < BOUND_SECONDS


def test_rest_unknown_query_parameter_is_400_and_unknown_path_404(stack):
    reply = stack.rest("GET", "/billing/plans", params={"colour": "blue"})
    assert reply.status == 400
    assert "colour" in reply.json()["message"]
    reply = stack.rest("GET", "/billing/nowhere")
    assert reply.status == 404
    assert reply.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]


def test_rest_health_needs_no_key(stack):
    reply = stack.rest("GET", "/billing/health", key=None)
    assert reply.status == 200
    assert reply.json() == {"status": "SERVING", "database": "ok", "version": "0.1.0"}


def catalogue_ids(stack) -> set[str]:
    """The shipped catalogue's plan ids: tests share one database, and the capped_plan fixture
    seeds plans of its own there, so a test that runs after one sees those too."""
    return {row["id"] for row in catalogue.load(stack.settings.catalogue_path)}


def test_grpc_plans_health_and_auth(stack):
    plans = stack.stub(plan_pb2_grpc.PlanServiceStub)
    reply = plans.ListPlans(plan_pb2.ListPlansRequest(), metadata=stack.auth(stack.admin_key))
    shipped = [p.tier for p in reply.plans if p.id in catalogue_ids(stack)]
    assert shipped == [plan_pb2.FREE, plan_pb2.STANDARD, plan_pb2.PREMIUM, plan_pb2.ENTERPRISE]
    with pytest.raises(grpc.RpcError) as error:
        plans.GetPlan(plan_pb2.GetPlanRequest(plan_id="nope"), metadata=stack.auth(stack.admin_key))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        plans.ListPlans(plan_pb2.ListPlansRequest())
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    health = stack.stub(health_pb2_grpc.HealthServiceStub).GetHealth(health_pb2.GetHealthRequest())
    assert health.status == health_pb2.GetHealthResponse.SERVING
    standard = stack.stub(grpc_health_pb2_grpc.HealthStub).Check(grpc_health_pb2.HealthCheckRequest(service=""))
    assert standard.status == grpc_health_pb2.HealthCheckResponse.SERVING


def test_grpcurl_lists_services_and_calls_through_reflection(stack):
    grpcurl = [str(BIN / "grpcurl"), "-plaintext"]
    listed = subprocess.run([*grpcurl, stack.grpc_address, "list"], capture_output=True, text=True, check=True)
    assert "billing.v1.PlanService" in listed.stdout
    called = subprocess.run(
        [
            *grpcurl,
            "-H",
            f"authorization: Bearer {stack.admin_key}",
            "-d",
            '{"plan_id": "standard"}',
            stack.grpc_address,
            "billing.v1.PlanService/GetPlan",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"monthly_fee_cents": "2900"' in called.stdout


def test_catalogue_seed_is_idempotent_and_updates_prices(stack, tmp_path):
    changed = tmp_path / "plans.json"
    original = stack.settings.catalogue_path.read_text()
    changed.write_text(original.replace('"monthly_fee_cents": 2900', '"monthly_fee_cents": 3100'))
    with db.session():
        try:
            catalogue.seed(catalogue.load(changed))
            catalogue.seed(catalogue.load(changed))
            assert Plan.select().where(Plan.id.in_(catalogue_ids(stack))).count() == 4
            assert Plan.get_by_id("standard").monthly_fee_cents == 3100
        finally:
            catalogue.seed(catalogue.load(stack.settings.catalogue_path))
        assert Plan.get_by_id("standard").monthly_fee_cents == 2900
