"""Gateway rules, pure: which key a request carries, what a metered request's endpoint is called,
and which access-log entries are usage.

The gateway meters the platform's own API, whose paths carry ids: `GET /v1/items/42` and
`GET /v1/items/43` are one endpoint for analytics, so id-like segments become `{id}`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import re
from collections.abc import Sequence

from server.domain import meters
from server.domain.errors import DomainError
from server.domain.plans import RouteCost
from server.domain.usage import MAX_ENDPOINT, RawEvent

WINDOW_SECONDS = 60  # the tier window (server/ratelimit/algorithm.py), as the IETF headers state it

# All digits, a UUID, or 16+ hex characters (API.md, Gateway).
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


def api_key(headers: dict[str, str]) -> str | None:
    """The tenant key from `authorization: Bearer <key>` or, failing that, `x-api-key`.
    Header names are lower-case, as Envoy passes them."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None


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
    """One access-log entry of the gateway, as metering needs it. `subscription_id` is empty
    unless ext_authz admitted the request (it sets it in the dynamic metadata)."""

    subscription_id: str
    request_id: str
    method: str
    path: str
    started_at: dt.datetime
    forwarded: bool
    cost: int = 1  # the route's cost admission charged (ext_authz's x-billing-cost)
    reported: tuple[str, dict[str, str]] | None = None  # the upstream's x-billing-usage, parsed


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


def route_cost(routes: Sequence[RouteCost], method: str, path: str) -> int:
    """The cost of a request on a plan's routes (API.md "Gateway, continued"): the route with the
    longest matching path prefix among those for this method or "*" (an exact method beats "*"
    on the same prefix); 1 when none matches. The query is not part of the path."""
    bare = path.split("?", 1)[0]
    best: tuple[int, bool, int] | None = None
    for route in routes:
        if route.method not in ("*", method.upper()) or not bare.startswith(route.path_prefix):
            continue
        rank = (len(route.path_prefix), route.method != "*", route.cost)
        if best is None or rank[:2] > best[:2]:
            best = rank
    return best[2] if best else 1


@dataclasses.dataclass(frozen=True)
class PeriodQuota:
    """A capped plan's period as the IETF headers show it: units included and used, the period's
    length and the seconds left in it."""

    included: int
    used: int
    period_seconds: int
    seconds_left: int


def ratelimit_fields(limit: int, remaining: int, reset: int, quota: PeriodQuota | None) -> dict[str, str]:
    """`RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-12: structured
    field lists of quoted policy names with q/w and r/t parameters): the tier window as "minute"
    and, where a cap applies, the billing period as "period"."""
    policies = [f'"minute";q={limit};w={WINDOW_SECONDS}']
    states = [f'"minute";r={remaining};t={reset}']
    if quota is not None:
        policies.append(f'"period";q={quota.included};w={quota.period_seconds}')
        states.append(f'"period";r={max(0, quota.included - quota.used)};t={quota.seconds_left}')
    return {"ratelimit-policy": ", ".join(policies), "ratelimit": ", ".join(states)}


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
        key, equals, value = (piece.strip() for piece in part.partition("="))
        if not equals or not key or key in properties:
            raise MalformedUsage(f"{part!r} is not a single <property>=<value>")
        properties[key] = value
    try:
        meters.validate_properties(properties, "properties")
    except DomainError as error:
        raise MalformedUsage(error.message) from error
    return event_type, properties
