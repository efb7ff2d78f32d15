"""Webhook endpoints (WebhookService): register, list, read, delete, rotate the secret, list and
resend deliveries. Each change is one transaction. A tenant key acts only for its own tenant:
another tenant's endpoint by id is 404, another tenant's path 403 (domain/access.py).

The signing secret is returned by create and rotate only; it is stored as is, because the
server signs with it. A rotation keeps the previous secret signing beside the new one for
24 hours, so receivers can switch without dropping an event.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
import uuid

import peewee as pw

from server.domain import subscriptions as subscription_rules
from server.domain import webhooks as rules
from server.domain.access import SYSTEM, Principal, require_tenant_path, require_visible
from server.domain.errors import NotFound
from server.persistence.db import database, for_update
from server.persistence.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from server.persistence.read_models import DeliveryView, EndpointView, delivery_view, endpoint_view

RECENT_DELIVERIES = 100
NEWEST_FIRST = (WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())


@dataclasses.dataclass(frozen=True)
class NewEndpoint:
    tenant_id: str
    url: str
    event_types: tuple[str, ...] = ()


def _endpoint(principal: Principal, endpoint_id: str, *, lock: bool = False) -> WebhookEndpoint:
    query = WebhookEndpoint.select().where(WebhookEndpoint.id == endpoint_id)
    found = (for_update(query) if lock else query).first() if endpoint_id else None
    if found is None:
        raise NotFound(f"webhook endpoint {endpoint_id!r} not found", reason="WEBHOOK_ENDPOINT_NOT_FOUND")
    require_visible(principal, found.tenant_id, "webhook endpoint", endpoint_id)
    return found


def create_endpoint(
    principal: Principal, request: NewEndpoint, *, now: dt.datetime, allowed: frozenset[rules.Target]
) -> EndpointView:
    """Register an endpoint; the returned endpoint carries the new secret (shown to the caller once)."""
    tenant_id = subscription_rules.validate_tenant_id(request.tenant_id)
    require_tenant_path(principal, tenant_id)
    url = rules.validate_url(request.url, allowed=allowed)
    event_types = rules.validate_event_types(request.event_types)
    with database.atomic():
        return endpoint_view(
            WebhookEndpoint.create(
                id="we_" + uuid.uuid4().hex,
                tenant_id=tenant_id,
                url=url,
                event_types=json.dumps(event_types),
                secret=rules.new_secret(secrets.token_bytes(rules.SECRET_BYTES)),
                created_at=now,
            )
        )


def list_endpoints(principal: Principal, tenant_id: str) -> list[EndpointView]:
    """The tenant's endpoints, newest first."""
    tenant_id = subscription_rules.validate_tenant_id(tenant_id)
    require_tenant_path(principal, tenant_id)
    return [
        endpoint_view(row)
        for row in WebhookEndpoint.select()
        .where(WebhookEndpoint.tenant_id == tenant_id)
        .order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id)
    ]


def get_endpoint(principal: Principal, endpoint_id: str) -> EndpointView:
    return endpoint_view(_endpoint(principal, endpoint_id))


def delete_endpoint(principal: Principal, endpoint_id: str) -> EndpointView:
    """Remove the endpoint with its deliveries (pending ones are dropped); returns what it was."""
    with database.atomic():
        endpoint = _endpoint(principal, endpoint_id, lock=True)
        WebhookDelivery.delete().where(WebhookDelivery.endpoint == endpoint.id).execute()
        endpoint.delete_instance()
        return endpoint_view(endpoint)


def rotate_secret(principal: Principal, endpoint_id: str, *, now: dt.datetime) -> EndpointView:
    """A new secret; the one it replaces keeps signing for 24 hours."""
    with database.atomic():
        endpoint = _endpoint(principal, endpoint_id, lock=True)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + rules.PREVIOUS_SECRET_GRACE
        endpoint.secret = rules.new_secret(secrets.token_bytes(rules.SECRET_BYTES))
        endpoint.save()
        return endpoint_view(endpoint)


