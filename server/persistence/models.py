"""Tables. Uniqueness that correctness depends on lives here, in the database, not in a
read-then-write check: one ACTIVE subscription per tenant, one live (not VOID, not deleted)
invoice per subscription period, one usage event per (subscription, event_id), one outbox row
per dedup key, one webhook event per dedup key.

The schema of each table is built by the migrations (persistence/migrations.py), not from these
classes: a change here needs a migration beside it.

Datetimes are stored as naive UTC and read back as aware UTC. Foreign keys to a subscription
carry no index of their own where a composite index already leads with the subscription: on
usage_event that index was one more B-tree to update per event, read by no query.

For the type checker, each table spells out what peewee would add unseen: the surrogate key
(`id = AutoField()`) and, beside each foreign key, the annotated raw key it exposes (`plan_id`).
"""

from __future__ import annotations

import datetime as dt
import enum

import peewee as pw

from server.domain import credits, periods
from server.domain.access import KeyScope
from server.domain.invoice_state import InvoiceStatus
from server.domain.meters import Aggregation
from server.domain.periods import DEFAULT_TIMEZONE, Anchor, Cycle
from server.domain.plans import Tier
from server.domain.subscriptions import SubscriptionStatus
from server.domain.webhooks import DeliveryStatus, EventType
from server.persistence.db import database

UTC = dt.timezone.utc


class UTCDateTimeField(pw.DateTimeField):
    """Accepts aware datetimes (any zone), stores naive UTC, returns aware UTC."""

    def db_value(self, value):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        value = super().python_value(value)
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


class StrEnumField(pw.CharField):
    """One of a closed set of strings (a domain StrEnum): stored as its value, read back as the member."""

    def __init__(self, values: type[enum.StrEnum], **kwargs):
        self.values = values
        super().__init__(**kwargs)

    def python_value(self, value):
        return None if value is None else self.values(value)


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Plan(BaseModel):
    """A plan's identity (tier, position, visibility) and, denormalized, its latest version's
    figures: the hot paths (rate limits, the gateway, usage alerts) read a tenant's plan in one
    indexed query. What a subscription is billed on is its PlanVersion, never these columns;
    they are written in the same transaction as each new version."""

    id = pw.CharField(primary_key=True, max_length=64)
    name = pw.CharField(max_length=128)
    tier = StrEnumField(Tier, max_length=16)
    position = pw.IntegerField()
    monthly_fee_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    rate_limit_per_minute = pw.IntegerField()
    included_requests = pw.BigIntegerField()
    overage_per_1k_cents = pw.BigIntegerField()
    private = pw.BooleanField(default=False)  # listed only for admin keys (an enterprise deal)
    archived_at = UTCDateTimeField(null=True)  # no new subscriptions; existing ones keep billing
    catalogue_version = pw.IntegerField(null=True)  # the version the catalogue file last published


class PlanVersion(BaseModel):
    """One published version of a plan: immutable, so a segment billed on it is never repriced.
    charges and route_costs are JSON documents (domain/plans.py charge_document), prices as
    exact decimal strings."""

    id = pw.AutoField()
    plan = pw.ForeignKeyField(Plan, backref="versions", index=False)
    plan_id: str
    version = pw.IntegerField()
    name = pw.CharField(max_length=128)
    monthly_fee_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    rate_limit_per_minute = pw.IntegerField()
    trial_days = pw.IntegerField(default=0)
    billing = pw.CharField(max_length=16, default="POSTPAID")
    charges = pw.TextField(default="[]")
    route_costs = pw.TextField(default="[]")
    created_at = UTCDateTimeField()

    class Meta:
        indexes = ((("plan", "version"), True),)


class Meter(BaseModel):
    """A meter as defined (domain/meters.py); immutable but for archiving. group_by and filters
    are JSON (a list, an object of strings)."""

    id = pw.CharField(primary_key=True, max_length=64)
    name = pw.CharField(max_length=256)
    event_type = pw.CharField(max_length=64)
    aggregation = StrEnumField(Aggregation, max_length=16)
    value_property = pw.CharField(max_length=64, default="")
    group_by = pw.TextField(default="[]")
    filters = pw.TextField(default="{}")  # not `filter`: that is a Model method
    created_at = UTCDateTimeField()
    archived_at = UTCDateTimeField(null=True)


