"""Properties of billing by segments (random plan changes and usage timelines), and of the
scheduler's jobs over every instant `run-once --now` accepts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from factories import insert_subscription
from plan_terms import PLANS
from server.config import Settings
from server.domain.access import KeyScope, Principal
from server.domain.invoicing import line_items, segment_key, segments
from server.domain.money import div_round_half_up
from server.domain.periods import period
from server.persistence import db
from server.scheduler import jobs
from server.scheduler.cli import EARLIEST, LATEST, check_now
from server.services import subscriptions as subscription_service
from stores import own_database

UTC = dt.timezone.utc


anchors = st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1), timezones=st.just(UTC))
US = dt.timedelta(microseconds=1)
MONTH_US = 28 * 24 * 3600 * 1_000_000  # the shortest period: every offset below falls inside any period
# Instants anywhere in the period, and clusters: several within an hour, or a few microseconds apart.
offsets = st.one_of(
    st.integers(0, MONTH_US - 1),
    st.integers(0, 3600 * 1_000_000).map(lambda us: 10 * 24 * 3600 * 1_000_000 + us),
    st.integers(0, 3),
).map(lambda us: dt.timedelta(microseconds=us))
counts = st.integers(1, 5_000_000_000)
# Arrival order: ("change", offset, plan) | ("event", offset, count), in the order they reach the
# server; an event's timestamp is anywhere (late or future-dated), whatever changes came before.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("change"), offsets, st.sampled_from(PLANS)),
        st.tuples(st.just("event"), offsets, counts),
    ),
    max_size=12,
)
timelines = st.tuples(anchors, st.sampled_from(PLANS), operations, st.none() | offsets)


def half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def reference(p, history, events, canceled_at):
    """The rule of docs/api.md (Invoices) the plain way: the period cut at every change (and the cancellation),
    each piece on the plan of the last change at or before its start, each event on the piece its
    timestamp falls in (after the cancellation: the last piece), shares as exact fractions."""
    end = p.end if canceled_at is None else min(p.end, max(p.start, canceled_at))
    cuts = sorted({p.start, end, *(at for at, _ in history if p.start < at < end)})
    pieces = list(itertools.pairwise(cuts)) or [(p.start, p.start)]
    fees, overages = [], []
    for a, b in pieces:
        in_force = [plan for at, plan in history if at <= a]
        plan = in_force[-1] if in_force else history[0][1]
        share = Fraction((b - a) // US, (p.end - p.start) // US)
        used = sum(n for at, n in events if a <= at < b or (b == end and at >= end))
        included = half_up(plan.included_requests * share)
        fees.append(half_up(plan.monthly_fee_cents * share))
        overages.append(half_up(Fraction(max(0, used - included) * plan.overage_per_1k_cents, 1000)))
    return fees, overages


def ingest(p, first, operations):
    """Counters as ingestion and plan changes keep them (services/usage.py, segment_usage.split_at):
    each event under its segment key when it arrives, re-keyed by each later change at or before
    its timestamp. Returns the history in arrival order, the events, and the counters."""
    history, changes, events, counters = [(p.start, first)], [p.start], [], Counter()
    for kind, offset, value in operations:
        at = p.start + offset
        if kind == "event":
            events.append((at, value))
            counters[segment_key(p, changes, at)] += value
            continue
        before, changes = changes, sorted([*changes, at])
        history.append((at, value))
        for when, n in events:
            if when >= at:
                counters[segment_key(p, before, when)] -= n
                counters[segment_key(p, changes, when)] += n
    # Stable by instant: of changes at one instant the later arrival wins, as PlanChange ids order them.
    return sorted(history, key=lambda change: change[0]), events, counters


@settings(max_examples=400, deadline=None)
@given(timelines)
def test_segment_billing_matches_the_rule_and_every_line_adds_up(timeline):
    anchor, first, ops, cancel = timeline
    p = period(anchor, 0)
    canceled_at = None if cancel is None else p.start + cancel
    history, events, counters = ingest(p, first, ops)
    items = line_items(p, segments(p, history, canceled_at), counters)
    for item in items:
        assert item.amount_cents == div_round_half_up(item.quantity_milli * item.unit_amount_cents, 1000)
    fees, overages = reference(p, history, events, canceled_at)
    assert [i.amount_cents for i in items if i.unit == "month"] == fees
    assert [i.amount_cents for i in items if i.unit != "month"] == [o for o in overages if o]
    assert sum(i.amount_cents for i in items) == sum(fees) + sum(overages)


@settings(max_examples=300, deadline=None)
@given(timelines, offsets, st.sampled_from(PLANS))
def test_a_later_plan_change_never_reprices_usage_of_closed_segments(timeline, change_at, new_plan):
    """Add a change after every other one: the segments that ended before it bill the same fee,
    included requests and overage, whatever the new plan."""
    anchor, first, ops, _ = timeline
    p = period(anchor, 0)
    history, _, counters = ingest(p, first, ops)
    when = max(at for at, _ in history) + change_at
    assume(when < p.end)
    before, after = segments(p, history), segments(p, [*history, (when, new_plan)])
    closed = [s for s in before if s.end <= when]
    assert after[: len(closed)] == closed
    assert after[len(closed)].start == (closed[-1].end if closed else p.start)
    if closed:
        earlier = {key: n for key, n in counters.items() if key < closed[-1].end}
        assert line_items(p, closed, earlier) == line_items(p, after[: len(closed)], earlier)


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