def _with_events() -> pw.ModelSelect[WebhookDelivery]:
    """Deliveries with their events (one join: the event type costs no query per delivery)."""
    return WebhookDelivery.select(WebhookDelivery, WebhookEvent).join(WebhookEvent)


def list_deliveries(principal: Principal, endpoint_id: str, limit: int = RECENT_DELIVERIES) -> list[DeliveryView]:
    """The endpoint's most recent deliveries, newest first."""
    endpoint = _endpoint(principal, endpoint_id)
    return [
        delivery_view(row)
        for row in _with_events().where(WebhookDelivery.endpoint == endpoint.id).order_by(*NEWEST_FIRST).limit(limit)
    ]


def _recent_deliveries(endpoint_ids: list[str], per_endpoint: int) -> dict[str, list[DeliveryView]]:
    """Each endpoint's `per_endpoint` most recent deliveries, newest first, in one query."""
    rank = pw.fn.ROW_NUMBER().over(partition_by=[WebhookDelivery.endpoint], order_by=list(NEWEST_FIRST))
    ranked = (
        WebhookDelivery.select(WebhookDelivery.id, rank.alias("rank"))
        .where(WebhookDelivery.endpoint.in_(endpoint_ids))
        .alias("ranked")
    )
    found: dict[str, list[DeliveryView]] = {endpoint_id: [] for endpoint_id in endpoint_ids}
    if endpoint_ids:
        for row in (
            _with_events()
            .join(ranked, on=(WebhookDelivery.id == ranked.c.id), src=WebhookDelivery)
            .where(ranked.c.rank <= per_endpoint)
            .order_by(*NEWEST_FIRST)
        ):
            found[row.endpoint_id].append(delivery_view(row))
    return found


def resend(principal: Principal, endpoint_id: str, delivery_id: str, *, now: dt.datetime) -> DeliveryView:
    """Queue the delivery again, due now, with a fresh set of attempts (the same webhook-id); a
    disabled endpoint is enabled again."""
    with database.atomic():
        endpoint = _endpoint(principal, endpoint_id, lock=True)
        delivery = (
            _with_events()
            .where((WebhookDelivery.id == delivery_id) & (WebhookDelivery.endpoint == endpoint.id))
            .first()
        )
        if delivery is None:
            raise NotFound(
                f"delivery {delivery_id!r} of webhook endpoint {endpoint_id!r} not found",
                reason="WEBHOOK_DELIVERY_NOT_FOUND",
            )
        (
            WebhookDelivery.update(status=rules.DeliveryStatus.PENDING, attempts=0, next_attempt_at=now)
            .where(WebhookDelivery.id == delivery.id)
            .execute()
        )
        if endpoint.disabled_at is not None:  # asking for a resend is asking to be called again
            (
                WebhookEndpoint.update(disabled_at=None, failing_since=None)
                .where(WebhookEndpoint.id == endpoint.id)
                .execute()
            )
        delivery.status, delivery.attempts, delivery.next_attempt_at = rules.DeliveryStatus.PENDING, 0, now
        return delivery_view(delivery)


def tenant_overview(tenant_id: str, *, deliveries_per_endpoint: int = 10) -> list[dict]:
    """The tenant's endpoints and their most recent deliveries as plain data (no secrets), for
    pages that show them (the customer portal)."""
    endpoints = list_endpoints(SYSTEM, tenant_id)
    deliveries = _recent_deliveries([e.id for e in endpoints], deliveries_per_endpoint)
    return [
        {
            "id": e.id,
            "url": e.url,
            "event_types": list(e.event_types),
            "created_at": e.created_at,
            "disabled_at": e.disabled_at,
            "deliveries": [dataclasses.asdict(d) for d in deliveries[e.id]],
        }
        for e in endpoints
    ]
