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
