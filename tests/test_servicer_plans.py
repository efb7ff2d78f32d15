"""Servicer-level tests with pytest-grpc: the PlanServicer alone, on an in-process server."""

from __future__ import annotations

import grpc
import pytest

from billing.v1 import plan_pb2
from server.domain.access import SYSTEM
from server.transport.context import bind_principal, unbind_principal
from server.transport.plans import PlanServicer


class _BindsSystem(grpc.ServerInterceptor):
    """What the authenticating interceptor does for a key, for the servicer served alone: every
    call acts as a principal (here the service's own), never as none."""

    def intercept_service(self, continuation, details):
        handler = continuation(details)

        def unary(request, context):
            token = bind_principal(SYSTEM)
            try:
                return handler.unary_unary(request, context)
            finally:
                unbind_principal(token)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@pytest.fixture(scope="module")
def grpc_interceptors():
    return [_BindsSystem()]


@pytest.fixture(scope="module")
def grpc_servicer(plan_service_database):
    """The servicer pytest-grpc serves (the rest of its fixtures are in conftest)."""
    return PlanServicer()


def test_servicer_returns_catalogue_in_order(grpc_stub):
    reply = grpc_stub.ListPlans(plan_pb2.ListPlansRequest())
    assert [p.id for p in reply.plans] == ["free", "standard", "premium", "enterprise"]
    assert grpc_stub.GetPlan(plan_pb2.GetPlanRequest(plan_id="enterprise")).included_requests == 10_000_000
