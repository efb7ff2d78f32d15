"""Free trials (server/domain/trials.py), pure: where a trial ends, how it cuts a period's segments,
and that nothing timestamped before its end is charged, to the microsecond."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain import trials
from server.domain.invoicing import (
    InvoiceLine,
    Segment,
    rate_segments,
    rated_line_items,
    segment_index,
    segment_key,
    segments,
)
from server.domain.money import div_round_half_up
from server.domain.periods import period
from server.domain.plans import PlanTerms, VersionedPlan
from server.domain.rating import SCALE as N
from server.domain.rating import Charge, Model, Share

UTC = dt.timezone.utc
APRIL = period(dt.datetime(2026, 4, 1, tzinfo=UTC), 0)  # 30 days
END = dt.datetime(2026, 4, 11, tzinfo=UTC)  # a 10-day trial: a third of April
US = dt.timedelta(microseconds=1)
DAY_US = 24 * 3600 * 10**6
# 3,000 cents a month, every request 1 cent, 30 included a month (10 in a third of it).
PER_REQUEST = Charge("requests", "requests", Model.PER_UNIT, included=30, unit_price=N)
PLAN = VersionedPlan("p", 1, PlanTerms("Pro", 3000, "USD", 60, charges=(PER_REQUEST,)))
OTHER = VersionedPlan("q", 1, PlanTerms("Max", 6000, "USD", 60, charges=(PER_REQUEST,)))


def test_a_trial_ends_its_days_after_the_start_to_the_microsecond():
    start = dt.datetime(2026, 1, 31, 13, 14, 15, 161718, tzinfo=UTC)
    assert trials.trial_end(start, 14) == dt.datetime(2026, 2, 14, 13, 14, 15, 161718, tzinfo=UTC)
    assert trials.trial_end(start, 1) == start + dt.timedelta(days=1)


def test_no_trial_days_no_trial():
    assert trials.trial_end(APRIL.start, 0) is None


def test_the_trial_end_is_a_key_instant_beside_the_plan_changes():
    change = APRIL.start + dt.timedelta(days=20)
    assert trials.key_instants([APRIL.start, change], END) == [APRIL.start, END, change]
    assert trials.key_instants([APRIL.start, change], None) == [APRIL.start, change]
    assert trials.key_instants([change, APRIL.start], None) == [APRIL.start, change]


def test_split_cuts_only_the_segment_strictly_holding_the_end():
    whole = Segment(PLAN, APRIL.start, APRIL.end)
    assert trials.split([whole], END) == [Segment(PLAN, APRIL.start, END), Segment(PLAN, END, APRIL.end)]
    assert trials.split([whole], None) == [whole]
    assert trials.split([whole], APRIL.start) == [whole]  # at a start: nothing to cut
    assert trials.split([whole], APRIL.end) == [whole]  # at the end: the whole segment is in the trial
    first, second = Segment(PLAN, APRIL.start, END), Segment(OTHER, END, APRIL.end)
    assert trials.split([first, second], END) == [first, second]
    late = END + dt.timedelta(days=5)
    assert trials.split([first, second], late) == [first, Segment(OTHER, END, late), Segment(OTHER, late, APRIL.end)]


def test_a_segment_is_free_when_it_ends_at_or_before_the_trial_end():
    assert trials.free(Segment(PLAN, APRIL.start, END), END)
    assert trials.free(Segment(PLAN, APRIL.start, END - US), END)
    assert not trials.free(Segment(PLAN, APRIL.start, END + US), END)
    assert not trials.free(Segment(PLAN, END, APRIL.end), END)
    assert not trials.free(Segment(PLAN, APRIL.start, END), None)


def test_a_free_segment_bills_no_share_and_no_usage():
    trial, paid = Segment(PLAN, APRIL.start, END), Segment(PLAN, END, APRIL.end)
    assert trials.billed_share(trial, APRIL, END) == Share(0, 30 * DAY_US)
    assert trials.billed_share(paid, APRIL, END) == Share(20 * DAY_US, 30 * DAY_US)
    assert trials.billed_share(trial, APRIL, None) == Share(10 * DAY_US, 30 * DAY_US)
    assert trials.billed_quantities(trial, {"requests": N}, END) == {}
    assert trials.billed_quantities(paid, {"requests": N}, END) == {"requests": N}
    assert trials.billed_quantities(trial, {"requests": N}, None) == {"requests": N}


def _invoice(events: list[dt.datetime], end: dt.datetime | None, history=((APRIL.start, PLAN),)):
    """What April's invoice charges for one request at each instant, keyed as ingest keys it."""
    segments_ = trials.split(segments(APRIL, list(history)), end)
    instants = trials.key_instants([at for at, _ in history], end)
    per_segment = [0] * len(segments_)
    starts = [s.start for s in segments_]
    for at in events:
        per_segment[segment_index(starts, segment_key(APRIL, instants, at))] += 1
    quantities = [{"requests": n * N} for n in per_segment]
    return rated_line_items(APRIL, segments_, rate_segments(APRIL, segments_, quantities, end), end)


