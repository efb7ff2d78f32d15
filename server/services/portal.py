"""The customer portal: links signed for one tenant, and what that tenant's page shows.

The page reads through the same services as the API, acting as the tenant (a tenant Principal
built from the verified token), so it shows the API's numbers and the access rules that keep
tenants apart apply unchanged: another tenant's invoice is not found.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets

from server.domain import charts, portal_tokens
from server.domain.access import KeyScope, Principal, require_tenant_path
from server.domain.errors import NotFound
from server.domain.invoicing import InvoiceLine
from server.domain.periods import DAY
from server.domain.subscriptions import SubscriptionStatus, validate_tenant_id
from server.persistence import plan_versions
from server.persistence.models import Invoice, ServerSecret, Subscription
from server.persistence.read_models import (
    InvoiceView,
    PlanView,
    SubscriptionView,
    invoice_views,
    plan_view,
    subscription_view,
)
from server.services import credits as credit_service
from server.services import invoices, meters, usage, webhooks

SECRET_NAME = "portal_signing_key"
PAGE_PATH = "/billing/portal/"
RECENT_INVOICES = 24


def signing_secret(configured: str | None, *, now: dt.datetime) -> bytes:
    """BILLING_PORTAL_SECRET, else the key stored in the database: the first replica to ask
    inserts a random one and every replica reads the row that won, so all of them agree."""
    if configured:
        return configured.encode()
    ServerSecret.insert(
        name=SECRET_NAME, value=secrets.token_urlsafe(48), created_at=now
    ).on_conflict_ignore().execute()
    return ServerSecret.get_by_id(SECRET_NAME).value.encode()


def _subscription(tenant_id: str) -> Subscription:
    """The tenant's active subscription, else its latest one; 404 if it never subscribed."""
    found = (
        Subscription.select()
        .where(Subscription.tenant_id == tenant_id)
        .order_by((Subscription.status == SubscriptionStatus.ACTIVE).desc(), Subscription.created_at.desc())
        .first()
    )
    if found is None:
        raise NotFound(f"tenant {tenant_id!r} has no subscription", reason="SUBSCRIPTION_NOT_FOUND")
    return found


def create_session(
    principal: Principal, tenant_id: str, *, secret: bytes, base_url: str, now: dt.datetime
) -> tuple[str, dt.datetime]:
    """A portal URL for the tenant and when it expires; a tenant key may only ask for itself."""
    tenant_id = validate_tenant_id(tenant_id)
    require_tenant_path(principal, tenant_id)
    _subscription(tenant_id)
    token, expires_at = portal_tokens.sign(secret, tenant_id, now)
    return f"{base_url}{PAGE_PATH}{token}", expires_at


def as_tenant(tenant_id: str) -> Principal:
    """The reader a verified token stands for: exactly one tenant, never admin."""
    return Principal(key_id=0, scope=KeyScope.TENANT, tenant_id=tenant_id)


@dataclasses.dataclass(frozen=True)
class Overview:
    """Everything the portal page shows, in the units the API uses (cents, requests)."""

    tenant_id: str
    subscription: SubscriptionView
    plan: PlanView
    period_start: dt.datetime
    period_end: dt.datetime
    days_left: int
    summary: usage.UsageSummary
    estimated_total_cents: int
    estimated_lines: list[InvoiceLine]  # what the period's invoice would charge now, line by line
    chart: charts.BarChart
    gauge: charts.Gauge
    top_endpoints: list[tuple[str, int]]
    invoices: list[InvoiceView]
    webhooks: list[dict]  # endpoints with their recent deliveries, never their secrets
    meters: list[MeterPanel]
    credits: credit_service.TenantCredits | None = None  # balances, grants, the latest ledger entries


@dataclasses.dataclass(frozen=True)
class MeterPanel:
    """A meter's figures this period and its daily chart (a day below zero draws no bar)."""

    figures: meters.MeterFigures
    chart: charts.BarChart


def _meter_panels(reader: Principal, subscription_id: str) -> list[MeterPanel]:
    return [
        MeterPanel(found, charts.daily_bars([(day, max(0, nanos)) for day, nanos in found.days], 0))
        for found in meters.period_figures(reader, subscription_id)
    ]


def overview(tenant_id: str, *, now: dt.datetime) -> Overview:
    reader = as_tenant(tenant_id)
    subscription = _subscription(tenant_id)
    summary = usage.usage(reader, subscription.id, now=now)
    period = invoices.period_of(subscription, subscription.current_period_start)
    estimated_lines = invoices.draft_line_items(subscription, period)
    days = usage.daily(reader, subscription.id)
    _, _, analytics = usage.analytics(reader, subscription.id)
    recent = invoice_views(
        Invoice.select()
        .where((Invoice.tenant_id == tenant_id) & Invoice.deleted_at.is_null())
        .order_by(Invoice.period_start.desc(), Invoice.created_at.desc())
        .limit(RECENT_INVOICES)
    )
    return Overview(
        tenant_id=tenant_id,
        subscription=subscription_view(subscription),
        plan=plan_view(subscription.plan, plan_versions.pinned(subscription)),
        period_start=period.start,
        period_end=period.end,
        days_left=max(0, -(-(period.end - now) // DAY)),
        summary=summary,
        estimated_total_cents=sum(item.amount_cents for item in estimated_lines),
        estimated_lines=estimated_lines,
        chart=charts.daily_bars(days, round(summary.included_requests / period.days)),
        gauge=charts.gauge(summary.total_requests, summary.included_requests),
        top_endpoints=analytics.top_endpoints,
        invoices=recent,
        webhooks=webhooks.tenant_overview(tenant_id),
        meters=_meter_panels(reader, subscription.id),
        credits=credit_service.tenant_credits(reader, tenant_id, now=now),
    )


def invoice_pdf(tenant_id: str, invoice_id: str) -> bytes:
    """One of the tenant's invoices as PDF; another tenant's is not found."""
    return invoices.invoice_pdf(invoice_id, principal=as_tenant(tenant_id))
