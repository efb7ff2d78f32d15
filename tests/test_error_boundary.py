"""The error boundary: the unexpected is INTERNAL with a request id and nothing of its cause."""

from __future__ import annotations

import logging

import grpc
import peewee
import pytest
from billing.v1 import plan_pb2, plan_pb2_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.bootstrap import prepare
from server.config import Settings
from server.persistence import db
from server.transport.interceptors import Chain, ErrorInterceptor

SECRET = "SELECT key_hash FROM api_key"


class FailingPlans(plan_pb2_grpc.PlanServiceServicer):
    def ListPlans(self, request, context):
        raise RuntimeError(SECRET)

    def GetPlan(self, request, context):
        raise peewee.OperationalError(f"server closed the connection unexpectedly: {SECRET}")


@pytest.fixture(scope="module")
def grpc_add_to_server():
    return plan_pb2_grpc.add_PlanServiceServicer_to_server


@pytest.fixture(scope="module")
def grpc_servicer(tmp_path_factory):
    prepare(Settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('db') / 'boundary.db'}"))
    yield FailingPlans()
    db.close()


@pytest.fixture(scope="module")
def grpc_interceptors():
    return [Chain([ErrorInterceptor()])]


@pytest.fixture(scope="module")
def grpc_stub_cls(grpc_channel):
    return plan_pb2_grpc.PlanServiceStub


def _request_id(error: grpc.RpcError) -> str:
    for detail in rpc_status.from_call(error).details:
        if detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            info = error_details_pb2.RequestInfo()
            detail.Unpack(info)
            return info.request_id
    return ""


@pytest.mark.parametrize("sent_id", [None, "envoy-id-42"])
def test_unexpected_error_is_internal_with_request_id_and_traceback_logged(grpc_stub, caplog, sent_id):
    metadata = (("x-request-id", sent_id),) if sent_id else ()
    with caplog.at_level(logging.ERROR, logger="billing.transport"), pytest.raises(grpc.RpcError) as caught:
        grpc_stub.ListPlans(plan_pb2.ListPlansRequest(), metadata=metadata)
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    request_id = _request_id(error)
    assert request_id and (sent_id is None or request_id == sent_id)
    assert request_id in error.details() and "api_key" not in error.details()
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and SECRET in logged[0].exc_text


def test_database_failure_is_unavailable_without_driver_text(grpc_stub):
    with pytest.raises(grpc.RpcError) as caught:
        grpc_stub.GetPlan(plan_pb2.GetPlanRequest(plan_id="free"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "connection" not in caught.value.details() and "api_key" not in caught.value.details()
