"""Calendar billing and a timezone's days (domain/periods.py Cycle, days_of, clock_hour): pure."""

from __future__ import annotations

import datetime as dt
import itertools
import types
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain import invoicing, rating, usage
from server.domain.errors import InvalidArgument
from server.domain.periods import (
    Anchor,
    Cycle,
    Day,
    Period,
    anchor_kind,
    clock_hour,
    date_of,
    days_of,
    period,
    start_of_day,
    timezone,
    timezone_names,
)

UTC = dt.timezone.utc
HOUR = dt.timedelta(hours=1)
NEW_YORK, BERLIN, SYDNEY, KOLKATA = (
    zoneinfo.ZoneInfo(name) for name in ("America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata")
)


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def calendar(anchor: dt.datetime, zone: dt.tzinfo) -> Cycle:
    return Cycle(anchor, Anchor.CALENDAR, zone)


# --- names ----------------------------------------------------------------------------------------


def test_timezone_reads_iana_names_and_defaults_to_utc():
    assert timezone("Asia/Kolkata") == KOLKATA
    assert timezone("") is timezone("UTC") is UTC
    assert timezone("Etc/UTC") == zoneinfo.ZoneInfo("Etc/UTC")
    assert {"UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"} <= timezone_names()


@pytest.mark.parametrize("name", ["Mars/Olympus", "europe/berlin", "America", "../etc/passwd", "localtime", " UTC"])
def test_an_unknown_timezone_is_refused_naming_the_field(name):
    with pytest.raises(InvalidArgument) as refused:
        timezone(name)
    assert [v.field for v in refused.value.violations] == ["timezone"]
    assert refused.value.reason == "UNKNOWN_TIMEZONE"
    assert refused.value.message == f"timezone {name!r} is not an IANA time zone name (e.g. Europe/Berlin)"


def test_anchor_kind_defaults_to_anniversary_and_refuses_others():
    assert anchor_kind("") is Anchor.ANNIVERSARY
    assert anchor_kind("CALENDAR") is Anchor.CALENDAR
    with pytest.raises(InvalidArgument) as refused:
        anchor_kind("WEEKLY")
    assert [v.field for v in refused.value.violations] == ["billing_anchor"]
    assert refused.value.message == "billing_anchor 'WEEKLY' is not one of ANNIVERSARY, CALENDAR"


# --- calendar periods -----------------------------------------------------------------------------


def test_calendar_first_period_runs_to_the_next_first_and_is_a_share_of_its_month():
    cycle = calendar(at(2026, 2, 15, 17), NEW_YORK)  # noon in New York
    first = cycle.period(0)
    assert (first.start, first.end, first.month_start) == (at(2026, 2, 15, 17), at(2026, 3, 1, 5), at(2026, 2, 1, 5))
    assert first.length == dt.timedelta(days=28)
    assert first.days == 14  # 13.5, to the nearest even
    assert calendar(at(2026, 3, 1, 1), NEW_YORK).period(0).days == 1  # 4 hours before March


def test_calendar_months_in_new_york_across_both_dst_changes():
    cycle = calendar(at(2026, 2, 15, 17), NEW_YORK)
    march, october, november = cycle.period(1), cycle.period(8), cycle.period(9)
    assert (march.start, march.end, march.month_start) == (at(2026, 3, 1, 5), at(2026, 4, 1, 4), None)
    assert march.length == dt.timedelta(days=31) - HOUR
    assert (october.start, october.end) == (at(2026, 10, 1, 4), at(2026, 11, 1, 4))
    assert (november.start, november.end) == (at(2026, 11, 1, 4), at(2026, 12, 1, 5))
    assert november.length == dt.timedelta(days=30) + HOUR


def test_calendar_months_in_berlin_and_sydney():
    berlin = calendar(at(2026, 3, 10), BERLIN)
    assert berlin.period(1) == Period(1, at(2026, 3, 31, 22), at(2026, 4, 30, 22))
    assert berlin.period(-1) == Period(-1, at(2026, 1, 31, 23), at(2026, 3, 10))  # ends at the anchor
    sydney = calendar(at(2026, 3, 10), SYDNEY)
    april = sydney.period(1)
    assert (april.start, april.end) == (at(2026, 3, 31, 13), at(2026, 4, 30, 14))
    assert april.length == dt.timedelta(days=30) + HOUR


