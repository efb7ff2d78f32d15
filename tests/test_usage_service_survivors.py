"""services/usage.py where the mutation gate found it untested, called directly on a SQLite database
of its own: the raw event's properties as stored (compact JSON, UTF-8 kept, none for none), the
subscription locked for the batch, concurrent calls grouped in key order, INVALID_VALUE counted per
event and meter, the period's bound exactly at its limit on a first batch, a threshold crossed by
the first batch and not re-announced after an endpoint appears, the zone's days in the ranges and
counters (a zone whose dates differ from UTC's), the analytics SQL PostgreSQL gets (the "C"
collation, the column aliases, the LIMIT), a trial's requests not overage, the credit balance at
the `now` asked for, and a plan with no seed-shaped charge including nothing."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid

import pytest
from prometheus_client import REGISTRY

from factories import insert_subscription
from server.domain import decimals, webhooks
from server.domain import meters as meter_rules
from server.domain import usage as rules
from server.domain.access import KeyScope, Principal
from server.domain.errors import InvalidArgument
from server.domain.periods import period
from server.domain.usage import RawEvent
from server.persistence import db, meter_rollups
from server.persistence.models import RecordedUsageEvent, Subscription, WebhookEvent
from server.services import credits, meters, plans, usage
from server.services import webhooks as endpoints
from stores import own_database

UTC = dt.timezone.utc
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ANCHOR = dt.datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
FIRST = period(ANCHOR, 0)  # March
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
INCLUDED = 100_000  # the standard plan's


@pytest.fixture(scope="module", autouse=True)
def usage_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("usage-survivors")), db.session():
        yield


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def track(sub: str, *events: tuple[str, int, dt.datetime]) -> usage.TrackResult:
    raw = [RawEvent(uuid.uuid4().hex, endpoint, count, at) for endpoint, count, at in events]
    return usage.track(ADMIN, sub, raw, now=FIRST.end)


def listen(tenant: str) -> None:
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )


def thresholds(tenant: str) -> list[tuple[int, str]]:
    rows = WebhookEvent.select().where(
        (WebhookEvent.tenant_id == tenant) & (WebhookEvent.type == webhooks.EventType.USAGE_THRESHOLD_REACHED)
    )
    found = [json.loads(row.body)["data"] for row in rows]
    return sorted((d["threshold_percent"], d["requests"]) for d in found)


def new_plan(*charges: dict) -> str:
    plan_id = unique("us")
    raw = {"id": plan_id, "name": "Survivors", "monthly_fee_cents": 0, "rate_limit_per_minute": 60}
    plans.create_plan(ADMIN, {**raw, "charges": list(charges)}, now=ANCHOR)
    return plan_id


def new_meter(kind: str, value_property: str) -> str:
    meter_id = unique("sum")
    definition = meter_rules.validate_meter(meter_id, meter_id, kind, "SUM", value_property, [], {})
    meters.create_meter(ADMIN, definition, now=ANCHOR)
    return meter_id


# --- what a batch stores ---------------------------------------------------------------------------


def test_an_events_properties_are_stored_as_compact_utf8_json_and_none_as_null():
    sub = insert_subscription(unique("json"), anchor=ANCHOR).id
    kind = unique("kind")
    raw = [
        RawEvent("with", "", None, ANCHOR, kind, {"model": "é-1", "n": 2}),
        RawEvent("without", "", None, ANCHOR, kind, {}),
    ]
    assert usage.track(ADMIN, sub, raw, now=FIRST.end).accepted == 2
    stored = {
        row.event_id: row.properties
        for row in RecordedUsageEvent.select().where(RecordedUsageEvent.subscription == sub)
    }
    assert stored == {"with": '{"model":"é-1","n":2}', "without": None}


def test_a_batch_locks_its_subscription(monkeypatch):
    asked: list = []
    real = usage.find_subscription

    def spy(subscription_id, **kwargs):
        asked.append(kwargs.get("lock", "not asked"))
        return real(subscription_id, **kwargs)

    monkeypatch.setattr(usage, "find_subscription", spy)
    sub = insert_subscription(unique("lock"), anchor=ANCHOR).id
    track(sub, ("/a", 1, ANCHOR))
    assert asked == [True]


def test_concurrent_calls_are_committed_together_ordered_by_subscription():
    """Two calls queued while a group holds the turn: the next leader runs both, sorted by key."""
    subs = [insert_subscription(unique("group"), anchor=ANCHOR).id for _ in range(2)]
    results: dict[str, object] = {}

    def call(sub: str) -> None:
        try:
            with db.session():
                results[sub] = track(sub, ("/a", 3, ANCHOR)).accepted
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            results[sub] = error

    threads = [threading.Thread(target=call, args=(sub,)) for sub in subs]
    usage._writes._turn.acquire()
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(usage._writes._queue) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(usage._writes._queue) == 2
    finally:
        usage._writes._turn.release()
    for thread in threads:
        thread.join(10)
    assert results == {subs[0]: 1, subs[1]: 1}
    assert [usage.period_requests(sub, FIRST.start) for sub in subs] == [3, 3]


def test_a_batch_refused_for_invalid_value_counts_each_event_under_its_meter():
    kind = unique("inv")
    tokens = new_meter(kind, "tokens")
    sub = insert_subscription(unique("inv"), anchor=ANCHOR).id

    def refused() -> float:
        labels = {"reason": "INVALID_VALUE", "meter": tokens}
        return REGISTRY.get_sample_value("billing_usage_rejected_events_total", labels) or 0.0

    raw = [
        RawEvent("ok-1", "", None, ANCHOR, kind, {"tokens": 1}),
        RawEvent("ok-2", "", None, ANCHOR, kind, {"tokens": 2}),
        RawEvent("missing", "", None, ANCHOR, kind, {}),
    ]
    with pytest.raises(InvalidArgument) as error:
        usage.track(ADMIN, sub, raw, now=FIRST.end)
    assert (error.value.reason, error.value.metadata["meter_id"]) == ("INVALID_VALUE", tokens)
    assert refused() == 3
    none = REGISTRY.get_sample_value("billing_usage_rejected_events_total", {"reason": "INVALID_VALUE", "meter": ""})
    assert not none


def test_a_meter_counts_in_the_subscriptions_clock_hours():
    """Asia/Kolkata (+05:30): 10:15 UTC is 15:45 there, in the clock hour from 09:30 UTC."""
    kind = unique("hour")
    tokens = new_meter(kind, "tokens")
    sub = insert_subscription(unique("hour"), anchor=ANCHOR, timezone="Asia/Kolkata")
    at = dt.datetime(2026, 3, 4, 10, 15, tzinfo=UTC)
    usage.track(ADMIN, sub.id, [RawEvent("e", "", None, at, kind, {"tokens": 7})], now=FIRST.end)
    cells = meter_rollups.cells(sub.id, tokens, period_start=sub.current_period_start)
    assert [(hour, decimals.format_nanos(cell.value)) for _, hour, _, cell in cells] == [
        (dt.datetime(2026, 3, 4, 9, 30, tzinfo=UTC), "7")
    ]


# --- the period's bound and its thresholds ----------------------------------------------------------


def test_a_first_batch_of_exactly_the_periods_bound_is_accepted(monkeypatch):
    monkeypatch.setattr(usage, "MAX_PERIOD_REQUESTS", 10)
    sub = insert_subscription(unique("bound"), anchor=ANCHOR).id
    assert track(sub, ("/a", 4, ANCHOR), ("/b", 6, ANCHOR)).accepted == 2
    assert usage.period_requests(sub, FIRST.start) == 10
    with pytest.raises(InvalidArgument) as error:
        track(sub, ("/a", 1, ANCHOR))
    assert error.value.reason == "PERIOD_USAGE_LIMIT"


def test_a_first_batch_crosses_the_thresholds_of_one_included_request():
    tenant = unique("one")
    plan_id = new_plan(
        {
            "id": "calls",
            "meter_id": "requests",
            "model": "PER_UNIT",
            "included": 1,
            "unit_price": "50",
            "unit_size": 1000,
        }
    )
    sub = insert_subscription(tenant, plan=plan_id, anchor=ANCHOR).id
    listen(tenant)
    track(sub, ("/a", 1, ANCHOR))
    assert thresholds(tenant) == [(80, "1"), (100, "1")]


def test_a_threshold_crossed_before_an_endpoint_existed_is_not_announced_by_the_next_batch():
    tenant = unique("late")
    sub = insert_subscription(tenant, anchor=ANCHOR).id
    track(sub, ("/a", INCLUDED * 80 // 100, ANCHOR))  # 80%, nobody listening
    listen(tenant)
    track(sub, ("/a", 1, ANCHOR))
    assert thresholds(tenant) == []
    track(sub, ("/a", INCLUDED - 80_001, ANCHOR))  # exactly 100%
    assert thresholds(tenant) == [(100, str(INCLUDED))]


# --- the zone's days ---------------------------------------------------------------------------------


def kolkata() -> Subscription:
    """Monthly from 2026-03-01 20:00 UTC, which is 01:30 on March 2 in Kolkata (+05:30): its
    period's first and last days there (March 2, April 2) are not UTC's (March 1, April 1)."""
    return insert_subscription(
        unique("kol"), anchor=dt.datetime(2026, 3, 1, 20, 0, tzinfo=UTC), timezone="Asia/Kolkata"
    )


def test_the_default_range_is_the_periods_days_in_the_subscriptions_zone():
    sub = kolkata()
    assert (sub.current_period_start, sub.current_period_end) == (
        dt.datetime(2026, 3, 1, 20, 0, tzinfo=UTC),
        dt.datetime(2026, 4, 1, 20, 0, tzinfo=UTC),
    )
    series = usage.daily(ADMIN, sub.id)
    assert (series[0][0], series[-1][0], len(series)) == (dt.date(2026, 3, 2), dt.date(2026, 4, 2), 32)
    first, last, _ = usage.analytics(ADMIN, sub.id)
    assert (first, last) == (dt.date(2026, 3, 2), dt.date(2026, 4, 2))


def test_an_explicit_days_counters_are_read_between_the_zones_midnights():
    """March 3 in Kolkata is [March 2 18:30, March 3 18:30) UTC: the event at 19:00 UTC on March 2
    is in it, the one at 19:00 UTC on March 3 is not (UTC's March 3 would say the opposite)."""
    sub = kolkata()
    track(
        sub.id,
        ("/early", 1, dt.datetime(2026, 3, 2, 19, 0, tzinfo=UTC)),
        ("/mid", 5, dt.datetime(2026, 3, 3, 12, 0, tzinfo=UTC)),
        ("/late", 100, dt.datetime(2026, 3, 3, 19, 0, tzinfo=UTC)),
    )
    assert usage.daily(ADMIN, sub.id, "2026-03-03", "2026-03-03") == [(dt.date(2026, 3, 3), 6)]
    _, _, result = usage.analytics(ADMIN, sub.id, "2026-03-03", "2026-03-03")
    assert (result.total_requests, result.top_endpoints) == (6, [("/mid", 5), ("/early", 1)])


# --- the SQL PostgreSQL gets --------------------------------------------------------------------------


def test_analytics_asks_postgresql_for_the_c_collation_its_aliases_and_the_top_cut(monkeypatch, caplog):
    """On PostgreSQL the tie at the 10th place goes by code point only if the query says COLLATE "C";
    its column names are the aliases (unaliased, PostgreSQL would name them "sum"). SQLite stands
    in, with a "C" collation that compares code points."""
    monkeypatch.setattr(usage, "is_postgres", lambda: True)
    db.database.connection().create_collation("C", lambda a, b: (a > b) - (a < b))
    sub = insert_subscription(unique("sql"), anchor=ANCHOR).id
    hour = ANCHOR + dt.timedelta(days=3, hours=5)
    names = [f"/e{n:02d}" for n in range(rules.TOP_ENDPOINTS + 2)]
    track(sub, *[(name, 3, hour) for name in reversed(names)], ("/B", 3, hour), ("/z", 9, hour))
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        _, _, result = usage.analytics(ADMIN, sub, "2026-03-04", "2026-03-04")
    assert result.top_endpoints == [("/z", 9), ("/B", 3), *[(name, 3) for name in names[: rules.TOP_ENDPOINTS - 2]]]
    queries = [record.msg[0] for record in caplog.records if isinstance(record.msg, tuple)]
    [top] = [sql for sql in queries if 'GROUP BY "t1"."endpoint"' in sql]
    assert top.startswith('SELECT "t1"."endpoint", SUM("t1"."requests") AS "requests" FROM')
    assert top.endswith('ORDER BY SUM("t1"."requests") DESC, "t1"."endpoint" COLLATE "C" LIMIT ?')
    [hourly] = [sql for sql in queries if 'GROUP BY "t1"."hour"' in sql]
    assert hourly.startswith('SELECT "t1"."hour", SUM("t1"."requests") AS "requests" FROM')


def test_the_daily_series_names_its_sum_requests(caplog):
    sub = insert_subscription(unique("daily"), anchor=ANCHOR).id
    track(sub, ("/a", 2, ANCHOR))
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        assert usage.daily(ADMIN, sub, "2026-03-01", "2026-03-01") == [(dt.date(2026, 3, 1), 2)]
    queries = [record.msg[0] for record in caplog.records if isinstance(record.msg, tuple)]
    [hourly] = [sql for sql in queries if 'GROUP BY "t1"."hour"' in sql]
    assert hourly.startswith('SELECT "t1"."hour", SUM("t1"."requests") AS "requests" FROM')


# --- the summary ---------------------------------------------------------------------------------------


def test_a_trials_requests_are_not_overage():
    sub = insert_subscription(unique("trial"), anchor=ANCHOR).id
    Subscription.update(trial_end=FIRST.end).where(Subscription.id == sub).execute()
    track(sub, ("/a", INCLUDED + 10, ANCHOR + DAY))
    summary = usage.usage(ADMIN, sub, now=ANCHOR + 2 * DAY)
    assert (summary.total_requests, summary.overage_requests) == (INCLUDED + 10, 0)


def test_a_trial_ending_mid_period_leaves_only_the_later_segments_overage():
    sub = insert_subscription(unique("trial"), anchor=ANCHOR).id
    trial_end = ANCHOR + 10 * DAY
    Subscription.update(trial_end=trial_end).where(Subscription.id == sub).execute()
    track(sub, ("/a", 2 * INCLUDED, trial_end - US), ("/a", INCLUDED, trial_end))
    summary = usage.usage(ADMIN, sub, now=trial_end + DAY)
    assert summary.total_requests == 3 * INCLUDED
    assert summary.overage_requests == INCLUDED - summary.included_requests
    assert 0 < summary.included_requests < INCLUDED


def test_the_credit_balance_is_the_one_at_the_now_asked_for():
    tenant = unique("bal")
    sub = insert_subscription(tenant, anchor=ANCHOR).id
    expiry = ANCHOR + 10 * DAY
    credits.create_grant(ADMIN, credits.NewGrant(tenant, 1234, expires_at=expiry), now=ANCHOR)
    assert usage.usage(ADMIN, sub, now=expiry - US).credit_balance_cents == 1234
    assert usage.usage(ADMIN, sub, now=expiry).credit_balance_cents == 0


def test_without_a_now_the_credit_balance_is_the_one_of_this_instant():
    tenant = unique("bal")
    sub = insert_subscription(tenant, anchor=ANCHOR).id
    credits.create_grant(
        ADMIN, credits.NewGrant(tenant, 700, expires_at=dt.datetime(2100, 1, 1, tzinfo=UTC)), now=ANCHOR
    )
    assert usage.usage(ADMIN, sub).credit_balance_cents == 700


def test_a_plan_without_a_seed_shaped_charge_includes_no_requests():
    plan_id = new_plan({"id": "each", "meter_id": "requests", "model": "PER_UNIT", "included": 5, "unit_price": "1"})
    sub = insert_subscription(unique("none"), plan=plan_id, anchor=ANCHOR).id
    track(sub, ("/a", 7, ANCHOR))
    summary = usage.usage(ADMIN, sub, now=ANCHOR + DAY)
    assert (summary.total_requests, summary.included_requests, summary.remaining_included) == (7, 0, 0)
    assert summary.overage_requests == 7
