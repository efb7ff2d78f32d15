"""The resources as the API renders them: proto messages built from read models
(persistence/read_models.py), and their REST JSON.

Servicers answer with these messages; webhook events carry `rest_json` of the same messages, so
an event's `data` is exactly what a GET through Envoy returns (proto3 JSON, snake_case names,
zeros printed, 64-bit integers as strings: Envoy's print options).
"""

from __future__ import annotations

import datetime as dt

from google.protobuf import json_format, message, timestamp_pb2

from billing.v1 import credit_pb2, invoice_pb2, subscription_pb2, webhook_pb2
from server.domain.periods import Period
from server.persistence.read_models import (
    CreditGrantView,
    CreditNoteView,
    InvoiceView,
    LedgerEntryView,
    SubscriptionView,
)


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp, or None so that an unset datetime leaves the message field unset."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def rest_json(resource: message.Message) -> dict:
    """The message as Envoy's transcoder prints it (preserve_proto_field_names,
    always_print_primitive_fields)."""
    return json_format.MessageToDict(
        resource, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def subscription_message(row: SubscriptionView) -> subscription_pb2.Subscription:
    return subscription_pb2.Subscription(
        id=row.id,
        tenant_id=row.tenant_id,
        plan_id=row.plan_id,
        plan_version=row.plan_version,
        billing_email=row.billing_email,
        status=row.status,
        current_period_start=timestamp(row.current_period_start),
        current_period_end=timestamp(row.current_period_end),
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        canceled_at=timestamp(row.canceled_at),
        trial_end=timestamp(row.trial_end),
        cancel_at=timestamp(row.cancel_at),
        cancel_at_period_end=row.cancel_at is not None,
        pending_plan_id=row.pending_plan_id or "",
        pending_plan_version=row.pending_plan_version or 0,
        billing_anchor=row.billing_anchor,
        timezone=row.timezone,
        spend_cap_cents=row.spend_cap_cents,
        low_balance_alert_cents=row.low_balance_alert_cents,
    )


def invoice_message(invoice: InvoiceView) -> invoice_pb2.Invoice:
    return invoice_pb2.Invoice(
        id=invoice.id,
        number=invoice.number,
        subscription_id=invoice.subscription_id,
        tenant_id=invoice.tenant_id,
        status=invoice.status,
        period_start=timestamp(invoice.period_start),
        period_end=timestamp(invoice.period_end),
        line_items=[
            invoice_pb2.LineItem(
                description=i.description,
                quantity=i.quantity,
                unit=i.unit,
                unit_amount=i.unit_amount,
                unit_amount_cents=i.unit_amount_cents,
                amount_cents=i.amount_cents,
            )
            for i in invoice.line_items
        ],
        subtotal_cents=invoice.subtotal_cents,
        total_cents=invoice.total_cents,
        currency=invoice.currency,
        issued_at=timestamp(invoice.issued_at),
        due_at=timestamp(invoice.due_at),
        paid_at=timestamp(invoice.paid_at),
        deleted_at=timestamp(invoice.deleted_at),
        billing_email=invoice.billing_email,
        issuer=invoice_pb2.Issuer(
            name=invoice.issuer_name, address=invoice.issuer_address, tax_id=invoice.issuer_tax_id
        ),
        amount_due_cents=invoice.amount_due_cents,
    )


def credit_grant_message(row: CreditGrantView) -> credit_pb2.CreditGrant:
    return credit_pb2.CreditGrant(
        id=row.id,
        tenant_id=row.tenant_id,
        amount_cents=row.amount_cents,
        remaining_cents=row.remaining_cents,
        currency=row.currency,
        priority=row.priority,
        expires_at=timestamp(row.expires_at),
        description=row.description,
        created_at=timestamp(row.created_at),
        voided_at=timestamp(row.voided_at),
    )


def ledger_entry_message(row: LedgerEntryView) -> credit_pb2.CreditLedgerEntry:
    return credit_pb2.CreditLedgerEntry(
        at=timestamp(row.at),
        kind=row.kind,
        amount_cents=row.amount_cents,
        grant_id=row.grant_id,
        invoice_id=row.invoice_id or "",
    )


def credit_note_message(row: CreditNoteView) -> credit_pb2.CreditNote:
    return credit_pb2.CreditNote(
        id=row.id,
        number=row.number,
        invoice_id=row.invoice_id,
        tenant_id=row.tenant_id,
        amount_cents=row.amount_cents,
        currency=row.currency,
        reason=row.reason,
        created_at=timestamp(row.created_at),
    )


def spend_alert_message(
    *,
    subscription_id: str,
    tenant_id: str,
    currency: str,
    balance_cents: int,
    accrued_cents: int,
    spend_cap_cents: int | None,
    low_balance_alert_cents: int | None,
) -> credit_pb2.SpendAlert:
    return credit_pb2.SpendAlert(
        subscription_id=subscription_id,
        tenant_id=tenant_id,
        currency=currency,
        credit_balance_cents=balance_cents,
        accrued_cents=accrued_cents,
        spend_cap_cents=spend_cap_cents,
        low_balance_alert_cents=low_balance_alert_cents,
    )


def threshold_message(
    *, subscription_id: str, tenant_id: str, plan_id: str, percent: int, requests: int, included: int, period: Period
) -> webhook_pb2.UsageThresholdReached:
    return webhook_pb2.UsageThresholdReached(
        subscription_id=subscription_id,
        tenant_id=tenant_id,
        plan_id=plan_id,
        threshold_percent=percent,
        requests=requests,
        included_requests=included,
        period_start=timestamp(period.start),
        period_end=timestamp(period.end),
    )


def quota_message(
    *, subscription_id: str, tenant_id: str, plan_id: str, included: int, period: Period
) -> webhook_pb2.QuotaExhausted:
    return webhook_pb2.QuotaExhausted(
        subscription_id=subscription_id,
        tenant_id=tenant_id,
        plan_id=plan_id,
        included_requests=included,
        period_start=timestamp(period.start),
        period_end=timestamp(period.end),
    )
