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
import functools
import json
from collections.abc import Iterable
from typing import Any, cast

import peewee as pw

from server.domain import decimals
from server.domain.meters import Aggregation, Cell, Folded, merge
from server.persistence.bulk import insert_ignore, upsert
from server.persistence.db import database, is_postgres
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


@functools.lru_cache(maxsize=4096)
def group_key(group: tuple[str, ...]) -> str:
    """A group as stored: a JSON list of its properties' canonical values (a batch repeats a few)."""
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
    _add_distinct(MeterDistinct, MeterDistinct.segment_start, subscription_id, folded.distinct)
    _add_distinct(MeterDistinctHour, MeterDistinctHour.hour, subscription_id, folded.distinct_hours)
    upsert(
        MeterPeriod,
        [MeterPeriod.subscription, MeterPeriod.meter, MeterPeriod.period_start],
        [MeterPeriod.magnitude],
        [(subscription_id, meter_id, start, n) for (meter_id, start), n in folded.magnitude.items()],
        {"magnitude": "{t}.magnitude + EXCLUDED.magnitude"},
    )


def _add_distinct(
    model: type[MeterDistinct] | type[MeterDistinctHour],
    place: pw.Field,
    subscription_id: str,
    values: Iterable[tuple[str, dt.datetime, dt.datetime, tuple[str, ...], str]],
) -> None:
    """Insert a batch's distinct values (meter, period start, segment start or hour, group, value)
    into a distinct set, skipping those already there. On PostgreSQL one statement per (meter,
    period, place), whose constant columns are bound once and whose groups and values are two
    text arrays: a VALUES list of 1,000 rows spent most of its time quoting and parsing the 6,000
    literals, four of them repeated on every row (docs/benchmarks-log.md)."""
    columns: list[pw.Field] = [model.subscription, model.meter, model.period_start, place, model.group_key, model.value]
    if not is_postgres():
        insert_ignore(model, columns, [(subscription_id, m, p, s, group_key(g), v) for m, p, s, g, v in values])
        return
    arrays: dict[tuple[str, dt.datetime, dt.datetime], tuple[list[str], list[str]]] = {}
    for meter_id, period_start, at, group, value in values:
        keys, found = arrays.setdefault((meter_id, period_start, at), ([], []))
        keys.append(group_key(group))
        found.append(value)
    names = ", ".join(f'"{field.column_name}"' for field in columns)
    sql = (
        f'INSERT INTO "{model._meta.table_name}" ({names}) SELECT %s, %s, %s, %s, g, v '
        "FROM unnest(%s::text[], %s::text[]) AS t(g, v) ON CONFLICT DO NOTHING"
    )
    for (meter_id, period_start, at), (keys, found) in arrays.items():
        bound = (model.period_start.db_value(period_start), place.db_value(at))
        database.execute_sql(sql, (subscription_id, meter_id, *bound, keys, found))


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


_GROUPS: dict[str, tuple[str, ...]] = {}  # group_key text -> tuple: a meter has few groups


def _group(key: str) -> tuple[str, ...]:
    found = _GROUPS.get(key)
    if found is None:
        if len(_GROUPS) > 100_000:
            _GROUPS.clear()
        found = _GROUPS[key] = tuple(json.loads(key))
    return found


def _tuples(query: pw.Query) -> Iterable[tuple[Any, ...]]:
    """The query's rows as tuples (the stubs type `.tuples()` as model instances)."""
    return cast(Iterable[tuple[Any, ...]], query.tuples())


def _cell(units: int, nanos: int, latest_at: dt.datetime | None, latest_event_id: str) -> Cell:
    return Cell(units * decimals.SCALE + nanos, latest_at, latest_event_id)  # type: ignore[arg-type]


def _where(subscription_id: str, meter_id: str, period_start: dt.datetime | None, hours: tuple | None):
    condition = (MeterRollup.subscription == subscription_id) & (MeterRollup.meter == meter_id)
    if period_start is not None:
        condition &= MeterRollup.period_start == period_start
    if hours is not None:
        condition &= (MeterRollup.hour >= hours[0]) & (MeterRollup.hour < hours[1])
    return condition


def cells(
    subscription_id: str, meter_id: str, *, period_start: dt.datetime | None = None, hours: tuple | None = None
) -> list[tuple[dt.datetime, dt.datetime, tuple[str, ...], Cell]]:
    """(segment start, hour, group, cell) of a meter's rollups: of one period, or of the clock
    hours in [hours[0], hours[1])."""
    R = MeterRollup
    query = R.select(R.segment_start, R.hour, R.group_key, R.units, R.nanos, R.latest_at, R.latest_event_id).where(
        _where(subscription_id, meter_id, period_start, hours)
    )
    return [(segment, hour, _group(key), _cell(*value)) for segment, hour, key, *value in _tuples(query)]


