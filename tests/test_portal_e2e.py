"""The customer portal through Envoy: links, the HTML page (figures equal to the API's,
escaping, security headers), PDFs through the link, and refused links, on every backend."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest

from billing.v1 import portal_pb2, portal_pb2_grpc
from calls import iso
from factories import insert_subscription
from portal_links import create_link, figure, link_path, signed_token
from server import portal as pages

UTC = dt.timezone.utc
SECURITY = {
    "content-security-policy": pages.CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def assert_secured(reply):
    assert {name: reply.headers.get(name) for name in SECURITY} == SECURITY
    assert "grpc-status" not in reply.headers


def test_an_admin_or_the_tenant_creates_a_link_valid_for_an_hour(stack, tenant_id):
    insert_subscription(tenant_id)
    before = dt.datetime.now(UTC)
    reply = create_link(stack, tenant_id)
    assert reply.status == 200, reply.body
    session = reply.json()
    assert session["url"].startswith(f"http://127.0.0.1:{stack.settings.http_port}/billing/portal/")
    expires_at = dt.datetime.fromisoformat(session["expires_at"])
    assert dt.timedelta(minutes=59) < expires_at - before <= dt.timedelta(hours=1)
    assert create_link(stack, tenant_id, key=stack.tenant_key(tenant_id)).status == 200


def test_link_creation_refuses_others_and_bad_input(stack, tenant_id):
    insert_subscription(tenant_id)
    other = stack.tenant_key(f"{tenant_id}-other")
    refused = create_link(stack, tenant_id, key=other)
    assert refused.status == 403 and refused.json()["details"][0]["reason"] == "TENANT_MISMATCH"
    assert create_link(stack, tenant_id, key=None).status == 401
    missing = create_link(stack, "")
    assert missing.status == 400 and "tenant_id" in missing.json()["message"]
    assert create_link(stack, f"{tenant_id}-never-subscribed").status == 404


def test_the_page_shows_the_apis_figures_with_security_headers(stack, tenant_id):
    sub = insert_subscription(tenant_id)  # standard: 100,000 included, 50 cents per 1,000 over
    assert (
        stack.track(
            sub.id, [{"endpoint": "/v1/search", "count": 100_500}, {"endpoint": "/v1/items", "count": 7}]
        ).status
        == 200
    )
    usage = stack.rest("GET", f"/billing/metrics/usage/{sub.id}").json()
    analytics = stack.rest("GET", f"/billing/analytics/{sub.id}").json()
    daily = stack.rest("GET", f"/billing/metrics/daily/{sub.id}").json()

    page = stack.rest("GET", link_path(create_link(stack, tenant_id).json()["url"]), key=None)
    assert page.status == 200, page.body
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert_secured(page)
    html = page.body.decode()
    assert figure(html, "plan-name") == "Standard"
    assert figure(html, "plan-price") == "$29.00 / month"
    left = sub.current_period_end - dt.datetime.now(UTC)  # whole days, a part day counting as one
    assert int(figure(html, "days-left")) in (left.days, left.days + 1)
    assert figure(html, "usage-total") == f"{int(usage['total_requests']):,}" == "100,507"
    assert figure(html, "usage-included") == f"{int(usage['included_requests']):,}"
    assert figure(html, "usage-overage").startswith(f"{int(usage['overage_requests']):,} requests, $0.25")
    assert usage["estimated_overage_cents"] == "25"
    # The estimate is the invoice's rule: this period's prorated fee plus the overage.
    invoice = stack.generate_invoice(sub.id).json()
    assert (
        figure(html, "estimate") == f"${int(invoice['total_cents']) // 100:,}.{int(invoice['total_cents']) % 100:02d}"
    )
    assert html.count('class="bar"') == len(daily["days"])
    top = [e["endpoint"] for e in analytics["top_endpoints"]]
    assert top == ["/v1/search", "/v1/items"] and html.index("/v1/search") < html.index("/v1/items")
    assert (
        'aria-label="Daily requests from' in html
        and html.count('role="img"') == 2
        and '<th scope="col">Endpoint</th>' in html
    )
    assert "<script" not in html


def test_tenant_text_is_escaped(stack, tenant_id):
    """Tenant ids are identifiers (no markup can be one); the texts a tenant sends are escaped."""
    sub = insert_subscription(tenant_id, billing_email="x@example.com")
    endpoints = ["<script>alert('e')</script>", '<img src=x onerror="alert(1)">']
    assert stack.track(sub.id, [{"endpoint": endpoint, "count": 2} for endpoint in endpoints]).status == 200
    html = stack.rest("GET", link_path(create_link(stack, tenant_id).json()["url"]), key=None).body.decode()
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#39;e&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


def test_invoice_pdfs_open_through_the_link_and_only_the_tenants_own(stack, tenant_id):
    sub = insert_subscription(tenant_id)
    assert stack.track(sub.id, [{"endpoint": "/v1/x", "count": 3}]).status == 200
    invoice = stack.generate_invoice(sub.id).json()
    page_path = link_path(create_link(stack, tenant_id).json()["url"])
    html = stack.rest("GET", page_path, key=None).body.decode()
    assert invoice["number"] in html and '<td class="status">PENDING</td>' in html
    href = f"{page_path.rsplit('/', 1)[1]}/invoices/{invoice['id']}/pdf"
    assert f'href="{href}"' in html
    pdf = stack.rest("GET", f"/billing/portal/{href}", key=None)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body.startswith(b"%PDF") and pdf.headers["cache-control"] == "no-store"

    other = f"{tenant_id}-b"
    insert_subscription(other)
    other_path = link_path(create_link(stack, other).json()["url"])
    assert stack.rest("GET", f"{other_path}/invoices/{invoice['id']}/pdf", key=None).status == 404


@pytest.mark.parametrize(
    "spoil",
    [
        lambda token: token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
        lambda token: "x" + token,
        lambda token: "garbage",
    ],
)
def test_a_tampered_link_is_a_401_page(stack, tenant_id, spoil):
    insert_subscription(tenant_id)
    token = link_path(create_link(stack, tenant_id).json()["url"]).rsplit("/", 1)[1]
    reply = stack.rest("GET", f"/billing/portal/{spoil(token)}", key=None)
    assert reply.status == 401 and reply.headers["content-type"] == "text/html; charset=utf-8"
    assert "This portal link cannot be used" in reply.body.decode()
    assert_secured(reply)
    assert stack.rest("GET", f"/billing/portal/{spoil(token)}/invoices/inv_1/pdf", key=None).status == 401


def test_an_expired_link_is_a_401_page_saying_so(stack, tenant_id):
    insert_subscription(tenant_id)
    token = signed_token(tenant_id, dt.datetime.now(UTC) - dt.timedelta(hours=1, seconds=1))
    reply = stack.rest("GET", f"/billing/portal/{token}", key=None)
    assert reply.status == 401 and "expired" in reply.body.decode()


def test_grpc_clients_need_a_key_for_links_but_not_for_pages(stack, tenant_id):
    insert_subscription(tenant_id)
    stub = stack.stub(portal_pb2_grpc.PortalServiceStub)
    with pytest.raises(grpc.RpcError) as refused:
        stub.CreatePortalSession(portal_pb2.CreatePortalSessionRequest(tenant_id=tenant_id))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    session = stub.CreatePortalSession(
        portal_pb2.CreatePortalSessionRequest(tenant_id=tenant_id), metadata=stack.auth(stack.admin_key)
    )
    page = stub.GetPortalPage(portal_pb2.GetPortalPageRequest(token=session.url.rsplit("/", 1)[1]))
    assert page.content_type.startswith("text/html") and tenant_id.encode() in page.data


def test_the_page_lists_webhook_endpoints_and_recent_deliveries_without_secrets(stack, tenant_id):
    created = stack.rest(
        "POST", "/billing/webhooks", body={"tenant_id": tenant_id, "url": "http://127.0.0.1:9/hooks?tag=<b>"}
    )
    assert created.status == 200, created.body
    reply = stack.rest(
        "POST",
        "/billing/subscriptions",
        body={"tenant_id": tenant_id, "plan_id": "standard", "billing_email": "b@example.com"},
    )
    assert reply.status == 200
    html = stack.rest("GET", link_path(create_link(stack, tenant_id).json()["url"]), key=None).body.decode()
    assert 'id="webhook-endpoints"' in html and "http://127.0.0.1:9/hooks?tag=&lt;b&gt;" in html
    assert "subscription.created" in html
    assert created.json()["secret"] not in html and "whsec_" not in html


def test_the_page_charts_each_meter_with_figures_this_period(stack, tenant_id):
    tag = uuid.uuid4().hex[:6]
    for meter_id, aggregation, prop in ((f"tok-{tag}", "SUM", "tokens"), (f"usr-{tag}", "UNIQUE_COUNT", "user")):
        body = {"id": meter_id, "name": f"Meter {meter_id}", "event_type": f"llm_{tag}", "aggregation": aggregation}
        assert stack.rest("POST", "/billing/meters", body={**body, "value_property": prop}).status == 200
    idle = f"idle-{tag}"
    body = {"id": idle, "name": "Idle", "event_type": f"none_{tag}", "aggregation": "COUNT"}
    assert stack.rest("POST", "/billing/meters", body=body).status == 200
    sub = insert_subscription(tenant_id)
    now = dt.datetime.now(UTC)
    events = [
        {
            "event_type": f"llm_{tag}",
            "properties": {"tokens": "1.5", "user": "a"},
            "timestamp": iso(now - dt.timedelta(days=1)),
        },
        {"event_type": f"llm_{tag}", "properties": {"tokens": 2, "user": "a"}},
        {"event_type": f"llm_{tag}", "properties": {"tokens": -10, "user": "b"}},
    ]
    assert stack.track(sub.id, events).status == 200
    html = stack.rest("GET", link_path(create_link(stack, tenant_id).json()["url"]), key=None).body.decode()
    assert figure(html, f"meter-tok-{tag}-total") == "-6.5"
    assert figure(html, f"meter-usr-{tag}-total") == "2"
    assert f"meter-{idle}" not in html and "meter-requests" not in html
    days = len(stack.rest("GET", f"/billing/metrics/daily/{sub.id}").json()["days"])
    chart = html[html.index(f'id="meter-tok-{tag}-chart"') :]
    chart = chart[: chart.index("</svg>")]
    assert chart.count('class="bar"') == days and ": -8</title>" in chart and ": 1.5</title>" in chart
