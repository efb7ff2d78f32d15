"""Monthly anniversary periods in UTC.

Every period is computed from the anchor (the creation instant), never from the previous
period: a subscription anchored on Jan 31 renews on Feb 28 (or 29) and is back on Mar 31.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt

DAY = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class Period:
    index: int
    start: dt.datetime
    end: dt.datetime

    def contains(self, instant: dt.datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def days(self) -> int:
        """Length in days, rounded half-up (periods are whole days, but DST-free UTC makes this exact)."""
        return round((self.end - self.start) / DAY)


def add_months(anchor: dt.datetime, months: int) -> dt.datetime:
    years, month0 = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + years, month0 + 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1]))


def period(anchor: dt.datetime, index: int) -> Period:
    return Period(index, add_months(anchor, index), add_months(anchor, index + 1))


def period_containing(anchor: dt.datetime, instant: dt.datetime) -> Period:
    """The period that holds `instant` (index < 0 for instants before the anchor)."""
    index = (instant.year - anchor.year) * 12 + (instant.month - anchor.month)
    candidate = period(anchor, index)
    while instant < candidate.start:
        candidate = period(anchor, candidate.index - 1)
    while instant >= candidate.end:
        candidate = period(anchor, candidate.index + 1)
    return candidate
