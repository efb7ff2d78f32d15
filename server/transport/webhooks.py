"""WebhookService: translates messages and calls server.services.webhooks. The secret is put
into the answers of create and rotate only."""

from __future__ import annotations

from billing.v1 import webhook_pb2, webhook_pb2_grpc

from server.domain import webhooks as rules
from server.persistence.models import WebhookDelivery, WebhookEndpoint
from server.services import webhooks
from server.transport.context import current_principal
from server.transport.convert import now, timestamp

Delivery = webhook_pb2.WebhookDelivery


def endpoint_message(row: WebhookEndpoint, *, with_secret: bool = False) -> webhook_pb2.WebhookEndpoint:
    grace = rules.live_secrets(row.secret, row.previous_secret, row.previous_secret_expires_at, now())
    return webhook_pb2.WebhookEndpoint(
        id=row.id, tenant_id=row.tenant_id, url=row.url, event_types=webhooks.event_types_of(row),
        secret=row.secret if with_secret else "", created_at=timestamp(row.created_at),
        previous_secret_expires_at=timestamp(row.previous_secret_expires_at) if len(grace) > 1 else None,
        disabled_at=timestamp(row.disabled_at))


def delivery_message(row: WebhookDelivery) -> Delivery:
    return Delivery(
        id=row.id, event_id=row.event_id, event_type=row.event.type, status=Delivery.Status.Value(row.status),
        attempts=row.attempts, last_status_code=row.last_status_code or 0, last_error=row.last_error or "",
        created_at=timestamp(row.created_at),
        next_attempt_at=timestamp(row.next_attempt_at) if row.status == rules.DeliveryStatus.PENDING else None,
        delivered_at=timestamp(row.delivered_at))


class WebhookServicer(webhook_pb2_grpc.WebhookServiceServicer):
    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def CreateWebhookEndpoint(self, request, context):
        new = webhooks.NewEndpoint(tenant_id=request.tenant_id, url=request.url, event_types=tuple(request.event_types))
        row = webhooks.create_endpoint(current_principal(), new, now=now(), allow_private=self.allow_private)
        return endpoint_message(row, with_secret=True)

    def ListTenantWebhookEndpoints(self, request, context):
        rows = webhooks.list_endpoints(current_principal(), request.tenant_id)
        return webhook_pb2.ListTenantWebhookEndpointsResponse(endpoints=[endpoint_message(r) for r in rows])

    def GetWebhookEndpoint(self, request, context):
        return endpoint_message(webhooks.get_endpoint(current_principal(), request.id))

    def DeleteWebhookEndpoint(self, request, context):
        return endpoint_message(webhooks.delete_endpoint(current_principal(), request.id))

    def ListWebhookDeliveries(self, request, context):
        rows = webhooks.list_deliveries(current_principal(), request.id)
        return webhook_pb2.ListWebhookDeliveriesResponse(deliveries=[delivery_message(r) for r in rows])

    def ResendWebhookDelivery(self, request, context):
        return delivery_message(webhooks.resend(current_principal(), request.id, request.delivery_id, now=now()))

    def RotateWebhookSecret(self, request, context):
        return endpoint_message(webhooks.rotate_secret(current_principal(), request.id, now=now()), with_secret=True)
