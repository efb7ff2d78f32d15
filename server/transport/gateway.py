"""Envoy's side of the gateway: envoy.service.auth.v3.Authorization (ext_authz) and
envoy.service.accesslog.v3.AccessLogService, translated to server.services.gateway.

These are not billing.v1 methods, so the billing interceptors leave them alone: the services open
database sessions where they need them (Check mostly needs none: its lookups are cached), and
Check turns domain errors into HTTP denials itself. Anything
unexpected in Check becomes a gRPC error, which Envoy (failure_mode_allow: false) answers 503.

Both calls must come from Envoy: Check decides what the platform's API admits (and counts
against tenants' limits), the access-log stream is what usage is billed from. Envoy sends the
gateway key (KeyScope.GATEWAY) as initial metadata on both, and nothing else is accepted: not an
admin key, not a tenant key. The gateway key in turn opens no billing.v1 method, so Envoy's
configuration (readable at its admin /config_dump) holds nothing more powerful than this.
"""

from __future__ import annotations

import logging
import time

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from google.protobuf import json_format

from server.domain import gateway as rules
from server.domain.access import Principal, require_gateway
from server.domain.errors import DomainError, ResourceExhausted, Unavailable
from server.domain.gateway import LoggedRequest, forwarded
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.observability import metrics
from server.persistence import db
from server.services import gateway, keys
from server.services.gateway import Gateway
from server.transport import context as call_context
from server.transport.convert import now
from server.transport.errors import abort, status_message
from server.transport.gateway_http import Answer, AuthzServer
from server.transport.interceptors.authenticating import bearer_token
from server.transport.rate_limit_headers import decision_headers

GATEWAY_KEY_HEADER = "x-billing-gateway-key"  # Envoy's own key on its authz calls (envoy.yaml.tmpl)
USAGE_METADATA = "billing"  # header_to_metadata's namespace for the upstream's x-billing-usage

log = logging.getLogger("billing.gateway")

EXT_AUTHZ = "envoy.filters.http.ext_authz"
HTTP_STATUS = {
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "FAILED_PRECONDITION": 402,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
}
# A batch whose transaction fails (database unreachable) is retried for about 30 s: at most
# CACHE_SECONDS of traffic can be admitted from the caches after the database goes away, and
# this is how long an outage may last before that traffic's usage is lost (and logged).
METER_ATTEMPTS = 20
METER_BACKOFF_CAP_SECONDS = 2.0
JSON = {"content-type": "application/json"}


def _limit_headers(decision, quota: rules.PeriodQuota | None) -> dict[str, str]:
    """x-ratelimit-* (the tier window) and the IETF RateLimit-Policy / RateLimit (window and period)."""
    return {
        **decision_headers(decision),
        **rules.ratelimit_fields(decision.limit, decision.remaining, decision.reset_seconds, quota),
    }


def _denied(error: DomainError) -> Answer:
    status = status_message(error)
    limit_headers = _limit_headers(error.decision, error.quota) if isinstance(error, gateway.Refused) else {}
    if isinstance(error, ResourceExhausted):
        limit_headers["retry-after"] = str(error.retry_after_seconds)
    body = json_format.MessageToJson(status, preserving_proto_field_name=True, indent=None).encode()
    return HTTP_STATUS.get(error.code, 500), {**JSON, **error.metadata, **limit_headers}, body


def _allowed(admission: gateway.Admission) -> Answer:
    headers = {
        "x-tenant-id": admission.tenant_id,
        "x-billing-plan": admission.plan_id,
        "x-billing-subscription": admission.subscription_id,
        "x-billing-cost": str(admission.cost),
    }
    if admission.decision:
        headers.update(_limit_headers(admission.decision, admission.quota))
    return 200, headers, b""


class EnvoyCaller:
    """Refuses a call that does not carry the gateway key. A valid key is cached like the billing
    API's keys (a revoked one is refused at most STALENESS_SECONDS late), so Check, the hot path,
    does no database query for it."""

    def __init__(self, cache_seconds: float = STALENESS_SECONDS) -> None:
        self._principals: TtlCache[Principal] = TtlCache(cache_seconds)

    def check(self, key: str | None, what: str) -> None:
        """Raise the DomainError that refuses a caller without the gateway key."""
        principal = self._principals.get(key, lambda: _authenticate(key)) if key else keys.authenticate(key)
        require_gateway(principal, what)

    def require(self, context, what: str) -> None:
        try:
            self.check(bearer_token(context.invocation_metadata()), what)
        except DomainError as error:
            abort(context, error)


