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

from server.domain.invoicing import LineItem
from server.domain.meters import Aggregation, Meter
from server.persistence import models

T = TypeVar("T")


def _copy(cls: type[T], row: object, **loaded: object) -> T:
    """`cls` from the row's attributes of the same names, plus what the caller loaded itself."""
    names = [field.name for field in dataclasses.fields(cls) if field.name not in loaded]  # type: ignore[arg-type]
    return cls(**{name: getattr(row, name) for name in names}, **loaded)


@dataclasses.dataclass(frozen=True)
class PlanView:
    id: str
    name: str
    tier: str
    position: int
    monthly_fee_cents: int
    currency: str
    rate_limit_per_minute: int
    included_requests: int
    overage_per_1k_cents: int


def plan_view(row: models.Plan) -> PlanView:
    return _copy(PlanView, row)


@dataclasses.dataclass(frozen=True)
class SubscriptionView:
    id: str
    tenant_id: str
    plan_id: str
    billing_email: str
    status: str
    anchor_at: dt.datetime
    current_period_start: dt.datetime
    current_period_end: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    canceled_at: dt.datetime | None


def subscription_view(row: models.Subscription) -> SubscriptionView:
    return _copy(SubscriptionView, row)


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
    line_items: tuple[LineItem, ...]


def invoice_views(rows: Iterable[models.Invoice]) -> list[InvoiceView]:
    """The invoices with their lines: one query for the lines of all of them."""
    rows = list(rows)
    lines: dict[str, list[LineItem]] = defaultdict(list)
    if rows:
        Line = models.InvoiceLineItem
        for line in (
            Line.select().where(Line.invoice.in_([row.id for row in rows])).order_by(Line.invoice, Line.position)
        ):
            lines[line.invoice_id].append(_copy(LineItem, line))
    return [_copy(InvoiceView, row, line_items=tuple(lines[row.id])) for row in rows]


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
