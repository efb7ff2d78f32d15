"""Envoy's side of the gateway: the grants its Lua filter asks for (GET /grant on the small HTTP
listener of server/transport/gateway_http.py) and envoy.service.accesslog.v3.AccessLogService,
translated to server.services.gateway.

These are not billing.v1 methods, so the billing interceptors leave them alone: the services open
database sessions where they need them, and a grant's domain errors become the HTTP denials that
Envoy replays. Anything unexpected is a 503, which Envoy answers 503 too (fail closed).

Both must come from Envoy: a grant decides what the platform's API admits, the access-log stream
is what usage is billed from. Envoy sends the gateway key (KeyScope.GATEWAY) on both (header
x-billing-gateway-key; the stream's initial metadata), and nothing else is accepted: not an
admin key, not a tenant key. The gateway key in turn opens no billing.v1 method, so Envoy's
configuration (readable at its admin /config_dump) holds nothing more powerful than this.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from google.protobuf import json_format

from server.domain import gateway as rules
from server.domain.access import Principal, require_gateway
from server.domain.errors import DomainError, NotFound, ResourceExhausted, Unavailable
from server.domain.gateway import LoggedRequest, forwarded
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.observability import metrics
from server.persistence import db
from server.services import gateway, keys
from server.services.gateway import Gateway
from server.transport.convert import now
from server.transport.errors import abort, status_message
from server.transport.gateway_http import Answer, AuthzServer
from server.transport.interceptors.authenticating import bearer_token

GATEWAY_KEY_HEADER = "x-billing-gateway-key"  # Envoy's own key on its grant calls (envoy/gateway.lua)
KEY_HEADER = "x-billing-key"  # the tenant key a grant is asked for
TTL_HEADER = "x-billing-ttl"  # how long Envoy may use a grant or replay a denial
GRANT_PATH = "/grant"
METADATA = "billing"  # the access-log entry's namespace: envoy/gateway.lua's and the usage report

log = logging.getLogger("billing.gateway")

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


def _denied(error: DomainError) -> Answer:
    """A denial as Envoy's Lua filter replays it to the client for GRANT_SECONDS."""
    headers = {**JSON, **error.metadata, TTL_HEADER: str(gateway.GRANT_SECONDS)}
    if isinstance(error, ResourceExhausted):
        headers["retry-after"] = str(error.retry_after_seconds)
    status = status_message(error)
    body = json_format.MessageToJson(status, preserving_proto_field_name=True, indent=None).encode()
    return HTTP_STATUS.get(error.code, 500), headers, body


def _granted(grant: gateway.Grant) -> Answer:
    """The grant as the headers envoy/gateway.lua reads."""
    plan = grant.plan
    headers = {
        "x-tenant-id": grant.tenant_id,
        "x-billing-plan": plan.plan_id,
        "x-billing-subscription": plan.subscription_id,
        "x-billing-tier": str(plan.tier),
        "x-billing-limit": str(plan.limit_per_minute),
        TTL_HEADER: str(gateway.GRANT_SECONDS),
    }
    if plan.route_costs:
        headers["x-billing-routes"] = ", ".join(f"{r.method} {r.path_prefix} {r.cost}" for r in plan.route_costs)
    if grant.period is not None:
        period = grant.period
        headers["x-billing-quota"] = (
            f"{plan.subscription_id}:{int(period.start.timestamp())} {plan.included_requests} {grant.quota_floor} "
            f"{int(period.end.timestamp())} {round((period.end - period.start).total_seconds())}"
        )
    return 200, headers, b""


class EnvoyCaller:
    """Refuses a call that does not carry the gateway key. A valid key is cached like the billing
    API's keys (a revoked one is refused at most STALENESS_SECONDS late), so a grant or a stream
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


class Granter:
    """Envoy's question about a key (GET /grant, `x-billing-key`; server/transport/gateway_http.py
    carries it), answered as HTTP: 200 with the grant's headers, or the denial to replay.
    Anything unexpected is a 503, which Envoy never caches nor admits on (fail closed)."""

    def __init__(self, gateway_: Gateway, caller: EnvoyCaller) -> None:
        self.gateway = gateway_
        self.caller = caller

    def __call__(self, method: str, path: str, headers: dict[str, str]) -> Answer:
        try:
            self.caller.check(headers.get(GATEWAY_KEY_HEADER), "gateway grants")
            if (method, path) != ("GET", GRANT_PATH):
                raise NotFound(f"no {method} {path} here: Envoy asks GET {GRANT_PATH}")
            return _granted(self.gateway.grant(headers.get(KEY_HEADER) or None, now()))
        except DomainError as error:
            return _denied(error)
        except Exception:
            log.exception("gateway grant failed")
            return _denied(Unavailable("the gateway cannot decide now; retry later"))


_METHODS = {value.number: value.name for value in base_pb2.RequestMethod.DESCRIPTOR.values}


def _logged(entry) -> LoggedRequest:
    common = entry.common_properties
    billing = common.metadata.filter_metadata.get(METADATA)
    fields = billing.fields if billing else {}

    def text(name: str) -> str:
        return fields[name].string_value if name in fields else ""

    return LoggedRequest(
        subscription_id=text("subscription"),
        request_id=entry.request.request_id,
        method=_METHODS.get(entry.request.request_method, "METHOD_UNSPECIFIED"),
        path=entry.request.path,
        started_at=common.start_time.ToDatetime(tzinfo=dt.timezone.utc),
        forwarded=forwarded(entry.response.response_code_details),
        cost=int(fields["cost"].number_value) if "cost" in fields else 1,
        reported=_reported(text("usage"), entry.request.request_id) if "usage" in fields else None,
        tenant_id=text("tenant"),
        tier=text("tier"),
        refused=text("refused"),
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
    """Each message Envoy flushes (every 0.2 s, or at 1 MiB of entries) is one batch. It is
    recorded before the next is read; a database hiccup is retried, because Envoy does not resend
    what it sent. Usage is billed from this stream, so it must come with the gateway key."""

    def __init__(self, gateway_: Gateway, caller: EnvoyCaller) -> None:
        self.gateway = gateway_
        self.caller = caller

    def StreamAccessLogs(self, request_iterator, context):
        self.caller.require(context, "streaming gateway access logs")
        for message in request_iterator:
            requests = [_logged(entry) for entry in message.http_logs.log_entry]
            if requests:
                _meter(requests)
                self.gateway.record_refusals(requests, now())
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


def add_to_server(server: grpc.Server, gateway_: Gateway, authz_port: int) -> None:
    """The access-log sink on the gRPC server and, with an `authz_port`, the grant listener
    (started now: it is independent of the gRPC server's life)."""
    caller = EnvoyCaller()
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(AccessLogServicer(gateway_, caller), server)
    if authz_port:
        AuthzServer(Granter(gateway_, caller), port=authz_port).start()
