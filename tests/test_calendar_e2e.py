"""Calendar billing in a customer's time zone through the real stack (REST via Envoy and gRPC, on
SQLite and PostgreSQL): creating one, its partial first period invoiced by the scheduler with the
fee prorated, and daily usage and analytics on the zone's days (a 25-hour DST day, a +05:30 zone)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import grpc
import pytest

from billing.v1 import invoice_pb2, invoice_pb2_grpc, subscription_pb2, subscription_pb2_grpc, usage_pb2, usage_pb2_grpc
from calls import iso
from factories import insert_subscription
from grpc_errors import grpc_error, grpc_fields
from server.config import Settings
from server.domain.periods import Anchor
from server.persistence import db
from server.persistence.models import Subscription
from server.scheduler.jobs import run_job

UTC = dt.timezone.utc
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def next_first(now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """00:00 on the 1st of the month after `now`'s in `zone`, in UTC (worked out apart from the server)."""
    local = now.astimezone(zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return dt.datetime(year, month, 1, tzinfo=zone).astimezone(UTC)


def test_create_a_calendar_subscription_over_rest_and_read_it_over_grpc(stack, tenant_id):
    before = dt.datetime.now(UTC)
    reply = stack.rest(
        "POST",
        "/billing/subscriptions",
        body={
            "tenant_id": tenant_id,
            "plan_id": "standard",
            "billing_email": "ops@example.com",
            "billing_anchor": "CALENDAR",
            "timezone": "America/New_York",
        },
    )
    assert reply.status == 200, reply.body
    created = reply.json()
    assert (created["billing_anchor"], created["timezone"]) == ("CALENDAR", "America/New_York")
    start = dt.datetime.fromisoformat(created["current_period_start"])
    assert start == dt.datetime.fromisoformat(created["created_at"]) and start >= before - dt.timedelta(seconds=1)
    assert dt.datetime.fromisoformat(created["current_period_end"]) == next_first(start, NEW_YORK)
    read = stack.stub(subscription_pb2_grpc.SubscriptionServiceStub).GetSubscription(
        subscription_pb2.GetSubscriptionRequest(id=created["id"]), metadata=stack.auth(stack.admin_key)
    )
    assert read.billing_anchor == subscription_pb2.Subscription.CALENDAR and read.timezone == "America/New_York"


def test_by_default_a_subscription_is_an_anniversary_in_utc_on_both_doors(stack, tenant_id):
    created = stack.subscribe(tenant_id)
    assert (created["billing_anchor"], created["timezone"]) == ("ANNIVERSARY", "UTC")
    stub = stack.stub(subscription_pb2_grpc.SubscriptionServiceStub)
    other = stub.CreateSubscription(
        subscription_pb2.CreateSubscriptionRequest(
            tenant_id=tenant_id + "-grpc", plan_id="standard", billing_email="ops@example.com"
        ),
        metadata=stack.auth(stack.admin_key),
    )
    assert (other.billing_anchor, other.timezone) == (subscription_pb2.Subscription.ANNIVERSARY, "UTC")


def test_an_unknown_timezone_is_400_naming_it_and_creates_nothing(stack, tenant_id):
    body = {"tenant_id": tenant_id, "plan_id": "standard", "billing_email": "ops@example.com"}
    reply = stack.rest("POST", "/billing/subscriptions", body={**body, "timezone": "Mars/Olympus_Mons"})
    assert reply.status == 400
    assert "timezone 'Mars/Olympus_Mons'" in reply.json()["message"]
    error = grpc_error(
        stack.stub(subscription_pb2_grpc.SubscriptionServiceStub).CreateSubscription,
        subscription_pb2.CreateSubscriptionRequest(**body, timezone="europe/berlin"),
        metadata=stack.auth(stack.admin_key),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and grpc_fields(error) == ["timezone"]
    assert stack.rest("POST", "/billing/subscriptions", body={**body, "billing_anchor": "WEEKLY"}).status == 400
    error = grpc_error(
        stack.stub(subscription_pb2_grpc.SubscriptionServiceStub).CreateSubscription,
        subscription_pb2.CreateSubscriptionRequest(**body, billing_anchor=7),
        metadata=stack.auth(stack.admin_key),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and grpc_fields(error) == ["billing_anchor"]
    with db.session():
        assert not Subscription.select().where(Subscription.tenant_id == tenant_id).exists()


def test_the_partial_first_period_is_invoiced_by_the_scheduler_with_its_fee_prorated(stack, tenant_id):
    """Created Nov 20, 15:00 in New York: the first period runs to Dec 1 00:00 EST, 249 hours of
    November's 721 (it has the 25-hour day). Fee 2900 x 249/721 = 1001.53 -> 1002; included
    100,000 x 249/721 = 34,535.37 -> 34,535; 40,000 requests: 5,465 over, x 50/1000 = 273.25 -> 273."""
    sub = insert_subscription(
        tenant_id, anchor=at(2026, 11, 20, 20), billing_anchor=Anchor.CALENDAR, timezone="America/New_York"
    )
    assert (sub.current_period_start, sub.current_period_end) == (at(2026, 11, 20, 20), at(2026, 12, 1, 5))
    reply = stack.track(sub.id, [{"endpoint": "/v1/x", "count": 40_000, "timestamp": iso(at(2026, 11, 30, 12))}])
    assert reply.json()["accepted"] == 1, reply.body
    run_job("period_invoicing", at(2026, 12, 1, 5), Settings())
    [listed] = stack.rest("GET", f"/billing/invoices/subscription/{sub.id}").json()["invoices"]
    assert (listed["period_start"], listed["period_end"]) == ("2026-11-20T20:00:00Z", "2026-12-01T05:00:00Z")
    assert [line["amount_cents"] for line in listed["line_items"]] == ["1002", "273"]
    assert listed["total_cents"] == "1275"
    assert listed["line_items"][0]["description"] == ("Standard plan, 2026-11-20 20:00:00 to 2026-12-01 05:00:00 UTC")
    assert "5,465 requests over 34,535 included" in listed["line_items"][1]["description"]
    invoice = stack.stub(invoice_pb2_grpc.InvoiceServiceStub).GetInvoice(
        invoice_pb2.GetInvoiceRequest(id=listed["id"]), metadata=stack.auth(stack.admin_key)
    )
    assert invoice.total_cents == 1275
    advanced = stack.rest("GET", f"/billing/subscriptions/{sub.id}").json()
    assert (advanced["current_period_start"], advanced["current_period_end"]) == (
        "2026-12-01T05:00:00Z",
        "2027-01-01T05:00:00Z",
    )


def test_daily_usage_and_analytics_count_new_yorks_25_hour_day(stack, tenant_id):
    sub = insert_subscription(
        tenant_id, anchor=at(2026, 10, 20), billing_anchor=Anchor.CALENDAR, timezone="America/New_York"
    )
    events = [
        (at(2026, 11, 1, 3, 59), 1),  # Oct 31, 23:59 EDT
        (at(2026, 11, 1, 4, 30), 10),  # Nov 1, 00:30 EDT
        (at(2026, 11, 2, 4, 59), 100),  # Nov 1, 23:59 EST: the 25th hour
        (at(2026, 11, 2, 5), 1000),  # Nov 2, 00:00 EST
    ]
    reply = stack.track(sub.id, [{"endpoint": "/v1/x", "count": n, "timestamp": iso(t)} for t, n in events])
    assert reply.json()["accepted"] == 4, reply.body
    range_ = {"start_date": "2026-10-31", "end_date": "2026-11-02"}
    days = stack.rest("GET", f"/billing/metrics/daily/{sub.id}", params=range_).json()["days"]
    assert [(d["date"], d["requests"]) for d in days] == [
        ("2026-10-31", "1"),
        ("2026-11-01", "110"),
        ("2026-11-02", "1000"),
    ]
    analytics = stack.stub(usage_pb2_grpc.UsageServiceStub).GetUsageAnalytics(
        usage_pb2.GetUsageAnalyticsRequest(subscription_id=sub.id, start_date="2026-11-01", end_date="2026-11-01"),
        metadata=stack.auth(stack.admin_key),
    )
    assert (analytics.total_requests, analytics.peak_day.date, analytics.peak_day.requests) == (110, "2026-11-01", 110)
    assert analytics.peak_hour.hour.ToDatetime(UTC) == at(2026, 11, 2, 4)  # 23:00 EST


@pytest.mark.parametrize("door", ["rest", "grpc"])
def test_daily_usage_in_kolkata_splits_days_at_half_past_utc(stack, tenant_id, door):
    sub = insert_subscription(
        tenant_id, anchor=at(2026, 11, 20), billing_anchor=Anchor.CALENDAR, timezone="Asia/Kolkata"
    )
    events = [(at(2026, 11, 21, 18, 29, 59), 1), (at(2026, 11, 21, 18, 30), 20), (at(2026, 11, 21, 19, 10), 300)]
    reply = stack.track(sub.id, [{"endpoint": "/v1/x", "count": n, "timestamp": iso(t)} for t, n in events])
    assert reply.json()["accepted"] == 3, reply.body
    if door == "rest":
        found = stack.rest(
            "GET", f"/billing/metrics/daily/{sub.id}", params={"start_date": "2026-11-21", "end_date": "2026-11-22"}
        ).json()["days"]
        days = [(d["date"], int(d["requests"])) for d in found]
    else:
        answer = stack.stub(usage_pb2_grpc.UsageServiceStub).GetDailyUsage(
            usage_pb2.GetDailyUsageRequest(subscription_id=sub.id, start_date="2026-11-21", end_date="2026-11-22"),
            metadata=stack.auth(stack.admin_key),
        )
        days = [(d.date, d.requests) for d in answer.days]
    assert days == [("2026-11-21", 1), ("2026-11-22", 320)]


def test_a_meters_day_windows_are_the_zones_days(stack, tenant_id):
    """Endpoint 24's DAY windows in Kolkata (+05:30) start at 18:30 UTC: the meters' hourly rollups
    are the zone's clock hours, so the half-hour boundary splits nothing."""
    sub = insert_subscription(
        tenant_id, anchor=at(2026, 11, 20), billing_anchor=Anchor.CALENDAR, timezone="Asia/Kolkata"
    )
    events = [(at(2026, 11, 21, 18, 29, 59), 1), (at(2026, 11, 21, 18, 30), 20), (at(2026, 11, 21, 19, 10), 300)]
    reply = stack.track(sub.id, [{"endpoint": "/v1/x", "count": n, "timestamp": iso(t)} for t, n in events])
    assert reply.json()["accepted"] == 3, reply.body
    found = stack.rest(
        "GET",
        f"/billing/subscriptions/{sub.id}/meters/requests/usage",
        params={"window_size": "DAY", "start_time": "2026-11-20T18:30:00Z", "end_time": "2026-11-22T18:30:00Z"},
    )
    assert found.status == 200, found.body
    rows = [(r["window_start"], r["window_end"], r["value"]) for r in found.json()["rows"]]
    assert rows == [
        ("2026-11-20T18:30:00Z", "2026-11-21T18:30:00Z", "1"),
        ("2026-11-21T18:30:00Z", "2026-11-22T18:30:00Z", "320"),
    ]
