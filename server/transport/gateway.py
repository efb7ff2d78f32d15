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
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf import json_format, struct_pb2
from google.rpc import code_pb2, status_pb2

from server.domain.access import Principal, require_gateway
from server.domain.errors import DomainError
from server.domain.gateway import LoggedRequest, forwarded
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.persistence import db
from server.services import gateway, keys
from server.services.gateway import Gateway
from server.services.spend_control import PaymentRequired
from server.transport import context as call_context
from server.transport.convert import now
from server.transport.errors import abort, status_message
from server.transport.interceptors.authenticating import bearer_token
from server.transport.rate_limit_headers import decision_headers, refusal_headers

log = logging.getLogger("billing.gateway")

EXT_AUTHZ = "envoy.filters.http.ext_authz"
HTTP_STATUS = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503}
# Never forwarded to the upstream: the key. Replaced: what the upstream trusts.
REMOVED_UPSTREAM = ["authorization", "x-api-key"]
OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
# A batch whose transaction fails (database unreachable) is retried for about 30 s: at most
# CACHE_SECONDS of traffic can be admitted from the caches after the database goes away, and
# this is how long an outage may last before that traffic's usage is lost (and logged).
METER_ATTEMPTS = 20
METER_BACKOFF_CAP_SECONDS = 2.0


def _headers(pairs: dict[str, str]) -> list[base_pb2.HeaderValueOption]:
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v), append_action=OVERWRITE)
        for k, v in pairs.items()
    ]


def _http_status(error: DomainError) -> int:
    """402 for spend control's denials (no gRPC code says "payment required"), else by the code."""
    return 402 if isinstance(error, PaymentRequired) else HTTP_STATUS.get(error.code, 500)


def _denied(error: DomainError) -> external_auth_pb2.CheckResponse:
    status = status_message(error)
    limit_headers = (
        refusal_headers(error.decision, error.retry_after_seconds) if isinstance(error, gateway.Refused) else {}
    )
    body = json_format.MessageToJson(status, preserving_proto_field_name=True, indent=None)
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=status.code),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=_http_status(error)),
            headers=_headers({"content-type": "application/json", **error.metadata, **limit_headers}),
            body=body,
        ),
    )


def _allowed(admission: gateway.Admission, request_id: str) -> external_auth_pb2.CheckResponse:
    metadata = struct_pb2.Struct()
    metadata.update({"tenant_id": admission.tenant_id, "subscription_id": admission.subscription_id})
    upstream = {"x-tenant-id": admission.tenant_id, "x-billing-plan": admission.plan_id, "x-request-id": request_id}
    downstream = decision_headers(admission.decision) if admission.decision else {}
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        dynamic_metadata=metadata,
        ok_response=external_auth_pb2.OkHttpResponse(
            headers=_headers(upstream), headers_to_remove=REMOVED_UPSTREAM, response_headers_to_add=_headers(downstream)
        ),
    )


class EnvoyCaller:
    """Refuses a call that does not carry the gateway key. A valid key is cached like the billing
    API's keys (a revoked one is refused at most STALENESS_SECONDS late), so Check, the hot path,
    does no database query for it."""

    def __init__(self, cache_seconds: float = STALENESS_SECONDS) -> None:
        self._principals: TtlCache[Principal] = TtlCache(cache_seconds)

    def require(self, context, what: str) -> None:
        key = bearer_token(context.invocation_metadata())
        try:
            principal = self._principals.get(key, lambda: _authenticate(key)) if key else keys.authenticate(key)
            require_gateway(principal, what)
        except DomainError as error:
            abort(context, error)


def _authenticate(key: str) -> Principal:
    with db.session():
        return keys.authenticate(key)


class AuthorizationServicer(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, admission: Gateway, caller: EnvoyCaller) -> None:
        self.admission = admission
        self.caller = caller

    def Check(self, request, context):
        self.caller.require(context, "ext_authz Check")
        headers = dict(request.attributes.request.http.headers)
        call_context.adopt_request_id(headers.get("x-request-id"))
        try:
            admission = self.admission.admit(headers, now())
        except DomainError as error:
            return _denied(error)
        return _allowed(admission, headers.get("x-request-id", ""))


def _logged(entry) -> LoggedRequest:
    common = entry.common_properties
    admitted = common.metadata.filter_metadata.get(EXT_AUTHZ)
    return LoggedRequest(
        subscription_id=admitted.fields["subscription_id"].string_value if admitted else "",
        request_id=entry.request.request_id,
        method=base_pb2.RequestMethod.Name(entry.request.request_method),
        path=entry.request.path,
        started_at=common.start_time.ToDatetime(tzinfo=now().tzinfo),
        forwarded=forwarded(entry.response.response_code_details),
    )


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


def add_to_server(server: grpc.Server, admission: Gateway) -> None:
    caller = EnvoyCaller()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AuthorizationServicer(admission, caller), server)
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(AccessLogServicer(caller), server)
