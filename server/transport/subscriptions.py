"""SubscriptionService: endpoints 3-7. Translates messages and calls server.services.subscriptions."""

from __future__ import annotations

from billing.v1 import subscription_pb2, subscription_pb2_grpc
from server.domain.errors import InvalidArgument
from server.domain.subscriptions import Effective, SubscriptionStatus
from server.resources import subscription_message
from server.services import subscriptions
from server.transport import page_tokens
from server.transport.context import current_principal
from server.transport.convert import now

Message = subscription_pb2.Subscription
Update = subscription_pb2.UpdateSubscriptionRequest


def _effective(value: int) -> Effective:
    """UNSPECIFIED is NOW; a number the enum does not know is a 400 naming the field."""
    if value == Update.EFFECTIVE_UNSPECIFIED:
        return Effective.NOW
    if value not in Update.Effective.values():
        raise InvalidArgument(f"effective {value} is not NOW or PERIOD_END", field="effective")
    return Effective(Update.Effective.Name(value))


def _limits(request) -> dict[str, int | None]:
    """The spend cap and low-balance alert the request sets (absent: None)."""
    names = ("spend_cap_cents", "low_balance_alert_cents")
    return {name: getattr(request, name) if request.HasField(name) else None for name in names}


class SubscriptionServicer(subscription_pb2_grpc.SubscriptionServiceServicer):
    def CreateSubscription(self, request, context):
        new = subscriptions.NewSubscription(
            tenant_id=request.tenant_id,
            plan_id=request.plan_id,
            billing_email=request.billing_email,
            plan_version=request.plan_version,
            billing_anchor=(
                ""
                if request.billing_anchor == Message.BILLING_ANCHOR_UNSPECIFIED
                else Message.BillingAnchor.Name(request.billing_anchor)
            ),
            timezone=request.timezone,
            **_limits(request),
        )
        return subscription_message(subscriptions.create_subscription(current_principal(), new, now=now()))

    def GetSubscription(self, request, context):
        return subscription_message(subscriptions.get_subscription(current_principal(), request.id))

    def ListTenantSubscriptions(self, request, context):
        status = (
            None
            if request.status == Message.STATUS_UNSPECIFIED
            else SubscriptionStatus(Message.Status.Name(request.status))
        )
        page, next_token = subscriptions.list_tenant_subscriptions(
            current_principal(),
            request.tenant_id,
            status=status,
            page_size=request.page_size,
            page_token=page_tokens.unseal(request.page_token, request.tenant_id, request.status),
        )
        return subscription_pb2.ListTenantSubscriptionsResponse(
            subscriptions=[subscription_message(subscription) for subscription in page],
            next_page_token=page_tokens.seal(next_token, request.tenant_id, request.status),
        )

    def UpdateSubscription(self, request, context):
        change = subscriptions.SubscriptionChange(
            plan_id=request.plan_id,
            billing_email=request.billing_email,
            plan_version=request.plan_version,
            effective=_effective(request.effective),
            cancel_at_period_end=(request.cancel_at_period_end if request.HasField("cancel_at_period_end") else None),
            **_limits(request),
        )
        return subscription_message(
            subscriptions.update_subscription(current_principal(), request.id, change, now=now())
        )

    def CancelSubscription(self, request, context):
        return subscription_message(
            subscriptions.cancel_subscription(
                current_principal(), request.id, now=now(), at_period_end=request.at_period_end
            )
        )
