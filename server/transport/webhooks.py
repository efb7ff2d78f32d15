"""WebhookService: translates messages and calls server.services.webhooks. The secret is put
into the answers of create and rotate only."""

from __future__ import annotations

from billing.v1 import webhook_pb2, webhook_pb2_grpc
from server.domain import webhooks as rules
from server.persistence.read_models import DeliveryView, EndpointView
from server.resources import timestamp
from server.services import webhooks
from server.transport.context import current_principal
from server.transport.convert import now

Delivery = webhook_pb2.WebhookDelivery


def endpoint_message(endpoint: EndpointView, *, with_secret: bool = False) -> webhook_pb2.WebhookEndpoint:
    grace = rules.live_secrets(endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at, now())
    return webhook_pb2.WebhookEndpoint(
        id=endpoint.id,
        tenant_id=endpoint.tenant_id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        secret=endpoint.secret if with_secret else "",
        created_at=timestamp(endpoint.created_at),
        previous_secret_expires_at=timestamp(endpoint.previous_secret_expires_at) if len(grace) > 1 else None,
        disabled_at=timestamp(endpoint.disabled_at),
    )


def delivery_message(delivery: DeliveryView) -> Delivery:
    return Delivery(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code or 0,
        last_error=delivery.last_error or "",
        created_at=timestamp(delivery.created_at),
        next_attempt_at=timestamp(delivery.next_attempt_at)
        if delivery.status == rules.DeliveryStatus.PENDING
        else None,
        delivered_at=timestamp(delivery.delivered_at),
    )


class WebhookServicer(webhook_pb2_grpc.WebhookServiceServicer):
    def __init__(self, *, allowed: frozenset[rules.Target]) -> None:
        self.allowed = allowed

    def CreateWebhookEndpoint(self, request, context):
        new = webhooks.NewEndpoint(tenant_id=request.tenant_id, url=request.url, event_types=tuple(request.event_types))
        endpoint = webhooks.create_endpoint(current_principal(), new, now=now(), allowed=self.allowed)
        return endpoint_message(endpoint, with_secret=True)

    def ListTenantWebhookEndpoints(self, request, context):
        endpoints = webhooks.list_endpoints(current_principal(), request.tenant_id)
        return webhook_pb2.ListTenantWebhookEndpointsResponse(endpoints=[endpoint_message(e) for e in endpoints])

    def GetWebhookEndpoint(self, request, context):
        return endpoint_message(webhooks.get_endpoint(current_principal(), request.id))

    def DeleteWebhookEndpoint(self, request, context):
        return endpoint_message(webhooks.delete_endpoint(current_principal(), request.id))

    def ListWebhookDeliveries(self, request, context):
        deliveries = webhooks.list_deliveries(current_principal(), request.id)
        return webhook_pb2.ListWebhookDeliveriesResponse(deliveries=[delivery_message(d) for d in deliveries])

    def ResendWebhookDelivery(self, request, context):
        return delivery_message(webhooks.resend(current_principal(), request.id, request.delivery_id, now=now()))

    def RotateWebhookSecret(self, request, context):
        return endpoint_message(webhooks.rotate_secret(current_principal(), request.id, now=now()), with_secret=True)
