"""Billing events for webhooks, written into the webhook outbox inside the caller's transaction.

`emit` stores the event (its body frozen: `data` is the resource as REST renders it at the
change) and one PENDING delivery per enabled endpoint of the tenant that wants the type, in the
transaction of the change that caused it: a rolled-back change leaves neither, and a committed
one cannot lose its deliveries. A tenant with no such endpoint costs one indexed read and
writes nothing. Events that happen once per something carry a dedup key: the unique index on
it, not a read-then-write check, makes a second one write nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

from google.protobuf import message

from server.domain import webhooks as rules
from server.persistence.bulk import insert_ignore_returning
from server.persistence.db import for_update
from server.persistence.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from server.persistence.prepared import Prepared
from server.resources import rest_json

_ENABLED = Prepared(
    WebhookEndpoint,
    [WebhookEndpoint.tenant_id],
    lambda tenant: WebhookEndpoint.select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
        (WebhookEndpoint.tenant_id == tenant) & WebhookEndpoint.disabled_at.is_null()
    ),
)


def listeners(tenant_id: str, event_type: rules.EventType) -> list[str]:
    """Ids of the tenant's enabled endpoints that want `event_type`."""
    return [row.id for row in _ENABLED.rows(tenant_id) if rules.wants(json.loads(row.event_types), event_type)]


def _still_registered(endpoint_ids: list[str]) -> list[str]:
    """The endpoints, locked against deletion until the caller commits (PostgreSQL: FOR KEY
    SHARE), so that an endpoint deleted meanwhile is skipped rather than failing the change it
    reports on a foreign key. SQLite serializes writers and needs no lock."""
    if not endpoint_ids:
        return []
    query = WebhookEndpoint.select(WebhookEndpoint.id).where(WebhookEndpoint.id.in_(endpoint_ids))
    return [row.id for row in for_update(query, for_update="FOR KEY SHARE")]


def body(event_id: str, event_type: rules.EventType, created_at: dt.datetime, resource: message.Message) -> str:
    """The JSON every endpoint receives, byte for byte on every attempt."""
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": created_at.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "data": rest_json(resource),
        },
        separators=(",", ":"),
    )


def emit(
    event_type: rules.EventType,
    tenant_id: str,
    resource: message.Message,
    *,
    now: dt.datetime,
    dedup_key: str | None = None,
    endpoint_ids: list[str] | None = None,
) -> str | None:
    """Queue the event for the tenant's endpoints (`endpoint_ids` if the caller already asked
    `listeners`); returns its id, or None if nobody listens or `dedup_key` was used before.
    Call inside the change's transaction."""
    targets = _still_registered(listeners(tenant_id, event_type) if endpoint_ids is None else endpoint_ids)
    if not targets:
        return None
    event_id = "msg_" + uuid.uuid4().hex
    inserted = insert_ignore_returning(
        WebhookEvent,
        [
            WebhookEvent.id,
            WebhookEvent.tenant_id,
            WebhookEvent.type,
            WebhookEvent.dedup_key,
            WebhookEvent.body,
            WebhookEvent.created_at,
        ],
        [(event_id, tenant_id, event_type, dedup_key, body(event_id, event_type, now, resource), now)],
        returning=WebhookEvent.id,
    )
    if not inserted:
        return None
    WebhookDelivery.insert_many(
        [
            {
                "id": "dlv_" + uuid.uuid4().hex,
                "endpoint": endpoint_id,
                "event": event_id,
                "status": rules.DeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for endpoint_id in targets
        ]
    ).execute()
    return event_id
