"""One grpc.ServerInterceptor for all the billing layers, composed once per method.

grpcio asks every interceptor for every call, on its one polling thread (which serves every
connection and must not do I/O), to look the handler up and wrap it: five interceptors did that
five times a call. `Chain` builds each method's handler once, with only the layers that apply
to that method (health has no key, no tier limit and no path to bind), and answers later calls
from a dict. The layers' work runs in the call's worker thread, where it can use the context to
abort or send metadata; per-call facts such as metadata come from `context.invocation_metadata()`.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from server.transport.interceptors.methods import BILLING_PREFIX

Behavior = Callable[[object, grpc.ServicerContext], object]


class Layer:
    """One concern around the billing API's unary handlers: `wraps` decides once per method,
    `around` runs on each call."""

    def wraps(self, method: str, handler: grpc.RpcMethodHandler) -> bool:
        return handler.unary_unary is not None and method.startswith(BILLING_PREFIX)

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        behavior, around = handler.unary_unary, self.around
        assert behavior is not None  # wraps() admits unary-unary handlers only

        def wrapped(request, context):
            return around(behavior, request, context, method)

        # grpc's handlers are namedtuples; the stubs type only the abstract class.
        return handler._replace(unary_unary=wrapped)  # type: ignore[attr-defined]

    def around(self, behavior: Behavior, request, context: grpc.ServicerContext, method: str) -> object:
        raise NotImplementedError


class Chain(grpc.ServerInterceptor):
    """`layers` outermost first; each method's composed handler is built on its first call and
    kept (the server's methods are fixed once it starts; an unknown method is not kept)."""

    def __init__(self, layers: list[Layer]) -> None:
        self._layers = layers
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            handler = continuation(handler_call_details)
            if handler is None:
                return None
            for layer in reversed(self._layers):
                if layer.wraps(method, handler):
                    handler = layer.wrap(method, handler)
            self._handlers[method] = handler
        return handler
