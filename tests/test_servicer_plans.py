"""Servicer-level tests with pytest-grpc: the PlanServicer alone, on an in-process server."""

from __future__ import annotations

import pytest

from billing.v1 import plan_pb2
from server.transport.plans import PlanServicer


@pytest.fixture(scope="module")
def grpc_servicer(plan_service_database):
    """The servicer pytest-grpc serves (the rest of its fixtures are in conftest)."""
    return PlanServicer()


def test_servicer_returns_catalogue_in_order(grpc_stub):
    reply = grpc_stub.ListPlans(plan_pb2.ListPlansRequest())
    assert [p.id for p in reply.plans] == ["free", "standard", "premium", "enterprise"]
    assert grpc_stub.GetPlan(plan_pb2.GetPlanRequest(plan_id="enterprise")).included_requests == 10_000_000
