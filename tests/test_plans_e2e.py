"""Plans as data through the real stack (endpoints 1-2, 25-27 and subscriptions pinned to plan
versions): gRPC, REST via Envoy, both backends. Plan ids are unique per test: tests share a
database."""

from __future__ import annotations

import html
import io
import json
import uuid

import grpc
import pytest
from pypdf import PdfReader

from billing.v1 import plan_pb2, plan_pb2_grpc
from portal_links import create_link, link_path
from server.persistence import db
from server.persistence.models import OutboxMessage
from server.scheduler.jobs import outbox_email


@pytest.fixture
def plan_id() -> str:
    return f"llm-{uuid.uuid4().hex[:8]}"


def tokens_meter(stack) -> str:
    meter_id = f"tokens-{uuid.uuid4().hex[:8]}"
    created = stack.rest(
        "POST",
        "/billing/meters",
        body={
            "id": meter_id,
            "name": "Tokens",
            "event_type": "llm_tokens",
            "aggregation": "SUM",
            "value_property": "tokens",
            "group_by": ["model"],
        },
    )
    assert created.status == 200, created.body
    return meter_id


def llm_plan(plan_id: str, meter_id: str, **overrides) -> dict:
    return {
        "id": plan_id,
        "name": "LLM API",
        "monthly_fee_cents": "1000",
        "rate_limit_per_minute": 300,
        "charges": [
            {
                "id": "large",
                "meter_id": meter_id,
                "display_name": "Tokens, m-large",
                "filter": {"model": "m-large"},
                "included": "1000",
                "model": "GRADUATED",
                "tiers": [
                    {"up_to": "1000000", "unit_price": "0.0005"},
                    {"unit_price": "0.00025", "flat_cents": "100"},
                ],
            },
            {"id": "calls", "meter_id": "requests", "model": "PER_UNIT", "unit_price": "0.5", "unit_size": "1000"},
        ],
        **overrides,
    }


def subscribe(stack, plan_id: str, key: str = "admin", **extra):
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    body = {"tenant_id": tenant, "plan_id": plan_id, "billing_email": f"{tenant}@example.com", **extra}
    return stack.rest("POST", "/billing/subscriptions", key=key, body=body), tenant


def test_a_plan_is_published_versioned_and_archived_over_rest(stack, plan_id):
    meter_id = tokens_meter(stack)
    created = stack.rest("POST", "/billing/plans", body=llm_plan(plan_id, meter_id))
    assert created.status == 200, created.body
    plan = created.json()
    assert (plan["version"], plan["tier"], plan["billing"], plan["archived"]) == (
        1,
        "TIER_UNSPECIFIED",
        "POSTPAID",
        False,
    )
    assert plan["charges"][0]["tiers"] == [
        {"up_to": "1000000", "unit_price": "0.0005", "flat_cents": "0"},
        {"up_to": "", "unit_price": "0.00025", "flat_cents": "100"},
    ]
    # Derived for older clients from the PER_UNIT charge on requests per 1,000.
    assert (plan["included_requests"], plan["overage_per_1k_cents"]) == ("0", "1")
    assert stack.rest("POST", "/billing/plans", body=llm_plan(plan_id, meter_id)).status == 409

    sub, _ = subscribe(stack, plan_id)
    assert sub.status == 200 and sub.json()["plan_version"] == 1

    updated = stack.rest("PUT", f"/billing/plans/{plan_id}", body=llm_plan(plan_id, meter_id, monthly_fee_cents="2000"))
    assert updated.status == 200, updated.body
    assert (updated.json()["version"], updated.json()["monthly_fee_cents"]) == (2, "2000")
    assert stack.rest("GET", f"/billing/plans/{plan_id}").json()["version"] == 2
    old = stack.rest("GET", f"/billing/plans/{plan_id}", params={"version": 1}).json()
    assert (old["version"], old["monthly_fee_cents"]) == (1, "1000")
    # The subscription stays on its version until moved; the same plan again is a migration.
    sub_id = sub.json()["id"]
    assert stack.rest("GET", f"/billing/subscriptions/{sub_id}").json()["plan_version"] == 1
    moved = stack.rest("PUT", f"/billing/subscriptions/{sub_id}", body={"plan_id": plan_id})
    assert moved.status == 200 and moved.json()["plan_version"] == 2

    archived = stack.rest("DELETE", f"/billing/plans/{plan_id}")
    assert archived.status == 200 and archived.json()["archived"] is True
    refused, _ = subscribe(stack, plan_id)
    assert refused.status == 400 and "archived" in refused.json()["message"]
    assert plan_id in [p["id"] for p in stack.rest("GET", "/billing/plans").json()["plans"]]  # admin sees it
    tenant_key = stack.tenant_key(f"t-{uuid.uuid4().hex[:8]}")
    assert plan_id not in [p["id"] for p in stack.rest("GET", "/billing/plans", key=tenant_key).json()["plans"]]
    assert stack.rest("GET", f"/billing/plans/{plan_id}", key=tenant_key).status == 404