def test_calendar_in_kolkata_starts_months_at_half_past_utc():
    cycle = calendar(at(2026, 1, 31, 20), KOLKATA)  # Feb 1, 01:30 local: February's first period
    first = cycle.period(0)
    assert (first.start, first.end, first.month_start) == (
        at(2026, 1, 31, 20),
        at(2026, 2, 28, 18, 30),
        first.month_start,
    )
    assert first.month_start == at(2026, 1, 31, 18, 30)


def test_a_calendar_subscription_created_at_the_first_instant_of_a_month_has_a_whole_first_period():
    first = calendar(at(2026, 2, 28, 23), BERLIN).period(0)
    assert first == Period(0, at(2026, 2, 28, 23), at(2026, 3, 31, 22))
    assert first.length == first.end - first.start


def test_calendar_february_of_a_leap_year_and_the_31st():
    leap = calendar(at(2028, 1, 31, 12), BERLIN)
    assert leap.period(1) == Period(1, at(2028, 1, 31, 23), at(2028, 2, 29, 23))
    assert leap.period(2).start == at(2028, 2, 29, 23)
    created_31st = calendar(at(2026, 1, 31, 20), NEW_YORK)  # Jan 31, 15:00 in New York
    first = created_31st.period(0)
    assert (first.end, first.month_start, first.length) == (at(2026, 2, 1, 5), at(2026, 1, 1, 5), dt.timedelta(days=31))
    assert created_31st.period(1) == Period(1, at(2026, 2, 1, 5), at(2026, 3, 1, 5))


def test_the_fee_of_a_partial_first_period_is_its_share_of_the_month_rounded_half_up():
    first = calendar(at(2026, 1, 31, 20), NEW_YORK).period(0)  # 9 hours of a 744-hour January
    share = rating.Share.of(first.start, first.end, first)
    assert (share.part, share.whole) == (9 * 3600 * 10**6, 744 * 3600 * 10**6)
    assert share.prorate(2900) == 35  # 35.08
    assert share.prorate(9920) == 120  # 120.0: exact
    assert rating.Share.of(first.start, first.end, first).prorate(4960) == 60
    plan = types.SimpleNamespace(
        id="standard", name="Standard", monthly_fee_cents=2976, included_requests=1000, overage_per_1k_cents=0
    )
    segment = invoicing.Segment(plan, first.start, first.end)
    assert invoicing.prorate(2976, segment, first) == 36
    [fee] = invoicing.line_items(first, [segment], {})
    assert fee.description.startswith("Standard plan, 2026-01-31 20:00:00 to 2026-02-01 05:00:00 UTC")


@pytest.mark.parametrize(
    "instant, index",
    [
        (at(2026, 2, 15, 17), 0),
        (at(2026, 3, 1, 5) - dt.timedelta(microseconds=1), 0),
        (at(2026, 3, 1, 5), 1),
        (at(2026, 3, 31, 23), 1),  # March 31, 19:00 in New York: still March
        (at(2026, 4, 1, 4), 2),
        (at(2026, 2, 15, 16), -1),
        (at(2027, 1, 1, 4, 59), 10),
        (at(2027, 1, 1, 5), 11),
    ],
)
def test_calendar_period_containing(instant, index):
    found = calendar(at(2026, 2, 15, 17), NEW_YORK).containing(instant)
    assert found.index == index and found.contains(instant)


# --- anniversaries in a zone ----------------------------------------------------------------------


def test_a_utc_cycle_is_the_anniversary_rule_it_always_was():
    anchor = at(2026, 1, 31, 14, 37, 12)
    for index in range(-2, 14):
        assert Cycle(anchor).period(index) == period(anchor, index) == Cycle(anchor, zone=UTC).period(index)
        assert Cycle(anchor).period(index).month_start is None


def test_the_utc_rule_reads_naive_utc_datetimes_as_it_always_did():
    """The migrations' frozen tables give naive UTC datetimes."""
    anchor = dt.datetime(2026, 1, 31, 9)
    assert period(anchor, 1) == Period(1, dt.datetime(2026, 2, 28, 9), dt.datetime(2026, 3, 31, 9))
    assert Cycle(anchor).containing(dt.datetime(2026, 3, 31, 8)).index == 1


