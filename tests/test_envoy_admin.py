"""Envoy's admin interface has no authentication (/quitquitquit stops it, /config_dump shows its
configuration), so it is a Unix socket only the stack's user may open, never a TCP port that
another process, or a tenant's webhook, could reach."""

from __future__ import annotations

import json
import re
import stat

import grpc
from google.protobuf import descriptor_pool
from google.rpc import error_details_pb2

from billing.v1 import plan_pb2, plan_pb2_grpc
from factories import subscription_from_now
from grpc_errors import grpc_details, grpc_error
from server import envoy_launcher
from server.transport.app import SERVICE_NAMES
from server.transport.interceptors import AuthInterceptor
from server.transport.interceptors.methods import KEYLESS_METHODS


def test_the_admin_interface_is_a_unix_socket_only_its_owner_may_open(stack):
    path = envoy_launcher.admin_socket(stack.workdir)
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    status, dump = envoy_launcher.admin(stack.workdir, "/config_dump")
    assert status == 200
    [bootstrap] = [c["bootstrap"] for c in json.loads(dump)["configs"] if c["@type"].endswith("BootstrapConfigDump")]
    admin = bootstrap["admin"]
    assert admin["address"] == {"pipe": {"path": str(path), "mode": 0o600}}


def test_envoy_listens_on_tcp_only_for_rest_and_the_gateway(stack):
    _, listeners = envoy_launcher.admin(stack.workdir, "/listeners?format=json")
    ports = {
        listener["name"]: listener["local_address"]["socket_address"]["port_value"]
        for listener in json.loads(listeners)["listener_statuses"]
    }
    assert ports == {"rest": stack.settings.http_port, "gateway": stack.settings.gateway_port}


# --- no API credential in Envoy's configuration ---------------------------------------------------


def bearer_tokens_in_config_dump(stack) -> set[str]:
    _, dump = envoy_launcher.admin(stack.workdir, "/config_dump?include_eds")
    return set(re.findall(r"Bearer ([A-Za-z0-9_\-]+)", dump)) | set(re.findall(r"bk_[A-Za-z0-9_\-]+", dump))


def test_the_config_dump_holds_no_key_that_any_billing_method_accepts(stack):
    found = bearer_tokens_in_config_dump(stack)
    assert found == {stack.gateway_key}  # the one Envoy sends, on both of its own calls
    plans = stack.stub(plan_pb2_grpc.PlanServiceStub)
    for key in found:
        refused = grpc_error(plans.ListPlans, plan_pb2.ListPlansRequest(), metadata=stack.auth(key))
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
        assert [info.reason for info in grpc_details(refused, error_details_pb2.ErrorInfo)] == ["GATEWAY_KEY_ONLY"]


def test_the_gateway_key_is_refused_by_billing_methods_over_rest_and_grpc(stack, tenant_id):
    key = stack.gateway_key
    subscription_id = subscription_from_now(tenant_id)
    for method, path, body in [
        ("GET", "/billing/plans", None),
        ("GET", f"/billing/subscriptions/{subscription_id}", None),
        ("GET", f"/billing/metrics/usage/{subscription_id}", None),
        ("POST", "/billing/subscriptions", {"tenant_id": tenant_id, "plan_id": "free", "billing_email": "a@b.co"}),
        (
            "POST",
            "/billing/metrics/track",
            {"subscription_id": subscription_id, "events": [{"event_id": "e", "endpoint": "/x"}]},
        ),
        ("POST", "/billing/invoices/generate", {"subscription_id": subscription_id}),
        ("POST", "/billing/webhooks", {"tenant_id": tenant_id, "url": "https://hooks.example.com/"}),
    ]:
        reply = stack.rest(method, path, key=key, body=body)
        assert reply.status == 403, (method, path, reply.body)
    assert stack.total_requests(subscription_id) == 0
    # Every billing method that takes a key passes through the layer that refuses it.
    auth = AuthInterceptor()
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: None)
    for service in SERVICE_NAMES:
        for method in descriptor_pool.Default().FindServiceByName(service).methods:
            name = f"/{service}/{method.name}"
            assert auth.wraps(name, handler) is (name not in KEYLESS_METHODS), name
