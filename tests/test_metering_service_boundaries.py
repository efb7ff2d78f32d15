"""services/metering.py called directly on a SQLite database of its own, with an explicit `now` (no
Envoy, no gRPC server): each event placed in its period, plan segment and clock hour (an event
exactly at a period's start and end, at a plan change, at an hour boundary in a zone a half hour
off UTC), a period's magnitude exactly at 10^18 (accepted) and one unit over (PERIOD_USAGE_LIMIT),
INVALID_VALUE naming the event and the property, a plan change re-keying what was counted at or
after its instant, and `reaggregate` exactly at the retention cutoff, skipping invoiced periods and
giving the same figures twice. Fast enough for the mutation gate (`[tool.mutation-gate]`)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from factories import insert_subscription, recorded_event_ids
from server.domain import decimals
from server.domain import meters as rules
from server.domain.access import KeyScope, Principal
from server.domain.errors import InvalidArgument, NotFound
from server.domain.issuer import Issuer
from server.domain.periods import period
from server.domain.usage import RawEvent
from server.persistence import db, meter_rollups
from server.persistence.models import MeterPeriod, Subscription
from server.services import invoices, metering, meters, usage
from server.services.subscriptions import SubscriptionChange, update_subscription
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
HOUR = dt.timedelta(hours=1)
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ISSUER = Issuer("Billing Co", "1 Loopback Road", "TAX-1")
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)  # Jan 31 09:30 -> Feb 28 09:30
SECOND = period(ANCHOR, 1)  # Feb 28 09:30 -> Mar 31 09:30
THIRD = period(ANCHOR, 2)
LATER = THIRD.end + dt.timedelta(days=1)  # a `now` after every event of these tests


@pytest.fixture(scope="module", autouse=True)
def metering_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("metering")), db.session():
        yield


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_meter(
    event_type: str,
    aggregation: str,
    value_property: str = "",
    *,
    group_by: tuple[str, ...] = (),
    filter_: dict[str, str] | None = None,
    at: dt.datetime = ANCHOR,
    meter_id: str | None = None,
) -> str:
    meter_id = meter_id or unique(aggregation.lower())
    definition = rules.validate_meter(
        meter_id, meter_id, event_type, aggregation, value_property, list(group_by), filter_ or {}
    )
    meters.create_meter(ADMIN, definition, now=at)
    return meter_id


def subscription(tenant: str, *, timezone: str = "UTC") -> Subscription:
    return insert_subscription(unique(tenant), anchor=ANCHOR, timezone=timezone)


def event(event_id: str, at: dt.datetime, event_type: str, **properties) -> RawEvent:
    return RawEvent(event_id, "", None, at, event_type, properties)


def track(sub: Subscription, *events: RawEvent, now: dt.datetime = LATER):
    return usage.track(ADMIN, sub.id, list(events), now=now)


def cells(sub: Subscription, meter_id: str, start: dt.datetime) -> list[tuple]:
    """(segment start, clock hour, group, value) of a meter's rollups of one period, sorted."""
    return sorted(
        (segment, hour, group, decimals.format_nanos(cell.value))
        for segment, hour, group, cell in meter_rollups.cells(sub.id, meter_id, period_start=start)
    )


def distinct(sub: Subscription, meter_id: str, start: dt.datetime) -> list[tuple]:
    return sorted(meter_rollups.distinct_by_segment(sub.id, meter_id, start))


def magnitude(sub: Subscription, meter_id: str, start: dt.datetime) -> int | None:
    row = MeterPeriod.get_or_none(
        (MeterPeriod.subscription == sub.id) & (MeterPeriod.meter == meter_id) & (MeterPeriod.period_start == start)
    )
    return row.magnitude if row else None