def test_a_zoned_anniversary_keeps_the_local_time_of_day_across_dst():
    cycle = Cycle(at(2026, 3, 31, 14), Anchor.ANNIVERSARY, NEW_YORK)  # 10:00 EDT on the 31st
    assert cycle.period(0) == Period(0, at(2026, 3, 31, 14), at(2026, 4, 30, 14))
    assert cycle.period(8).start == at(2026, 11, 30, 15)  # 10:00 EST
    assert cycle.period(8).start.tzinfo is UTC  # as stored
    assert cycle.period(7).length == dt.timedelta(days=30) + HOUR  # October 31 to November 30


def test_a_zoned_anniversary_clamps_on_the_local_calendar():
    """Jan 31, 00:30 in Berlin is Jan 30 in UTC: it renews on Feb 28 local, a day before UTC would."""
    cycle = Cycle(at(2027, 1, 30, 23, 30), Anchor.ANNIVERSARY, BERLIN)
    assert cycle.period(1).start == at(2027, 2, 27, 23, 30)
    assert cycle.period(2).start == at(2027, 3, 30, 22, 30)
    assert period(at(2027, 1, 30, 23, 30), 1).start == at(2027, 2, 28, 23, 30)


# --- days -----------------------------------------------------------------------------------------


def test_days_in_new_york_are_23_and_25_hours_at_the_dst_changes():
    march = calendar(at(2026, 2, 15, 17), NEW_YORK).period(1)
    found = days_of(march.start, march.end, NEW_YORK)
    assert len(found) == 31
    assert found[7] == Day(dt.date(2026, 3, 8), at(2026, 3, 8, 5), at(2026, 3, 9, 4))
    assert [d.date for d in found if d.end - d.start != dt.timedelta(days=1)] == [dt.date(2026, 3, 8)]
    fall = days_of(at(2026, 11, 1, 4), at(2026, 11, 3, 5), NEW_YORK)
    assert [(d.date, d.end - d.start) for d in fall] == [
        (dt.date(2026, 11, 1), 25 * HOUR),
        (dt.date(2026, 11, 2), 24 * HOUR),
    ]


def test_days_in_berlin_and_sydney_at_their_dst_changes():
    assert days_of(at(2026, 3, 28, 23), at(2026, 3, 29, 22), BERLIN) == [
        Day(dt.date(2026, 3, 29), at(2026, 3, 28, 23), at(2026, 3, 29, 22))
    ]
    assert days_of(at(2026, 10, 24, 22), at(2026, 10, 25, 23), BERLIN)[0].date == dt.date(2026, 10, 25)
    sydney = days_of(at(2026, 4, 4, 13), at(2026, 10, 4, 13), SYDNEY)
    lengths = {d.date: d.end - d.start for d in sydney}
    assert lengths[dt.date(2026, 4, 5)] == 25 * HOUR
    assert lengths[dt.date(2026, 10, 4)] == 23 * HOUR
    assert sum(lengths.values(), dt.timedelta()) == at(2026, 10, 4, 13) - at(2026, 4, 4, 13)


def test_days_cut_to_the_range_and_skip_a_day_the_zone_skipped():
    assert days_of(at(2026, 3, 1, 12), at(2026, 3, 2, 2), KOLKATA) == [
        Day(dt.date(2026, 3, 1), at(2026, 3, 1, 12), at(2026, 3, 1, 18, 30)),
        Day(dt.date(2026, 3, 2), at(2026, 3, 1, 18, 30), at(2026, 3, 2, 2)),
    ]
    apia = zoneinfo.ZoneInfo("Pacific/Apia")  # went from Dec 29 to Dec 31, 2011
    assert [d.date.day for d in days_of(at(2011, 12, 29, 10), at(2011, 12, 31, 10), apia)] == [29, 31]
    assert days_of(at(2026, 3, 1), at(2026, 3, 1), UTC) == []


def test_start_of_day_where_midnight_does_not_exist():
    """Santiago moved its clocks from 24:00 to 01:00 on 2026-09-06: the day starts at 01:00."""
    santiago = zoneinfo.ZoneInfo("America/Santiago")
    assert start_of_day(dt.date(2026, 9, 6), santiago) == at(2026, 9, 6, 4)
    assert start_of_day(dt.date(2026, 9, 6), santiago).tzinfo is UTC
    assert date_of(at(2026, 9, 6, 4), santiago) == dt.date(2026, 9, 6)
    assert date_of(at(2026, 9, 6, 4) - dt.timedelta(microseconds=1), santiago) == dt.date(2026, 9, 5)


