"""Reading gRPC errors in tests: the error a call raises, its rich details, and the fields its
BadRequest names."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def grpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call(*args, **kwargs)
    return error.value


def grpc_details(error: grpc.RpcError, kind):
    """The details of type `kind` (an error_details_pb2 message class) the error's status carries."""
    found = []
    for detail in rpc_status.from_call(error).details:
        if detail.Is(kind.DESCRIPTOR):
            found.append(kind())
            detail.Unpack(found[-1])
    return found


def grpc_fields(error: grpc.RpcError) -> list[str]:
    return [v.field for bad in grpc_details(error, error_details_pb2.BadRequest) for v in bad.field_violations]
