"""Taking deliveries from the webhook outbox and recording what each attempt got.

`claim` takes due PENDING deliveries in one short transaction, at most one per endpoint and
none of an endpoint this process is already calling, and moves their next attempt a lease
ahead (PostgreSQL: FOR UPDATE SKIP LOCKED, so several dispatchers take different rows). The
HTTP call happens with no transaction open. `settle` records the answer in a second
transaction: SUCCEEDED, or the next attempt on the Svix schedule, or FAILED after the last.
A dispatcher that dies between the two leaves the row to be sent again when the lease ends,
with the same webhook-id: nothing is lost, and the receiver's idempotency key catches the copy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from server.domain import webhooks as rules
from server.domain.webhooks import DeliveryStatus
from server.persistence.db import database, for_update
from server.persistence.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

# Longer than an attempt may take (15 s) plus recording it: a live dispatcher never loses its claim.
LEASE = dt.timedelta(seconds=60)
DISABLED_ERROR = "endpoint disabled after 5 days of failed attempts"


@dataclasses.dataclass(frozen=True)
class Attempt:
    delivery_id: str
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]
    event_id: str
    body: str
    attempts: int  # made before this one


def claim(now: dt.datetime, *, busy: set[str], limit: int) -> list[Attempt]:
    """Up to `limit` due deliveries, one per endpoint, none of the `busy` endpoints, oldest due first."""
    if limit <= 0:
        return []
    with database.atomic():
        query = (
            WebhookDelivery.select(WebhookDelivery, WebhookEndpoint, WebhookEvent)
            .join(WebhookEndpoint)
            .switch(WebhookDelivery)
            .join(WebhookEvent)
            .where(
                (WebhookDelivery.status == DeliveryStatus.PENDING)
                & (WebhookDelivery.next_attempt_at <= now)
                & WebhookEndpoint.disabled_at.is_null()
                & WebhookDelivery.endpoint.not_in(list(busy))
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit * 4)
        )
        chosen: dict[str, WebhookDelivery] = {}
        for row in for_update(query, of=WebhookDelivery, skip_locked=True):
            if row.endpoint_id not in chosen and len(chosen) < limit:
                chosen[row.endpoint_id] = row
        if chosen:
            (
                WebhookDelivery.update(next_attempt_at=now + LEASE)
                .where(WebhookDelivery.id.in_([row.id for row in chosen.values()]))
                .execute()
            )
    return [
        Attempt(
            delivery_id=row.id,
            endpoint_id=row.endpoint_id,
            url=row.endpoint.url,
            secrets=tuple(
                rules.live_secrets(
                    row.endpoint.secret, row.endpoint.previous_secret, row.endpoint.previous_secret_expires_at, now
                )
            ),
            event_id=row.event_id,
            body=row.event.body,
            attempts=row.attempts,
        )
        for row in chosen.values()
    ]


def settle(attempt: Attempt, outcome: rules.Outcome, *, now: dt.datetime, jitter: float) -> str:
    """Record one attempt's outcome; returns the delivery's status after it. An endpoint whose
    attempts have failed for 5 days is disabled and its pending deliveries FAILED."""
    attempts = attempt.attempts + 1
    with database.atomic():
        endpoint = for_update(WebhookEndpoint.select().where(WebhookEndpoint.id == attempt.endpoint_id)).first()
        if outcome.succeeded:
            status, next_at, delivered_at = DeliveryStatus.SUCCEEDED, None, now
        else:
            next_at = rules.next_attempt(attempts, now, jitter)
            status, delivered_at = (DeliveryStatus.PENDING if next_at else DeliveryStatus.FAILED), None
        (
            WebhookDelivery.update(
                status=status,
                attempts=attempts,
                next_attempt_at=next_at,
                delivered_at=delivered_at,
                last_status_code=outcome.status_code,
                last_error=outcome.error,
            )
            .where((WebhookDelivery.id == attempt.delivery_id) & (WebhookDelivery.status == DeliveryStatus.PENDING))
            .execute()
        )
        if endpoint is not None and _track_health(endpoint, outcome.succeeded, now):
            status = DeliveryStatus.FAILED
    return status


def _track_health(endpoint: WebhookEndpoint, succeeded: bool, now: dt.datetime) -> bool:
    """Start or end the endpoint's run of failures; True if this failure disabled it."""
    if succeeded:
        if endpoint.failing_since is not None:
            WebhookEndpoint.update(failing_since=None).where(WebhookEndpoint.id == endpoint.id).execute()
        return False
    if endpoint.failing_since is None:
        WebhookEndpoint.update(failing_since=now).where(WebhookEndpoint.id == endpoint.id).execute()
        return False
    if now - endpoint.failing_since < rules.DISABLE_AFTER:
        return False
    WebhookEndpoint.update(disabled_at=now).where(WebhookEndpoint.id == endpoint.id).execute()
    (
        WebhookDelivery.update(status=DeliveryStatus.FAILED, next_attempt_at=None, last_error=DISABLED_ERROR)
        .where((WebhookDelivery.endpoint == endpoint.id) & (WebhookDelivery.status == DeliveryStatus.PENDING))
        .execute()
    )
    return True
