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

from server.domain.usage import MAX_ENDPOINT, RawEvent

# All digits, a UUID, or 16+ hex characters (API.md, Gateway).
_ID_SEGMENT = re.compile(
    r"\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{16,}"
)

# Envoy access-log response flags that mean the request never reached the upstream.
NOT_FORWARDED_FLAGS = frozenset(
    {
        "no_healthy_upstream",
        "upstream_connection_failure",
        "upstream_overflow",
        "no_route_found",
        "no_cluster_found",
        "unauthorized_details",
        "rate_limited",
        "dns_resolution_failure",
        "overload_manager",
    }
)


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


def forwarded(reached_upstream_host: bool, flags: set[str]) -> bool:
    """Whether a logged request was forwarded to the upstream (whatever the upstream answered)."""
    return reached_upstream_host and not (flags & NOT_FORWARDED_FLAGS)


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


def usage_events(requests: list[LoggedRequest]) -> dict[str, list[RawEvent]]:
    """The usage events of admitted, forwarded requests, per subscription, one per request id."""
    events: dict[str, list[RawEvent]] = collections.defaultdict(list)
    for request in requests:
        if request.subscription_id and request.forwarded and request.request_id:
            events[request.subscription_id].append(
                RawEvent(
                    event_id=request.request_id,
                    endpoint=endpoint(request.method, request.path),
                    count=1,
                    timestamp=request.started_at,
                )
            )
    return dict(events)
