"""Meters: what an operator counts, and how one event becomes each meter's contribution. Pure.

An event is matched to the meters once, at ingest (docs/api.md, Meters): its type and the meter's
filter decide whether it counts; the meter's `group_by` properties name its group; the
aggregation decides its value. An event that matches a meter but has no valid value for it is
refused whole (INVALID_VALUE): half an event counted in one meter and not another is the kind of
disagreement an invoice must never show.

Values are exact decimals held as nanos (server/domain/decimals.py). Properties are compared by
their canonical text: a string as it is, a number as its exact decimal ("2" and 2.0 are "2"), a
boolean as "true" or "false", so a filter {"model": "m-large"} and a group key read the same way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence

from server.domain import decimals
from server.domain.errors import InvalidArgument
from server.domain.periods import DAY, date_of, start_of_day

Scalar = str | int | float | bool

API_REQUEST = "api_request"
REQUESTS_METER = "requests"
COUNT_PROPERTY = "count"  # an api_request event's count, as a property meters can sum
ENDPOINT_PROPERTY = "endpoint"

MAX_PROPERTIES = 32
MAX_PROPERTY_TEXT = 256
MAX_PROPERTIES_JSON = 4096
MAX_GROUP_BY = 3
MAX_FILTER = 8
MAX_NAME = 256
EVENT_TYPE = re.compile(r"[a-z0-9_.-]{1,64}")
PROPERTY_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
METER_ID = re.compile(r"[a-z0-9_-]{1,64}")


class Aggregation(enum.StrEnum):
    COUNT = "COUNT"
    SUM = "SUM"
    MAX = "MAX"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    LATEST = "LATEST"


@dataclasses.dataclass(frozen=True)
class Meter:
    id: str
    name: str
    event_type: str
    aggregation: Aggregation
    value_property: str = ""
    group_by: tuple[str, ...] = ()
    filter: tuple[tuple[str, str], ...] = ()  # sorted (property, value) pairs


REQUESTS = Meter(
    REQUESTS_METER,
    "Requests",
    API_REQUEST,
    Aggregation.SUM,
    COUNT_PROPERTY,
    (ENDPOINT_PROPERTY,),
)


def _invalid(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{field} {problem}", field=field)  # reason INVALID_ARGUMENT


# --- meter definitions -----------------------------------------------------------------


def validate_meter(
    meter_id: str,
    name: str,
    event_type: str,
    aggregation: str,
    value_property: str,
    group_by: Sequence[str],
    filter_: Mapping[str, str],
) -> Meter:
    """A meter as an operator defines it; the first fault is a 400 naming its field."""
    if not METER_ID.fullmatch(meter_id):
        raise _invalid("id", "must match [a-z0-9_-]{1,64}")
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise _invalid("name", f"must hold 1 to {MAX_NAME} characters")
    if not EVENT_TYPE.fullmatch(event_type):
        raise _invalid("event_type", "must match [a-z0-9_.-]{1,64}")
    try:
        kind = Aggregation(aggregation)
    except ValueError:
        raise _invalid("aggregation", f"must be one of {', '.join(Aggregation)}") from None
    if kind is Aggregation.COUNT:
        if value_property:
            raise _invalid("value_property", "must be empty for COUNT, which counts events")
    elif not PROPERTY_KEY.fullmatch(value_property):
        raise _invalid("value_property", f"is required for {kind} and must match [A-Za-z0-9_.-]{{1,64}}")
    if len(group_by) > MAX_GROUP_BY:
        raise _invalid("group_by", f"holds at most {MAX_GROUP_BY} properties")
    for index, key in enumerate(group_by):
        if not PROPERTY_KEY.fullmatch(key):
            raise _invalid(f"group_by[{index}]", "must match [A-Za-z0-9_.-]{1,64}")
    if len(set(group_by)) != len(group_by):
        raise _invalid("group_by", "names a property twice")
    if len(filter_) > MAX_FILTER:
        raise _invalid("filter", f"holds at most {MAX_FILTER} properties")
    for key, value in filter_.items():
        if not PROPERTY_KEY.fullmatch(key):
            raise _invalid("filter", f"key {key[:70]!r} must match [A-Za-z0-9_.-]{{1,64}}")
        if len(value) > MAX_PROPERTY_TEXT:
            raise _invalid(f"filter.{key}", f"must be at most {MAX_PROPERTY_TEXT} characters")
    return Meter(meter_id, name, event_type, kind, value_property, tuple(group_by), tuple(sorted(filter_.items())))


# --- event properties ----------------------------------------------------------------------


def validate_properties(properties: Mapping[str, object], field: str) -> dict[str, Scalar]:
    """An event's properties within docs/api.md's limits: at most 32 keys named [A-Za-z0-9_.-]{1,64},
    scalar values (strings up to 256 characters, finite numbers, booleans), 4 KiB as JSON."""
    if len(properties) > MAX_PROPERTIES:
        raise _invalid(field, f"holds {len(properties)} properties, at most {MAX_PROPERTIES}")
    for key, value in properties.items():
        if not PROPERTY_KEY.fullmatch(key):
            raise _invalid(field, f"key {key[:70]!r} must match [A-Za-z0-9_.-]{{1,64}}")
        if isinstance(value, str):
            if len(value) > MAX_PROPERTY_TEXT:
                raise _invalid(f"{field}.{key}", f"is longer than {MAX_PROPERTY_TEXT} characters")
        elif isinstance(value, bool | int):
            pass
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise _invalid(f"{field}.{key}", "must be a finite number")
        else:
            raise _invalid(f"{field}.{key}", "must be a string, a number or a boolean (nesting is refused)")
    if _json_bound(properties) > MAX_PROPERTIES_JSON:  # only a large object needs encoding to be sure
        size = len(json.dumps(properties, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_PROPERTIES_JSON:
            raise _invalid(field, f"are {size} bytes as JSON, at most {MAX_PROPERTIES_JSON}")
    return {key: value for key, value in properties.items() if isinstance(value, str | int | float)}


def _json_bound(properties: Mapping[str, object]) -> int:
    """At least the bytes of the properties as compact JSON: a key is ASCII (its quotes, colon and
    comma add 4), a string's character is at most 6 bytes escaped (its quotes add 2), a number is
    its repr, a boolean at most 5."""
    size = 2
    for key, value in properties.items():
        size += len(key) + 4 + (6 * len(value) + 2 if isinstance(value, str) else len(repr(value)))
    return size


def canonical(value: Scalar) -> str:
    """A property's text for filters, groups and distinct counting."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        try:
            return decimals.format_nanos(decimals.from_number(value))
        except decimals.NotADecimal:
            return repr(value)  # beyond a value's limits it can still be a group or a distinct key
    return value


