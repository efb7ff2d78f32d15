"""Servicer-level tests with pytest-grpc: the PlanServicer alone, on an in-process server."""

from __future__ import annotations

import pytest
from billing.v1 import plan_pb2, plan_pb2_grpc

from server.bootstrap import prepare
from server.config import Settings
from server.persistence import db
from server.transport.interceptors import Chain, ErrorInterceptor
from server.transport.plans import PlanServicer


@pytest.fixture(scope="module")
def grpc_add_to_server():
    return plan_pb2_grpc.add_PlanServiceServicer_to_server


@pytest.fixture(scope="module")
def grpc_servicer(tmp_path_factory):
    prepare(Settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('db') / 'plans.db'}"))
    yield PlanServicer()
    db.close()


@pytest.fixture(scope="module")
def grpc_interceptors():
    return [Chain([ErrorInterceptor()])]


@pytest.fixture(scope="module")
def grpc_stub_cls(grpc_channel):
    return plan_pb2_grpc.PlanServiceStub


def test_servicer_returns_catalogue_in_order(grpc_stub):
    reply = grpc_stub.ListPlans(plan_pb2.ListPlansRequest())
    assert [p.id for p in reply.plans] == ["free", "standard", "premium", "enterprise"]
    assert grpc_stub.GetPlan(plan_pb2.GetPlanRequest(plan_id="enterprise")).included_requests == 10_000_000
