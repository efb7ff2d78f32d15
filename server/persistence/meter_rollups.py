"""Meter rollups in the database: a batch's folded deltas (domain/meters.py `fold`) merged into
MeterRollup, MeterDistinct(Hour) and MeterPeriod with one statement per table and aggregation,
in the caller's transaction, and read back for windows and rating.

The merge happens in SQL (ON CONFLICT DO UPDATE), so concurrent batches of one subscription
cannot lose each other's figures even where the subscription lock is not what orders them.
A value is stored as (units, nanos) with 0 <= nanos < 10^9 (floor): SUM carries nanos into units,
MAX compares the pair lexicographically, LATEST compares (latest_at, latest_event_id) with
byte-order collation on both backends (Python's string order), so the database picks what the
domain's `merge` would.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import peewee as pw

from server.domain import decimals
from server.domain.meters import Aggregation, Cell, Folded
from server.persistence.bulk import insert_ignore, upsert
from server.persistence.db import is_postgres
from server.persistence.models import MeterDistinct, MeterDistinctHour, MeterPeriod, MeterRollup

# Integer division on both backends; the remainder written out (`%` is psycopg2's placeholder mark).
_NANOS = "({t}.nanos + EXCLUDED.nanos)"
_CARRIED = f"{_NANOS} / {decimals.SCALE}"
_SUM = {"units": f"{{t}}.units + EXCLUDED.units + {_CARRIED}", "nanos": f"{_NANOS} - {_CARRIED} * {decimals.SCALE}"}


def _when(condition: str, columns: Iterable[str]) -> dict[str, str]:
    return {column: f"CASE WHEN {condition} THEN EXCLUDED.{column} ELSE {{t}}.{column} END" for column in columns}


def _later() -> str:
    collate = ' COLLATE "C"' if is_postgres() else ""  # SQLite compares bytes already
    return (
        "(EXCLUDED.latest_at > {t}.latest_at OR (EXCLUDED.latest_at = {t}.latest_at AND "
        f"EXCLUDED.latest_event_id{collate} > {{t}}.latest_event_id{collate}))"
    )


_LARGER = "(EXCLUDED.units > {t}.units OR (EXCLUDED.units = {t}.units AND EXCLUDED.nanos > {t}.nanos))"
_VALUE_COLUMNS = ("units", "nanos", "latest_at", "latest_event_id")


def _updates(aggregation: Aggregation) -> dict[str, str]:
    if aggregation is Aggregation.MAX:
        return _when(_LARGER, _VALUE_COLUMNS)
    if aggregation is Aggregation.LATEST:
        return _when(_later(), _VALUE_COLUMNS)
    return _SUM


def group_key(group: tuple[str, ...]) -> str:
    return json.dumps(list(group), ensure_ascii=False, separators=(",", ":"))


def add(subscription_id: str, aggregations: dict[str, Aggregation], folded: Folded) -> None:
    """Merge a batch's deltas into the rollups (the magnitudes were checked by the caller)."""
    by_kind: dict[Aggregation, list[tuple]] = {}
    for (meter_id, period_start, segment_start, hour, group), cell in folded.cells.items():
        units, nanos = divmod(cell.value, decimals.SCALE)
        by_kind.setdefault(aggregations[meter_id], []).append(
            (subscription_id, meter_id, period_start, segment_start, hour, group_key(group), units, nanos)
            + (cell.at, cell.event_id)
        )
    keys: list[pw.Field] = [
        MeterRollup.subscription,
        MeterRollup.meter,
        MeterRollup.period_start,
        MeterRollup.segment_start,
        MeterRollup.hour,
        MeterRollup.group_key,
    ]
    values = [MeterRollup.units, MeterRollup.nanos, MeterRollup.latest_at, MeterRollup.latest_event_id]
    for kind, rows in by_kind.items():
        upsert(MeterRollup, keys, values, rows, _updates(kind))
    insert_ignore(
        MeterDistinct,
        [
            MeterDistinct.subscription,
            MeterDistinct.meter,
            MeterDistinct.period_start,
            MeterDistinct.segment_start,
            MeterDistinct.group_key,
            MeterDistinct.value,
        ],
        [(subscription_id, m, p, s, group_key(g), v) for m, p, s, g, v in folded.distinct],
    )
    insert_ignore(
        MeterDistinctHour,
        [
            MeterDistinctHour.subscription,
            MeterDistinctHour.meter,
            MeterDistinctHour.period_start,
            MeterDistinctHour.hour,
            MeterDistinctHour.group_key,
            MeterDistinctHour.value,
        ],
        [(subscription_id, m, p, h, group_key(g), v) for m, p, h, g, v in folded.distinct_hours],
    )
    upsert(
        MeterPeriod,
        [MeterPeriod.subscription, MeterPeriod.meter, MeterPeriod.period_start],
        [MeterPeriod.magnitude],
        [(subscription_id, meter_id, start, n) for (meter_id, start), n in folded.magnitude.items()],
        {"magnitude": "{t}.magnitude + EXCLUDED.magnitude"},
    )


