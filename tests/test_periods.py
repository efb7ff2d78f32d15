"""Anniversary period arithmetic (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from server.domain.periods import add_months, period, period_containing

UTC = dt.timezone.utc


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("anchor, months, expected", [
    (at(2026, 1, 31, 9), 1, at(2026, 2, 28, 9)),
    (at(2026, 1, 31, 9), 2, at(2026, 3, 31, 9)),
    (at(2028, 1, 31, 9), 1, at(2028, 2, 29, 9)),
    (at(2026, 1, 31, 9), 3, at(2026, 4, 30, 9)),
    (at(2026, 12, 15), 1, at(2027, 1, 15)),
    (at(2026, 3, 31), -1, at(2026, 2, 28)),
])
def test_add_months_clamps_to_month_end_and_comes_back(anchor, months, expected):
    assert add_months(anchor, months) == expected


def test_periods_tile_time_without_gaps():
    anchor = at(2026, 1, 31, 14, 37, 12)
    for index in range(-3, 30):
        assert period(anchor, index).end == period(anchor, index + 1).start


@pytest.mark.parametrize("instant, index", [
    (at(2026, 1, 31, 14, 37, 12), 0),
    (at(2026, 2, 28, 14, 37, 11), 0),
    (at(2026, 2, 28, 14, 37, 12), 1),
    (at(2026, 3, 31, 14, 37, 11), 1),
    (at(2026, 3, 31, 14, 37, 12), 2),
    (at(2026, 1, 1), -1),
])
def test_period_containing(instant, index):
    found = period_containing(at(2026, 1, 31, 14, 37, 12), instant)
    assert found.index == index and found.contains(instant)


def test_period_days():
    assert period(at(2026, 1, 31), 0).days == 28
    assert period(at(2026, 3, 1), 0).days == 31