def summed(subscription_id: str, meter_id: str, period_start: dt.datetime) -> dict[tuple[str, ...], int]:
    """A SUM or COUNT meter's figure of one period per group, summed by the database (a period's
    rollups are one row per hour, segment and group; the sum is a row per group)."""
    R = MeterRollup
    query = (
        R.select(R.group_key, pw.fn.SUM(R.units), pw.fn.SUM(R.nanos))
        .where(_where(subscription_id, meter_id, period_start, None))
        .group_by(R.group_key)
    )
    return {_group(key): int(units) * decimals.SCALE + int(nanos) for key, units, nanos in _tuples(query)}


def extremes(
    subscription_id: str, meter_id: str, period_start: dt.datetime, kind: Aggregation
) -> dict[tuple[str, ...], Cell]:
    """A MAX or LATEST meter's figure of one period per group, found by the database: the greatest
    (units, nanos), or the latest (latest_at, latest_event_id), of each group's rollups. A first
    query finds each group's greatest units or latest instant, a second only the rows holding one
    of those. For MAX the second reduces them in SQL to one row per (group, units): a group's
    greatest units is held by many of its hours (every hour whose largest value was the period's,
    ~600 rows a group in the bench's period), and merging those rows in Python was most of the
    read (docs/benchmarks-log.md). A MAX cell's `at` and `event_id` are unused (domain/meters.py),
    so it carries the period start and "". For LATEST an instant lies in one hour and one segment,
    so a group's latest instant is held by one of its rows."""
    R = MeterRollup
    where = _where(subscription_id, meter_id, period_start, None)
    first = R.units if kind is Aggregation.MAX else R.latest_at
    best = dict(_tuples(R.select(R.group_key, pw.fn.MAX(first)).where(where).group_by(R.group_key)))
    among = where & first.in_(sorted(set(best.values())))
    if kind is Aggregation.MAX:
        rows = R.select(R.group_key, R.units, pw.fn.MAX(R.nanos)).where(among).group_by(R.group_key, R.units)
        greatest: dict[str, int] = {}  # a group's rows at other groups' greatest units lose here
        for key, units, nanos in _tuples(rows):
            value = units * decimals.SCALE + nanos
            greatest[key] = max(value, greatest.get(key, value))
        return {_group(key): Cell(value, period_start, "") for key, value in greatest.items()}
    found: dict[tuple[str, ...], Cell] = {}
    for key, *value in _tuples(R.select(R.group_key, R.units, R.nanos, R.latest_at, R.latest_event_id).where(among)):
        if value[2] != best[key]:
            continue  # another group's latest instant, not this group's
        cell, group = _cell(*value), _group(key)
        held = found.get(group)
        found[group] = cell if held is None else merge(kind, held, cell)
    return found


def distinct_counts(
    subscription_id: str, meter_id: str, period_start: dt.datetime, *, by_group: bool
) -> dict[tuple[str, ...], int]:
    """A UNIQUE_COUNT meter's distinct values of one period, counted by the database: per group,
    or over all groups (under the key ())."""
    D = MeterDistinct
    where = (D.subscription == subscription_id) & (D.meter == meter_id) & (D.period_start == period_start)
    count = pw.fn.COUNT(D.value.distinct())
    if not by_group:
        total = D.select(count).where(where).scalar()
        return {(): total} if total else {}
    return {_group(key): n for key, n in _tuples(D.select(D.group_key, count).where(where).group_by(D.group_key))}


def distinct_by_segment(
    subscription_id: str, meter_id: str, period_start: dt.datetime
) -> list[tuple[dt.datetime, tuple[str, ...], str]]:
    """(segment start, group, value) of a UNIQUE_COUNT meter's distinct sets in one period."""
    query = MeterDistinct.select(MeterDistinct.segment_start, MeterDistinct.group_key, MeterDistinct.value).where(
        (MeterDistinct.subscription == subscription_id)
        & (MeterDistinct.meter == meter_id)
        & (MeterDistinct.period_start == period_start)
    )
    return [(segment, _group(key), value) for segment, key, value in _tuples(query)]


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
    return [(hour, _group(key), value) for hour, key, value in _tuples(query)]


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
