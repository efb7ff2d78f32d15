"""Properties of billing by segments (random plan changes and usage timelines), and of the
scheduler's jobs over every instant `run-once --now` accepts."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from factories import insert_subscription
from plan_terms import PLANS
from server.config import Settings
from server.domain.access import KeyScope, Principal
from server.domain.invoicing import included_requests, line_items, segments
from server.domain.money import div_round_half_up
from server.domain.periods import DAY, period
from server.persistence import db
from server.scheduler import jobs
from server.scheduler.cli import EARLIEST, LATEST, check_now
from server.services import subscriptions as subscription_service
from stores import own_database

UTC = dt.timezone.utc


anchors = st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1), timezones=st.just(UTC))
offsets = st.integers(1, 31 * 24 * 3600 * 1_000_000 - 1).map(lambda us: dt.timedelta(microseconds=us))
timelines = st.tuples(
    anchors,
    st.sampled_from(PLANS),
    st.lists(st.tuples(offsets, st.sampled_from(PLANS)), max_size=6),
    st.dictionaries(st.integers(0, 30), st.integers(0, 5_000_000_000), max_size=12),
)


def reference(p, history, usage):
    """The rule of API.md computed the plain way: day by day, then runs of days."""
    runs = []
    for k in range(p.days):
        plan = [plan for at, plan in sorted(history, key=lambda c: c[0]) if at <= p.start + k * DAY][-1]
        if runs and runs[-1][0] is plan:
            runs[-1][1].append(k)
        else:
            runs.append((plan, [k]))
    fees = [div_round_half_up(plan.monthly_fee_cents * len(days), p.days) for plan, days in runs]
    overages = []
    for index, (plan, days) in enumerate(runs):
        used = sum(n for day, n in usage.items() if day in days or (index == len(runs) - 1 and day >= p.days))
        included = div_round_half_up(plan.included_requests * len(days), p.days)
        overages.append(div_round_half_up(max(0, used - included) * plan.overage_per_1k_cents, 1000))
    return fees, overages


@settings(max_examples=300, deadline=None)
@given(timelines)
def test_segment_billing_matches_the_rule_and_every_line_adds_up(timeline):
    anchor, first, changes, usage = timeline
    p = period(anchor, 0)
    history = [(p.start, first)] + [(p.start + offset, plan) for offset, plan in changes if offset < p.end - p.start]
    items = line_items(p, segments(p, history), usage)
    for item in items:
        assert item.amount_cents == div_round_half_up(item.quantity_milli * item.unit_amount_cents, 1000)
    fees, overages = reference(p, history, usage)
    assert [i.amount_cents for i in items if i.unit == "month"] == fees
    assert [i.amount_cents for i in items if i.unit != "month"] == [o for o in overages if o]
    assert sum(i.amount_cents for i in items) == sum(fees) + sum(overages)


@settings(max_examples=300, deadline=None)
@given(timelines, offsets, st.sampled_from(PLANS))
def test_a_later_plan_change_never_reprices_usage_of_closed_segments(timeline, change_at, new_plan):
    """Add a change after every other one: the segments that ended before its day bill the same
    fee, included requests and overage, whatever the new plan."""
    anchor, first, changes, usage = timeline
    p = period(anchor, 0)
    history = [(p.start, first)] + [(p.start + o, plan) for o, plan in changes if o < p.end - p.start]
    last = max(at for at, _ in history)
    when = last + change_at
    if when >= p.end:
        return
    before, after = segments(p, history), segments(p, history + [(when, new_plan)])
    boundary = -(-(when - p.start) // DAY)  # the first day billed on the new plan
    closed = [s for s in before if s.first_day + s.days <= boundary]
    # Back to the plan of the last closed segment before a day started on the other: that plan
    # never was in force at a day's start, and the closed segment simply goes on.
    assume(not closed or new_plan.id != closed[-1].plan.id or closed[-1].first_day + closed[-1].days != boundary)
    assert after[: len(closed)] == closed
    lines_before = line_items(p, closed, {d: n for d, n in usage.items() if d < boundary})
    lines_after = line_items(p, after[: len(closed)], {d: n for d, n in usage.items() if d < boundary})
    assert lines_before == lines_after
    assert [included_requests(s, p.days) for s in after[: len(closed)]] == [
        included_requests(s, p.days) for s in closed
    ]


# --- the scheduler's clock --------------------------------------------------------------------

REAL_NOW = dt.datetime.now(UTC)
accepted = st.datetimes(
    EARLIEST.replace(tzinfo=None), (LATEST - dt.timedelta(microseconds=1)).replace(tzinfo=None), timezones=st.just(UTC)
)


@pytest.fixture(scope="module")
def clock_database(tmp_path_factory):
    """A database of its own, so jobs run at any instant touch no other test's rows; yields the
    scheduler's settings for it."""
    with own_database("sqlite", tmp_path_factory.mktemp("clock")) as url:
        now = dt.datetime(2026, 1, 31, 12, tzinfo=UTC)
        for plan in ("free", "standard", "premium"):
            insert_subscription(f"clock-{plan}", plan=plan, anchor=now - dt.timedelta(days=40))
        with db.session():
            subscription_service.cancel_subscription(
                Principal(key_id=0, scope=KeyScope.ADMIN), insert_subscription("clock-c", anchor=now).id, now=now
            )
        yield dataclasses.replace(Settings(), database_url=url, outbox_dir=tmp_path_factory.mktemp("out"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(now=accepted)
def test_every_job_finishes_at_any_accepted_instant(clock_database, now):
    assert check_now(now, REAL_NOW, allow_future=True) is None
    for name in jobs.JOBS:
        # Two e-mails a run are enough to render and send at `now`; all of them would take minutes.
        summary = jobs.run_job(name, now, clock_database, **({"limit": 2} if name == "deliver_outbox" else {}))
        assert summary.get("errors", 0) == 0, summary


@given(now=st.datetimes(dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_the_clock_check_accepts_exactly_the_documented_range(now):
    problem = check_now(now, REAL_NOW, allow_future=False)
    assert (problem is None) == (EARLIEST <= now <= REAL_NOW + dt.timedelta(hours=24))
    assert (check_now(now, REAL_NOW, allow_future=True) is None) == (EARLIEST <= now < LATEST)
