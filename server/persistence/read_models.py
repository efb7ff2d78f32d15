"""What services hand to their callers: frozen snapshots of rows with everything a caller shows
already loaded, so transport and templates never touch Peewee (no lazy query per row while a
list is rendered, no session needed after the service returns).

Each model is built from its row by the function beside it; a list of invoices loads the lines
of the whole page in one query.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import TypeVar

from server.domain import credits
from server.domain.invoicing import InvoiceLine, decimal_quantity
from server.domain.meters import Aggregation, Meter
from server.domain.plans import PlanTerms, ReadsTerms
from server.persistence import models, plan_versions

T = TypeVar("T")


def _copy(cls: type[T], row: object, **loaded: object) -> T:
    """`cls` from the row's attributes of the same names, plus what the caller loaded itself."""
    names = [field.name for field in dataclasses.fields(cls) if field.name not in loaded]  # type: ignore[arg-type]
    return cls(**{name: getattr(row, name) for name in names}, **loaded)


@dataclasses.dataclass(frozen=True)
class PlanView(ReadsTerms):
    """A plan at one version: its identity's tier, position and visibility with that version's
    terms; included_requests and overage_per_1k_cents derived for older clients."""

    id: str
    version: int
    tier: str
    position: int
    private: bool
    archived: bool
    created_at: dt.datetime
    terms: PlanTerms


def plan_view(row: models.Plan, version: models.PlanVersion) -> PlanView:
    return PlanView(
        id=row.id,
        version=version.version,
        tier=row.tier,
        position=row.position,
        private=row.private,
        archived=row.archived_at is not None,
        created_at=version.created_at,
        terms=plan_versions.terms_of(version),
    )


@dataclasses.dataclass(frozen=True)
class SubscriptionView:
    id: str
    tenant_id: str
    plan_id: str
    plan_version: int
    billing_email: str
    status: str
    anchor_at: dt.datetime
    current_period_start: dt.datetime
    current_period_end: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    canceled_at: dt.datetime | None
    trial_end: dt.datetime | None
    cancel_at: dt.datetime | None
    pending_plan_id: str | None
    pending_plan_version: int | None
    billing_anchor: str
    timezone: str
    spend_cap_cents: int | None = None
    low_balance_alert_cents: int | None = None


def subscription_view(row: models.Subscription) -> SubscriptionView:
    return _copy(SubscriptionView, row)


@dataclasses.dataclass(frozen=True)
class CreditNoteView:
    """A credit note, as the API, the PDF and the portal show it."""

    id: str
    number: str
    invoice_id: str
    tenant_id: str
    amount_cents: int
    currency: str
    reason: str
    created_at: dt.datetime


def credit_note_view(row: models.CreditNote) -> CreditNoteView:
    return _copy(CreditNoteView, row)


@dataclasses.dataclass(frozen=True)
class CreditGrantView:
    id: str
    tenant_id: str
    amount_cents: int
    remaining_cents: int
    currency: str
    priority: int
    expires_at: dt.datetime | None
    description: str
    created_at: dt.datetime
    voided_at: dt.datetime | None


def credit_grant_view(row: models.CreditGrant) -> CreditGrantView:
    return _copy(CreditGrantView, row)


@dataclasses.dataclass(frozen=True)
class LedgerEntryView:
    """A ledger entry with its grant's currency (the amount's)."""

    at: dt.datetime
    kind: str
    amount_cents: int
    grant_id: str
    currency: str
    invoice_id: str | None


def ledger_entry_view(row: models.CreditLedgerEntry) -> LedgerEntryView:
    """`row` selected with its grant's id and currency joined."""
    return _copy(LedgerEntryView, row, grant_id=row.grant.id, currency=row.grant.currency)


