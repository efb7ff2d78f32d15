"""services/usage.py's read paths and its threshold events, called directly on a SQLite database of
their own: the daily series and analytics at the edges of a day and of the period (an event at
00:00 exactly, at the period's last instant), the top endpoints' cut and ties, and the
usage.threshold_reached event at exactly 80% and 100% of the included requests."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from prometheus_client import REGISTRY

from factories import insert_subscription
from server.domain import usage as rules
from server.domain import webhooks
from server.domain.access import KeyScope, Principal
from server.domain.errors import InvalidArgument, NotFound
from server.domain.periods import Anchor, period
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.models import WebhookEvent
from server.services import credits, usage
from server.services import webhooks as endpoints
from stores import own_database

UTC = dt.timezone.utc
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ANCHOR = dt.datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
FIRST = period(ANCHOR, 0)  # March
US = dt.timedelta(microseconds=1)
INCLUDED = 100_000  # the standard plan's


@pytest.fixture(scope="module", autouse=True)
def usage_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("usage")), db.session():
        yield


def subscription() -> str:
    return insert_subscription(f"u-{uuid.uuid4().hex[:10]}", anchor=ANCHOR).id


def track(sub: str, *events: tuple[str, int, dt.datetime]) -> None:
    raw = [RawEvent(uuid.uuid4().hex, endpoint, count, at) for endpoint, count, at in events]
    usage.track(ADMIN, sub, raw, now=FIRST.end)


def test_the_daily_series_puts_an_event_at_midnight_in_the_day_it_starts():
    sub = subscription()
    day2 = ANCHOR + dt.timedelta(days=1)
    track(sub, ("/a", 1, ANCHOR), ("/a", 2, day2 - US), ("/b", 4, day2), ("/a", 8, FIRST.end - US))
    series = usage.daily(ADMIN, sub)
    assert len(series) == 31 and series[0][0] == ANCHOR.date() and series[-1][0] == (FIRST.end - US).date()
    assert series[0] == (ANCHOR.date(), 3)
    assert series[1] == (day2.date(), 4)
    assert series[-1] == ((FIRST.end - US).date(), 8)
    assert sum(n for _, n in series) == 15


def test_an_explicit_range_reads_its_days_only_and_a_reversed_one_is_refused():
    sub = subscription()
    track(sub, ("/a", 1, ANCHOR + dt.timedelta(days=1, hours=23)), ("/a", 2, ANCHOR + dt.timedelta(days=2)))
    assert usage.daily(ADMIN, sub, "2026-03-02", "2026-03-02") == [(dt.date(2026, 3, 2), 1)]
    assert usage.daily(ADMIN, sub, "2026-03-03", "2026-03-04") == [(dt.date(2026, 3, 3), 2), (dt.date(2026, 3, 4), 0)]
    with pytest.raises(InvalidArgument, match="after end_date"):
        usage.daily(ADMIN, sub, "2026-03-04", "2026-03-03")


def test_analytics_keeps_the_top_endpoints_by_requests_then_name():
    sub = subscription()
    hour = ANCHOR + dt.timedelta(days=3, hours=5)
    names = [f"/e{n:02d}" for n in range(rules.TOP_ENDPOINTS + 2)]
    track(sub, *[(name, 5 if n < 2 else 3, hour) for n, name in enumerate(names)], ("/z", 9, hour + US))
    first, last, result = usage.analytics(ADMIN, sub, "2026-03-04", "2026-03-05")
    assert (first, last) == (dt.date(2026, 3, 4), dt.date(2026, 3, 5))
    expected = [("/z", 9), ("/e00", 5), ("/e01", 5), *[(name, 3) for name in names[2 : rules.TOP_ENDPOINTS - 1]]]
    assert result.top_endpoints == expected and len(expected) == rules.TOP_ENDPOINTS
    total = 9 + 2 * 5 + 3 * (len(names) - 2)
    assert (result.total_requests, result.average_daily_requests) == (total, total / 2)
    assert result.peak_day == (dt.date(2026, 3, 4), total)
    assert result.peak_hour == (hour, total)


def test_analytics_reads_only_its_range_and_its_subscription():
    sub, other = subscription(), subscription()
    track(sub, ("/in", 1, ANCHOR + dt.timedelta(days=1)), ("/out", 7, ANCHOR + dt.timedelta(days=2)))
    track(other, ("/in", 100, ANCHOR + dt.timedelta(days=1)))
    _, _, result = usage.analytics(ADMIN, sub, "2026-03-02", "2026-03-02")
    assert (result.total_requests, result.top_endpoints) == (1, [("/in", 1)])


def threshold_events(tenant: str) -> list[dict]:
    rows = WebhookEvent.select().where(
        (WebhookEvent.tenant_id == tenant) & (WebhookEvent.type == webhooks.EventType.USAGE_THRESHOLD_REACHED)
    )
    return sorted((json.loads(row.body)["data"] for row in rows), key=lambda d: d["threshold_percent"])


def test_a_threshold_event_fires_at_exactly_80_and_100_percent_once_each():
    tenant = f"w-{uuid.uuid4().hex[:10]}"
    sub = insert_subscription(tenant, anchor=ANCHOR).id
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    track(sub, ("/a", INCLUDED * 80 // 100 - 1, ANCHOR))
    assert threshold_events(tenant) == []
    track(sub, ("/a", 1, ANCHOR))  # exactly 80%
    [eighty] = threshold_events(tenant)
    assert (eighty["threshold_percent"], eighty["requests"], eighty["included_requests"]) == (
        80,
        "80000",
        "100000",
    )  # int64: strings
    assert (eighty["subscription_id"], eighty["tenant_id"], eighty["plan_id"]) == (sub, tenant, "standard")
    assert (eighty["period_start"], eighty["period_end"]) == ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    track(sub, ("/a", INCLUDED - 80_000 - 1, ANCHOR))
    assert len(threshold_events(tenant)) == 1
    track(sub, ("/a", 1, ANCHOR))  # exactly 100%
    assert [(e["threshold_percent"], e["requests"]) for e in threshold_events(tenant)] == [
        (80, "80000"),
        (100, "100000"),
    ]
    track(sub, ("/a", 5, ANCHOR))
    assert len(threshold_events(tenant)) == 2


def test_no_threshold_event_without_an_endpoint_that_wants_it():
    tenant = f"n-{uuid.uuid4().hex[:10]}"
    sub = insert_subscription(tenant, anchor=ANCHOR).id
    track(sub, ("/a", INCLUDED, ANCHOR))
    assert threshold_events(tenant) == []


def test_the_reads_answer_only_a_caller_who_may_see_the_subscription():
    sub = subscription()
    stranger = Principal(key_id=9, scope=KeyScope.TENANT, tenant_id="someone-else")
    for read in (usage.usage, usage.daily, usage.analytics):
        with pytest.raises(NotFound):
            read(stranger, sub)


def test_the_summary_is_of_the_current_period_in_the_plans_currency():
    sub = subscription()
    track(sub, ("/a", INCLUDED + 10, ANCHOR))
    summary = usage.usage(ADMIN, sub)
    assert (summary.subscription_id, summary.period_start, summary.period_end, summary.currency) == (
        sub,
        FIRST.start,
        FIRST.end,
        "USD",
    )
    assert (summary.total_requests, summary.included_requests, summary.overage_requests) == (
        INCLUDED + 10,
        INCLUDED,
        10,
    )


def test_analytics_defaults_to_the_current_period():
    sub = subscription()
    track(sub, ("/a", 3, FIRST.end - US))
    first, last, result = usage.analytics(ADMIN, sub)
    assert (first, last, result.total_requests) == (ANCHOR.date(), (FIRST.end - US).date(), 3)


def test_a_period_ending_a_microsecond_after_midnight_has_that_day_as_its_last():
    anchor = dt.datetime(2026, 3, 1, 0, 0, 0, 1, tzinfo=UTC)
    sub = insert_subscription(f"u-{uuid.uuid4().hex[:10]}", anchor=anchor).id
    series = usage.daily(ADMIN, sub)
    assert (series[0][0], series[-1][0]) == (dt.date(2026, 3, 1), dt.date(2026, 4, 1))


def test_the_usage_metrics_count_each_result():
    def count(result: str) -> float:
        return REGISTRY.get_sample_value("billing_usage_events_total", {"result": result}) or 0.0

    def refused(reason: str) -> float:
        labels = {"reason": reason, "meter": ""}
        return REGISTRY.get_sample_value("billing_usage_rejected_events_total", labels) or 0.0

    sub = subscription()
    before = {r: count(r) for r in ("accepted", "duplicate", "rejected")}
    early = refused("BEFORE_SUBSCRIPTION")
    raw = [
        RawEvent("one", "/a", 1, ANCHOR),
        RawEvent("one", "/a", 1, ANCHOR),
        RawEvent("two", "/a", 1, ANCHOR),
        RawEvent("old", "/a", 1, ANCHOR - US),
    ]
    usage.track(ADMIN, sub, raw, now=FIRST.end)
    assert {r: count(r) - before[r] for r in before} == {"accepted": 2, "duplicate": 1, "rejected": 1}
    assert refused("BEFORE_SUBSCRIPTION") == early + 1


def test_a_threshold_event_reaches_an_endpoint_that_asked_for_that_type_only():
    tenant = f"f-{uuid.uuid4().hex[:10]}"
    sub = insert_subscription(tenant, anchor=ANCHOR).id
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant, "http://127.0.0.1:9/hook", (webhooks.EventType.USAGE_THRESHOLD_REACHED,)),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    track(sub, ("/a", INCLUDED, ANCHOR))
    assert [e["threshold_percent"] for e in threshold_events(tenant)] == [80, 100]


def test_days_and_clock_hours_are_the_subscriptions_zones():
    """Asia/Kolkata (+05:30): its day starts at 18:30 UTC, in the daily series (an explicit range
    and the default one, the period's days there) and in analytics (the peak day and clock hour)."""
    sub = insert_subscription(
        f"k-{uuid.uuid4().hex[:10]}", anchor=ANCHOR, billing_anchor=Anchor.CALENDAR, timezone="Asia/Kolkata"
    ).id
    midnight = dt.datetime(2026, 3, 2, 18, 30, tzinfo=UTC)  # 00:00 on March 3 in Kolkata
    track(sub, ("/a", 1, midnight - US), ("/a", 20, midnight), ("/b", 300, midnight + dt.timedelta(minutes=40)))
    assert usage.daily(ADMIN, sub, "2026-03-02", "2026-03-03") == [(dt.date(2026, 3, 2), 1), (dt.date(2026, 3, 3), 320)]
    series = usage.daily(ADMIN, sub)
    assert (series[0][0], series[-1][0], len(series)) == (dt.date(2026, 3, 1), dt.date(2026, 3, 31), 31)
    first, last, result = usage.analytics(ADMIN, sub, "2026-03-03", "2026-03-03")
    assert (first, last, result.total_requests) == (dt.date(2026, 3, 3), dt.date(2026, 3, 3), 320)
    assert result.peak_day == (dt.date(2026, 3, 3), 320)
    assert result.peak_hour == (midnight, 320)  # the zone's clock hour 00:00-01:00, both events
    assert usage.analytics(ADMIN, sub)[2].total_requests == 321  # the default range: the whole period


def test_the_summary_carries_the_spend_so_far_and_the_credit_balance():
    """accrued_cents is what the period's invoice would total now, before credits (the same rating:
    the standard fee and 50,000 requests over the included at 50 cents a thousand); the balance
    is the tenant's credit in the plan's currency."""
    tenant = f"c-{uuid.uuid4().hex[:10]}"
    sub = insert_subscription(tenant, anchor=ANCHOR).id
    track(sub, ("/a", INCLUDED + 50_000, ANCHOR + dt.timedelta(days=2)))
    credits.create_grant(ADMIN, credits.NewGrant(tenant, 1234), now=ANCHOR)
    summary = usage.usage(ADMIN, sub, now=ANCHOR + dt.timedelta(days=3))
    assert (summary.accrued_cents, summary.credit_balance_cents) == (2900 + 2500, 1234)
    assert usage.usage(ADMIN, sub, now=ANCHOR + dt.timedelta(days=3)).estimated_overage_cents == 2500
