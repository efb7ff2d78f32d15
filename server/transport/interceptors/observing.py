"""The outermost layer: every call's metrics (go-grpc-prometheus names) and its one log
line (method, grpc code, duration_ms, request id, and the tenant or admin behind it).

It binds the call's request id (Envoy's x-request-id, else a new one) before anything else runs,
so the error boundary's INTERNAL answers, the log line and Envoy's access log share one id.
The load balancer's grpc.health probes are counted but not logged (one line a second per replica
would drown the calls).
"""

from __future__ import annotations

import logging
import time

import grpc
import prometheus_client

from server.observability import metrics
from server.transport import context as call_context
from server.transport.interceptors.chain import Layer

log = logging.getLogger("billing.calls")

UNLOGGED_PREFIX = "/grpc.health.v1."
# Go's spelling of the codes, which go-grpc-prometheus puts in grpc_code ("NotFound", "Canceled").
GO_NAMES = {grpc.StatusCode.OK: "OK", grpc.StatusCode.CANCELLED: "Canceled"}


def go_code_name(code: grpc.StatusCode) -> str:
    return GO_NAMES.get(code) or "".join(part.capitalize() for part in code.name.split("_"))


def _labels(method: str, grpc_type: str) -> tuple[str, str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return grpc_type, service, name


class ObservingInterceptor(Layer):
    """Wraps unary and client-streaming handlers of every service (the access-log stream too);
    the server-streaming ones (health Watch, reflection) are left alone. A method's metric
    series are looked up once, when its handler is composed."""

    def wraps(self, method, handler):
        return handler.unary_unary is not None or handler.stream_unary is not None

    def wrap(self, method, handler):
        kind, field = ("unary", "unary_unary") if handler.unary_unary is not None else ("client_stream", "stream_unary")
        behavior, labels = getattr(handler, field), _labels(method, kind)
        started_total = metrics.GRPC_STARTED.labels(*labels)
        handling_seconds = metrics.GRPC_HANDLING_SECONDS.labels(*labels)
        handled: dict[grpc.StatusCode, prometheus_client.Counter] = {}
        logged = not method.startswith(UNLOGGED_PREFIX)

        def observed(request, context):
            started = time.perf_counter()
            call, token = call_context.begin_call(context.invocation_metadata())
            started_total.inc()
            failed = True
            try:
                reply = behavior(request, context)
                failed = False
                return reply
            finally:
                code = context.code() or _unset_code(failed, context)
                seconds = time.perf_counter() - started
                counter = handled.get(code)
                if counter is None:
                    counter = handled[code] = metrics.GRPC_HANDLED.labels(*labels, go_code_name(code))
                counter.inc()
                handling_seconds.observe(seconds)
                if logged and log.isEnabledFor(logging.INFO):
                    log.info("call", extra={"fields": _fields(method, code, seconds, call)})
                call_context.end_call(token)

        return handler._replace(**{field: observed})


def _unset_code(failed: bool, context: grpc.ServicerContext) -> grpc.StatusCode:
    """A call that ended without a status set: OK if it returned; if it raised, CANCELLED when
    the client had gone (Envoy closing its access-log stream), else UNKNOWN, as grpcio answers."""
    if not failed:
        return grpc.StatusCode.OK
    return grpc.StatusCode.UNKNOWN if context.is_active() else grpc.StatusCode.CANCELLED


def _fields(method: str, code: grpc.StatusCode, seconds: float, call: call_context.Call) -> dict:
    fields = {
        "method": method,
        "grpc_code": code.name,
        "duration_ms": round(seconds * 1000, 2),
        "request_id": call.request_id,
    }
    principal = call.principal
    if principal is not None:
        fields.update({"admin": True} if principal.is_admin else {"tenant": principal.tenant_id})
    return fields
