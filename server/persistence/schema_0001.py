"""The schema as migration 0001 created it, frozen: never edit this file.

Migrations build tables from frozen descriptions like this one, never from the live models,
so a change to a model cannot change what an old migration does on a fresh database.
"""

from __future__ import annotations

import peewee as pw

from server.persistence.db import database

# Only the DDL matters here: a DATETIME / TIMESTAMP column, as models.UTCDateTimeField makes.
UTCDateTimeField = pw.DateTimeField


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Plan(BaseModel):
    id = pw.CharField(primary_key=True, max_length=64)
    name = pw.CharField(max_length=128)
    tier = pw.CharField(max_length=16)
    position = pw.IntegerField()
    monthly_fee_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    rate_limit_per_minute = pw.IntegerField()
    included_requests = pw.BigIntegerField()
    overage_per_1k_cents = pw.BigIntegerField()


class ApiKey(BaseModel):
    key_hash = pw.CharField(unique=True, max_length=64)
    prefix = pw.CharField(max_length=16)
    scope = pw.CharField(max_length=8)
    tenant_id = pw.CharField(null=True, max_length=128)
    created_at = UTCDateTimeField()
    revoked_at = UTCDateTimeField(null=True)


class Subscription(BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    tenant_id = pw.CharField(max_length=128)
    plan = pw.ForeignKeyField(Plan, backref="subscriptions")
    billing_email = pw.CharField(max_length=320)
    status = pw.CharField(max_length=16)
    # The anchor of the monthly anniversary periods: the creation instant.
    anchor_at = UTCDateTimeField()
    current_period_start = UTCDateTimeField()
    current_period_end = UTCDateTimeField()
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()
    canceled_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("tenant_id", "created_at"), False),)


# At most one ACTIVE subscription per tenant: a partial unique index (SQLite and PostgreSQL).
Subscription.add_index(
    Subscription.index(
        Subscription.tenant_id,
        unique=True,
        where=(Subscription.status == "ACTIVE"),
        name="subscription_one_active_per_tenant",
    )
)


class PlanChange(BaseModel):
    """Dated plan history of a subscription (the first row is the plan it started on)."""

    subscription = pw.ForeignKeyField(Subscription, backref="plan_changes", on_delete="CASCADE", index=False)
    plan = pw.ForeignKeyField(Plan)
    effective_at = UTCDateTimeField()

    class Meta:
        indexes = ((("subscription", "effective_at"), False),)


class UsageEvent(BaseModel):
    """Raw events, kept for audit and deduplication within retention."""

    subscription = pw.ForeignKeyField(Subscription, on_delete="CASCADE", index=False)
    event_id = pw.CharField(max_length=128)
    endpoint = pw.CharField(max_length=512)
    count = pw.BigIntegerField()
    occurred_at = UTCDateTimeField()
    received_at = UTCDateTimeField(index=True)

    class Meta:
        indexes = ((("subscription", "event_id"), True),)


class UsageHourly(BaseModel):
    """Requests per (subscription, clock hour, endpoint): what daily and analytics read."""

    subscription = pw.ForeignKeyField(Subscription, on_delete="CASCADE", index=False)
    hour = UTCDateTimeField()
    endpoint = pw.CharField(max_length=512)
    requests = pw.BigIntegerField()

    class Meta:
        indexes = ((("subscription", "hour", "endpoint"), True),)


class UsagePeriod(BaseModel):
    """Requests per subscription period: what usage and invoicing read."""

    subscription = pw.ForeignKeyField(Subscription, on_delete="CASCADE", index=False)
    period_start = UTCDateTimeField()
    requests = pw.BigIntegerField()

    class Meta:
        indexes = ((("subscription", "period_start"), True),)


class Counter(BaseModel):
    """Named monotonic counters (invoice numbers): incremented inside the caller's transaction."""

    name = pw.CharField(primary_key=True, max_length=64)
    value = pw.BigIntegerField()


class Invoice(BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    number = pw.CharField(unique=True, max_length=32)
    subscription = pw.ForeignKeyField(Subscription, backref="invoices", index=False)
    tenant_id = pw.CharField(max_length=128)
    status = pw.CharField(max_length=16)
    period_start = UTCDateTimeField()
    period_end = UTCDateTimeField()
    subtotal_cents = pw.BigIntegerField()
    total_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    issued_at = UTCDateTimeField()
    due_at = UTCDateTimeField()
    paid_at = UTCDateTimeField(null=True)
    deleted_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField()

    class Meta:
        indexes = (
            (("subscription", "period_start"), True),
            (("subscription", "created_at"), False),
            (("status", "due_at"), False),
        )


class InvoiceLineItem(BaseModel):
    invoice = pw.ForeignKeyField(Invoice, backref="line_items", on_delete="CASCADE")
    position = pw.IntegerField()
    description = pw.CharField(max_length=256)
    quantity = pw.BigIntegerField()
    unit_amount_cents = pw.BigIntegerField()
    amount_cents = pw.BigIntegerField()


class OutboxMessage(BaseModel):
    """Transactional outbox: an e-mail to send, written with the state change that causes it."""

    dedup_key = pw.CharField(unique=True, max_length=191)
    template = pw.CharField(max_length=64)
    recipient = pw.CharField(max_length=320)
    payload = pw.TextField()
    created_at = UTCDateTimeField()
    next_attempt_at = UTCDateTimeField(index=True)
    attempts = pw.IntegerField(default=0)
    last_error = pw.TextField(null=True)
    sent_at = UTCDateTimeField(null=True, index=True)


TABLES = [
    Plan,
    ApiKey,
    Subscription,
    PlanChange,
    UsageEvent,
    UsageHourly,
    UsagePeriod,
    Counter,
    Invoice,
    InvoiceLineItem,
    OutboxMessage,
]
