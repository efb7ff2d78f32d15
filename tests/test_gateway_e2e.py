"""The gateway through the real stack: Envoy's gateway listener, ext_authz and the access-log
stream answered by the billing server, the demo upstream as a real process."""

from __future__ import annotations

import datetime as dt

from factories import insert_subscription


def subscribe(tenant_id: str, plan: str = "standard") -> str:
    return insert_subscription(tenant_id, plan=plan, anchor=dt.datetime.now(dt.timezone.utc)).id


def test_admitted_request_reaches_upstream_with_tenant_headers_and_no_key(stack, tenant_id):
    subscribe(tenant_id)
    key = stack.tenant_key(tenant_id)
    reply = stack.gateway("GET", "/v1/items/42?x=1", key=key,
                          headers={"x-tenant-id": "someone-else", "x-request-id": "chosen-by-client",
                                   "x-billing-plan": "enterprise", "x-api-key": key})
    assert reply.status == 200, reply.body
    echoed = reply.json()
    assert echoed["method"] == "GET" and echoed["path"] == "/v1/items/42?x=1"
    upstream = echoed["headers"]
    assert upstream["x-tenant-id"] == tenant_id
    assert upstream["x-billing-plan"] == "standard"
    assert upstream["x-request-id"] != "chosen-by-client"
    assert upstream["x-request-id"] == reply.headers["x-request-id"]
    assert "authorization" not in upstream and "x-api-key" not in upstream
    assert key not in reply.body.decode()
    assert reply.headers["x-ratelimit-limit"].startswith("200")
    assert reply.headers["x-ratelimit-remaining"] == "199"
