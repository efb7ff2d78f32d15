"""Typed failures of the domain and services.

Each names its gRPC status by string so the domain stays free of grpc; the transport maps
them to statuses with details in one place (server/transport/errors.py).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    code = "INTERNAL"
    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field: str | None = None,
        violations: tuple[FieldViolation, ...] = (),
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.violations = ((FieldViolation(field, message),) if field else ()) + tuple(violations)
        self.metadata = metadata or {}


class InvalidArgument(DomainError):
    code = "INVALID_ARGUMENT"
    default_reason = "INVALID_ARGUMENT"


def within(error: InvalidArgument, prefix: str) -> InvalidArgument:
    """The same refusal with its field paths below `prefix` (a resource checked on its own, named
    as the request that carried it: `id` -> `meter.id`)."""
    violations = tuple(FieldViolation(f"{prefix}.{v.field}", f"{prefix}.{v.description}") for v in error.violations)
    return InvalidArgument(
        f"{prefix}.{error.message}", reason=error.reason, violations=violations, metadata=error.metadata
    )


class FailedPrecondition(DomainError):
    code = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"


class NotFound(DomainError):
    code = "NOT_FOUND"
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = "ALREADY_EXISTS"
    default_reason = "ALREADY_EXISTS"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"
    default_reason = "UNAUTHENTICATED"


class Unavailable(DomainError):
    """A dependency (the database) does not answer; retryable, never carries its driver's text."""

    code = "UNAVAILABLE"
    default_reason = "DATABASE_UNAVAILABLE"


class Internal(DomainError):
    """Anything unexpected, as the client sees it: only a request id to quote, never the cause."""

    code = "INTERNAL"
    default_reason = "INTERNAL"

    def __init__(self, request_id: str) -> None:
        super().__init__(f"internal error; quote request id {request_id} when reporting it")
        self.request_id = request_id


class ResourceExhausted(DomainError):
    """Over a rate limit; `retry_after_seconds` becomes RetryInfo and a retry-after header."""

    code = "RESOURCE_EXHAUSTED"
    default_reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_seconds: int, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_seconds = retry_after_seconds
