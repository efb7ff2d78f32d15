"""Gateway rules, pure: what a metered request's endpoint is called, which access-log entries are
usage, and what an upstream's usage report says. (Which key a request carries, and the limits,
are decided in Envoy: envoy/gateway.lua.)

The gateway meters the platform's own API, whose paths carry ids: `GET /v1/items/42` and
`GET /v1/items/43` are one endpoint for analytics, so id-like segments become `{id}`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import re

from server.domain import meters
from server.domain.errors import DomainError
from server.domain.usage import MAX_ENDPOINT, RawEvent

# All digits, a UUID, or 16+ hex characters (docs/api.md, Gateway).
_ID_SEGMENT = re.compile(
    r"\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{16,}"
)

# Envoy's response code details of an answer that came from the upstream: the request was
# forwarded and answered (a reset after the answer began still means the upstream did the work).
# Everything else is Envoy's own reply (no upstream, a header it could not write, a timeout, a
# reset before any answer), which is never usage, whatever the upstream address or flags say:
# a header Envoy could not write was logged with the upstream's address and no failure flag.
UPSTREAM_ANSWERED = "via_upstream"
UPSTREAM_RESET_AFTER_ANSWER = "upstream_reset_after_response_started"


def endpoint(method: str, path: str) -> str:
    """`METHOD /path` with the query dropped and id-like segments replaced by `{id}`."""
    bare = path.split("?", 1)[0].split("#", 1)[0] or "/"
    segments = ["{id}" if _ID_SEGMENT.fullmatch(segment) else segment for segment in bare.split("/")]
    return f"{method.upper()} {'/'.join(segments)}"[:MAX_ENDPOINT]


def forwarded(response_code_details: str) -> bool:
    """Whether a logged request was forwarded and answered by the upstream (with any status)."""
    return response_code_details == UPSTREAM_ANSWERED or response_code_details.startswith(UPSTREAM_RESET_AFTER_ANSWER)


@dataclasses.dataclass(frozen=True)
class LoggedRequest:
    """One access-log entry of the gateway, as metering needs it: what envoy/gateway.lua set in
    its dynamic metadata (the granted subscription, tenant and tier, the route's cost, and a
    refusal's reason, else empty) and the upstream's usage report."""

    subscription_id: str
    request_id: str
    method: str
    path: str
    started_at: dt.datetime
    forwarded: bool
    cost: int = 1
    reported: tuple[str, dict[str, str]] | None = None  # the upstream's x-billing-usage, parsed
    tenant_id: str = ""
    tier: str = ""
    refused: str = ""  # RATE_LIMITED or QUOTA_EXHAUSTED: refused in Envoy, never forwarded


USAGE_SUFFIX = ":usage"


def usage_events(requests: list[LoggedRequest]) -> dict[str, list[RawEvent]]:
    """The usage events of admitted, forwarded requests, per subscription: one `api_request` of
    count = the route's cost per request id and, where the upstream reported usage, one more
    event of its type, `event_id` = the request id + ":usage" (so both dedupe on a resent batch)."""
    events: dict[str, list[RawEvent]] = collections.defaultdict(list)
    for request in requests:
        if request.subscription_id and request.forwarded and request.request_id:
            batch = events[request.subscription_id]
            batch.append(
                RawEvent(
                    event_id=request.request_id,
                    endpoint=endpoint(request.method, request.path),
                    count=request.cost,
                    timestamp=request.started_at,
                )
            )
            if request.reported is not None:
                event_type, properties = request.reported
                batch.append(
                    RawEvent(
                        event_id=request.request_id + USAGE_SUFFIX,
                        endpoint="",
                        count=None,
                        timestamp=request.started_at,
                        event_type=event_type,
                        properties=properties,
                    )
                )
    return dict(events)


class MalformedUsage(ValueError):
    """An x-billing-usage header that is not `<event_type>; <property>=<value>; …` within the
    event limits: counted and logged, never billed."""


def usage_report(header: str) -> tuple[str, dict[str, str]]:
    """(event_type, properties) of an upstream's `x-billing-usage` header, e.g.
    `llm_tokens; model=m-large; input_tokens=120; output_tokens=480`. Values stay strings (read
    exactly as numbers by meters); a key given twice, an empty part, or anything outside the
    event limits (meters.EVENT_TYPE, validate_properties) is MalformedUsage."""
    event_type, *parts = [part.strip() for part in header.split(";")]
    if not meters.EVENT_TYPE.fullmatch(event_type) or event_type == meters.API_REQUEST:
        raise MalformedUsage(f"event type {event_type!r} is not [a-z0-9_.-]{{1,64}} (nor api_request)")
    properties: dict[str, str] = {}
    for part in parts:
        key, equals, value = part.partition("=")
        key = key.strip()
        if not equals or not key or key in properties:
            raise MalformedUsage(f"{part!r} is not a single <property>=<value>")
        properties[key] = value.strip()
    try:
        meters.validate_properties(properties, "properties")
    except DomainError as error:
        raise MalformedUsage(error.message) from error
    return event_type, properties