def test_private_plans_are_for_admins_only(stack, plan_id):
    meter_id = tokens_meter(stack)
    assert stack.rest("POST", "/billing/plans", body=llm_plan(plan_id, meter_id, private=True)).status == 200
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    key = stack.tenant_key(tenant)
    assert plan_id not in [p["id"] for p in stack.rest("GET", "/billing/plans", key=key).json()["plans"]]
    assert stack.rest("GET", f"/billing/plans/{plan_id}", key=key).status == 404
    body = {"tenant_id": tenant, "plan_id": plan_id, "billing_email": f"{tenant}@example.com"}
    assert stack.rest("POST", "/billing/subscriptions", key=key, body=body).status == 400
    assert stack.rest("POST", "/billing/plans", key=key, body=llm_plan(f"{plan_id}-x", meter_id)).status == 403
    assert stack.rest("POST", "/billing/subscriptions", body=body).status == 200  # an admin may


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p["charges"][0]["tiers"][0].pop("up_to"), "charges[0].tiers[0].up_to"),
        (lambda p: p["charges"][1].update(unit_size="3"), "charges[1].unit_size"),
        (lambda p: p["charges"][1].update(id="large"), "charges[1].id"),
        (lambda p: p["charges"][0].update(filter={"region": "eu"}), "charges[0].filter"),
        (lambda p: p["charges"][1].update(meter_id="nope"), "charges[1].meter_id"),
        (lambda p: p.update(trial_days=366), "trial_days"),
        (lambda p: p.update(currency="usd"), "currency"),
    ],
)
def test_an_invalid_plan_is_400_naming_the_field(stack, plan_id, change, field):
    plan = llm_plan(plan_id, tokens_meter(stack))
    change(plan)
    refused = stack.rest("POST", "/billing/plans", body=plan)
    assert refused.status == 400, refused.body
    assert refused.json()["message"].startswith(field + " ")
    assert stack.rest("GET", f"/billing/plans/{plan_id}").status == 404  # nothing written


def test_a_change_to_a_plan_of_another_currency_is_400(stack, plan_id):
    meter_id = tokens_meter(stack)
    assert stack.rest("POST", "/billing/plans", body=llm_plan(plan_id, meter_id, currency="EUR")).status == 200
    sub, _ = subscribe(stack, "standard")
    refused = stack.rest("PUT", f"/billing/subscriptions/{sub.json()['id']}", body={"plan_id": plan_id})
    assert refused.status == 400 and "currency" in refused.json()["message"].lower()


def test_an_invoice_rates_every_charge_exactly(stack, plan_id):
    """1,000 included tokens of m-large; 1,500,000 + 1,000 - used: 1,000,000 at 0.0005 = 500c,
    500,000 at 0.00025 = 125c and the tier's flat 100c; other models are not priced; 2,500
    requests at 0.5c per 1,000 = 1.25c -> 1c. Fee 1000c."""
    meter_id = tokens_meter(stack)
    assert stack.rest("POST", "/billing/plans", body=llm_plan(plan_id, meter_id)).status == 200
    sub, _ = subscribe(stack, plan_id)
    sub_id = sub.json()["id"]
    events = [
        {"event_type": "llm_tokens", "properties": {"model": "m-large", "tokens": "1001000"}},
        {"event_type": "llm_tokens", "properties": {"model": "m-large", "tokens": 500000}},
        {"event_type": "llm_tokens", "properties": {"model": "m-small", "tokens": 7777}},
        {"endpoint": "/v1/chat", "count": 2500},
    ]
    assert stack.track(sub_id, events).status == 200
    usage = stack.rest("GET", f"/billing/metrics/usage/{sub_id}").json()
    invoice = stack.rest("POST", "/billing/invoices/generate", body={"subscription_id": sub_id})
    assert invoice.status == 200, invoice.body
    lines = [
        (i["quantity"], i["unit_amount"], i["unit_amount_cents"], i["amount_cents"])
        for i in invoice.json()["line_items"]
    ]
    assert lines == [
        ("1", "1000", "1000", "1000"),
        ("1000000", "0.0005", "0", "500"),
        ("500000", "0.00025", "0", "125"),
        ("1", "100", "100", "100"),
        ("2.5", "0.5", "1", "1"),
    ]
    assert invoice.json()["total_cents"] == "1726"
    assert usage["estimated_overage_cents"] == "726"  # endpoint 9 rates with the same engine
    descriptions = [i["description"] for i in invoice.json()["line_items"]]
    assert descriptions[1].startswith("LLM API plan, Tokens, m-large: up to 1,000,000 (tier 1), of ")
    assert descriptions[2].startswith("LLM API plan, Tokens, m-large: 1,000,001 and above (tier 2), of ")