# --- matching an event ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Contribution:
    """What one event adds to one meter: its group (the group_by properties' canonical text, ""
    where absent) and its value in nanos (COUNT: one event; UNIQUE_COUNT: 0, the distinct key in
    `distinct`)."""

    meter_id: str
    group: tuple[str, ...]
    value: int
    distinct: str = ""


def matches(meter: Meter, event_type: str, properties: Mapping[str, Scalar]) -> bool:
    if meter.event_type != event_type:
        return False
    for key, wanted in meter.filter:
        value = properties.get(key)
        if value is None or canonical(value) != wanted:
            return False
    return True


def _contribution(
    meter: Meter, group: tuple[str, ...], properties: Mapping[str, Scalar], field: str, numbers: dict[str, int]
) -> Contribution:
    """The event's contribution to a meter it matches, in its `group`; no valid value is
    INVALID_VALUE. `numbers` holds the values already parsed for other meters of the event."""
    if meter.aggregation is Aggregation.COUNT:
        return Contribution(meter.id, group, decimals.SCALE)
    value = properties.get(meter.value_property)
    if meter.aggregation is Aggregation.UNIQUE_COUNT:
        if value is None or (isinstance(value, str) and not value):
            raise _missing(meter, field, "has no value to count")
        return Contribution(meter.id, group, 0, canonical(value))
    if value is None:
        raise _missing(meter, field, "is missing")
    if meter.value_property not in numbers:
        try:
            numbers[meter.value_property] = (
                decimals.parse(value) if isinstance(value, str) else decimals.from_number(value)
            )
        except decimals.NotADecimal as error:
            raise _missing(meter, field, f"is not a valid number: {error}") from None
    return Contribution(meter.id, group, numbers[meter.value_property])


def _missing(meter: Meter, field: str, problem: str) -> InvalidArgument:
    where = f"{field}.properties.{meter.value_property}"
    return InvalidArgument(
        f"{where} {problem} (meter {meter.id!r} {meter.aggregation} needs it)",
        field=where,
        reason="INVALID_VALUE",
        metadata={"meter_id": meter.id, "property": meter.value_property},
    )


