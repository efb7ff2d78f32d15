"""Server interceptors. Each wraps the unary handler so that its work runs in the worker
thread of the call (grpcio runs `intercept_service` itself on the single polling thread,
which must not do I/O), where it can use the call's context to abort or send metadata.
"""

from __future__ import annotations

import logging
from typing import Callable

import grpc
import peewee
from playhouse.pool import MaxConnectionsExceeded

from server.domain.access import Principal
from server.domain.errors import DomainError, Internal, InvalidArgument, Unavailable
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.persistence import db
from server.services import keys
from server.transport import context as call_context
from server.transport import path_binding
from server.transport import validation
from server.transport.errors import abort
from server.transport.observe import ObservingInterceptor

log = logging.getLogger("billing.transport")

BILLING_PREFIX = "/billing.v1."
PUBLIC_METHODS = frozenset({"/billing.v1.HealthService/GetHealth"})
# Portal pages: no key (a browser holds only the link); the servicer verifies the link's token.
LINK_METHODS = frozenset({"/billing.v1.PortalService/GetPortalPage", "/billing.v1.PortalService/GetPortalInvoicePdf"})
KEYLESS_METHODS = PUBLIC_METHODS | LINK_METHODS
# The database did not answer (gone, unreachable, read-only, pool exhausted): retryable.
DATABASE_LOST = (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded)

Behavior = Callable[[object, grpc.ServicerContext], object]


class UnaryInterceptor(grpc.ServerInterceptor):
    """Base: subclasses implement `around` for the billing API's unary methods."""

    def applies(self, method: str) -> bool:
        return method.startswith(BILLING_PREFIX)

    def around(self, behavior: Behavior, request, context: grpc.ServicerContext, method: str, metadata) -> object:
        raise NotImplementedError

    def replace(self, handler: grpc.RpcMethodHandler, wrapped: Behavior) -> grpc.RpcMethodHandler:
        return handler._replace(unary_unary=wrapped)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or not self.applies(method):
            return handler
        behavior, metadata = handler.unary_unary, handler_call_details.invocation_metadata

        def wrapped(request, context):
            return self.around(behavior, request, context, method, metadata)

        return self.replace(handler, wrapped)


class ErrorInterceptor(UnaryInterceptor):
    """Outermost, the one error boundary: opens the call's database session (health opens its
    own, to report a lost database rather than fail with it) and turns every failure into a
    status. Domain errors carry theirs; a lost database is UNAVAILABLE; anything else is
    INTERNAL with a request id, whose traceback goes to the log under the same id. No driver
    or SQL text reaches a client."""

    def around(self, behavior, request, context, method, metadata):
        try:
            if method in PUBLIC_METHODS:
                return behavior(request, context)
            with db.session():
                return behavior(request, context)
        except DomainError as error:
            failure = error
        except DATABASE_LOST as error:
            log.warning("database unavailable in %s: %s: %s", method, type(error).__name__, str(error)[:200])
            failure = Unavailable("the database is unavailable; retry later")
        except Exception:  # noqa: BLE001 - the boundary: anything unexpected becomes INTERNAL
            failure = Internal(call_context.request_id(metadata))
            log.exception("unexpected error in %s (request id %s)", method, failure.request_id)
        abort(context, failure)


class Undecodable:
    """Stands in for a request protobuf could not parse, so that the call can answer 400."""

    def __init__(self, field: str | None) -> None:
        self.field = field


class ValidationInterceptor(UnaryInterceptor):
    """The servicers' edge (server/transport/validation.py): a request that breaks a rule is
    answered 400 naming every field at fault, before authentication or any servicer."""

    def replace(self, handler, wrapped):
        parse = handler.request_deserializer
        message_type = getattr(parse, "__self__", None)  # the generated stubs pass Message.FromString

        def tolerant(data: bytes):
            try:
                return parse(data)
            except Exception:  # noqa: BLE001 - DecodeError or its C twin; the field is found below
                found = message_type and validation.undecodable_field(message_type.DESCRIPTOR, data)
                return Undecodable(found or None)

        return handler._replace(unary_unary=wrapped, request_deserializer=tolerant)

    def around(self, behavior, request, context, method, metadata):
        if isinstance(request, Undecodable):
            where = request.field or "the request"
            raise InvalidArgument(f"{where} is not valid UTF-8 or not a valid protobuf message",
                                  field=request.field, reason="MALFORMED_REQUEST")
        found = validation.missing_path_fields(method, request) + validation.violations(request)
        if found:
            raise InvalidArgument("; ".join(v.description for v in found), violations=tuple(found),
                                  reason="INVALID_FIELD")
        return behavior(request, context)


class PathBindingInterceptor(UnaryInterceptor):
    """A REST call acts on the resource its path names, whatever its body says."""

    def around(self, behavior, request, context, method, metadata):
        for key, value in metadata or ():
            if key == path_binding.ORIGINAL_PATH:
                path_binding.check(method, value, request)
        return behavior(request, context)


def bearer_token(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class AuthInterceptor(UnaryInterceptor):
    """Resolves the API key to a Principal for the servicers; health and portal pages need no key.
    A valid key's Principal is cached for `cache_seconds` (a revoked key is refused at most that
    late, ttl_cache.STALENESS_SECONDS); an unknown or revoked key is looked up every time."""

    def __init__(self, cache_seconds: float = STALENESS_SECONDS) -> None:
        self._principals: TtlCache[Principal] = TtlCache(cache_seconds)

    def applies(self, method: str) -> bool:
        return super().applies(method) and method not in KEYLESS_METHODS

    def around(self, behavior, request, context, method, metadata):
        key = bearer_token(metadata)
        principal = self._principals.get(key, lambda: keys.authenticate(key)) if key else keys.authenticate(key)
        token = call_context.bind_principal(principal)
        try:
            return behavior(request, context)
        finally:
            call_context.unbind_principal(token)


def default_interceptors(limiter=None) -> list[grpc.ServerInterceptor]:
    """observation (metrics, call log) → errors → validation → auth → tier rate limit (only with a
    limiter: None turns rate limits off) → path binding."""
    chain = [ObservingInterceptor(), ErrorInterceptor(), ValidationInterceptor(), AuthInterceptor()]
    if limiter is None:
        return [*chain, PathBindingInterceptor()]
    from server.transport.ratelimit import RateLimitInterceptor

    return [*chain, RateLimitInterceptor(limiter), PathBindingInterceptor()]
