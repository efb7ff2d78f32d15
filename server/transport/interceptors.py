"""Server interceptors. Each wraps the unary handler so that its work runs in the worker
thread of the call (grpcio runs `intercept_service` itself on the single polling thread,
which must not do I/O), where it can use the call's context to abort or send metadata.
"""

from __future__ import annotations

import logging
from typing import Callable

import grpc

from server.domain.errors import DomainError
from server.persistence import db
from server.services import keys
from server.transport import context as call_context
from server.transport import path_binding
from server.transport.errors import abort

log = logging.getLogger("billing.transport")

BILLING_PREFIX = "/billing.v1."
PUBLIC_METHODS = frozenset({"/billing.v1.HealthService/GetHealth"})

Behavior = Callable[[object, grpc.ServicerContext], object]


class UnaryInterceptor(grpc.ServerInterceptor):
    """Base: subclasses implement `around` for the billing API's unary methods."""

    def applies(self, method: str) -> bool:
        return method.startswith(BILLING_PREFIX)

    def around(self, behavior: Behavior, request, context: grpc.ServicerContext, method: str, metadata) -> object:
        raise NotImplementedError

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or not self.applies(method):
            return handler
        behavior, metadata = handler.unary_unary, handler_call_details.invocation_metadata

        def wrapped(request, context):
            return self.around(behavior, request, context, method, metadata)

        return handler._replace(unary_unary=wrapped)


class ErrorInterceptor(UnaryInterceptor):
    """Outermost: opens the call's database session and turns domain errors into statuses."""

    def around(self, behavior, request, context, method, metadata):
        try:
            with db.session():
                return behavior(request, context)
        except DomainError as error:
            abort(context, error)


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
    """Resolves the API key to a Principal for the servicers; health needs no key."""

    def applies(self, method: str) -> bool:
        return super().applies(method) and method not in PUBLIC_METHODS

    def around(self, behavior, request, context, method, metadata):
        token = call_context.bind_principal(keys.authenticate(bearer_token(metadata)))
        try:
            return behavior(request, context)
        finally:
            call_context.unbind_principal(token)


def default_interceptors(limiter=None) -> list[grpc.ServerInterceptor]:
    """errors → auth → tier rate limit (only with a limiter: None turns rate limits off) → path binding."""
    if limiter is None:
        return [ErrorInterceptor(), AuthInterceptor(), PathBindingInterceptor()]
    from server.transport.ratelimit import RateLimitInterceptor

    return [ErrorInterceptor(), AuthInterceptor(), RateLimitInterceptor(limiter), PathBindingInterceptor()]
