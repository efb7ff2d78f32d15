"""Meters (endpoints 20-23): define, list, read, archive. Definitions are immutable: a meter's
figures are only ever those of its one definition, so an invoice can never be re-rated by an edit.
The built-in `requests` meter is seeded by the migration and cannot be archived (the catalogue's
plans bill on it)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Sequence

import peewee as pw

from server.domain import decimals
from server.domain import meters as rules
from server.domain.access import Principal, require_admin
from server.domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from server.domain.periods import clock_hour, date_of, days_of
from server.domain.usage import MAX_RANGE_DAYS
from server.persistence import meter_rollups as rollups
from server.persistence.db import database
from server.persistence.models import Meter, Plan, PlanVersion
from server.persistence.pagination import paginate
from server.persistence.read_models import MeterView, meter_definition, meter_view
from server.services.subscriptions import find_subscription

MAX_RANGE = dt.timedelta(days=MAX_RANGE_DAYS)
MICROSECOND = dt.timedelta(microseconds=1)


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
            user = _plan_using(row.id)
            if user is not None:
                raise FailedPrecondition(
                    f"meter {meter_id!r} is priced by plan {user!r}: archive the plan first", reason="METER_IN_USE"
                )
            row.archived_at = now
            row.save()
    return meter_view(row)


def _plan_using(meter_id: str) -> str | None:
    """An unarchived plan with a charge on the meter in any of its versions (subscriptions may be
    pinned to an old one), or None. Charges are stored as compact JSON, so the text is exact."""
    needle = json.dumps({"meter_id": meter_id}, separators=(",", ":"))[1:-1]
    found = (
        PlanVersion.select(PlanVersion.plan)
        .join(Plan)
        .where(Plan.archived_at.is_null() & PlanVersion.charges.contains(needle))
        .first()
    )
    return found.plan_id if found else None


def meter_usage(
    principal: Principal,
    subscription_id: str,
    meter_id: str,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    window: rules.Window,
    group_by: Sequence[str],
) -> list[rules.Row]:
    """Endpoint 24 from the rollups. The default range is the current period, read exactly (by
    its period key). Another range is read by the clock hours it touches: rollups are hourly, by
    the hours of the subscription's zone, whose days DAY windows are."""
    subscription = find_subscription(subscription_id, principal=principal)
    meter = meter_definition(_meter(meter_id))
    period = subscription.cycle.containing(subscription.current_period_start)
    start, end = start or period.start, end or period.end
    if end <= start:
        raise InvalidArgument(
            f"end_time {end.isoformat()} is not after start_time {start.isoformat()}", field="end_time"
        )
    if end - start > MAX_RANGE:
        raise InvalidArgument(f"the range is longer than {MAX_RANGE.days} days", field="end_time")
    whole_period = (start, end) == (period.start, period.end)
    zone = subscription.cycle.zone
    hours = (clock_hour(start, zone), clock_hour(end - MICROSECOND, zone) + rules.HOUR)
    if not whole_period:  # what is read, and so what a PERIOD window says it covers
        start, end = hours
    one_window = whole_period and window is rules.Window.PERIOD  # the database can total the period
    if meter.aggregation is rules.Aggregation.UNIQUE_COUNT:
        if one_window and (not group_by or set(group_by) == set(meter.group_by)):
            counts = rollups.distinct_counts(subscription.id, meter.id, period.start, by_group=bool(group_by))
            return rules.counted_rows(meter, counts, start, end, group_by)
        if one_window:  # the segments' sets: no hour rows to scan
            found = rollups.distinct_by_segment(subscription.id, meter.id, period.start)
            values = [(start, group, value) for _, group, value in found]
        else:
            values = rollups.distinct_by_hour(subscription.id, meter.id, hours, period.start if whole_period else None)
        return rules.distinct_rows(meter, values, rules.Windows(window, start, end, zone), group_by)
    if one_window and meter.aggregation in (rules.Aggregation.SUM, rules.Aggregation.COUNT):
        totals = rollups.summed(subscription.id, meter.id, period.start)
        cells = [(start, group, rules.Cell(value, start, "")) for group, value in totals.items()]
    elif one_window:
        extremes = rollups.extremes(subscription.id, meter.id, period.start, meter.aggregation)
        cells = [(start, group, cell) for group, cell in extremes.items()]
    else:
        rows = (
            rollups.cells(subscription.id, meter.id, period_start=period.start)
            if whole_period
            else rollups.cells(subscription.id, meter.id, hours=hours)
        )
        cells = [(hour, group, cell) for _, hour, group, cell in rows]
    return rules.cell_rows(meter, cells, rules.Windows(window, start, end, zone), group_by)


@dataclasses.dataclass(frozen=True)
class MeterFigures:
    """A meter's figures of a subscription's current period: the period's and each day's."""

    meter: MeterView
    total: str
    days: list[tuple[dt.date, int]]  # each day of the period, in nanos (0 where none)


def period_figures(principal: Principal, subscription_id: str) -> list[MeterFigures]:
    """Each meter but the built-in one with figures in the subscription's current period, by id."""
    subscription = find_subscription(subscription_id, principal=principal)
    period = subscription.cycle.containing(subscription.current_period_start)
    zone = subscription.cycle.zone
    days = [day.date for day in days_of(period.start, period.end, zone)]  # the same for every meter
    found = []
    for meter_id in sorted(rollups.meters_with_figures(subscription.id, period.start) - {rules.REQUESTS_METER}):
        usage = functools.partial(meter_usage, principal, subscription.id, meter_id, start=None, end=None, group_by=())
        [total] = usage(window=rules.Window.PERIOD)
        per_day = {date_of(row.window_start, zone): decimals.parse(row.value) for row in usage(window=rules.Window.DAY)}
        found.append(MeterFigures(get_meter(meter_id), total.value, [(day, per_day.get(day, 0)) for day in days]))
    return found
