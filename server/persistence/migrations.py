"""Schema migrations, applied in order by `billing-server migrate` and recorded in `schema_migration`.

A migration is a function of a playhouse.migrations SchemaMigrator and describes its change in
frozen terms (schema_0001's classes, column definitions written out, SQL), never through the
live models. Append new ones; never edit one that has shipped. Each runs in its own transaction
where the database allows it, and the whole run holds a lock (`_exclusive`) so that two migrators
never race: servers and schedulers only check (`pending`) and refuse a schema that is behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json

import peewee as pw
from playhouse import migrate as operations
from playhouse.migrate import SchemaMigrator

from server.domain.periods import DAY, period_containing
from server.persistence import models, schema_0001
from server.persistence.db import database, is_postgres


class SchemaMigration(models.BaseModel):
    name = pw.CharField(primary_key=True, max_length=128)
    applied_at = models.UTCDateTimeField()


def _0001_initial(migrator: SchemaMigrator) -> None:
    database.create_tables(schema_0001.TABLES)


class _UsageDay0002(schema_0001.BaseModel):
    subscription = pw.ForeignKeyField(schema_0001.Subscription, on_delete="CASCADE", index=False)
    period_start = pw.DateTimeField()
    day = pw.IntegerField()
    requests = pw.BigIntegerField()

    class Meta:
        table_name = "usage_day"
        indexes = ((("subscription", "period_start", "day"), True),)


def _backfill_usage_days() -> None:
    """Per-day counters from the raw events still kept (retention outlasts an open period).
    Frozen tables read naive UTC datetimes, consistently."""
    old = schema_0001
    anchors = {s.id: s.anchor_at for s in old.Subscription.select(old.Subscription.id, old.Subscription.anchor_at)}
    totals: dict[tuple[str, dt.datetime, int], int] = {}
    for event in old.UsageEvent.select(
        old.UsageEvent.subscription, old.UsageEvent.count, old.UsageEvent.occurred_at
    ).iterator():
        found = period_containing(anchors[event.subscription_id], event.occurred_at)
        key = (event.subscription_id, found.start, (event.occurred_at - found.start) // DAY)
        totals[key] = totals.get(key, 0) + event.count
    rows = [
        {"subscription": s, "period_start": start, "day": day, "requests": n} for (s, start, day), n in totals.items()
    ]
    for offset in range(0, len(rows), 500):
        _UsageDay0002.insert_many(rows[offset : offset + 500]).execute()


def _0002_segments_snapshots_dead_letters(migrator: SchemaMigrator) -> None:
    """Billing by plan segments (per-day usage counters), invoices that snapshot what they show and
    free their period when VOID or deleted, decimal line quantities, outbox dead letters."""
    database.create_tables([_UsageDay0002])
    _backfill_usage_days()
    text = functools.partial(pw.CharField, max_length=1024, default="")
    operations.migrate(
        migrator.add_column("invoice", "billing_email", text()),
        migrator.add_column("invoice", "issuer_name", text()),
        migrator.add_column("invoice", "issuer_address", text()),
        migrator.add_column("invoice", "issuer_tax_id", text()),
        migrator.add_column("invoice_line_item", "quantity_milli", pw.BigIntegerField(default=0)),
        migrator.add_column("invoice_line_item", "unit", pw.CharField(max_length=32, default="")),
        migrator.add_column("outbox_message", "dead_at", pw.DateTimeField(null=True)),
    )
    database.execute_sql(
        "UPDATE invoice SET billing_email = (SELECT s.billing_email FROM subscription s "
        "WHERE s.id = invoice.subscription_id)"
    )
    # Old lines: overage was `requests` at the per-1,000 price; a fee line was 1 at the amount.
    param = database.obj.param
    database.execute_sql(
        f"UPDATE invoice_line_item SET quantity_milli = quantity, unit = {param} WHERE description LIKE {param}",
        ("1,000 requests", "Overage%"),
    )
    database.execute_sql(
        f"UPDATE invoice_line_item SET quantity_milli = 1000, unit = {param}, "
        f"unit_amount_cents = amount_cents WHERE description NOT LIKE {param}",
        ("month", "Overage%"),
    )
    operations.migrate(
        migrator.drop_column("invoice_line_item", "quantity"),
        migrator.drop_index("invoice", "invoice_subscription_id_period_start"),
    )
    database.execute_sql(
        "CREATE UNIQUE INDEX invoice_one_live_per_period ON invoice (subscription_id, period_start) "
        "WHERE status <> 'VOID' AND deleted_at IS NULL"
    )


class _ServerSecret0003(schema_0001.BaseModel):
    name = pw.CharField(primary_key=True, max_length=64)
    value = pw.CharField(max_length=128)
    created_at = pw.DateTimeField()

    class Meta:
        table_name = "server_secret"


def _0003_server_secrets(migrator: SchemaMigrator) -> None:
    """Secrets shared by replicas: the portal's signing key when none is configured."""
    database.create_tables([_ServerSecret0003])


