"""Input the edge cannot carry, through the real stack: identifiers the gateway
writes into headers, over-long request lines and headers, Envoy's own error bodies."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from calls import http_call, poll
from factories import subscription_from_now
from server.domain.access import KeyScope
from server.persistence import db
from server.services import keys
from server.transport.app import MAX_REQUEST_BYTES


def legacy_tenant_key(tenant_id: str) -> str:
    """A key of a tenant stored before ids had an alphabet (create_key refuses such an id now)."""
    key = keys.KEY_PREFIX + tenant_id.encode().hex()[:16] + "legacy"
    with db.session():
        keys._store(key, KeyScope.TENANT, tenant_id, dt.datetime.now(dt.timezone.utc))
    return key


def test_a_stored_tenant_id_the_gateway_cannot_write_is_refused_and_never_metered(stack, tenant_id):
    legacy = f"{tenant_id}\r\nx-evil: 1"
    subscription_id = subscription_from_now(legacy)
    reply = stack.gateway("GET", "/v1/items/1", key=legacy_tenant_key(legacy))
    assert reply.status == 403, reply.body
    assert reply.reason() == "INVALID_TENANT_ID"
    # Metering is in order: once a later request of a good tenant is counted, the first is done.
    sentinel = subscription_from_now(tenant_id)
    assert stack.gateway("GET", "/v1/ping", key=stack.tenant_key(tenant_id)).status == 200
    poll(lambda: stack.total_requests(sentinel), lambda total: total == 1)
    assert stack.total_requests(subscription_id) == 0


def logged_entry(subscription_id: str, details: str) -> accesslog_pb2.HTTPAccessLogEntry:
    """An access-log entry of a request the gateway admitted, ended as `details` says."""
    entry = accesslog_pb2.HTTPAccessLogEntry()
    entry.request.request_id = str(uuid.uuid4())
    entry.request.path = "/v1/items/1"
    entry.common_properties.upstream_remote_address.socket_address.address = "127.0.0.1"
    entry.common_properties.start_time.GetCurrentTime()
    entry.common_properties.metadata.filter_metadata["billing"].update({"subscription": subscription_id})
    entry.response.response_code_details = details
    return entry


def test_only_requests_the_upstream_answered_are_metered(stack, tenant_id):
    """Envoy's own 503 for a header it could not write was logged just so (an upstream address,
    no failure flag but downstream_protocol_error) and was metered."""
    subscription_id = subscription_from_now(tenant_id)
    own_503 = logged_entry(
        subscription_id, "filter_removed_required_request_headers{invalid_header_value_for:_x-tenant-id}"
    )
    own_503.common_properties.response_flags.downstream_protocol_error = True
    own_503.response.response_code.value = 503
    message = als_pb2.StreamAccessLogsMessage()
    message.http_logs.log_entry.extend(
        [
            own_503,
            logged_entry(subscription_id, "upstream_reset_before_response_started{remote_reset}"),
            logged_entry(subscription_id, "via_upstream"),
        ]
    )
    stream = als_pb2_grpc.AccessLogServiceStub(stack.channel).StreamAccessLogs
    stream(iter([message]), metadata=stack.auth(stack.gateway_key), timeout=10)  # Envoy's own key
    assert stack.total_requests(subscription_id) == 1


@pytest.mark.parametrize(
    "method, path, body, field",
    [
        (
            "POST",
            "/billing/subscriptions",
            {"tenant_id": "acme\r\nx", "plan_id": "free", "billing_email": "a@b.co"},
            "tenant_id",
        ),
        (
            "POST",
            "/billing/subscriptions",
            {"tenant_id": "acme", "plan_id": "free plan", "billing_email": "a@b.co"},
            "plan_id",
        ),
        ("GET", "/billing/subscriptions/tenant/acme%0D%0Ax", None, "tenant_id"),
        ("GET", "/billing/rate-limits/ac%20me", None, "tenant_id"),
        ("POST", "/billing/webhooks", {"tenant_id": "acme\u2028", "url": "https://example.com/h"}, "tenant_id"),
        (
            "POST",
            "/billing/metrics/track",
            {"subscription_id": "sub_1", "events": [{"event_id": "r 1", "endpoint": "/x"}]},
            "events[0].event_id",
        ),
    ],
)
def test_identifiers_outside_the_alphabet_are_400_naming_the_field(stack, method, path, body, field):
    reply = stack.rest(method, path, body=body)
    assert reply.status == 400, reply.body
    status = reply.json()
    assert [v["field"] for d in status["details"] for v in d.get("field_violations", [])] == [field]
    assert "A-Z a-z 0-9 . _ : @ -" in status["message"]


@pytest.mark.parametrize(
    "url", ["https://a b/", "https://hooks.example.com:0/", "https://exa\u200bmple.com/", "https://-x-.example.com/"]
)
def test_a_webhook_url_that_can_never_be_dialled_is_400_at_registration(stack, tenant_id, url):
    reply = stack.rest("POST", "/billing/webhooks", body={"tenant_id": tenant_id, "url": url})
    assert reply.status == 400, reply.body
    status = reply.json()
    assert [v["field"] for d in status["details"] for v in d.get("field_violations", [])] == ["url"]
    assert [d["reason"] for d in status["details"] if "reason" in d] == ["INVALID_URL"]


def assert_status_with_error_info(reply, status: int, reason: str | None = None) -> dict:
    """A google.rpc.Status JSON body with an UPPER_SNAKE_CASE ErrorInfo reason, nothing internal."""
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    infos = [d for d in body["details"] if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"]
    assert infos and all(re.fullmatch(r"[A-Z][A-Z0-9_]*", d["reason"]) for d in infos), body
    assert reason is None or infos[0]["reason"] == reason, body
    assert "x-envoy" not in body["message"] and "metadata" not in body["message"].lower()
    return body


@pytest.mark.parametrize("door", ["rest", "gateway"])
@pytest.mark.parametrize(
    "path, headers",
    [
        ("/billing/plans?page_token=" + "a" * 9 * 1024, {}),
        ("/billing/nowhere/" + "a" * 9 * 1024, {}),
        ("/billing/plans/" + "a" * 64 * 1024, {}),
        ("/billing/plans", {"x-big": "b" * 70 * 1024}),
        ("/billing/plans", {f"x-h{i}": "v" * 100 for i in range(90)}),
    ],
)
def test_over_long_request_lines_and_headers_are_431_from_envoy_never_429(stack, tenant_id, door, path, headers):
    subscription_from_now(tenant_id)
    key = stack.admin_key if door == "rest" else stack.tenant_key(tenant_id)
    base = stack.rest_url if door == "rest" else stack.gateway_url
    reply = http_call("GET", base + path, {"authorization": f"Bearer {key}", **headers})
    assert_status_with_error_info(reply, 431, "REQUEST_HEADERS_TOO_LARGE")


def test_a_long_path_under_the_limit_reaches_the_server_and_is_not_429(stack):
    """7 KiB of path: Envoy passes it (the path twice in the metadata), the server answers."""
    reply = stack.rest("GET", "/billing/plans", params={"page_token": "a" * 7 * 1024})
    assert_status_with_error_info(reply, 400)


@pytest.mark.parametrize(
    "method, path, body, reason",
    [
        ("POST", "/billing/subscriptions", b"{not json", "INVALID_JSON"),
        ("POST", "/billing/subscriptions", b'{"tenant_id": 5}', "INVALID_JSON"),
        ("POST", "/billing/subscriptions", b'{"tenant_id": ["a"]}', "INVALID_JSON"),
        ("POST", "/billing/metrics/track", b'{"subscription_id": "s", "events": [{"count": NaN}]}', "INVALID_JSON"),
        ("POST", "/billing/metrics/track", b'{"subscription_id": "s", "events": [{"count": "1e999"}]}', "INVALID_JSON"),
        ("PUT", "/billing/invoices/inv_1", b'{"status": "NOT_A_STATUS"}', "INVALID_JSON"),
        ("POST", "/billing/subscriptions", b"\xff\xfe", "INVALID_JSON"),
        ("GET", "/billing/plans?nope=1", None, "INVALID_QUERY_PARAMETER"),
        ("GET", "/billing/subscriptions/tenant/acme?status=BOGUS", None, "INVALID_QUERY_PARAMETER"),
        ("GET", "/billing/subscriptions/tenant/acme?page_size=ten", None, "INVALID_QUERY_PARAMETER"),
        ("GET", "/billing/nowhere", None, "UNKNOWN_METHOD"),
        ("DELETE", "/billing/plans", None, "UNKNOWN_METHOD"),
        ("POST", "/billing/subscriptions", b"{" + b" " * (MAX_REQUEST_BYTES + 1) + b"}", "REQUEST_TOO_LARGE"),
    ],
)
def test_envoys_own_errors_carry_error_info_and_no_parser_snippet(stack, method, path, body, reason):
    reply = http_call(
        method,
        stack.rest_url + path,
        {"authorization": f"Bearer {stack.admin_key}", "content-type": "application/json"},
        body,
    )
    status = assert_status_with_error_info(
        reply, 404 if reason == "UNKNOWN_METHOD" else 413 if reason == "REQUEST_TOO_LARGE" else 400, reason
    )
    assert "\n" not in status["message"] and "^" not in status["message"]
    if reason == "INVALID_QUERY_PARAMETER":  # the parameter is named
        assert path.split("?")[1].split("=")[0] in status["message"]
