"""services/segment_usage.py and services/charge_usage.py called directly on a SQLite database of
their own, with an explicit `now` (no Envoy, no gRPC server): the request counters per plan
segment (keyed by the plan history and the trial's end, sorted), a plan change moving exactly the
events dated at or after its instant and nothing of other subscriptions, and each charge's figure
per segment as invoices rate it (requests, a filtered charge, SUM and UNIQUE_COUNT meters), read
from the period asked for only. Fast enough for the mutation gate (`[tool.mutation-gate]`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from factories import insert_subscription
from server.domain import meters as rules
from server.domain.access import KeyScope, Principal
from server.domain.invoicing import Segment
from server.domain.periods import period
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.models import PlanChange, Subscription
from server.services import charge_usage, invoices, meters, plans, segment_usage, usage
from server.services.subscriptions import SubscriptionChange, update_subscription
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)  # Jan 31 09:30 -> Feb 28 09:30
SECOND = period(ANCHOR, 1)
LATER = SECOND.end + dt.timedelta(days=1)
S = 10**9  # nanos a unit


@pytest.fixture(scope="module", autouse=True)
def segment_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("segments")), db.session():
        yield


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def subscription(tenant: str, plan: str = "standard") -> Subscription:
    return insert_subscription(unique(tenant), plan=plan, anchor=ANCHOR)


def track(sub: Subscription, *events: RawEvent, now: dt.datetime = LATER) -> None:
    assert usage.track(ADMIN, sub.id, list(events), now=now).accepted == len(events)


def request(event_id: str, count: int, at: dt.datetime, endpoint: str = "/v1/x") -> RawEvent:
    return RawEvent(event_id, endpoint, count, at)


def change_plan(sub: Subscription, plan: str, at: dt.datetime) -> None:
    update_subscription(ADMIN, sub.id, SubscriptionChange(plan_id=plan), now=at)


# --- the plan history's instants ---------------------------------------------------------------


def test_the_change_instants_are_sorted_and_the_key_instants_add_the_trials_end():
    sub = subscription("instants")
    late, early = ANCHOR + dt.timedelta(days=9), ANCHOR + dt.timedelta(days=2)
    PlanChange.create(subscription=sub.id, plan="premium", effective_at=late)
    PlanChange.create(subscription=sub.id, plan="standard", effective_at=early)
    assert segment_usage.change_instants(sub.id) == [ANCHOR, early, late]
    fresh = Subscription.get_by_id(sub.id)
    assert segment_usage.key_instants(fresh) == [ANCHOR, early, late]
    trial_end = ANCHOR + dt.timedelta(days=5)
    Subscription.update(trial_end=trial_end).where(Subscription.id == sub.id).execute()
    assert segment_usage.key_instants(Subscription.get_by_id(sub.id)) == [ANCHOR, early, trial_end, late]
    assert segment_usage.change_instants(subscription("other").id) == [ANCHOR]


def test_usage_from_exactly_the_trials_end_is_counted_in_the_segment_it_starts():
    sub = subscription("trial")
    trial_end = ANCHOR + dt.timedelta(days=3)
    Subscription.update(trial_end=trial_end).where(Subscription.id == sub.id).execute()
    track(sub, request("in", 1, trial_end - US), request("at", 2, trial_end), request("after", 4, FIRST.end - US))
    assert segment_usage.requests_by_segment(sub.id, FIRST.start) == {FIRST.start: 1, trial_end: 6}


# --- the counters ----------------------------------------------------------------------------------


def test_adding_writes_only_what_changes_and_reads_back_one_subscriptions_period():
    sub, other = subscription("add"), subscription("add-other")
    middle = FIRST.start + dt.timedelta(days=4)
    first, second = (FIRST.start, FIRST.start), (SECOND.start, SECOND.start)
    segment_usage.add(sub.id, {first: 5, (FIRST.start, middle): 0, second: 2})
    segment_usage.add(other.id, {first: 100})
    assert segment_usage.requests_by_segment(sub.id, FIRST.start) == {FIRST.start: 5}  # no row of 0
    segment_usage.add(sub.id, {first: -3, (FIRST.start, middle): 7})
    assert segment_usage.requests_by_segment(sub.id, FIRST.start) == {FIRST.start: 2, middle: 7}
    assert segment_usage.requests_by_segment(sub.id, SECOND.start) == {SECOND.start: 2}
    assert segment_usage.requests_by_segment(other.id, FIRST.start) == {FIRST.start: 100}
    assert segment_usage.requests_by_segment(sub.id, FIRST.start - US) == {}


def test_a_plan_change_moves_exactly_the_requests_dated_at_or_after_it_and_nothing_of_others():
    """Events received a minute before a change at T: one dated just before T stays, one exactly
    at T and one after move to T's segment; another subscription's events dated after T, and
    events of other types, stay where they are."""
    change = FIRST.start + dt.timedelta(days=6)
    received = change - dt.timedelta(minutes=1)
    sub, other = subscription("split"), subscription("split-other")
    kind = unique("other-type")
    track(
        sub,
        RawEvent("llm-first", "", None, change, kind, {"n": 1}),
        request("before", 3, change - US),
        request("at", 5, change),
        request("after", 7, change + dt.timedelta(minutes=4)),
        now=received,
    )
    track(other, request("other", 11, change + dt.timedelta(minutes=2)), now=received)
    change_plan(sub, "premium", change)
    assert segment_usage.requests_by_segment(sub.id, FIRST.start) == {FIRST.start: 3, change: 12}
    assert segment_usage.requests_by_segment(other.id, FIRST.start) == {FIRST.start: 11}
    assert usage.period_requests(sub.id, FIRST.start) == 15
    # The history now holds the change: a second one a minute later moves only what is dated after it.
    second = change + dt.timedelta(minutes=3)
    change_plan(sub, "standard", second)
    assert segment_usage.requests_by_segment(sub.id, FIRST.start) == {FIRST.start: 3, change: 5, second: 7}


# --- each charge's figure per segment --------------------------------------------------------------


def charge(charge_id: str, meter_id: str, **more) -> dict:
    return {"id": charge_id, "meter_id": meter_id, "model": "PER_UNIT", "unit_price": "1", **more}


def new_plan(*charges: dict) -> str:
    plan_id = unique("cu")
    raw = {"id": plan_id, "name": "Charges", "monthly_fee_cents": 0, "rate_limit_per_minute": 60}
    plans.create_plan(ADMIN, {**raw, "charges": list(charges)}, now=ANCHOR)
    return plan_id


def new_meter(aggregation: str, value_property: str, kind: str) -> str:
    meter_id = unique(aggregation.lower())
    definition = rules.validate_meter(meter_id, meter_id, kind, aggregation, value_property, ["model"], {})
    meters.create_meter(ADMIN, definition, now=ANCHOR)
    return meter_id


def test_each_charge_reads_its_figure_of_each_segment_of_the_period_asked_for():
    kind = unique("llm")
    tokens, users = new_meter("SUM", "tokens", kind), new_meter("UNIQUE_COUNT", "user", kind)
    large = {"model": "m-large"}
    before = new_plan(
        charge("calls", "requests"),
        charge("heavy", "requests", filter={"endpoint": "/v1/heavy"}),
        charge("large", tokens, filter=large),
        charge("all-tokens", tokens),
        charge("users", users),
        charge("large-users", users, filter=large),
    )
    after = new_plan(charge("tokens-after", tokens), charge("calls-after", "requests"))
    sub = subscription("charges", before)
    change = FIRST.start + dt.timedelta(days=8)

    def llm(event_id: str, at: dt.datetime, model: str, n: int, user: str) -> RawEvent:
        return RawEvent(event_id, "", None, at, kind, {"model": model, "tokens": n, "user": user})

    track(
        sub,
        request("x", 3, FIRST.start),
        request("heavy", 2, change - US, "/v1/heavy"),
        llm("l1", FIRST.start, "m-large", 10, "u1"),
        llm("l2", change - US, "m-small", 5, "u2"),
        llm("l3", change - US, "m-small", 5, "u1"),
    )
    change_plan(sub, after, change)
    track(
        sub,
        request("x-after", 7, change),
        llm("l4", change, "m-large", 1, "u1"),
        request("next", 100, SECOND.start, "/v1/heavy"),
        llm("next-l", SECOND.start, "m-large", 1000, "u9"),
    )
    segments = invoices.billed_segments(Subscription.get_by_id(sub.id), FIRST)
    assert [(s.start, s.end) for s in segments] == [(FIRST.start, change), (change, FIRST.end)]
    assert charge_usage.quantities(sub.id, FIRST, segments) == [
        {"calls": 5 * S, "heavy": 2 * S, "large": 10 * S, "all-tokens": 20 * S, "users": 2 * S, "large-users": 1 * S},
        {"tokens-after": 1 * S, "calls-after": 7 * S},
    ]
    [whole] = invoices.billed_segments(Subscription.get_by_id(sub.id), SECOND)
    assert charge_usage.quantities(sub.id, SECOND, [whole]) == [{"tokens-after": 1000 * S, "calls-after": 100 * S}]


def test_a_segment_whose_plan_carries_no_charges_has_no_figures():
    sub = subscription("no-charges")
    track(sub, request("x", 3, FIRST.start))

    @dataclasses.dataclass(frozen=True)
    class Bare:
        name: str

    assert charge_usage.quantities(sub.id, FIRST, [Segment(Bare("bare"), FIRST.start, FIRST.end)]) == [{}]  # type: ignore[arg-type]