def test_clock_hours_follow_the_zone():
    instant = at(2026, 3, 1, 5, 10, 7, 9)
    assert clock_hour(instant, UTC) == at(2026, 3, 1, 5)
    assert clock_hour(instant, KOLKATA) == at(2026, 3, 1, 4, 30)
    assert clock_hour(instant, zoneinfo.ZoneInfo("Asia/Kathmandu")) == at(2026, 3, 1, 4, 15)
    assert clock_hour(instant.astimezone(NEW_YORK), NEW_YORK).tzinfo is UTC


def test_usage_counts_the_zones_clock_hours_and_days():
    """Kolkata's day starts at 18:30 UTC: its hourly counters start at half past, and add up to its days."""
    events = [
        usage.Event(0, "a", "/x", 1, at(2026, 11, 21, 18, 29, 59)),
        usage.Event(1, "b", "/x", 20, at(2026, 11, 21, 18, 30)),
        usage.Event(2, "c", "/x", 300, at(2026, 11, 21, 19, 10)),
    ]
    hourly = usage.hourly_totals(events, KOLKATA)
    assert hourly == {(at(2026, 11, 21, 17, 30), "/x"): 1, (at(2026, 11, 21, 18, 30), "/x"): 320}
    per_hour = {hour: n for (hour, _), n in hourly.items()}
    days = [(dt.date(2026, 11, 21), 1), (dt.date(2026, 11, 22), 320)]
    assert usage.daily_series(dt.date(2026, 11, 21), dt.date(2026, 11, 22), per_hour, KOLKATA) == days
    result = usage.analytics(dt.date(2026, 11, 21), dt.date(2026, 11, 22), per_hour, {"/x": 321}, KOLKATA)
    assert (result.peak_day, result.peak_hour) == ((dt.date(2026, 11, 22), 320), (at(2026, 11, 21, 18, 30), 320))


# --- the property: days and segments partition every period ---------------------------------------

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "America/Santiago",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "America/Adak",
]


def within(found: Period, fraction: float) -> dt.datetime:
    """The instant `fraction` of the way through the period, to the microsecond."""
    span = (found.end - found.start) // dt.timedelta(microseconds=1)
    return found.start + dt.timedelta(microseconds=min(span - 1, int(span * fraction)))


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES).map(zoneinfo.ZoneInfo),
    kind=st.sampled_from(list(Anchor)),
    anchor=st.datetimes(dt.datetime(2005, 1, 1), dt.datetime(2035, 1, 1), timezones=st.just(UTC)),
    index=st.integers(0, 30),
    fractions=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=6),
    changes=st.lists(st.floats(0, 1, exclude_max=True), max_size=3),
)
def test_days_and_segments_partition_every_period(zone, kind, anchor, index, fractions, changes):
    cycle = Cycle(anchor, kind, zone)
    found = cycle.period(index)
    assert found.start < found.end == cycle.period(index + 1).start
    assert dt.timedelta(days=27) < found.length < dt.timedelta(days=32) or (index == 0 and kind is Anchor.CALENDAR)
    if kind is Anchor.CALENDAR and index:
        assert found.start == start_of_day(date_of(found.start, zone), zone) and date_of(found.start, zone).day == 1
    days = days_of(found.start, found.end, zone)
    assert days[0].start == found.start and days[-1].end == found.end
    assert all(a.end == b.start and a.date < b.date for a, b in itertools.pairwise(days))
    assert all(d.start < d.end <= d.start + dt.timedelta(hours=26) for d in days)
    plan = types.SimpleNamespace(name="p")
    history = [(anchor, plan)] + [(within(found, f), plan) for f in changes]
    segments = invoicing.segments(found, history)
    assert segments[0].start == found.start and segments[-1].end == found.end
    for fraction in fractions:
        instant = within(found, fraction)
        assert cycle.containing(instant) == found
        [day] = [d for d in days if d.start <= instant < d.end]
        assert day.date == date_of(instant, zone) == date_of(clock_hour(instant, zone), zone)
        assert clock_hour(instant, zone) <= instant < clock_hour(instant, zone) + HOUR
        assert len([s for s in segments if s.start <= instant < s.end]) == 1
