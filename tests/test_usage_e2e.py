"""Usage metering through REST (Envoy) and gRPC, on every backend: endpoints 8-11."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import uuid

import grpc
import pytest

from billing.v1 import usage_pb2, usage_pb2_grpc
from calls import iso
from factories import insert_subscription
from server.persistence import db
from server.persistence.models import Invoice, RecordedUsageEvent

UTC = dt.timezone.utc


def test_track_counts_once_and_reports_duplicates(stack, tenant_id):
    sub = insert_subscription(tenant_id)
    events = [
        {"event_id": "a", "endpoint": "/v1/search", "count": 3},
        {"event_id": "b", "endpoint": "/v1/search"},
        {"event_id": "a", "endpoint": "/v1/search", "count": 3},
    ]
    reply = stack.track(sub.id, events)
    assert reply.status == 200, reply.body
    assert reply.json() == {"accepted": 2, "duplicates": 1, "rejected": 0, "rejections": []}
    again = stack.track(sub.id, events).json()  # a client retry
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    usage = stack.rest("GET", f"/billing/metrics/usage/{sub.id}").json()
    assert usage["total_requests"] == "4"
    assert usage["included_requests"] == "100000" and usage["remaining_included"] == "99996"
    assert usage["overage_requests"] == "0" and usage["estimated_overage_cents"] == "0"
    assert usage["currency"] == "USD"


def test_overage_estimate_rounds_half_up(stack, tenant_id):
    sub = insert_subscription(tenant_id)  # standard: 100,000 included, 50 cents per 1,000
    stack.track(sub.id, [{"endpoint": "/v1/bulk", "count": 100_000 + 1_010}])
    usage = stack.rest("GET", f"/billing/metrics/usage/{sub.id}").json()
    # 1,010 x 50 / 1000 = 50.5 cents -> 51
    assert (usage["overage_requests"], usage["estimated_overage_cents"], usage["remaining_included"]) == (
        "1010",
        "51",
        "0",
    )


def test_invalid_event_rejects_whole_batch_with_field(stack, tenant_id):
    sub = insert_subscription(tenant_id)
    reply = stack.track(
        sub.id, [{"event_id": "ok", "endpoint": "/v1/x"}, {"event_id": "bad", "endpoint": "/v1/x", "count": 0}]
    )
    assert reply.status == 400
    body = reply.json()
    assert "events[1].count" in body["message"]
    assert any(d.get("fieldViolations", d.get("field_violations")) for d in body["details"])
    with db.session():
        assert RecordedUsageEvent.select().where(RecordedUsageEvent.subscription == sub.id).count() == 0


def test_future_timestamp_and_batch_bounds_are_400(stack, tenant_id):
    sub = insert_subscription(tenant_id)
    future = iso(dt.datetime.now(UTC) + dt.timedelta(hours=1))
    assert stack.track(sub.id, [{"endpoint": "/v1/x", "timestamp": future}]).status == 400
    assert stack.track(sub.id, []).status == 400
    assert stack.track(sub.id, [{"endpoint": "/x", "event_id": str(i)} for i in range(1001)]).status == 400


def test_canceled_and_invoiced_periods_reject_events_with_reasons(stack, tenant_id):
    sub = insert_subscription(tenant_id)
    now = dt.datetime.now(UTC)
    with db.session():
        Invoice.create(
            id=f"inv_{uuid.uuid4().hex}",
            number=f"TEST-{uuid.uuid4().hex[:8]}",
            subscription=sub.id,
            tenant_id=tenant_id,
            status="PENDING",
            period_start=sub.current_period_start,
            period_end=sub.current_period_end,
            subtotal_cents=0,
            total_cents=0,
            currency="USD",
            billing_email="b@example.com",
            issuer_name="Issuer",
            issuer_address="",
            issuer_tax_id="",
            issued_at=now,
            due_at=now,
            created_at=now,
        )
    before = iso(sub.anchor_at - dt.timedelta(days=1))
    body = stack.track(
        sub.id, [{"event_id": "late", "endpoint": "/x"}, {"event_id": "early", "endpoint": "/x", "timestamp": before}]
    ).json()
    assert (body["accepted"], body["rejected"]) == (0, 2)
    assert {(r["event_id"], r["reason"]) for r in body["rejections"]} == {
        ("late", "PERIOD_INVOICED"),
        ("early", "BEFORE_SUBSCRIPTION"),
    }

    canceled = insert_subscription(f"{tenant_id}-c", status="CANCELED")
    body = stack.track(canceled.id, [{"endpoint": "/x"}]).json()
    assert body["rejections"][0]["reason"] == "SUBSCRIPTION_CANCELED" and body["accepted"] == 0


def test_unknown_subscription_404_and_tracking_is_admin_only(stack, tenant_id):
    assert stack.track("sub_missing", [{"endpoint": "/x"}]).status == 404
    sub = insert_subscription(tenant_id)
    key = stack.tenant_key(tenant_id)
    assert stack.track(sub.id, [{"endpoint": "/x"}], key=key).status == 403
    assert stack.rest("GET", f"/billing/metrics/usage/{sub.id}", key=key).status == 200
    other = stack.tenant_key(f"{tenant_id}-other")
    for path in (
        f"/billing/metrics/usage/{sub.id}",
        f"/billing/metrics/daily/{sub.id}",
        f"/billing/analytics/{sub.id}",
    ):
        assert stack.rest("GET", path, key=other).status == 404


def test_daily_and_analytics_over_a_range(stack, tenant_id):
    anchor = dt.datetime(2026, 1, 10, 8, tzinfo=UTC)
    sub = insert_subscription(tenant_id, anchor=anchor)
    day = lambda d, h: iso(dt.datetime(2026, 1, d, h, 15, tzinfo=UTC))  # noqa: E731
    stack.track(
        sub.id,
        [
            {"endpoint": "/v1/search", "count": 5, "timestamp": day(11, 9)},
            {"endpoint": "/v1/search", "count": 7, "timestamp": day(11, 10)},
            {"endpoint": "/v1/items", "count": 2, "timestamp": day(13, 10)},
        ],
    )
    daily = stack.rest(
        "GET", f"/billing/metrics/daily/{sub.id}", params={"start_date": "2026-01-10", "end_date": "2026-01-13"}
    ).json()
    assert daily["days"] == [
        {"date": "2026-01-10", "requests": "0"},
        {"date": "2026-01-11", "requests": "12"},
        {"date": "2026-01-12", "requests": "0"},
        {"date": "2026-01-13", "requests": "2"},
    ]
    result = stack.rest(
        "GET", f"/billing/analytics/{sub.id}", params={"start_date": "2026-01-10", "end_date": "2026-01-13"}
    ).json()
    assert result["total_requests"] == "14" and result["average_daily_requests"] == 3.5
    assert result["peak_day"] == {"date": "2026-01-11", "requests": "12"}
    assert result["peak_hour"] == {"hour": "2026-01-11T10:00:00Z", "requests": "7"}
    assert result["top_endpoints"] == [
        {"endpoint": "/v1/search", "requests": "12"},
        {"endpoint": "/v1/items", "requests": "2"},
    ]
    default = stack.rest("GET", f"/billing/metrics/daily/{sub.id}").json()["days"]
    assert (default[0]["date"], default[-1]["date"], len(default)) == ("2026-01-10", "2026-02-10", 32)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"start_date": "2026-02-01", "end_date": "2026-01-01"}, "start_date"),
        ({"start_date": "2025-01-01", "end_date": "2026-01-05"}, "end_date"),
        ({"start_date": "yesterday"}, "start_date"),
    ],
)
def test_bad_ranges_are_400_naming_the_field(stack, tenant_id, params, field):
    sub = insert_subscription(tenant_id)
    for path in (f"/billing/metrics/daily/{sub.id}", f"/billing/analytics/{sub.id}"):
        reply = stack.rest("GET", path, params=params)
        assert reply.status == 400 and field in reply.json()["message"]


def test_grpc_track_and_usage(stack, tenant_id):
    sub = insert_subscription(tenant_id)
    stub = stack.stub(usage_pb2_grpc.UsageServiceStub)
    auth = stack.auth(stack.admin_key)
    reply = stub.TrackUsage(
        usage_pb2.TrackUsageRequest(
            subscription_id=sub.id,
            events=[
                usage_pb2.UsageEvent(event_id="g1", endpoint="/v1/a", count=2),
                usage_pb2.UsageEvent(event_id="g2", endpoint="/v1/b"),
            ],
        ),
        metadata=auth,
    )
    assert (reply.accepted, reply.duplicates, reply.rejected) == (2, 0, 0)
    assert stub.GetUsage(usage_pb2.GetUsageRequest(subscription_id=sub.id), metadata=auth).total_requests == 3
    with pytest.raises(grpc.RpcError) as error:
        stub.TrackUsage(
            usage_pb2.TrackUsageRequest(
                subscription_id=sub.id, events=[usage_pb2.UsageEvent(endpoint="/v1/a", count=-1)]
            ),
            metadata=auth,
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_concurrent_overlapping_batches_count_each_event_once(stack, tenant_id):
    sub = insert_subscription(tenant_id)
    calls = f"calls-{uuid.uuid4().hex[:8]}"  # a meter of its own: every api_request, once each
    assert (
        stack.rest(
            "POST",
            "/billing/meters",
            body={"id": calls, "name": "Calls", "event_type": "api_request", "aggregation": "COUNT"},
        ).status
        == 200
    )
    stub = stack.stub(usage_pb2_grpc.UsageServiceStub)
    auth = stack.auth(stack.admin_key)

    def send(worker: int):
        # Workers overlap: each sends ids worker*50 .. worker*50+99, so most ids arrive twice at once.
        events = [
            usage_pb2.UsageEvent(event_id=f"c{n}", endpoint=f"/v1/{n % 7}", count=n % 3 + 1)
            for n in range(worker * 50, worker * 50 + 100)
        ]
        return stub.TrackUsage(usage_pb2.TrackUsageRequest(subscription_id=sub.id, events=events), metadata=auth)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(send, range(8)))
    distinct = range(7 * 50 + 100)
    assert sum(r.accepted for r in replies) == len(distinct)
    assert sum(r.accepted + r.duplicates for r in replies) == 800
    usage = stub.GetUsage(usage_pb2.GetUsageRequest(subscription_id=sub.id), metadata=auth)
    assert usage.total_requests == sum(n % 3 + 1 for n in distinct)
    result = stub.GetUsageAnalytics(usage_pb2.GetUsageAnalyticsRequest(subscription_id=sub.id), metadata=auth)
    assert result.total_requests == usage.total_requests
    meters = {
        m: stack.rest("GET", f"/billing/subscriptions/{sub.id}/meters/{m}/usage").json()["rows"]
        for m in ("requests", calls)
    }
    assert [row["value"] for row in meters["requests"]] == [str(usage.total_requests)]
    assert [row["value"] for row in meters[calls]] == [str(len(distinct))]
    assert stack.rest("DELETE", f"/billing/meters/{calls}").status == 200  # it would count every later test's calls


def test_grpc_daily_analytics_and_errors(stack, tenant_id):
    sub = insert_subscription(tenant_id, anchor=dt.datetime(2026, 1, 10, 8, tzinfo=UTC))
    stub = stack.stub(usage_pb2_grpc.UsageServiceStub)
    admin = stack.auth(stack.admin_key)
    at = usage_pb2.UsageEvent(endpoint="/x").timestamp
    at.FromDatetime(dt.datetime(2026, 1, 11, 9, 30))
    # 12 endpoints tied on requests: the 10 kept are the smallest names by code point ("/B" < "/a").
    names = ["/B", "/a"] + [f"/e{i:02}" for i in range(10)]
    stub.TrackUsage(
        usage_pb2.TrackUsageRequest(
            subscription_id=sub.id,
            events=[usage_pb2.UsageEvent(endpoint=name, count=2, timestamp=at) for name in names],
        ),
        metadata=admin,
    )
    days = stub.GetDailyUsage(
        usage_pb2.GetDailyUsageRequest(subscription_id=sub.id, start_date="2026-01-11", end_date="2026-01-12"),
        metadata=admin,
    ).days
    assert [(d.date, d.requests) for d in days] == [("2026-01-11", 24), ("2026-01-12", 0)]
    result = stub.GetUsageAnalytics(
        usage_pb2.GetUsageAnalyticsRequest(subscription_id=sub.id, start_date="2026-01-11", end_date="2026-01-12"),
        metadata=admin,
    )
    assert (result.total_requests, result.average_daily_requests, result.peak_hour.requests) == (24, 12.0, 24)
    assert [e.endpoint for e in result.top_endpoints] == sorted(names)[:10]

    own, other = stack.auth(stack.tenant_key(tenant_id)), stack.auth(stack.tenant_key(f"{tenant_id}-other"))
    calls = [
        (
            stub.TrackUsage,
            usage_pb2.TrackUsageRequest(subscription_id=sub.id, events=[usage_pb2.UsageEvent(endpoint="/x")]),
            own,
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            stub.TrackUsage,
            usage_pb2.TrackUsageRequest(subscription_id="sub_missing", events=[usage_pb2.UsageEvent(endpoint="/x")]),
            admin,
            grpc.StatusCode.NOT_FOUND,
        ),
        (stub.GetUsage, usage_pb2.GetUsageRequest(subscription_id=sub.id), other, grpc.StatusCode.NOT_FOUND),
        (stub.GetDailyUsage, usage_pb2.GetDailyUsageRequest(subscription_id=sub.id), other, grpc.StatusCode.NOT_FOUND),
        (
            stub.GetUsageAnalytics,
            usage_pb2.GetUsageAnalyticsRequest(subscription_id=sub.id),
            other,
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            stub.GetDailyUsage,
            usage_pb2.GetDailyUsageRequest(subscription_id=sub.id, end_date="2026/01/12"),
            admin,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for method, request, auth, code in calls:
        with pytest.raises(grpc.RpcError) as error:
            method(request, metadata=auth)
        assert error.value.code() == code, (method, error.value.details())
    assert stub.GetUsage(usage_pb2.GetUsageRequest(subscription_id=sub.id), metadata=own).total_requests == 24
