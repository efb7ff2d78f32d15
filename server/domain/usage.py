"""Usage rules: what a valid batch is, how events fold into counters, and how counters become
the daily series and analytics. Pure: events in, numbers out; time is passed in."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from server.domain.errors import InvalidArgument
from server.domain.identifiers import MAX_IDENTIFIER, identifier_problem
from server.domain.meters import API_REQUEST, EVENT_TYPE, Scalar, validate_properties
from server.domain.periods import clock_hour, date_of

MAX_BATCH = 1000
# Percentages of a plan's included requests at which a tenant is told, once per period (e-mail
# and webhook alike).
ALERT_THRESHOLDS = (80, 100)
# One event stands for at most a billion requests: with MAX_BATCH, a batch adds at most 10^12.
MAX_COUNT = 1_000_000_000
MAX_RANGE_DAYS = 366
# Clocks of callers drift; an event this far ahead of ours is still accepted.
FUTURE_SKEW = dt.timedelta(minutes=5)
MAX_EVENT_ID = MAX_IDENTIFIER
MAX_ENDPOINT = 512
TOP_ENDPOINTS = 10


# Not frozen: a frozen dataclass sets each field through object.__setattr__, several times slower,
# and a large batch builds two of these per event. Nothing mutates them.
@dataclasses.dataclass(slots=True)
class Event:
    index: int
    event_id: str
    endpoint: str
    count: int
    timestamp: dt.datetime
    event_type: str = API_REQUEST
    properties: dict[str, Scalar] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class RawEvent:
    """An event as the caller sent it: count and timestamp may be absent; no type is api_request."""

    event_id: str
    endpoint: str
    count: int | None
    timestamp: dt.datetime | None
    event_type: str = ""
    properties: Mapping[str, object] = dataclasses.field(default_factory=dict)


def validate_batch(raw: list[RawEvent], now: dt.datetime) -> list[Event]:
    """The batch with defaults applied; any invalid event rejects the whole batch, naming it."""
    if not 1 <= len(raw) <= MAX_BATCH:
        raise InvalidArgument(f"events must hold 1 to {MAX_BATCH} events, got {len(raw)}", field="events")
    events, latest = [], now + FUTURE_SKEW
    for index, event in enumerate(raw):
        event_type = event.event_type or API_REQUEST
        if event_type == API_REQUEST:
            endpoint, count = _api_request(index, event)
        else:
            if not EVENT_TYPE.fullmatch(event_type):
                raise _invalid(index, "event_type", "must match [a-z0-9_.-]{1,64}")
            if event.endpoint or event.count is not None:
                field = "endpoint" if event.endpoint else "count"
                raise _invalid(index, field, f"applies to {API_REQUEST} events only, not {event_type}")
            endpoint, count = "", 1
        if problem := identifier_problem(event.event_id):
            raise _invalid(index, "event_id", problem)
        timestamp = now if event.timestamp is None else event.timestamp
        if timestamp > latest:
            raise _invalid(index, "timestamp", f"{timestamp.isoformat()} is in the future")
        properties = validate_properties(event.properties, f"events[{index}].properties") if event.properties else {}
        events.append(Event(index, event.event_id, endpoint, count, timestamp, event_type, properties))
    return events


def _api_request(index: int, event: RawEvent) -> tuple[str, int]:
    """An api_request's endpoint (required) and count (1 when absent)."""
    endpoint = event.endpoint.strip()
    if not endpoint:
        raise _invalid(index, "endpoint", "is required")
    if len(endpoint) > MAX_ENDPOINT:
        raise _invalid(index, "endpoint", f"is longer than {MAX_ENDPOINT} characters")
    count = 1 if event.count is None else event.count
    if not 1 <= count <= MAX_COUNT:
        raise _invalid(index, "count", f"must be between 1 and {MAX_COUNT:,}, got {count}")
    return endpoint, count


def _invalid(index: int, field: str, problem: str) -> InvalidArgument:
    where = f"events[{index}].{field}"
    return InvalidArgument(f"{where} {problem}", field=where)


def first_of_each_id(events: list[Event]) -> list[Event]:
    """Events with distinct event_ids; of repeats within one batch the first occurrence wins."""
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    return list(unique.values())


def hourly_totals(events: Iterable[Event], zone: dt.tzinfo) -> dict[tuple[dt.datetime, str], int]:
    """Requests per (clock hour of the subscription's zone, endpoint): one counter upsert per key
    per batch. The zone's hours, not UTC's: its days are then whole hours also where it is a half
    or quarter hour off UTC (Asia/Kolkata), so daily usage adds up hours exactly."""
    totals: dict[tuple[dt.datetime, str], int] = defaultdict(int)
    hours: dict[dt.datetime, dt.datetime] = {}  # a batch's events mostly share a few timestamps
    for event in events:
        hour = hours.get(event.timestamp)
        if hour is None:
            hour = hours[event.timestamp] = clock_hour(event.timestamp, zone)
        totals[(hour, event.endpoint)] += event.count
    return dict(totals)


# --- date ranges, daily series, analytics -------------------------------------------------


def parse_date(value: str, field: str) -> dt.date:
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise InvalidArgument(f"{field} must be a date as YYYY-MM-DD, got {value!r}", field=field) from None


def date_range(start: str, end: str, default_start: dt.date, default_end: dt.date) -> tuple[dt.date, dt.date]:
    """The inclusive range asked for, defaults filled; start after end or over a year is refused."""
    first = parse_date(start, "start_date") if start else default_start
    last = parse_date(end, "end_date") if end else default_end
    if first > last:
        raise InvalidArgument(f"start_date {first} is after end_date {last}", field="start_date")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise InvalidArgument(
            f"end_date {last} is more than {MAX_RANGE_DAYS} days after start_date {first}", field="end_date"
        )
    return first, last


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def daily_series(
    first: dt.date, last: dt.date, hourly: dict[dt.datetime, int], zone: dt.tzinfo
) -> list[tuple[dt.date, int]]:
    """One (day of the zone, requests) per day of the range, zero-filled, oldest first."""
    per_day: Counter[dt.date] = Counter()
    for hour, requests in hourly.items():
        per_day[date_of(hour, zone)] += requests
    return [(day, per_day[day]) for day in days_between(first, last)]


@dataclasses.dataclass(frozen=True)
class Analytics:
    total_requests: int
    average_daily_requests: float
    peak_day: tuple[dt.date, int] | None
    peak_hour: tuple[dt.datetime, int] | None
    top_endpoints: list[tuple[str, int]]


def analytics(
    first: dt.date, last: dt.date, hourly: dict[dt.datetime, int], endpoints: dict[str, int], zone: dt.tzinfo
) -> Analytics:
    """Peaks are the earliest of equals; top endpoints break ties by name so output is stable."""
    days = daily_series(first, last, hourly, zone)
    total = sum(requests for _, requests in days)
    busy_days = [(day, n) for day, n in days if n]
    busy_hours = sorted((hour, n) for hour, n in hourly.items() if n)
    top = sorted(((name, n) for name, n in endpoints.items() if n), key=lambda item: (-item[1], item[0]))
    return Analytics(
        total_requests=total,
        average_daily_requests=total / len(days),
        peak_day=max(busy_days, key=lambda item: (item[1], -item[0].toordinal())) if busy_days else None,
        peak_hour=max(busy_hours, key=lambda item: (item[1], -item[0].timestamp())) if busy_hours else None,
        top_endpoints=top[:TOP_ENDPOINTS],
    )