def magnitudes(subscription_id: str, keys: Iterable[tuple[str, dt.datetime]]) -> dict[tuple[str, dt.datetime], int]:
    """What SUM and COUNT cells have taken so far, per (meter, period start) asked for."""
    wanted = set(keys)
    if not wanted:
        return {}
    rows = MeterPeriod.select(MeterPeriod.meter, MeterPeriod.period_start, MeterPeriod.magnitude).where(
        (MeterPeriod.subscription == subscription_id)
        & MeterPeriod.meter.in_(sorted({m for m, _ in wanted}))
        & MeterPeriod.period_start.in_(sorted({p for _, p in wanted}))
    )
    return {(row.meter_id, row.period_start): row.magnitude for row in rows}


def _cell(row: MeterRollup) -> Cell:
    return Cell(row.units * decimals.SCALE + row.nanos, row.latest_at, row.latest_event_id)


def cells(
    subscription_id: str, meter_id: str, *, period_start: dt.datetime | None = None, hours: tuple | None = None
) -> list[tuple[dt.datetime, dt.datetime, tuple[str, ...], Cell]]:
    """(segment start, hour, group, cell) of a meter's rollups: of one period, or of the clock
    hours in [hours[0], hours[1])."""
    query = MeterRollup.select().where((MeterRollup.subscription == subscription_id) & (MeterRollup.meter == meter_id))
    if period_start is not None:
        query = query.where(MeterRollup.period_start == period_start)
    if hours is not None:
        query = query.where((MeterRollup.hour >= hours[0]) & (MeterRollup.hour < hours[1]))
    return [(row.segment_start, row.hour, tuple(json.loads(row.group_key)), _cell(row)) for row in query]


def distinct_by_segment(
    subscription_id: str, meter_id: str, period_start: dt.datetime
) -> list[tuple[dt.datetime, tuple[str, ...], str]]:
    """(segment start, group, value) of a UNIQUE_COUNT meter's distinct sets in one period."""
    query = MeterDistinct.select(MeterDistinct.segment_start, MeterDistinct.group_key, MeterDistinct.value).where(
        (MeterDistinct.subscription == subscription_id)
        & (MeterDistinct.meter == meter_id)
        & (MeterDistinct.period_start == period_start)
    )
    return [(row.segment_start, tuple(json.loads(row.group_key)), row.value) for row in query]


def distinct_by_hour(
    subscription_id: str, meter_id: str, hours: tuple[dt.datetime, dt.datetime], period_start: dt.datetime | None
) -> list[tuple[dt.datetime, tuple[str, ...], str]]:
    """(hour, group, value) of a UNIQUE_COUNT meter's per-hour sets in [hours[0], hours[1]),
    optionally of one period only."""
    Hour = MeterDistinctHour
    query = Hour.select(Hour.hour, Hour.group_key, Hour.value).where(
        (Hour.subscription == subscription_id)
        & (Hour.meter == meter_id)
        & (Hour.hour >= hours[0])
        & (Hour.hour < hours[1])
    )
    if period_start is not None:
        query = query.where(Hour.period_start == period_start)
    return [(row.hour, tuple(json.loads(row.group_key)), row.value) for row in query]


def clear(subscription_id: str, meter_id: str, period_start: dt.datetime) -> None:
    """Drop a meter's figures of one period (reaggregation rebuilds them)."""
    for model in (MeterRollup, MeterDistinct, MeterDistinctHour, MeterPeriod):
        model.delete().where(
            (model.subscription == subscription_id) & (model.meter == meter_id) & (model.period_start == period_start)
        ).execute()


def meters_with_figures(subscription_id: str, period_start: dt.datetime) -> set[str]:
    """The meters holding any figure of the subscription's period."""
    found: set[str] = set()
    for model in (MeterRollup, MeterDistinct):
        query = (
            model.select(model.meter)
            .where((model.subscription == subscription_id) & (model.period_start == period_start))
            .distinct()
        )
        found.update(row.meter_id for row in query)
    return found