class _WebhookEndpoint0004(schema_0001.BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    tenant_id = pw.CharField(max_length=128)
    url = pw.CharField(max_length=2048)
    event_types = pw.TextField()
    secret = pw.CharField(max_length=64)
    previous_secret = pw.CharField(max_length=64, null=True)
    previous_secret_expires_at = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField()
    failing_since = pw.DateTimeField(null=True)
    disabled_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "webhook_endpoint"
        indexes = ((("tenant_id", "created_at"), False),)


class _WebhookEvent0004(schema_0001.BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    tenant_id = pw.CharField(max_length=128)
    type = pw.CharField(max_length=64)
    dedup_key = pw.CharField(max_length=191, null=True, unique=True)
    body = pw.TextField()
    created_at = pw.DateTimeField()

    class Meta:
        table_name = "webhook_event"


class _WebhookDelivery0004(schema_0001.BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    endpoint = pw.ForeignKeyField(_WebhookEndpoint0004, on_delete="CASCADE", index=False)
    event = pw.ForeignKeyField(_WebhookEvent0004, on_delete="CASCADE")
    status = pw.CharField(max_length=16)
    attempts = pw.IntegerField()
    next_attempt_at = pw.DateTimeField(null=True)
    last_status_code = pw.IntegerField(null=True)
    last_error = pw.TextField(null=True)
    created_at = pw.DateTimeField()
    delivered_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "webhook_delivery"
        indexes = (
            (("endpoint", "created_at"), False),
            (("status", "next_attempt_at"), False),
        )


def _0004_webhooks(migrator: SchemaMigrator) -> None:
    """Webhook endpoints, events and their deliveries (the webhook outbox)."""
    database.create_tables([_WebhookEndpoint0004, _WebhookEvent0004, _WebhookDelivery0004])


class _UsageSegment0005(schema_0001.BaseModel):
    subscription = pw.ForeignKeyField(schema_0001.Subscription, on_delete="CASCADE", index=False)
    period_start = pw.DateTimeField()
    segment_start = pw.DateTimeField()
    requests = pw.BigIntegerField()

    class Meta:
        table_name = "usage_segment"
        indexes = ((("subscription", "period_start", "segment_start"), True),)


def _backfill_usage_segments() -> None:
    """Per-segment counters from the raw events still kept (retention, 35 days by default,
    outlasts an open period): each event under the start of the segment its timestamp falls in,
    the latest plan change at or before it or its period's start. Periods whose raw events were
    purged are closed by their invoices."""
    old = schema_0001
    anchors = {s.id: s.anchor_at for s in old.Subscription.select(old.Subscription.id, old.Subscription.anchor_at)}
    changes: dict[str, list[dt.datetime]] = {}
    for change in old.PlanChange.select(old.PlanChange.subscription, old.PlanChange.effective_at).iterator():
        changes.setdefault(change.subscription_id, []).append(change.effective_at)
    totals: dict[tuple[str, dt.datetime, dt.datetime], int] = {}
    for event in old.UsageEvent.select(
        old.UsageEvent.subscription, old.UsageEvent.count, old.UsageEvent.occurred_at
    ).iterator():
        start = period_containing(anchors[event.subscription_id], event.occurred_at).start
        since = [at for at in changes.get(event.subscription_id, []) if at <= event.occurred_at]
        key = (event.subscription_id, start, max([start, *since]))
        totals[key] = totals.get(key, 0) + event.count
    rows = [
        {"subscription": s, "period_start": start, "segment_start": segment, "requests": n}
        for (s, start, segment), n in totals.items()
    ]
    for offset in range(0, len(rows), 500):
        _UsageSegment0005.insert_many(rows[offset : offset + 500]).execute()


def _0005_usage_segments(migrator: SchemaMigrator) -> None:
    """Billing by exact-instant plan segments: usage counters per segment replace the per-day
    ones (which nothing reads any more), and raw events get an index by timestamp within a
    subscription, for a plan change to re-key the events counted before it."""
    database.create_tables([_UsageSegment0005])
    _backfill_usage_segments()
    database.execute_sql(
        "CREATE INDEX usage_event_subscription_id_occurred_at ON usage_event (subscription_id, occurred_at)"
    )
    database.execute_sql("DROP TABLE usage_day")


class _Meter0006(schema_0001.BaseModel):
    id = pw.CharField(primary_key=True, max_length=64)
    name = pw.CharField(max_length=256)
    event_type = pw.CharField(max_length=64)
    aggregation = pw.CharField(max_length=16)
    value_property = pw.CharField(max_length=64, default="")
    group_by = pw.TextField(default="[]")
    filters = pw.TextField(default="{}")  # not `filter`: that is a Model method
    created_at = pw.DateTimeField()
    archived_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "meter"


class _MeterKeyed0006(schema_0001.BaseModel):
    subscription = pw.ForeignKeyField(schema_0001.Subscription, on_delete="CASCADE", index=False)
    meter = pw.ForeignKeyField(_Meter0006, on_delete="CASCADE", index=False)
    period_start = pw.DateTimeField()


class _MeterRollup0006(_MeterKeyed0006):
    segment_start = pw.DateTimeField()
    hour = pw.DateTimeField()
    group_key = pw.TextField()
    units = pw.BigIntegerField()
    nanos = pw.BigIntegerField()
    latest_at = pw.DateTimeField(null=True)
    latest_event_id = pw.CharField(max_length=128, default="")

    class Meta:
        table_name = "meter_rollup"
        indexes = ((("subscription", "meter", "period_start", "segment_start", "hour", "group_key"), True),)


class _MeterDistinct0006(_MeterKeyed0006):
    segment_start = pw.DateTimeField()
    group_key = pw.TextField()
    value = pw.TextField()

    class Meta:
        table_name = "meter_distinct"
        indexes = ((("subscription", "meter", "period_start", "segment_start", "group_key", "value"), True),)


class _MeterDistinctHour0006(_MeterKeyed0006):
    hour = pw.DateTimeField()
    group_key = pw.TextField()
    value = pw.TextField()

    class Meta:
        table_name = "meter_distinct_hour"
        indexes = ((("subscription", "meter", "period_start", "hour", "group_key", "value"), True),)


class _MeterPeriod0006(_MeterKeyed0006):
    magnitude = pw.BigIntegerField()

    class Meta:
        table_name = "meter_period"
        indexes = ((("subscription", "meter", "period_start"), True),)


def _0006_meters(migrator: SchemaMigrator) -> None:
    """Meters (with the built-in `requests`), their rollups and distinct sets; events keep their
    type and properties."""
    database.create_tables([_Meter0006, _MeterRollup0006, _MeterDistinct0006, _MeterDistinctHour0006, _MeterPeriod0006])
    _Meter0006.insert(
        id="requests",
        name="Requests",
        event_type="api_request",
        aggregation="SUM",
        value_property="count",
        group_by='["endpoint"]',
        filters="{}",
        created_at=dt.datetime(2026, 1, 1),
    ).execute()
    operations.migrate(
        migrator.add_column("usage_event", "event_type", pw.CharField(max_length=64, default="api_request")),
        migrator.add_column("usage_event", "properties", pw.TextField(null=True)),
    )


class _PlanVersion0007(schema_0001.BaseModel):
    plan = pw.ForeignKeyField(schema_0001.Plan, index=False)
    version = pw.IntegerField()
    name = pw.CharField(max_length=128)
    monthly_fee_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    rate_limit_per_minute = pw.IntegerField()
    trial_days = pw.IntegerField(default=0)
    billing = pw.CharField(max_length=16, default="POSTPAID")
    charges = pw.TextField(default="[]")
    route_costs = pw.TextField(default="[]")
    created_at = pw.DateTimeField()

    class Meta:
        table_name = "plan_version"
        indexes = ((("plan", "version"), True),)


def _seed_charges_0007(included_requests: int, overage_per_1k_cents: int) -> str:
    """The one charge a plan of the old catalogue shape bills (domain/plans.py seed_terms, frozen):
    PER_UNIT on `requests` per 1,000, capped where no overage is sold."""
    return json.dumps(
        [
            {
                "id": "requests",
                "meter_id": "requests",
                "display_name": "",
                "filter": {},
                "included": included_requests,
                "model": "PER_UNIT",
                "hard_limit": overage_per_1k_cents == 0,
                "unit_price": str(overage_per_1k_cents),
                "unit_size": 1000,
            }
        ]
    )


def _0007_plan_versions(migrator: SchemaMigrator) -> None:
    """Plans become versioned: each existing plan's terms become its version 1; subscriptions and
    their plan history are pinned to version 1; plans gain visibility and archiving; invoice lines
    gain their exact quantity and unit amount (null on lines issued before: their quantity_milli
    and unit_amount_cents are exact)."""
    database.create_tables([_PlanVersion0007])
    operations.migrate(
        migrator.add_column("plan", "private", pw.BooleanField(default=False)),
        migrator.add_column("plan", "archived_at", pw.DateTimeField(null=True)),
        # A database default too: rows written by SQL of another tool (or an older release) are on version 1.
        migrator.add_column(
            "subscription", "plan_version", pw.IntegerField(default=1, constraints=[pw.SQL("DEFAULT 1")])
        ),
        migrator.add_column(
            "plan_change", "plan_version", pw.IntegerField(default=1, constraints=[pw.SQL("DEFAULT 1")])
        ),
        migrator.add_column("invoice_line_item", "quantity", pw.TextField(null=True)),
        migrator.add_column("invoice_line_item", "unit_amount", pw.TextField(null=True)),
    )
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    for plan in schema_0001.Plan.select():
        _PlanVersion0007.insert(
            plan=plan.id,
            version=1,
            name=plan.name,
            monthly_fee_cents=plan.monthly_fee_cents,
            currency=plan.currency,
            rate_limit_per_minute=plan.rate_limit_per_minute,
            charges=_seed_charges_0007(plan.included_requests, plan.overage_per_1k_cents),
            created_at=now,
        ).execute()


def _0009_lifecycle(migrator: SchemaMigrator) -> None:
    """Subscription lifecycle: a trial's end, a cancellation set for the period's end, and a plan
    change scheduled for it (all null on existing subscriptions: no trial, nothing pending)."""
    operations.migrate(
        migrator.add_column("subscription", "trial_end", models.UTCDateTimeField(null=True)),
        migrator.add_column("subscription", "cancel_at", models.UTCDateTimeField(null=True)),
        migrator.add_column("subscription", "pending_plan_id", pw.CharField(max_length=64, null=True)),
        migrator.add_column("subscription", "pending_plan_version", pw.IntegerField(null=True)),
    )


class _IdempotencyKey0011(schema_0001.BaseModel):
    holder = pw.CharField(max_length=160)
    key = pw.CharField(max_length=255)
    fingerprint = pw.CharField(max_length=64)
    claim = pw.CharField(max_length=32)
    claimed_at = pw.DateTimeField()
    expires_at = pw.DateTimeField(index=True)
    code = pw.IntegerField(null=True)
    body = pw.BlobField(null=True)
    metadata = pw.TextField(null=True)

    class Meta:
        table_name = "idempotency_key"
        indexes = ((("holder", "key"), True),)


def _0011_idempotency_keys(migrator: SchemaMigrator) -> None:
    """Idempotency-Key records: one per (holder, key), the unique index deciding which call runs."""
    database.create_tables([_IdempotencyKey0011])


def _0010_calendar_billing(migrator: SchemaMigrator) -> None:
    """Subscriptions gain how their periods are cut and their time zone; every existing one bills
    as before: ANNIVERSARY in UTC (database defaults too, for rows other tools write)."""
    operations.migrate(
        migrator.add_column(
            "subscription",
            "billing_anchor",
            pw.CharField(max_length=16, default="ANNIVERSARY", constraints=[pw.SQL("DEFAULT 'ANNIVERSARY'")]),
        ),
        migrator.add_column(
            "subscription",
            "timezone",
            pw.CharField(max_length=64, default="UTC", constraints=[pw.SQL("DEFAULT 'UTC'")]),
        ),
    )


class _CreditGrant0008(schema_0001.BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    tenant_id = pw.CharField(max_length=128)
    grant_key = pw.CharField(max_length=128, null=True)
    amount_cents = pw.BigIntegerField()
    remaining_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    priority = pw.IntegerField()
    expires_at = pw.DateTimeField(null=True)
    description = pw.CharField(max_length=256, default="")
    created_at = pw.DateTimeField()
    voided_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "credit_grant"
        indexes = ((("tenant_id", "grant_key"), True), (("tenant_id", "created_at"), False))


class _CreditLedger0008(schema_0001.BaseModel):
    tenant_id = pw.CharField(max_length=128)
    grant = pw.ForeignKeyField(_CreditGrant0008, index=False)
    kind = pw.CharField(max_length=16)
    amount_cents = pw.BigIntegerField()
    invoice_id = pw.CharField(max_length=40, null=True)
    at = pw.DateTimeField()

    class Meta:
        table_name = "credit_ledger"
        indexes = ((("tenant_id", "id"), False), (("grant", "id"), False), (("invoice_id",), False))


class _CreditNote0008(schema_0001.BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    number = pw.CharField(unique=True, max_length=32)
    invoice = pw.ForeignKeyField(schema_0001.Invoice, index=True)
    tenant_id = pw.CharField(max_length=128)
    amount_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    reason = pw.CharField(max_length=512, default="")
    created_at = pw.DateTimeField()

    class Meta:
        table_name = "credit_note"


def _0008_credits(migrator: SchemaMigrator) -> None:
    """Prepaid credit: grants, their append-only ledger, credit notes; a subscription's spend
    cap and low-balance alert; an invoice's credited total (amount due is derived from it)."""
    database.create_tables([_CreditGrant0008, _CreditLedger0008, _CreditNote0008])
    operations.migrate(
        migrator.add_column("subscription", "spend_cap_cents", pw.BigIntegerField(null=True)),
        migrator.add_column("subscription", "low_balance_alert_cents", pw.BigIntegerField(null=True)),
        migrator.add_column(
            "invoice", "credited_cents", pw.BigIntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])
        ),
    )


def _0013_plans_finish(migrator: SchemaMigrator) -> None:
    """Plans remember the version the catalogue file last published (persistence/catalogue.py):
    null until the next start finds it, so a restart never republishes the file over a version
    published through the API.

    On PostgreSQL the distinct-value sets (meter_distinct, meter_distinct_hour) lose their
    foreign-key constraints: each new distinct value cost two referential-integrity probes (~55 ms
    a table for a batch of 1,000 new users, a quarter of a metered batch; BENCHMARKS.md). Their
    rows are derived figures written only by ingestion and reaggregation for a subscription and a
    meter they have just read, and neither subscriptions nor meters are ever deleted (meters are
    archived), so the constraints guarded nothing. SQLite keeps them (dropping one there rebuilds
    the table; its check is an in-process index probe)."""
    operations.migrate(migrator.add_column("plan", "catalogue_version", pw.IntegerField(null=True)))
    if is_postgres():
        operations.migrate(
            *(
                migrator.drop_foreign_key_constraint(table, column)
                for table in ("meter_distinct", "meter_distinct_hour")
                for column in ("subscription_id", "meter_id")
            )
        )


def _0014_distinct_sets_without_id(migrator: SchemaMigrator) -> None:
    """On PostgreSQL the distinct-value sets (meter_distinct, meter_distinct_hour) lose their serial
    `id`: nothing reads or refers to it (rows are found and made unique by their key's index),
    and each new distinct value paid a sequence step and a primary-key index entry for it (~2.5
    ms a table for a batch of 1,000 new users; docs/benchmarks-log.md). Dropping the column drops
    its primary key and its sequence. SQLite keeps it: there it is the rowid every table has, at
    no cost, and dropping a column rebuilds the table."""
    if is_postgres():
        operations.migrate(*(migrator.drop_column(table, "id") for table in ("meter_distinct", "meter_distinct_hour")))


MIGRATIONS = [
    ("0001_initial", _0001_initial),
    ("0002_segments_snapshots_dead_letters", _0002_segments_snapshots_dead_letters),
    ("0003_server_secrets", _0003_server_secrets),
    ("0004_webhooks", _0004_webhooks),
    ("0005_usage_segments", _0005_usage_segments),
    ("0006_meters", _0006_meters),
    ("0007_plan_versions", _0007_plan_versions),
    ("0008_credits", _0008_credits),
    ("0009_lifecycle", _0009_lifecycle),
    ("0010_calendar_billing", _0010_calendar_billing),
    ("0011_idempotency_keys", _0011_idempotency_keys),
    ("0013_plans_finish", _0013_plans_finish),
    ("0014_distinct_sets_without_id", _0014_distinct_sets_without_id),
]


# pg_advisory_lock key of `migrate` (any constant; this one spells "billmigr").
ADVISORY_LOCK_KEY = int.from_bytes(b"billmigr", "big", signed=True)


def _applied() -> set[str]:
    """Names in the history; none on a new database (which only `migrate` gives a history table)."""
    if not SchemaMigration.table_exists():
        return set()
    return {row.name for row in SchemaMigration.select()}


def pending() -> list[str]:
    """Names of the migrations this release knows and the database has not had, in order."""
    done = _applied()
    return [name for name, _ in MIGRATIONS if name not in done]


def migrate() -> list[str]:
    """Apply pending migrations under the migration lock; returns the names applied (none when
    another migrator got there first). Call inside db.session()."""
    with _foreign_keys_off(), _exclusive():
        database.create_tables([SchemaMigration])
        done = _applied()
        migrator = SchemaMigrator.from_database(database.obj)
        names = []
        for name, step in MIGRATIONS:
            if name in done:
                continue
            with database.atomic():
                step(migrator)
                SchemaMigration.insert(name=name, applied_at=dt.datetime.now(dt.timezone.utc)).execute()
            names.append(name)
        return names


@contextlib.contextmanager
def _exclusive():
    """One migrator at a time. PostgreSQL: a session-level advisory lock, held until released
    (or until the connection dies with its holder). SQLite: the database's write lock, taken by
    an outer BEGIN IMMEDIATE; a second migrator waits for it (busy_timeout) and then finds the
    history up to date. Each migration's own transaction nests inside as a savepoint."""
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            yield
        finally:
            database.execute_sql("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    else:
        with database.atomic():
            yield


@contextlib.contextmanager
def _foreign_keys_off():
    """SQLite alters a column by rebuilding its table; with foreign keys on, dropping the old table
    cascades and deletes every child row (an invoice's lines). The pragma only takes effect
    outside a transaction. PostgreSQL alters in place and needs nothing."""
    if is_postgres():
        yield
        return
    with database.obj.writes_on_own_connection():  # the pragma is the connection's own state
        database.execute_sql("PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            database.execute_sql("PRAGMA foreign_keys = ON")