def test_an_event_a_microsecond_before_the_trial_end_is_not_charged():
    # 10 included in the paid two thirds... of 30: 20. 21 events just before the end: all free.
    lines = _invoice([END - US] * 21, END)
    assert [line.amount_cents for line in lines] == [0, 2000]
    assert lines[0].description == "Pro plan, free trial, 2026-04-01 00:00:00 to 2026-04-11 00:00:00 UTC"
    assert lines[1].description == "Pro plan, 2026-04-11 00:00:00 to 2026-05-01 00:00:00 UTC"


def test_an_event_at_the_trial_end_is_charged():
    lines = _invoice([END] * 21, END)  # 20 included in the paid segment: 1 billed
    assert [line.amount_cents for line in lines] == [0, 2000, 1]
    assert lines[2] == InvoiceLine(
        "Pro plan, requests: 1 requests over 20 included, 2026-04-11 00:00:00 to 2026-05-01 00:00:00 UTC",
        "1",
        "unit",
        "1",
        1,
        1,
    )


def test_without_a_trial_the_same_events_are_billed_whole():
    assert [line.amount_cents for line in _invoice([END - US] * 31, None)] == [3000, 1]


def test_a_trial_covering_the_period_bills_nothing_and_says_so():
    lines = _invoice([APRIL.start, APRIL.end - US], APRIL.end)
    assert lines == [InvoiceLine("Pro plan, free trial, monthly fee", "1", "month", "0", 0, 0)]


def test_a_plan_change_in_the_trial_stays_free_and_the_trial_end_still_cuts():
    change = END - dt.timedelta(days=5)
    lines = _invoice([change, END - US, END], END, history=((APRIL.start, PLAN), (change, OTHER)))
    assert [(line.description.split(",")[0], line.amount_cents) for line in lines] == [
        ("Pro plan", 0),
        ("Max plan", 0),
        ("Max plan", 4000),
    ]


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (END - dt.timedelta(days=3) - US, False),
        (END - dt.timedelta(days=3), True),
        (END - US, True),
        (END, False),
    ],
)
def test_the_trial_will_end_notice_is_due_in_the_three_days_before_the_end(now, due):
    assert trials.notice_due(END, now) is due


def test_no_trial_no_notice():
    assert trials.notice_due(None, END) is False


PERIOD_US = (APRIL.end - APRIL.start) // US
offsets = st.integers(min_value=0, max_value=PERIOD_US - 1).map(lambda us: APRIL.start + us * US)


@given(
    end=st.one_of(offsets, st.sampled_from([APRIL.start - US, APRIL.end, APRIL.end + US])),
    events=st.lists(offsets, max_size=8),
)
def test_exactly_the_events_from_the_trial_end_on_are_charged_and_the_fee_is_the_rest_of_the_period(end, events):
    lines = _invoice(events, end)
    paid_from = min(max(end, APRIL.start), APRIL.end)
    fee = div_round_half_up(3000 * ((APRIL.end - paid_from) // US), PERIOD_US)
    included = div_round_half_up(30 * ((APRIL.end - paid_from) // US), PERIOD_US)
    charged = sum(1 for at in events if at >= end)
    assert sum(line.amount_cents for line in lines) == fee + max(0, charged - included)
