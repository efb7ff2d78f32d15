"""Reading gRPC errors in tests: the error a call raises, and the fields its BadRequest names."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def grpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call(*args, **kwargs)
    return error.value


def grpc_fields(error: grpc.RpcError) -> list[str]:
    fields = []
    for detail in rpc_status.from_call(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields
