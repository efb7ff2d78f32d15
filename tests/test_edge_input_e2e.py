"""Input the edge cannot carry (issue 31, item 7), through the real stack: identifiers the gateway
writes into headers, over-long request lines and headers, Envoy's own error bodies."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from calls import poll
from factories import subscription_from_now
from server.domain.access import KeyScope
from server.persistence import db
from server.services import keys


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
    """An access-log entry of a request ext_authz admitted, ended as `details` says."""
    entry = accesslog_pb2.HTTPAccessLogEntry()
    entry.request.request_id = str(uuid.uuid4())
    entry.request.path = "/v1/items/1"
    entry.common_properties.upstream_remote_address.socket_address.address = "127.0.0.1"
    entry.common_properties.start_time.GetCurrentTime()
    entry.common_properties.metadata.filter_metadata["envoy.filters.http.ext_authz"].update(
        {"subscription_id": subscription_id}
    )
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
    stream(iter([message]), metadata=stack.auth(stack.admin_key), timeout=10)
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
