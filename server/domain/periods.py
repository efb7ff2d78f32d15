"""Monthly billing periods, and a timezone's days. Pure: the timezone rules are data (zoneinfo).

A subscription's periods are cut by its Cycle: its anchor (the creation instant), how months are
counted (Anchor) and its timezone. Every period is computed from the anchor, never from the
previous period, so periods tile time without gaps and never drift.

- ANNIVERSARY (the default): monthly from the anchor on the zone's wall clock. A subscription
  anchored on Jan 31 renews on Feb 28 (or 29) and is back on Mar 31; in UTC (the default zone)
  this is the rule it always was. In another zone the renewal keeps the local time of day, so a
  period may be an hour shorter or longer than its days across a DST change.
- CALENDAR: from the 1st of each month at 00:00 in the zone. The first period runs from the anchor
  to the next 1st; its fee is the share of its whole month (Period.month_start), so a fee never
  depends on when in the month a customer signed up.

Instants are aware datetimes; periods and days are given in UTC, as they are stored. A day is
the zone's day: [its 00:00, the next day's 00:00), 23 or 25 hours long across a DST change (a
midnight that does not exist starts the day at the first instant that does).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import enum
import functools
import importlib.resources
import zoneinfo

from server.domain.errors import InvalidArgument

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
DEFAULT_TIMEZONE = "UTC"


class Anchor(enum.StrEnum):
    ANNIVERSARY = "ANNIVERSARY"
    CALENDAR = "CALENDAR"


@dataclasses.dataclass(frozen=True)
class Period:
    index: int
    start: dt.datetime
    end: dt.datetime
    # Set only on a CALENDAR subscription's first period when it began after its month did: the
    # start of that month, what the fee's share is taken of.
    month_start: dt.datetime | None = None

    def contains(self, instant: dt.datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def days(self) -> int:
        """Length in days, rounded to the nearest (a period across a DST change is an hour off), at
        least 1: a CALENDAR subscription created hours before the 1st has a first period of hours."""
        return max(1, round((self.end - self.start) / DAY))

    @property
    def length(self) -> dt.timedelta:
        """What a segment's share of the period is a share of: the whole month, also for a
        partial first period (which is then less than the whole)."""
        return self.end - (self.month_start or self.start)


def add_months(anchor: dt.datetime, months: int) -> dt.datetime:
    """The same wall-clock time `months` later, the day clamped to the month's last."""
    years, month0 = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + years, month0 + 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1]))


@functools.cache
def timezone_names() -> frozenset[str]:
    """The IANA names the maintained tzdata package ships (the same on every machine, whatever
    the system's own tz files hold)."""
    return frozenset(importlib.resources.files("tzdata").joinpath("zones").read_text().split())


def timezone(name: str) -> dt.tzinfo:
    """The zone of an IANA name ('' is UTC); anything else is 400 naming `timezone`. UTC is the
    datetime module's own: a Cycle in it runs the UTC rule exactly as it always ran."""
    name = name or DEFAULT_TIMEZONE
    if name not in timezone_names():
        raise InvalidArgument(
            f"timezone {name!r} is not an IANA time zone name (e.g. Europe/Berlin)",
            field="timezone",
            reason="UNKNOWN_TIMEZONE",
        )
    return UTC if name == DEFAULT_TIMEZONE else zoneinfo.ZoneInfo(name)


def anchor_kind(name: str) -> Anchor:
    """The billing anchor named ('' is ANNIVERSARY); anything else is 400 naming `billing_anchor`."""
    try:
        return Anchor(name or Anchor.ANNIVERSARY)
    except ValueError:
        raise InvalidArgument(
            f"billing_anchor {name!r} is not one of ANNIVERSARY, CALENDAR", field="billing_anchor"
        ) from None


def start_of_day(day: dt.date, zone: dt.tzinfo) -> dt.datetime:
    """The first instant of the zone's `day`, in UTC."""
    return dt.datetime.combine(day, dt.time(), zone).astimezone(UTC)


def date_of(instant: dt.datetime, zone: dt.tzinfo) -> dt.date:
    return instant.astimezone(zone).date()


def clock_hour(instant: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The start of the zone's clock hour holding `instant`, in UTC: hourly counters keyed by it add
    up to the zone's days exactly, also where the zone is a half or quarter hour off UTC."""
    local = instant.astimezone(zone)
    return instant.astimezone(UTC) - dt.timedelta(
        minutes=local.minute, seconds=local.second, microseconds=local.microsecond
    )


@dataclasses.dataclass(frozen=True)
class Day:
    date: dt.date
    start: dt.datetime
    end: dt.datetime


def days_of(start: dt.datetime, end: dt.datetime, zone: dt.tzinfo) -> list[Day]:
    """The zone's days that [start, end) overlaps, oldest first, each cut to the range: they
    partition it exactly."""
    found = []
    date = date_of(start, zone)
    while (begin := max(start, start_of_day(date, zone))) < end:
        if date_of(begin, zone) == date:  # not a day the zone skipped (Pacific/Apia, 2011-12-30)
            found.append(Day(date, begin, min(end, start_of_day(date + DAY, zone))))
        date += DAY
    return found


@dataclasses.dataclass(frozen=True)
class Cycle:
    """How a subscription's months are cut (see the module's docstring)."""

    anchor: dt.datetime
    kind: Anchor = Anchor.ANNIVERSARY
    zone: dt.tzinfo = UTC

    def _wall(self, instant: dt.datetime) -> dt.datetime:
        """The instant on the zone's wall clock. In UTC it is left as given, so the UTC rule also
        reads the naive UTC datetimes of the migrations' frozen tables, as it always did."""
        return instant if self.zone is UTC else instant.astimezone(self.zone)

    def _month_start(self, months: int) -> dt.datetime:
        """00:00 on the 1st, `months` after the anchor's month, in the zone."""
        first = add_months(self._wall(self.anchor).replace(day=1), months)
        return start_of_day(first.date(), self.zone)

    def _boundary(self, index: int) -> dt.datetime:
        if self.kind is Anchor.CALENDAR and index:
            return self._month_start(index)
        moved = add_months(self._wall(self.anchor), index)
        return moved if self.zone is UTC else moved.astimezone(UTC)

    def period(self, index: int) -> Period:
        start, end = self._boundary(index), self._boundary(index + 1)
        month_start = self._month_start(0) if self.kind is Anchor.CALENDAR and index == 0 else start
        return Period(index, start, end, month_start if month_start < start else None)

    def containing(self, instant: dt.datetime) -> Period:
        """The period that holds `instant` (index < 0 for instants before the anchor; CALENDAR's
        period -1 ends at the anchor)."""
        local, origin = self._wall(instant), self._wall(self.anchor)
        candidate = self.period((local.year - origin.year) * 12 + (local.month - origin.month))
        while instant < candidate.start:
            candidate = self.period(candidate.index - 1)
        while instant >= candidate.end:
            candidate = self.period(candidate.index + 1)
        return candidate


def period(anchor: dt.datetime, index: int) -> Period:
    """Period `index` of a UTC anniversary cycle."""
    return Cycle(anchor).period(index)


def period_containing(anchor: dt.datetime, instant: dt.datetime) -> Period:
    """The period of a UTC anniversary cycle that holds `instant`."""
    return Cycle(anchor).containing(instant)