def contributions(
    meters: Sequence[Meter], event_type: str, properties: Mapping[str, Scalar], field: str
) -> list[Contribution]:
    """The event's contribution to every meter it matches, or INVALID_VALUE for the first meter
    it matches without a valid value. Each property is read once however many meters read it:
    meters grouped by the same properties share one group, and meters summing, maximizing or
    keeping the latest of one property share one parse of its value."""
    groups: dict[tuple[str, ...], tuple[str, ...]] = {}
    numbers: dict[str, int] = {}
    found = []
    for meter in meters:
        if matches(meter, event_type, properties):
            if meter.group_by not in groups:
                groups[meter.group_by] = tuple(
                    canonical(properties[key]) if key in properties else "" for key in meter.group_by
                )
            found.append(_contribution(meter, groups[meter.group_by], properties, field, numbers))
    return found


# --- folding contributions into rollups ----------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Cell:
    """A meter's aggregate of one group over some span: SUM and COUNT a total, MAX the largest,
    LATEST the value of the event latest by (timestamp, event_id). `at` and `event_id` identify
    that event for LATEST (and are kept, unused, by the others)."""

    value: int
    at: dt.datetime
    event_id: str


def merge(aggregation: Aggregation, a: Cell, b: Cell) -> Cell:
    """Two spans' aggregates as one; the order of arguments never matters."""
    if aggregation is Aggregation.MAX:
        return a if (a.value, a.at, a.event_id) >= (b.value, b.at, b.event_id) else b
    if aggregation is Aggregation.LATEST:
        return a if (a.at, a.event_id) >= (b.at, b.event_id) else b
    if aggregation is Aggregation.UNIQUE_COUNT:
        raise ValueError("distinct counts merge as sets, not cells")
    return Cell(a.value + b.value, max(a.at, b.at), max(a.event_id, b.event_id))


@dataclasses.dataclass(frozen=True, slots=True)
class Place:
    """Where an event's figures go: its period, its plan segment (by start instant) and its clock
    hour. The segment is part of every key, so a segment's figure is a sum over its own rows."""

    period_start: dt.datetime
    segment_start: dt.datetime
    hour: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Counted:
    """An event accepted for aggregation: where it falls, what identifies it for LATEST, and its
    contributions."""

    place: Place
    at: dt.datetime
    event_id: str
    contributions: list[Contribution]


CellKey = tuple[str, dt.datetime, dt.datetime, dt.datetime, tuple[str, ...]]  # meter, period, segment, hour, group
DistinctKey = tuple[str, dt.datetime, dt.datetime, tuple[str, ...], str]  # meter, period, segment, group, value
DistinctHourKey = tuple[str, dt.datetime, dt.datetime, tuple[str, ...], str]  # meter, period, hour, group, value


@dataclasses.dataclass
class Folded:
    """A batch's rollup deltas: one cell per key, the distinct values it saw (per segment and per
    hour), and per (meter, period) the magnitude SUM and COUNT cells take (|whole units| + 1 an
    event), which bounds what any counter column can reach."""

    cells: dict[CellKey, Cell] = dataclasses.field(default_factory=dict)
    distinct: set[DistinctKey] = dataclasses.field(default_factory=set)
    distinct_hours: set[DistinctHourKey] = dataclasses.field(default_factory=set)
    magnitude: dict[tuple[str, dt.datetime], int] = dataclasses.field(default_factory=dict)


def fold(aggregations: Mapping[str, Aggregation], events: Sequence[Counted]) -> Folded:
    """Fold events into per-key deltas, as the database will merge them into its rollups."""
    folded = Folded()
    for event in events:
        place = event.place
        for part in event.contributions:
            kind = aggregations[part.meter_id]
            if kind is Aggregation.UNIQUE_COUNT:
                folded.distinct.add((part.meter_id, place.period_start, place.segment_start, part.group, part.distinct))
                folded.distinct_hours.add((part.meter_id, place.period_start, place.hour, part.group, part.distinct))
                continue
            key = (part.meter_id, place.period_start, place.segment_start, place.hour, part.group)
            cell = Cell(part.value, event.at, event.event_id)
            held = folded.cells.get(key)
            folded.cells[key] = cell if held is None else merge(kind, held, cell)
            if kind in (Aggregation.SUM, Aggregation.COUNT):
                bound = (part.meter_id, place.period_start)
                folded.magnitude[bound] = folded.magnitude.get(bound, 0) + abs(part.value) // decimals.SCALE + 1
    return folded