def test_plans_over_grpc(stack, plan_id):
    stub = stack.stub(plan_pb2_grpc.PlanServiceStub)
    auth = stack.auth(stack.admin_key)
    plan = plan_pb2.Plan(
        id=plan_id,
        name="Images",
        rate_limit_per_minute=100,
        charges=[
            plan_pb2.Charge(
                id="images", meter_id="requests", model=plan_pb2.Charge.PACKAGE, unit_price="200", package_size=100
            )
        ],
    )
    created = stub.CreatePlan(plan_pb2.CreatePlanRequest(plan=plan), metadata=auth)
    assert (created.version, created.charges[0].package_size) == (1, 100)
    assert stub.GetPlan(plan_pb2.GetPlanRequest(plan_id=plan_id), metadata=auth) == created
    with pytest.raises(grpc.RpcError) as error:
        stub.CreatePlan(plan_pb2.CreatePlanRequest(plan=plan), metadata=auth)
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS
    second = stub.UpdatePlan(plan_pb2.UpdatePlanRequest(plan_id=plan_id, plan=plan), metadata=auth)
    assert second.version == 2
    assert stub.DeletePlan(plan_pb2.DeletePlanRequest(plan_id=plan_id), metadata=auth).archived


def test_a_meter_priced_by_an_unarchived_plan_cannot_be_archived(stack, plan_id):
    meter_id = tokens_meter(stack)
    assert stack.rest("POST", "/billing/plans", body=llm_plan(plan_id, meter_id)).status == 200
    refused = stack.rest("DELETE", f"/billing/meters/{meter_id}")
    assert refused.status == 400 and "METER_IN_USE" in refused.body.decode()
    assert stack.rest("DELETE", f"/billing/plans/{plan_id}").status == 200
    assert stack.rest("DELETE", f"/billing/meters/{meter_id}").status == 200


def test_pdf_email_and_portal_show_each_charge_line_readably(stack, plan_id):
    """Tier ranges, exact sub-cent unit prices (0.0005 cents = $0.000005), quantities with
    separators, package sizes and flat fees, on the PDF (parsed), the e-mail and the portal."""
    meter_id = tokens_meter(stack)
    images = {"id": "images", "meter_id": "requests", "model": "PACKAGE", "unit_price": "200", "package_size": 100}
    plan = llm_plan(plan_id, meter_id)
    plan["charges"].append(images)
    assert stack.rest("POST", "/billing/plans", body=plan).status == 200
    sub, tenant = subscribe(stack, plan_id)
    sub_id = sub.json()["id"]
    events = [
        {"event_type": "llm_tokens", "properties": {"model": "m-large", "tokens": "1501000"}},
        {"endpoint": "/v1/images", "count": 2500},
    ]
    assert stack.track(sub_id, events).status == 200
    page = stack.rest("GET", link_path(create_link(stack, tenant).json()["url"]), key=None).body.decode()
    invoice = stack.rest("POST", "/billing/invoices/generate", body={"subscription_id": sub_id}).json()
    pdf = stack.rest("GET", f"/billing/invoices/{invoice['id']}/pdf")
    text = " ".join(sheet.extract_text() for sheet in PdfReader(io.BytesIO(pdf.body)).pages)
    flat = " ".join(text.split())  # table cells wrap
    for expected in [
        "Tokens, m-large: up to 1,000,000 (tier 1)",
        "Tokens, m-large: 1,000,001 and above (tier 2)",
        "1,000,000 unit $0.000005 $5.00",
        "500,000 unit $0.0000025 $1.25",
        "(tier 2) flat fee",
        "1 flat fee $1.00 $1.00",
        "in packages of 100",
        "25 package of 100 $2.00 $50.00",
        "2.5 1,000 requests $0.005 $0.01",
    ]:
        assert expected in flat, flat
    with db.session():
        row = OutboxMessage(  # the e-mail issuing it would send (it is still PENDING here)
            template="invoice_issued",
            recipient="ops@example.com",
            payload=json.dumps({"invoice_id": invoice["id"]}),
            dedup_key=f"invoice_issued:{invoice['id']}",
        )
        message = outbox_email(row, "billing@localhost")
    mail = message.get_body(("plain",)).get_content()
    assert "Tokens, m-large: 1,000,001 and above (tier 2)" in mail
    assert "(500,000 \N{MULTIPLICATION SIGN} $0.0000025 per unit)" in mail
    assert "(25 \N{MULTIPLICATION SIGN} $2.00 per package of 100)" in mail
    assert "$0.0000025 per unit" in message.get_body(("html",)).get_content()
    # The portal's estimate shows the same lines the invoice has, before it is issued.
    for item in invoice["line_items"]:
        assert html.escape(item["description"]) in page
    assert (
        '<td class="num">500,000</td><td>unit</td>\n<td class="num">$0.0000025</td><td class="num">$1.25</td>' in page
    )