def _authenticate(key: str) -> Principal:
    with db.session():
        return keys.authenticate(key)


class Admitter:
    """Envoy's question about one request of the platform's API (server/transport/gateway_http.py
    carries it), answered as HTTP: 200 with the headers to forward, or the denial itself.
    Anything unexpected is a 503, never an admission (fail closed)."""

    def __init__(self, admission: Gateway, caller: EnvoyCaller) -> None:
        self.admission = admission
        self.caller = caller

    def __call__(self, method: str, path: str, headers: dict[str, str]) -> Answer:
        call_context.adopt_request_id(headers.get("x-request-id"))
        try:
            self.caller.check(headers.get(GATEWAY_KEY_HEADER), "ext_authz Check")
            return _allowed(self.admission.admit(headers, now(), method=method, path=path))
        except DomainError as error:
            return _denied(error)
        except Exception:
            log.exception("gateway admission failed")
            return _denied(Unavailable("the gateway cannot decide now; retry later"))


def _logged(entry) -> LoggedRequest:
    common = entry.common_properties
    admitted = common.metadata.filter_metadata.get(EXT_AUTHZ)
    fields = admitted.fields if admitted else {}
    reported = common.metadata.filter_metadata.get(USAGE_METADATA)
    return LoggedRequest(
        subscription_id=fields["x-billing-subscription"].string_value if "x-billing-subscription" in fields else "",
        request_id=entry.request.request_id,
        method=base_pb2.RequestMethod.Name(entry.request.request_method),
        path=entry.request.path,
        started_at=common.start_time.ToDatetime(tzinfo=now().tzinfo),
        forwarded=forwarded(entry.response.response_code_details),
        cost=int(fields["x-billing-cost"].string_value or 1) if "x-billing-cost" in fields else 1,
        reported=_reported(reported.fields["usage"].string_value, entry.request.request_id) if reported else None,
    )


def _reported(header: str, request_id: str) -> tuple[str, dict[str, str]] | None:
    """The upstream's usage report, or None (counted and logged) when it is malformed: the
    request itself is metered either way."""
    try:
        return rules.usage_report(header)
    except rules.MalformedUsage as error:
        metrics.record_malformed_usage()
        log.warning("malformed x-billing-usage on request %s: %s", request_id, error)
        return None


class AccessLogServicer(als_pb2_grpc.AccessLogServiceServicer):
    """Each message Envoy flushes (every 0.2 s at most) is one batch. It is recorded before the
    next is read; a database hiccup is retried, because Envoy does not resend what it sent.
    Usage is billed from this stream, so it must come with the gateway key."""

    def __init__(self, caller: EnvoyCaller) -> None:
        self.caller = caller

    def StreamAccessLogs(self, request_iterator, context):
        self.caller.require(context, "streaming gateway access logs")
        for message in request_iterator:
            requests = [_logged(entry) for entry in message.http_logs.log_entry]
            if requests:
                _meter(requests)
        return als_pb2.StreamAccessLogsResponse()


def _meter(requests: list[LoggedRequest]) -> None:
    for attempt in range(1, METER_ATTEMPTS + 1):
        try:
            with db.session():
                gateway.meter(requests, now())
            return
        except Exception:
            if attempt == METER_ATTEMPTS:
                log.exception("gateway metering lost a batch of %d requests", len(requests))
                return
            time.sleep(min(METER_BACKOFF_CAP_SECONDS, 0.1 * 2**attempt))


def add_to_server(server: grpc.Server, admission: Gateway, authz_port: int) -> None:
    """The access-log sink on the gRPC server and, with an `authz_port`, the admission listener
    (started now: it is independent of the gRPC server's life)."""
    caller = EnvoyCaller()
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(AccessLogServicer(caller), server)
    if authz_port:
        AuthzServer(Admitter(admission, caller), port=authz_port).start()