# --- reading rollups in windows ------------------------------------------------------------

MAX_PERIOD_MAGNITUDE = 10**18  # whole units a meter's SUM/COUNT cells may take in one period
HOUR = dt.timedelta(hours=1)


class Window(enum.StrEnum):
    HOUR = "HOUR"
    DAY = "DAY"
    PERIOD = "PERIOD"


@dataclasses.dataclass(frozen=True)
class Row:
    window_start: dt.datetime
    window_end: dt.datetime
    groups: dict[str, str]
    value: str


@dataclasses.dataclass(frozen=True)
class Windows:
    """How rollups are read: windows of `size` over [start, end), days being `zone`'s (the
    subscription's: 23 or 25 hours across a DST change)."""

    size: Window
    start: dt.datetime
    end: dt.datetime
    zone: dt.tzinfo

    def of(self, hour: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """The window holding the clock hour starting at `hour` (an hour of the zone's clock)."""
        if self.size is Window.HOUR:
            return hour, hour + HOUR
        if self.size is Window.DAY:
            day = date_of(hour, self.zone)
            return start_of_day(day, self.zone), start_of_day(day + DAY, self.zone)
        return self.start, self.end


def _projection(meter: Meter, group_by: Sequence[str]) -> list[int]:
    """Positions in the meter's group key of the properties asked for; others are 400."""
    positions = []
    for index, name in enumerate(group_by):
        if name not in meter.group_by:
            raise _invalid(f"group_by[{index}]", f"{name[:70]!r} is not among meter {meter.id!r}'s group_by")
        positions.append(meter.group_by.index(name))
    return positions


def cell_rows(
    meter: Meter,
    cells: Iterable[tuple[dt.datetime, tuple[str, ...], Cell]],
    windows: Windows,
    group_by: Sequence[str],
) -> list[Row]:
    """Rows of a SUM, COUNT, MAX or LATEST meter from its (hour, group, cell) rollups."""
    positions = _projection(meter, group_by)
    merged: dict[tuple[tuple[dt.datetime, dt.datetime], tuple[str, ...]], Cell] = {}
    for hour, group, cell in cells:
        key = (windows.of(hour), tuple(group[p] for p in positions))
        held = merged.get(key)
        merged[key] = cell if held is None else merge(meter.aggregation, held, cell)
    return _rows(group_by, {key: decimals.format_nanos(cell.value) for key, cell in merged.items()})


def distinct_rows(
    meter: Meter,
    values: Iterable[tuple[dt.datetime, tuple[str, ...], str]],
    windows: Windows,
    group_by: Sequence[str],
) -> list[Row]:
    """Rows of a UNIQUE_COUNT meter from its (hour, group, distinct value) sets: each window's
    figure counts a value once however many hours, segments or groups of the meter saw it."""
    positions = _projection(meter, group_by)
    seen: dict[tuple[tuple[dt.datetime, dt.datetime], tuple[str, ...]], set[str]] = {}
    for hour, group, value in values:
        key = (windows.of(hour), tuple(group[p] for p in positions))
        seen.setdefault(key, set()).add(value)
    return _rows(group_by, {key: str(len(found)) for key, found in seen.items()})


def counted_rows(
    meter: Meter, counts: Mapping[tuple[str, ...], int], start: dt.datetime, end: dt.datetime, group_by: Sequence[str]
) -> list[Row]:
    """PERIOD rows of a UNIQUE_COUNT meter from distinct counts the database made: over all groups
    (under the key ()), or per group when `group_by` names all the meter's properties (a group's
    count is then its own; a part of them could count one value in two groups twice)."""
    positions = _projection(meter, group_by)
    if group_by and sorted(positions) != list(range(len(meter.group_by))):
        raise ValueError("distinct counts per group project only onto all of the meter's group_by")
    window = (start, end)
    return _rows(group_by, {(window, tuple(group[p] for p in positions)): str(n) for group, n in counts.items()})


def _rows(
    group_by: Sequence[str], figures: Mapping[tuple[tuple[dt.datetime, dt.datetime], tuple[str, ...]], str]
) -> list[Row]:
    """Oldest window first, then by group."""
    return [
        Row(window[0], window[1], dict(zip(group_by, group)), figures[(window, group)])
        for window, group in sorted(figures)
    ]
