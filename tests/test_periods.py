"""Anniversary period arithmetic (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from server.domain.periods import add_months, period, period_containing

UTC = dt.timezone.utc


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    "anchor, months, expected",
    [
        (at(2026, 1, 31, 9), 1, at(2026, 2, 28, 9)),
        (at(2026, 1, 31, 9), 2, at(2026, 3, 31, 9)),
        (at(2028, 1, 31, 9), 1, at(2028, 2, 29, 9)),
        (at(2026, 1, 31, 9), 3, at(2026, 4, 30, 9)),
        (at(2026, 12, 15), 1, at(2027, 1, 15)),
        (at(2026, 3, 31), -1, at(2026, 2, 28)),
    ],
)
def test_add_months_clamps_to_month_end_and_comes_back(anchor, months, expected):
    assert add_months(anchor, months) == expected


def test_periods_tile_time_without_gaps():
    anchor = at(2026, 1, 31, 14, 37, 12)
    for index in range(-3, 30):
        assert period(anchor, index).end == period(anchor, index + 1).start


@pytest.mark.parametrize(
    "instant, index",
    [
        (at(2026, 1, 31, 14, 37, 12), 0),
        (at(2026, 2, 28, 14, 37, 11), 0),
        (at(2026, 2, 28, 14, 37, 12), 1),
        (at(2026, 3, 31, 14, 37, 11), 1),
        (at(2026, 3, 31, 14, 37, 12), 2),
        (at(2026, 1, 1), -1),
    ],
)
def test_period_containing(instant, index):
    found = period_containing(at(2026, 1, 31, 14, 37, 12), instant)
    assert found.index == index and found.contains(instant)


def test_period_days():
    assert period(at(2026, 1, 31), 0).days == 28
    assert period(at(2026, 3, 1), 0).days == 31


def test_a_period_holds_its_start_instant_but_not_its_end_instant():
    """Usage exactly at a renewal belongs to the new period, never to both."""
    first = period(at(2026, 1, 31, 14, 37, 12), 0)
    assert first.contains(first.start)
    assert first.contains(first.end - dt.timedelta(microseconds=1))
    assert not first.contains(first.end)
    assert not first.contains(first.start - dt.timedelta(microseconds=1))


def test_an_instant_in_another_zone_is_placed_by_its_utc_time():
    """Jan 31 19:00 at UTC-5 is Feb 1 00:00 UTC: exactly the end of period 0, so in period 1."""
    anchor = at(2026, 1, 1)
    instant = dt.datetime(2026, 1, 31, 19, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert period_containing(anchor, instant) == period(anchor, 1)
    assert period_containing(anchor, instant - dt.timedelta(microseconds=1)) == period(anchor, 0)


@pytest.mark.parametrize(
    "anchor, instant, index",
    [
        (at(1, 1, 1), at(1, 1, 1), 0),  # the first instant datetime has: no period -1 to try
        (at(1, 1, 5), at(1, 12, 10), 11),  # eleven months on from year 1
        (at(1, 1, 31, 9), at(1, 2, 15), 0),  # Feb 15 is still before the Feb 28 renewal
        (at(9998, 12, 5), at(9999, 11, 10), 11),  # the last period datetime can end
        (at(9999, 10, 5), at(9999, 11, 10), 1),
        (at(5000, 1, 1), at(5000, 3, 1), 2),
    ],
)
def test_period_containing_never_steps_outside_the_calendar(anchor, instant, index):
    """Near year 1 and year 9999 a wrong month estimate has no period to fall back on: the search
    starts at the right month and moves by one period at a time."""
    found = period_containing(anchor, instant)
    assert found.index == index and found.contains(instant)