class ApiKey(BaseModel):
    id = pw.AutoField()
    key_hash = pw.CharField(unique=True, max_length=64)
    prefix = pw.CharField(max_length=16)
    scope = StrEnumField(KeyScope, max_length=8)
    tenant_id = pw.CharField(null=True, max_length=128)
    created_at = UTCDateTimeField()
    revoked_at = UTCDateTimeField(null=True)


class Subscription(BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    tenant_id = pw.CharField(max_length=128)
    plan = pw.ForeignKeyField(Plan, backref="subscriptions")
    plan_id: str
    plan_version = pw.IntegerField(
        default=1, constraints=[pw.SQL("DEFAULT 1")]
    )  # the version billed now (the last PlanChange's)
    billing_email = pw.CharField(max_length=320)
    status = StrEnumField(SubscriptionStatus, max_length=16)
    # The anchor of the monthly periods: the creation instant.
    anchor_at = UTCDateTimeField()
    current_period_start = UTCDateTimeField()
    current_period_end = UTCDateTimeField()
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()
    canceled_at = UTCDateTimeField(null=True)
    # Lifecycle (services/lifecycle.py): the end of a free trial; the instant it cancels at (its
    # period's end); the plan version the next period starts on.
    trial_end = UTCDateTimeField(null=True)
    cancel_at = UTCDateTimeField(null=True)
    pending_plan_id = pw.CharField(max_length=64, null=True)
    pending_plan_version = pw.IntegerField(null=True)
    # How periods are cut, and the zone of its periods and days (domain/periods.py Cycle); fixed at creation.
    billing_anchor = StrEnumField(
        Anchor, max_length=16, default=Anchor.ANNIVERSARY, constraints=[pw.SQL("DEFAULT 'ANNIVERSARY'")]
    )
    timezone = pw.CharField(max_length=64, default=DEFAULT_TIMEZONE, constraints=[pw.SQL("DEFAULT 'UTC'")])

    @property
    def cycle(self) -> Cycle:
        return Cycle(self.anchor_at, self.billing_anchor, periods.timezone(self.timezone))

    # Spend control (domain/credits.py): the gateway stops at the cap; credits.low fires below the alert.
    spend_cap_cents = pw.BigIntegerField(null=True)
    low_balance_alert_cents = pw.BigIntegerField(null=True)

    class Meta:
        indexes = ((("tenant_id", "created_at"), False),)


# At most one ACTIVE subscription per tenant: a partial unique index (SQLite and PostgreSQL).
Subscription.add_index(
    Subscription.index(
        Subscription.tenant_id,
        unique=True,
        where=(Subscription.status == SubscriptionStatus.ACTIVE),
        name="subscription_one_active_per_tenant",
    )
)


class PlanChange(BaseModel):
    """Dated plan history of a subscription (the first row is the plan it started on)."""

    id = pw.AutoField()
    subscription = pw.ForeignKeyField(Subscription, backref="plan_changes", on_delete="CASCADE", index=False)
    subscription_id: str
    plan = pw.ForeignKeyField(Plan)
    plan_id: str
    plan_version = pw.IntegerField(default=1, constraints=[pw.SQL("DEFAULT 1")])
    effective_at = UTCDateTimeField()

    class Meta:
        indexes = ((("subscription", "effective_at"), False),)


class RecordedUsageEvent(BaseModel):
    """Raw events as tracked (the proto's UsageEvent once accepted), kept for audit and
    deduplication within retention."""

    id = pw.AutoField()
    subscription = pw.ForeignKeyField(Subscription, on_delete="CASCADE", index=False)
    subscription_id: str
    event_id = pw.CharField(max_length=128)
    endpoint = pw.CharField(max_length=512)
    count = pw.BigIntegerField()
    occurred_at = UTCDateTimeField()
    received_at = UTCDateTimeField(index=True)
    event_type = pw.CharField(max_length=64, default="api_request")
    properties = pw.TextField(null=True)  # JSON object as received; what `reaggregate` replays

    class Meta:
        table_name = "usage_event"
        # (subscription, occurred_at): a plan change at T finds the events already counted with
        # timestamps >= T (future-dated ones, at most FUTURE_SKEW ahead) without a scan.
        indexes = ((("subscription", "event_id"), True), (("subscription", "occurred_at"), False))


class UsageHourly(BaseModel):
    """Requests per (subscription, clock hour, endpoint): what daily and analytics read."""

    id = pw.AutoField()
    subscription = pw.ForeignKeyField(Subscription, on_delete="CASCADE", index=False)
    subscription_id: str
    hour = UTCDateTimeField()
    endpoint = pw.CharField(max_length=512)
    requests = pw.BigIntegerField()

    class Meta:
        indexes = ((("subscription", "hour", "endpoint"), True),)


class UsagePeriod(BaseModel):
    """Requests per subscription period: what usage alerts read, and the bound against overflow."""

    id = pw.AutoField()
    subscription = pw.ForeignKeyField(Subscription, on_delete="CASCADE", index=False)
    subscription_id: str
    period_start = UTCDateTimeField()
    requests = pw.BigIntegerField()

    class Meta:
        indexes = ((("subscription", "period_start"), True),)


class UsageSegment(BaseModel):
    """Requests per plan segment of a subscription period, keyed by the segment's start
    (domain/invoicing.py segment_key: the period start or the instant of a plan change): what
    invoicing and the usage estimate read, so neither scans raw events. Counted at ingest in the
    raw events' transaction; a plan change re-keys the events counted before it that are
    timestamped at or after it (services/segment_usage.py)."""

    id = pw.AutoField()
    subscription = pw.ForeignKeyField(Subscription, on_delete="CASCADE", index=False)
    subscription_id: str
    period_start = UTCDateTimeField()
    segment_start = UTCDateTimeField()
    requests = pw.BigIntegerField()

    class Meta:
        indexes = ((("subscription", "period_start", "segment_start"), True),)


class MeterFigure(BaseModel):
    """What every table of a meter's figures is keyed by first: whose, which meter, which period
    (a base for the four below; it has no table of its own)."""

    id = pw.AutoField()
    subscription = pw.ForeignKeyField(Subscription, on_delete="CASCADE", index=False)
    subscription_id: str
    meter = pw.ForeignKeyField(Meter, on_delete="CASCADE", index=False)
    meter_id: str
    period_start = UTCDateTimeField()


class MeterRollup(MeterFigure):
    """A meter's aggregate of one group over one clock hour of one plan segment (the segment key
    of UsageSegment, so rating can read a segment's figures without splitting hours), written at
    ingest in the raw events' transaction. SUM and COUNT add, MAX keeps the largest, LATEST the
    value of the latest event by (latest_at, latest_event_id). A value is units + nanos / 10^9 with
    0 <= nanos < 10^9 (floor), so two BIGINT columns hold any value exactly and compare in SQL."""

    segment_start = UTCDateTimeField()
    hour = UTCDateTimeField()
    group_key = pw.TextField()  # JSON list of the group_by properties' canonical values
    units = pw.BigIntegerField()
    nanos = pw.BigIntegerField()
    latest_at = UTCDateTimeField(null=True)
    latest_event_id = pw.CharField(max_length=128, default="")

    class Meta:
        indexes = ((("subscription", "meter", "period_start", "segment_start", "hour", "group_key"), True),)


class MeterDistinct(MeterFigure):
    """The distinct values of a UNIQUE_COUNT meter in one group of one plan segment: its count is
    the segment's figure, exactly (no sketch). On PostgreSQL this table and the next have no
    foreign-key constraints (migration 0013 says why) and no `id` (migration 0014): a row is
    its key, whose unique index is the only one."""

    segment_start = UTCDateTimeField()
    group_key = pw.TextField()
    value = pw.TextField()

    class Meta:
        primary_key = False
        indexes = ((("subscription", "meter", "period_start", "segment_start", "group_key", "value"), True),)


class MeterDistinctHour(MeterFigure):
    """The same distinct values per clock hour: what HOUR and DAY windows of endpoint 24 count."""

    hour = UTCDateTimeField()
    group_key = pw.TextField()
    value = pw.TextField()

    class Meta:
        primary_key = False
        indexes = ((("subscription", "meter", "period_start", "hour", "group_key", "value"), True),)


class MeterPeriod(MeterFigure):
    """Per meter and period, the sum of |value| in whole units (plus one an event) that SUM and
    COUNT rollups have taken: bounded like UsagePeriod, so no rollup column can overflow."""

    magnitude = pw.BigIntegerField()

    class Meta:
        indexes = ((("subscription", "meter", "period_start"), True),)


class NumberSequence(BaseModel):
    """Named monotonic sequences (invoice numbers): advanced inside the caller's transaction."""

    name = pw.CharField(primary_key=True, max_length=64)
    value = pw.BigIntegerField()

    class Meta:
        table_name = "counter"


class Invoice(BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    number = pw.CharField(unique=True, max_length=32)
    subscription = pw.ForeignKeyField(Subscription, backref="invoices", index=False)
    subscription_id: str
    tenant_id = pw.CharField(max_length=128)
    status = StrEnumField(InvoiceStatus, max_length=16)
    period_start = UTCDateTimeField()
    period_end = UTCDateTimeField()
    subtotal_cents = pw.BigIntegerField()
    total_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    # Snapshots taken at issue: a later change of the subscription or settings never alters them.
    billing_email = pw.CharField(max_length=320)
    issuer_name = pw.CharField(max_length=256)
    issuer_address = pw.CharField(max_length=1024)
    issuer_tax_id = pw.CharField(max_length=64)
    issued_at = UTCDateTimeField()
    due_at = UTCDateTimeField()
    paid_at = UTCDateTimeField(null=True)
    deleted_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField()
    # The sum of its credit notes, written with each note: amount_due is derived from it.
    credited_cents = pw.BigIntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])

    class Meta:
        indexes = (
            (("subscription", "created_at"), False),
            (("status", "due_at"), False),
        )


