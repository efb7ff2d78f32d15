"""The error boundary: the unexpected is INTERNAL with a request id and nothing of its cause."""

from __future__ import annotations

import logging

import grpc
import peewee
import pytest
from google.rpc import error_details_pb2

from billing.v1 import plan_pb2, plan_pb2_grpc
from grpc_errors import grpc_details

SECRET = "SELECT key_hash FROM api_key"


class FailingPlans(plan_pb2_grpc.PlanServiceServicer):
    def ListPlans(self, request, context):
        raise RuntimeError(SECRET)

    def GetPlan(self, request, context):
        raise peewee.OperationalError(f"server closed the connection unexpectedly: {SECRET}")


@pytest.fixture(scope="module")
def grpc_servicer(plan_service_database):
    """The servicer pytest-grpc serves (the rest of its fixtures are in conftest)."""
    return FailingPlans()


@pytest.mark.parametrize("sent_id", [None, "envoy-id-42"])
def test_unexpected_error_is_internal_with_request_id_and_traceback_logged(grpc_stub, caplog, sent_id):
    metadata = (("x-request-id", sent_id),) if sent_id else ()
    with caplog.at_level(logging.ERROR, logger="billing.transport"), pytest.raises(grpc.RpcError) as caught:
        grpc_stub.ListPlans(plan_pb2.ListPlansRequest(), metadata=metadata)
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    [info] = grpc_details(error, error_details_pb2.RequestInfo)
    request_id = info.request_id
    assert request_id and (sent_id is None or request_id == sent_id)
    assert request_id in error.details() and "api_key" not in error.details()
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and SECRET in logged[0].exc_text


def test_database_failure_is_unavailable_without_driver_text(grpc_stub):
    with pytest.raises(grpc.RpcError) as caught:
        grpc_stub.GetPlan(plan_pb2.GetPlanRequest(plan_id="free"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "connection" not in caught.value.details() and "api_key" not in caught.value.details()
