"""Domain errors to gRPC statuses, in one place, as google.rpc.Status with details.

ErrorInfo carries an UPPER_SNAKE_CASE reason; BadRequest names the offending fields;
RetryInfo tells a rate-limited caller when to come back; RequestInfo carries the request id of
an internal error, the key to its traceback in the log. Envoy renders them for REST clients
because google/rpc/*.proto are compiled into its descriptor set.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.domain.errors import DomainError, Internal, ResourceExhausted

ERROR_DOMAIN = "billing.v1"


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


class Replayed(DomainError):
    """An answer kept under an Idempotency-Key, given again: its google.rpc.Status as first sent."""

    def __init__(self, status: status_pb2.Status, metadata: dict[str, str]) -> None:
        super().__init__(status.message, metadata=metadata)
        self.code = code_pb2.Code.Name(status.code)
        self.status = status


def status_message(error: DomainError) -> status_pb2.Status:
    """The google.rpc.Status of `error`, with ErrorInfo, BadRequest and RetryInfo as they apply."""
    if isinstance(error, Replayed):
        return error.status
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))]
    if error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in error.violations
                    ]
                )
            )
        )
    if isinstance(error, ResourceExhausted):
        details.append(
            _pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=error.retry_after_seconds)))
        )
    if isinstance(error, Internal):
        details.append(_pack(error_details_pb2.RequestInfo(request_id=error.request_id)))
    return status_pb2.Status(code=code_pb2.Code.Value(error.code), message=error.message, details=details)


def to_status(error: DomainError) -> grpc.Status:
    status = rpc_status.to_status(status_message(error))
    # abort_with_status replaces trailers set earlier: extra metadata must travel inside the status.
    # A namedtuple in grpc_status; the stubs type only the abstract grpc.Status.
    return status._replace(  # type: ignore[attr-defined]
        trailing_metadata=tuple(status.trailing_metadata) + tuple(error.metadata.items())
    )


def abort(context: grpc.ServicerContext, error: DomainError) -> None:
    context.abort_with_status(to_status(error))