def at_hour(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- placing an event at ingest ----------------------------------------------------------------


def test_events_exactly_at_a_period_start_end_and_plan_change_count_in_the_period_and_segment_they_start():
    kind = unique("edges")
    tokens = new_meter(kind, "SUM", "tokens", group_by=("model",))
    sub = subscription("edges")
    change = FIRST.start + dt.timedelta(days=10)  # Feb 10 09:30
    update_subscription(ADMIN, sub.id, SubscriptionChange(plan_id="premium"), now=change)
    result = track(
        sub,
        event("start", FIRST.start, kind, model="m", tokens=1),
        event("last", FIRST.end - US, kind, model="m", tokens=2),
        event("end", FIRST.end, kind, model="m", tokens=4),
        event("before-change", change - US, kind, model="m", tokens=8),
        event("at-change", change, kind, model="m", tokens=16),
    )
    assert (result.accepted, result.duplicates, result.rejections) == (5, 0, [])
    assert cells(sub, tokens, FIRST.start) == [
        (FIRST.start, at_hour(2026, 1, 31, 9), ("m",), "1"),
        (FIRST.start, at_hour(2026, 2, 10, 9), ("m",), "8"),
        (change, at_hour(2026, 2, 10, 9), ("m",), "16"),
        (change, at_hour(2026, 2, 28, 9), ("m",), "2"),
    ]
    assert cells(sub, tokens, SECOND.start) == [(SECOND.start, at_hour(2026, 2, 28, 9), ("m",), "4")]
    assert (magnitude(sub, tokens, FIRST.start), magnitude(sub, tokens, SECOND.start)) == (1 + 2 + 8 + 16 + 4, 5)


def test_clock_hours_are_the_subscriptions_zones_also_a_half_hour_off_utc():
    """Asia/Kolkata is UTC+05:30: its clock hours start at half past in UTC."""
    kind = unique("zone")
    calls = new_meter(kind, "COUNT")
    india = subscription("kolkata", timezone="Asia/Kolkata")
    utc = subscription("utc")
    boundary = at_hour(2026, 2, 3, 10, 30)  # 16:00 in Kolkata
    for sub in (india, utc):
        track(
            sub,
            event("just-before", boundary - US, kind),
            event("exactly", boundary, kind),
            event("last-of-hour", boundary + HOUR - US, kind),
        )
    assert cells(india, calls, FIRST.start) == [
        (FIRST.start, at_hour(2026, 2, 3, 9, 30), (), "1"),
        (FIRST.start, boundary, (), "2"),
    ]
    assert cells(utc, calls, FIRST.start) == [
        (FIRST.start, at_hour(2026, 2, 3, 10), (), "2"),
        (FIRST.start, at_hour(2026, 2, 3, 11), (), "1"),
    ]


def test_a_period_may_take_exactly_10_to_the_18_units_and_not_one_more():
    """Each event takes |whole units| + 1 of its meter's period bound: 1,000 events of 10^15 - 1
    units take exactly 10^18 (accepted, with nothing held before); one more event is refused whole."""
    kind = unique("bound")
    big = new_meter(kind, "SUM", "n")
    sub = subscription("bound")
    largest = 10**15 - 1
    batch = [event(f"e{i}", FIRST.start, kind, n=largest) for i in range(1000)]
    assert track(sub, *batch).accepted == 1000
    assert magnitude(sub, big, FIRST.start) == rules.MAX_PERIOD_MAGNITUDE == 10**18
    with pytest.raises(InvalidArgument) as error:
        track(sub, event("over", FIRST.end - US, kind, n=0))
    assert (error.value.reason, error.value.violations[0].field) == ("PERIOD_USAGE_LIMIT", "events")
    assert error.value.message == (
        f"meter {big!r} would pass 10^18 units in the period starting {FIRST.start.isoformat()}"
    )
    assert "over" not in recorded_event_ids(sub.id)  # the batch rolled back whole
    assert magnitude(sub, big, FIRST.start) == 10**18
    assert track(sub, event("next", SECOND.start, kind, n=0)).accepted == 1  # the next period has its own bound
    assert magnitude(sub, big, SECOND.start) == 1


def test_a_period_holding_nearly_the_bound_takes_a_batch_up_to_it_exactly():
    kind = unique("held")
    held = new_meter(kind, "COUNT")
    other = new_meter(kind, "SUM", "n")
    sub = subscription("held")
    # A COUNT event takes 1 unit + 1 of the bound: two of them take the 4 left.
    MeterPeriod.create(subscription=sub.id, meter=held, period_start=FIRST.start, magnitude=10**18 - 4)
    assert track(sub, event("a", FIRST.start, kind, n=5), event("b", FIRST.start, kind, n=5)).accepted == 2
    assert (magnitude(sub, held, FIRST.start), magnitude(sub, other, FIRST.start)) == (10**18, 12)
    with pytest.raises(InvalidArgument) as error:
        track(sub, event("c", FIRST.start, kind, n=5))
    assert error.value.message == (
        f"meter {held!r} would pass 10^18 units in the period starting {FIRST.start.isoformat()}"
    )
    assert cells(sub, held, FIRST.start) == [(FIRST.start, at_hour(2026, 1, 31, 9), (), "2")]


def test_an_event_without_a_valid_value_refuses_the_batch_naming_the_event_the_meter_and_the_property():
    kind = unique("invalid")
    tokens = new_meter(kind, "SUM", "tokens")
    sub = subscription("invalid")
    with pytest.raises(InvalidArgument) as error:
        track(
            sub,
            event("ok-1", FIRST.start, kind, tokens=1),
            event("ok-2", FIRST.start, kind, tokens="2.5"),
            event("missing", FIRST.start, kind, model="m"),
        )
    assert (error.value.reason, error.value.violations[0].field) == ("INVALID_VALUE", "events[2].properties.tokens")
    assert error.value.message == f"events[2].properties.tokens is missing (meter {tokens!r} SUM needs it)"
    assert error.value.metadata == {"meter_id": tokens, "property": "tokens"}
    assert recorded_event_ids(sub.id) == set()
    assert cells(sub, tokens, FIRST.start) == []


def test_meters_are_read_in_id_order_and_an_archived_one_counts_nothing():
    kind = unique("order")
    suffix = uuid.uuid4().hex[:8]
    last = new_meter(kind, "SUM", "b", meter_id=f"zz-{suffix}")
    first = new_meter(kind, "SUM", "a", meter_id=f"aa-{suffix}")
    sub = subscription("order")
    with pytest.raises(InvalidArgument) as error:
        track(sub, event("none", FIRST.start, kind))
    assert error.value.metadata == {"meter_id": first, "property": "a"}
    meters.archive_meter(ADMIN, first, now=ANCHOR)
    assert track(sub, event("b-only", FIRST.start, kind, b=3)).accepted == 1
    assert (cells(sub, first, FIRST.start), cells(sub, last, FIRST.start)) == (
        [],
        [(FIRST.start, at_hour(2026, 1, 31, 9), (), "3")],
    )
    assert [m.id for m in metering.active_meters() if m.id in (first, last)] == [last]


def test_an_api_request_shows_meters_its_endpoint_and_count_and_other_events_their_own_properties():
    endpoint = f"/v1/{uuid.uuid4().hex[:8]}"
    heavy = new_meter("api_request", "SUM", "count", group_by=("endpoint",), filter_={"endpoint": endpoint})
    kind = unique("own")
    own = new_meter(kind, "SUM", "count", group_by=("endpoint",))
    sub = subscription("api")
    track(
        sub,
        RawEvent("r1", endpoint, 3, FIRST.start),
        RawEvent("r2", endpoint, 4, FIRST.start, "api_request", {"count": 100, "endpoint": "/v1/other"}),
        RawEvent("r3", "/v1/elsewhere", 5, FIRST.start),
        event("o1", FIRST.start, kind, count=7, endpoint="mine"),
    )
    hour = at_hour(2026, 1, 31, 9)
    assert cells(sub, heavy, FIRST.start) == [(FIRST.start, hour, (endpoint,), "7")]
    assert cells(sub, rules.REQUESTS_METER, FIRST.start) == sorted(
        [(FIRST.start, hour, ("/v1/elsewhere",), "5"), (FIRST.start, hour, (endpoint,), "7")]
    )
    assert cells(sub, own, FIRST.start) == [(FIRST.start, hour, ("mine",), "7")]


# --- re-keying at a plan change ------------------------------------------------------------------


def test_a_plan_change_rekeys_what_was_counted_at_or_after_its_instant_sum_and_count_exactly():
    """Events received a minute before a change at T, dated just before it, exactly at it and after
    it: SUM and COUNT move exactly; MAX, LATEST and UNIQUE_COUNT leave the earlier segment what the
    moved events showed it. Meters defined at exactly the events' receipt counted them and move;
    one defined after did not, and gets nothing."""
    kind = unique("rekey")
    change = at_hour(2026, 2, 5, 12)
    received = change - dt.timedelta(minutes=1)
    total = new_meter(kind, "SUM", "v", at=received)
    calls = new_meter(kind, "COUNT", at=received)
    peak = new_meter(kind, "MAX", "v", at=received)
    latest = new_meter(kind, "LATEST", "v", at=received)
    users = new_meter(kind, "UNIQUE_COUNT", "user", at=received)
    sub = subscription("rekey")
    track(
        sub,
        event("e1", change - US, kind, v=3, user="a"),
        event("e2", change, kind, v=5, user="b"),
        event("e3", change + dt.timedelta(minutes=2), kind, v=1, user="a"),
        now=received,
    )
    late = new_meter(kind, "SUM", "v", at=received + US)
    update_subscription(ADMIN, sub.id, SubscriptionChange(plan_id="premium"), now=change)
    before, at = at_hour(2026, 2, 5, 11), at_hour(2026, 2, 5, 12)
    old = FIRST.start
    assert cells(sub, total, old) == [(old, before, (), "3"), (old, at, (), "0"), (change, at, (), "6")]
    assert cells(sub, calls, old) == [(old, before, (), "1"), (old, at, (), "0"), (change, at, (), "2")]
    assert cells(sub, peak, old) == [(old, before, (), "3"), (old, at, (), "5"), (change, at, (), "5")]
    assert cells(sub, latest, old) == [(old, before, (), "3"), (old, at, (), "1"), (change, at, (), "1")]
    assert distinct(sub, users, old) == [(old, (), "a"), (old, (), "b"), (change, (), "a"), (change, (), "b")]
    assert cells(sub, late, old) == []
    # A later change with nothing dated at or after it moves nothing.
    update_subscription(ADMIN, sub.id, SubscriptionChange(plan_id="standard"), now=change + dt.timedelta(minutes=3))
    assert cells(sub, total, old) == [(old, before, (), "3"), (old, at, (), "0"), (change, at, (), "6")]


def test_a_meter_defined_by_its_clock_before_an_event_it_has_no_value_for_never_refuses_a_plan_change():
    """A meter created concurrently with a track call can carry a creation instant at or before
    the receipt of an event that call stored without it. If the event has no valid value for the
    meter, the meter cannot have counted it (ingestion would have refused the batch): re-keying
    leaves it out instead of refusing the plan change with INVALID_VALUE."""
    kind = unique("race")
    change = at_hour(2026, 2, 7, 12)
    received = change - dt.timedelta(minutes=1)
    counted = new_meter(kind, "SUM", "v", at=received - US, meter_id=unique("b-counted"))  # read after
    sub = subscription("race")
    track(sub, event("r1", change, kind, v=2), event("r2", change, kind, v=3), now=received)
    without_them = new_meter(kind, "SUM", "w", at=received, meter_id=unique("a-race"))  # committed after the call
    update_subscription(ADMIN, sub.id, SubscriptionChange(plan_id="premium"), now=change)
    assert Subscription.get_by_id(sub.id).plan_id == "premium"
    noon = at_hour(2026, 2, 7, 12)
    assert cells(sub, counted, FIRST.start) == [(FIRST.start, noon, (), "0"), (change, noon, (), "5")]
    assert cells(sub, without_them, FIRST.start) == []


def test_rekeying_reads_the_stored_properties_and_an_api_requests_endpoint_and_count():
    endpoint = f"/v1/{uuid.uuid4().hex[:8]}"
    change = at_hour(2026, 2, 6, 8)
    received = change - dt.timedelta(minutes=1)
    by_model = new_meter("api_request", "SUM", "count", group_by=("model",), filter_={"endpoint": endpoint})
    sub = subscription("rekey-api", timezone="Asia/Kolkata")  # 08:00 UTC is 13:30 there
    track(
        sub,
        RawEvent("plain", endpoint, 2, change),
        RawEvent("with-model", endpoint, 3, change, "api_request", {"model": "m1"}),
        now=received,
    )
    update_subscription(ADMIN, sub.id, SubscriptionChange(plan_id="premium"), now=change)
    old, hour = FIRST.start, at_hour(2026, 2, 6, 7, 30)
    assert cells(sub, by_model, old) == [
        (old, hour, ("",), "0"),
        (old, hour, ("m1",), "0"),
        (change, hour, ("",), "2"),
        (change, hour, ("m1",), "3"),
    ]
    assert cells(sub, rules.REQUESTS_METER, old) == [(old, hour, (endpoint,), "0"), (change, hour, (endpoint,), "5")]


# --- reaggregate ---------------------------------------------------------------------------------


def test_reaggregating_an_unknown_meter_is_not_found():
    with pytest.raises(NotFound) as error:
        metering.reaggregate("no-such-meter", now=LATER, retention_days=35)
    assert (error.value.reason, error.value.message) == ("METER_NOT_FOUND", "meter 'no-such-meter' not found")


def test_reaggregate_rebuilds_a_period_starting_exactly_at_the_retention_cutoff_and_not_one_before_it():
    kind = unique("cutoff")
    sub = subscription("cutoff")
    track(
        sub,
        event("first-last", FIRST.end - US, kind, n=1),
        event("second-start", SECOND.start, kind, n=2),
        event("second-mid", SECOND.start + dt.timedelta(days=3), kind, n=4),
    )
    tokens = new_meter(kind, "SUM", "n", at=LATER)  # after the events: it counted none of them
    assert (cells(sub, tokens, FIRST.start), cells(sub, tokens, SECOND.start)) == ([], [])
    just_after = metering.reaggregate(tokens, now=SECOND.start + dt.timedelta(days=30) + US, retention_days=30)
    assert (just_after.periods, just_after.events, just_after.skipped) == (0, 0, 0)
    assert cells(sub, tokens, SECOND.start) == []
    exactly = metering.reaggregate(tokens, now=SECOND.start + dt.timedelta(days=30), retention_days=30)
    assert (exactly.periods, exactly.events, exactly.skipped) == (1, 2, 0)
    assert cells(sub, tokens, FIRST.start) == []
    assert cells(sub, tokens, SECOND.start) == [
        (SECOND.start, at_hour(2026, 2, 28, 9), (), "2"),
        (SECOND.start, at_hour(2026, 3, 3, 9), (), "4"),
    ]
    both = metering.reaggregate(tokens, now=FIRST.start + dt.timedelta(days=30), retention_days=30)
    assert (both.periods, both.events, both.skipped) == (2, 3, 0)
    assert cells(sub, tokens, FIRST.start) == [(FIRST.start, at_hour(2026, 2, 28, 9), (), "1")]
    assert magnitude(sub, tokens, SECOND.start) == (2 + 1) + (4 + 1)


def test_reaggregate_skips_invoiced_periods_leaves_out_invalid_events_and_gives_the_same_figures_twice():
    kind = unique("reagg")
    sub = subscription("reagg")
    only_invalid = subscription("reagg-invalid")
    track(sub, event("invoiced", FIRST.start + HOUR, kind, kind_="chat", model="m1", tokens=10))
    invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    track(
        sub,
        event("a", SECOND.start, kind, kind_="chat", model="m1", tokens=2),
        event("b", SECOND.start + HOUR, kind, kind_="chat", model="m2", tokens="2.5"),
        event("no-tokens", SECOND.start + HOUR, kind, kind_="chat", model="m1"),
        event("image", SECOND.start + HOUR, kind, kind_="image", model="m1"),
    )
    track(only_invalid, event("c", SECOND.start, kind, kind_="chat", model="m1", tokens="many"))
    tokens = new_meter(kind, "SUM", "tokens", group_by=("model",), filter_={"kind_": "chat"}, at=LATER)
    track(sub, event("counted", SECOND.start + HOUR, kind, kind_="chat", model="m2", tokens=1))
    first_hour, second_hour = at_hour(2026, 2, 28, 9), at_hour(2026, 2, 28, 10)
    assert cells(sub, tokens, SECOND.start) == [(SECOND.start, second_hour, ("m2",), "1")]
    expected = [
        (SECOND.start, first_hour, ("m1",), "2"),
        (SECOND.start, second_hour, ("m2",), "3.5"),
    ]
    for _ in range(2):
        done = metering.reaggregate(tokens, now=SECOND.start + dt.timedelta(days=5), retention_days=35)
        assert (done.periods, done.events, done.skipped) == (2, 3, 2)
        assert cells(sub, tokens, SECOND.start) == expected
        assert magnitude(sub, tokens, SECOND.start) == 2 + 1 + (2 + 1) + (1 + 1)
        assert cells(sub, tokens, FIRST.start) == []  # invoiced: closed, left as it is
        assert cells(only_invalid, tokens, SECOND.start) == []


def test_reaggregate_keys_by_plan_segment_trial_end_and_the_zones_clock_hours():
    kind = unique("reagg-keys")
    sub = subscription("reagg-keys", timezone="Asia/Kolkata")
    trial_end = at_hour(2026, 2, 2, 10, 30)
    change = at_hour(2026, 2, 4, 12)
    Subscription.update(trial_end=trial_end).where(Subscription.id == sub.id).execute()
    track(
        sub,
        event("in-trial", trial_end - US, kind),
        event("at-trial-end", trial_end, kind),
        event("at-change", change, kind),
        now=change - dt.timedelta(minutes=1),
    )
    update_subscription(ADMIN, sub.id, SubscriptionChange(plan_id="premium"), now=change)
    track(sub, event("after", change + HOUR, kind))
    calls = new_meter(kind, "COUNT", at=LATER)
    done = metering.reaggregate(calls, now=SECOND.start, retention_days=35)
    assert (done.periods, done.events, done.skipped) == (1, 4, 0)
    assert cells(sub, calls, FIRST.start) == [
        (FIRST.start, at_hour(2026, 2, 2, 9, 30), (), "1"),
        (trial_end, trial_end, (), "1"),
        (change, at_hour(2026, 2, 4, 11, 30), (), "1"),
        (change, at_hour(2026, 2, 4, 12, 30), (), "1"),
    ]