def live(invoice: type[Invoice] | pw.ModelAlias[Invoice]) -> pw.Expression:
    """Not VOID and not deleted: the invoice (or an alias of the table) covers its period."""
    return (invoice.status != InvoiceStatus.VOID) & invoice.deleted_at.is_null()


LIVE_INVOICE = live(Invoice)
# At most one live invoice per subscription period; a VOID or deleted one frees the period.
ONE_LIVE_INVOICE_INDEX = "invoice_one_live_per_period"
Invoice.add_index(
    Invoice.index(
        Invoice.subscription, Invoice.period_start, unique=True, where=LIVE_INVOICE, name=ONE_LIVE_INVOICE_INDEX
    )
)


class InvoiceLineItem(BaseModel):
    id = pw.AutoField()
    invoice = pw.ForeignKeyField(Invoice, backref="line_items", on_delete="CASCADE")
    invoice_id: str
    position = pw.IntegerField()
    description = pw.CharField(max_length=256)
    # Thousandths of the unit, rounded half-up: what lines issued before `quantity` existed hold
    # (their exact quantity); `quantity` (exact decimal text) is the truth where it is set.
    quantity_milli = pw.BigIntegerField()
    quantity = pw.TextField(null=True)
    unit = pw.CharField(max_length=32)
    unit_amount_cents = pw.BigIntegerField()
    unit_amount = pw.TextField(null=True)  # exact decimal minor units; null: unit_amount_cents
    amount_cents = pw.BigIntegerField()


