"""Meters (endpoints 20-23): define, list, read, archive. Definitions are immutable: a meter's
figures are only ever those of its one definition, so an invoice can never be re-rated by an edit.
The built-in `requests` meter is seeded by the migration and cannot be archived (the catalogue's
plans bill on it)."""

from __future__ import annotations

import datetime as dt
import json

import peewee as pw

from server.domain import meters as rules
from server.domain.access import Principal, require_admin
from server.domain.errors import AlreadyExists, FailedPrecondition, NotFound
from server.persistence.db import database
from server.persistence.models import Meter
from server.persistence.pagination import paginate
from server.persistence.read_models import MeterView, meter_view


def create_meter(principal: Principal, definition: rules.Meter, *, now: dt.datetime) -> MeterView:
    require_admin(principal, "defining a meter")
    try:
        with database.atomic():
            row = Meter.create(
                id=definition.id,
                name=definition.name,
                event_type=definition.event_type,
                aggregation=definition.aggregation,
                value_property=definition.value_property,
                group_by=json.dumps(list(definition.group_by)),
                filters=json.dumps(dict(definition.filter)),
                created_at=now,
            )
    except pw.IntegrityError:
        raise AlreadyExists(f"meter {definition.id!r} already exists", reason="METER_EXISTS") from None
    return meter_view(row)


def _meter(meter_id: str) -> Meter:
    found = Meter.get_or_none(Meter.id == meter_id) if meter_id else None
    if found is None:
        raise NotFound(f"meter {meter_id!r} not found", reason="METER_NOT_FOUND")
    return found


def get_meter(meter_id: str) -> MeterView:
    return meter_view(_meter(meter_id))


def list_meters(page_size: int, page_token: str, *, include_archived: bool) -> tuple[list[MeterView], str]:
    """Newest first, like every list; archived meters only when asked for."""
    query = Meter.select()
    if not include_archived:
        query = query.where(Meter.archived_at.is_null())
    rows, token = paginate(query, Meter, page_size, page_token)
    return [meter_view(row) for row in rows], token


def archive_meter(principal: Principal, meter_id: str, *, now: dt.datetime) -> MeterView:
    """Archive (idempotent: an archived meter is returned as it is); it stops aggregating."""
    require_admin(principal, "archiving a meter")
    with database.atomic():
        row = _meter(meter_id)
        if row.id == rules.REQUESTS_METER:
            raise FailedPrecondition(
                f"meter {meter_id!r} is built in: the catalogue's plans bill on it", reason="METER_IN_USE"
            )
        if row.archived_at is None:
            row.archived_at = now
            row.save()
    return meter_view(row)


def active_meters() -> list[rules.Meter]:
    """The meters ingestion aggregates into: every unarchived one."""
    return [
        rules.Meter(
            row.id,
            row.name,
            row.event_type,
            rules.Aggregation(row.aggregation),
            row.value_property,
            tuple(json.loads(row.group_by)),
            tuple(sorted(json.loads(row.filters).items())),
        )
        for row in Meter.select().where(Meter.archived_at.is_null()).order_by(Meter.id)
    ]
