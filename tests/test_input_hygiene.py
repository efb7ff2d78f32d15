"""Bad input is a 400 naming the field, on both backends and both doors."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import timestamp_pb2

from billing.v1 import (
    invoice_pb2,
    invoice_pb2_grpc,
    plan_pb2,
    plan_pb2_grpc,
    rate_limit_pb2,
    rate_limit_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
)
from factories import insert_subscription
from grpc_errors import grpc_error, grpc_fields
from server.transport.app import MAX_REQUEST_BYTES

ID_PATHS = [
    "/billing/subscriptions/{}",
    "/billing/invoices/{}",
    "/billing/invoices/{}/pdf",
    "/billing/metrics/usage/{}",
    "/billing/metrics/daily/{}",
    "/billing/analytics/{}",
    "/billing/plans/{}",
    "/billing/rate-limits/{}",
    "/billing/subscriptions/tenant/{}",
    "/billing/invoices/subscription/{}",
]


def assert_bad_request(reply, field: str) -> None:
    assert reply.status == 400, (reply.status, reply.body[:300])
    body = reply.json()
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert field in body["message"]


@pytest.mark.parametrize("path", ID_PATHS)
@pytest.mark.parametrize("segment", ["%ff%fe", "%C3%28", "a%00b"])
def test_rest_path_id_that_is_not_clean_utf8_is_400(stack, path, segment):
    field = "plan_id" if "plans" in path else "tenant_id" if "tenant" in path or "rate" in path else ""
    reply = stack.rest("GET", path.format(segment))
    assert_bad_request(reply, field)


@pytest.mark.parametrize(
    "body",
    [
        {"tenant_id": "t\u0000x", "plan_id": "free", "billing_email": "a@b.co"},
        {"tenant_id": "t" * 2000, "plan_id": "free", "billing_email": "a@b.co"},
    ],
)
def test_rest_body_string_with_nul_or_too_long_is_400(stack, body):
    assert_bad_request(stack.rest("POST", "/billing/subscriptions", body=body), "tenant_id")


@pytest.mark.parametrize("status", [99, -1])
def test_rest_unknown_enum_number_is_400(stack, tenant_id, status):
    sub = insert_subscription(tenant_id)
    assert_bad_request(
        stack.rest("GET", f"/billing/invoices/subscription/{sub.id}", params={"status": status}), "status"
    )
    assert_bad_request(stack.rest("PUT", "/billing/invoices/inv_x", body={"status": status}), "status")


def test_track_timestamp_at_year_one_is_rejected_not_a_crash(stack, tenant_id):
    sub = insert_subscription(tenant_id)
    reply = stack.track(sub.id, [{"endpoint": "/x", "timestamp": "0001-01-01T00:00:00Z"}])
    assert reply.status == 200
    assert reply.json()["rejections"][0]["reason"] == "BEFORE_SUBSCRIPTION"


@pytest.mark.parametrize(
    "query, field",
    [
        ({"start_date": "9999-12-30", "end_date": "9999-12-31"}, "end_date"),
        ({"start_date": "2026-1-1"}, "start_date"),
        ({"end_date": "2026-02-30"}, "end_date"),
        ({"start_date": "+2026-01-01"}, "start_date"),
    ],
)
@pytest.mark.parametrize("path", ["/billing/metrics/daily/{}", "/billing/analytics/{}"])
def test_rest_dates_are_strict_and_in_range(stack, tenant_id, path, query, field):
    sub = insert_subscription(tenant_id)
    assert_bad_request(stack.rest("GET", path.format(sub.id), params=query), field)


def test_rest_body_over_the_limit_is_413_not_429(stack):
    reply = stack.track("s", [{"endpoint": "x" * 1000}] * (MAX_REQUEST_BYTES // 1000))
    assert reply.status == 413
    assert "larger than" in reply.json()["message"]


@pytest.mark.parametrize("seconds, nanos", [(-62135596801, 0), (253402300800, 0), (0, -1), (0, 2_000_000_000)])
def test_grpc_timestamp_out_of_range_is_invalid_argument_naming_the_event(stack, seconds, nanos):
    stub = stack.stub(usage_pb2_grpc.UsageServiceStub)
    event = usage_pb2.UsageEvent(endpoint="/x", timestamp=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    error = grpc_error(
        lambda: stub.TrackUsage(
            usage_pb2.TrackUsageRequest(subscription_id="s", events=[event]), metadata=stack.auth(stack.admin_key)
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_fields(error) == ["events[0].timestamp"]


def test_grpc_unknown_status_filter_is_invalid_argument(stack, tenant_id):
    stub = stack.stub(subscription_pb2_grpc.SubscriptionServiceStub)
    error = grpc_error(
        lambda: stub.ListTenantSubscriptions(
            subscription_pb2.ListTenantSubscriptionsRequest(tenant_id=tenant_id, status=7),
            metadata=stack.auth(stack.admin_key),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_fields(error) == ["status"]


def test_grpc_invalid_utf8_names_the_field(stack):
    channel_call = stack.channel.unary_unary("/billing.v1.InvoiceService/GetInvoice")
    raw = invoice_pb2.GetInvoiceRequest(id="ab").SerializeToString().replace(b"ab", b"\xff\xfe")
    error = grpc_error(lambda: channel_call(raw, metadata=stack.auth(stack.admin_key)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "id is not valid UTF-8" in error.details()


@pytest.mark.parametrize(
    "call, field",
    [
        (
            lambda stack: stack.stub(plan_pb2_grpc.PlanServiceStub).GetPlan(
                plan_pb2.GetPlanRequest(), metadata=stack.auth(stack.admin_key)
            ),
            "plan_id",
        ),
        (
            lambda stack: stack.stub(rate_limit_pb2_grpc.RateLimitServiceStub).GetRateLimit(
                rate_limit_pb2.GetRateLimitRequest(), metadata=stack.auth(stack.admin_key)
            ),
            "tenant_id",
        ),
        (
            lambda stack: stack.stub(invoice_pb2_grpc.InvoiceServiceStub).GetInvoice(
                invoice_pb2.GetInvoiceRequest(), metadata=stack.auth(stack.admin_key)
            ),
            "id",
        ),
    ],
)
def test_grpc_empty_required_id_is_invalid_argument(stack, call, field):
    error = grpc_error(lambda: call(stack))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_fields(error) == [field]


@pytest.mark.parametrize(
    "header", [("Iush$1", "J5"), ("v'", "<^<"), ("x-data-bin", "not base64!"), ("x-note", "caf\xe9")]
)
def test_rest_header_unfit_for_grpc_metadata_is_dropped_not_a_500(stack, header):
    """Found by schemathesis: such a header made the gRPC call fail with INTERNAL."""
    import http.client
    import urllib.parse

    url = urllib.parse.urlparse(stack.rest_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.putrequest("GET", "/billing/plans")
    connection.putheader("authorization", f"Bearer {stack.admin_key}")
    connection.putheader(header[0], header[1].encode("latin-1"))
    connection.endheaders()
    assert connection.getresponse().status == 200
    connection.close()