class CreditGrant(BaseModel):
    """Prepaid or promotional credit of a tenant in one currency. remaining_cents is a running
    total of the grant's ledger entries, written with each of them (the database-level
    invariant test checks the two agree). `grant_key` is the caller's grant_id, unique per tenant,
    which makes creation idempotent."""

    id = pw.CharField(primary_key=True, max_length=40)
    tenant_id = pw.CharField(max_length=128)
    grant_key = pw.CharField(max_length=128, null=True)
    amount_cents = pw.BigIntegerField()
    remaining_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    priority = pw.IntegerField()
    expires_at = UTCDateTimeField(null=True)
    description = pw.CharField(max_length=256, default="")
    created_at = UTCDateTimeField()
    voided_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("tenant_id", "grant_key"), True), (("tenant_id", "created_at"), False))

    def rules(self) -> credits.Grant:
        """What the credit rules read of it."""
        return credits.Grant(
            self.id,
            self.currency,
            self.remaining_cents,
            self.priority,
            self.created_at,
            self.expires_at,
            self.voided_at,
        )


class CreditLedgerEntry(BaseModel):
    """Append-only: every change of a grant's remaining amount, signed (domain/credits.py)."""

    id = pw.AutoField()
    tenant_id = pw.CharField(max_length=128)
    grant = pw.ForeignKeyField(CreditGrant, index=False)
    grant_id: str
    kind = StrEnumField(credits.EntryKind, max_length=16)
    amount_cents = pw.BigIntegerField()
    invoice_id = pw.CharField(max_length=40, null=True)
    at = UTCDateTimeField()

    class Meta:
        table_name = "credit_ledger"
        indexes = ((("tenant_id", "id"), False), (("grant", "id"), False), (("invoice_id",), False))