@dataclasses.dataclass(frozen=True)
class InvoiceView:
    """An invoice with its lines in display order. Everything but status, paid_at and deleted_at
    was snapshotted at issue and never changes."""

    id: str
    number: str
    subscription_id: str
    tenant_id: str
    status: str
    period_start: dt.datetime
    period_end: dt.datetime
    subtotal_cents: int
    total_cents: int
    currency: str
    billing_email: str
    issuer_name: str
    issuer_address: str
    issuer_tax_id: str
    issued_at: dt.datetime
    due_at: dt.datetime
    paid_at: dt.datetime | None
    deleted_at: dt.datetime | None
    line_items: tuple[InvoiceLine, ...]
    credited_cents: int = 0  # its credit notes' total
    credit_notes: tuple[CreditNoteView, ...] = ()

    @property
    def amount_due_cents(self) -> int:
        return credits.amount_due(self.status, self.total_cents, self.credited_cents)


def invoice_views(rows: Iterable[models.Invoice]) -> list[InvoiceView]:
    """The invoices with their lines: one query for the lines of all of them."""
    rows = list(rows)
    lines: dict[str, list[InvoiceLine]] = defaultdict(list)
    notes: dict[str, list[CreditNoteView]] = defaultdict(list)
    if rows:
        Line = models.InvoiceLineItem
        for line in (
            Line.select().where(Line.invoice.in_([row.id for row in rows])).order_by(Line.invoice, Line.position)
        ):
            lines[line.invoice_id].append(invoice_line(line))
        credited = [row.id for row in rows if row.credited_cents]  # no query for invoices without notes
        Note = models.CreditNote
        for note in (
            Note.select().where(Note.invoice.in_(credited)).order_by(Note.created_at, Note.id) if credited else ()
        ):
            notes[note.invoice_id].append(credit_note_view(note))
    return [_copy(InvoiceView, row, line_items=tuple(lines[row.id]), credit_notes=tuple(notes[row.id])) for row in rows]


def invoice_line(row: models.InvoiceLineItem) -> InvoiceLine:
    """A stored line; one issued before lines kept their exact quantity and unit amount has them
    in thousandths and whole cents, exactly."""
    return InvoiceLine(
        description=row.description,
        quantity=row.quantity if row.quantity is not None else decimal_quantity(row.quantity_milli),
        unit=row.unit,
        unit_amount=row.unit_amount if row.unit_amount is not None else str(row.unit_amount_cents),
        unit_amount_cents=row.unit_amount_cents,
        amount_cents=row.amount_cents,
    )


def invoice_view(row: models.Invoice) -> InvoiceView:
    return invoice_views([row])[0]


@dataclasses.dataclass(frozen=True)
class EndpointView:
    """A webhook endpoint; the secrets are here for the callers that may show or use them."""

    id: str
    tenant_id: str
    url: str
    event_types: tuple[str, ...]
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: dt.datetime | None
    created_at: dt.datetime
    disabled_at: dt.datetime | None


def endpoint_view(row: models.WebhookEndpoint) -> EndpointView:
    return _copy(EndpointView, row, event_types=tuple(json.loads(row.event_types)))


@dataclasses.dataclass(frozen=True)
class DeliveryView:
    id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None


def delivery_view(row: models.WebhookDelivery) -> DeliveryView:
    """From a delivery selected with its event (a join), so `event.type` costs no query."""
    return _copy(DeliveryView, row, event_type=row.event.type)


@dataclasses.dataclass(frozen=True)
class MeterView:
    id: str
    name: str
    event_type: str
    aggregation: str
    value_property: str
    group_by: tuple[str, ...]
    filter: dict[str, str]
    created_at: dt.datetime
    archived_at: dt.datetime | None


def meter_view(row: models.Meter) -> MeterView:
    return _copy(MeterView, row, group_by=tuple(json.loads(row.group_by)), filter=json.loads(row.filters))


def meter_definition(row: models.Meter) -> Meter:
    """The meter a row defines, as the domain rules take it."""
    return Meter(
        row.id,
        row.name,
        row.event_type,
        Aggregation(row.aggregation),
        row.value_property,
        tuple(json.loads(row.group_by)),
        tuple(sorted(json.loads(row.filters).items())),
    )