class CreditNote(BaseModel):
    """A correction of an issued invoice; its number comes from the `credit_note_number` counter."""

    id = pw.CharField(primary_key=True, max_length=40)
    number = pw.CharField(unique=True, max_length=32)
    invoice = pw.ForeignKeyField(Invoice, backref="credit_notes", index=True)
    invoice_id: str
    tenant_id = pw.CharField(max_length=128)
    amount_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    reason = pw.CharField(max_length=512, default="")
    created_at = UTCDateTimeField()


class OutboxMessage(BaseModel):
    """Transactional outbox: an e-mail to send, written with the state change that causes it."""

    id = pw.AutoField()
    dedup_key = pw.CharField(unique=True, max_length=191)
    template = pw.CharField(max_length=64)
    recipient = pw.CharField(max_length=320)
    payload = pw.TextField()
    created_at = UTCDateTimeField()
    next_attempt_at = UTCDateTimeField(index=True)
    attempts = pw.IntegerField(default=0)
    last_error = pw.TextField(null=True)
    sent_at = UTCDateTimeField(null=True, index=True)
    # Set when delivery is given up after MAX_ATTEMPTS failures (a dead letter); cleared by a retry.
    dead_at = UTCDateTimeField(null=True)


class ServerSecret(BaseModel):
    """Secrets every replica must share (the portal's signing key when BILLING_PORTAL_SECRET is
    unset): the first replica to need one inserts it, the others read the same row."""

    name = pw.CharField(primary_key=True, max_length=64)
    value = pw.CharField(max_length=128)
    created_at = UTCDateTimeField()


class WebhookEndpoint(BaseModel):
    """Where a tenant's events are POSTed. The secret is kept as is: the server signs with it."""

    id = pw.CharField(primary_key=True, max_length=40)
    tenant_id = pw.CharField(max_length=128)
    url = pw.CharField(max_length=2048)
    # JSON list of event types; [] means all.
    event_types = pw.TextField()
    secret = pw.CharField(max_length=64)
    # After a rotation the previous secret signs too, until it expires.
    previous_secret = pw.CharField(max_length=64, null=True)
    previous_secret_expires_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField()
    # Start of the current run of failed attempts (cleared by a success); 5 days of it disables.
    failing_since = UTCDateTimeField(null=True)
    disabled_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("tenant_id", "created_at"), False),)


class WebhookEvent(BaseModel):
    """One event, its body frozen at the change that caused it; the id is the webhook-id."""

    id = pw.CharField(primary_key=True, max_length=40)
    tenant_id = pw.CharField(max_length=128)
    type = StrEnumField(EventType, max_length=64)
    # Set for events that happen once per something (a threshold per period): the database refuses a second.
    dedup_key = pw.CharField(max_length=191, null=True, unique=True)
    body = pw.TextField()
    created_at = UTCDateTimeField()


class WebhookDelivery(BaseModel):
    """The webhook outbox: one row per (event, endpoint), written in the change's transaction."""

    id = pw.CharField(primary_key=True, max_length=40)
    endpoint = pw.ForeignKeyField(WebhookEndpoint, on_delete="CASCADE", index=False)
    endpoint_id: str
    event = pw.ForeignKeyField(WebhookEvent, on_delete="CASCADE")
    event_id: str
    status = StrEnumField(DeliveryStatus, max_length=16)
    attempts = pw.IntegerField()
    # Due time of the next attempt (a claimed row: the end of its lease); null once settled.
    next_attempt_at = UTCDateTimeField(null=True)
    last_status_code = pw.IntegerField(null=True)
    last_error = pw.TextField(null=True)
    created_at = UTCDateTimeField()
    delivered_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = (
            (("endpoint", "created_at"), False),
            (("status", "next_attempt_at"), False),
        )


ALL_MODELS = [
    Plan,
    PlanVersion,
    Meter,
    ApiKey,
    Subscription,
    PlanChange,
    RecordedUsageEvent,
    UsageHourly,
    UsagePeriod,
    UsageSegment,
    MeterRollup,
    MeterDistinct,
    MeterDistinctHour,
    MeterPeriod,
    NumberSequence,
    Invoice,
    InvoiceLineItem,
    CreditGrant,
    CreditLedgerEntry,
    CreditNote,
    OutboxMessage,
    ServerSecret,
    WebhookEndpoint,
    WebhookEvent,
    WebhookDelivery,
]
