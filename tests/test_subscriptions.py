"""Subscriptions (endpoints 3-7) through REST via Envoy and through gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading

import grpc
import pytest

from billing.v1 import subscription_pb2 as pb
from billing.v1 import subscription_pb2_grpc
from grpc_errors import grpc_error, grpc_fields
from server.domain import periods
from server.persistence import db
from server.persistence.models import PlanChange, Subscription

Status = pb.Subscription.Status


def rest_create(stack, tenant_id, plan_id="standard", email="billing@example.com", key="admin"):
    return stack.rest(
        "POST",
        "/billing/subscriptions",
        key=key,
        body={"tenant_id": tenant_id, "plan_id": plan_id, "billing_email": email},
    )


def violated_fields(body) -> list[str]:
    return [v["field"] for d in body["details"] for v in d.get("field_violations", d.get("fieldViolations", []))]


def rows(tenant_id):
    with db.session():
        subs = list(Subscription.select().where(Subscription.tenant_id == tenant_id))
        changes = list(
            PlanChange.select()
            .join(Subscription)
            .where(Subscription.tenant_id == tenant_id)
            .order_by(PlanChange.effective_at, PlanChange.id)
        )
        return subs, [(c.subscription_id, c.plan_id) for c in changes]


@pytest.fixture
def subs(stack):
    return stack.stub(subscription_pb2_grpc.SubscriptionServiceStub)


# --- the lifecycle through each door -------------------------------------------------------------


def test_rest_create_get_update_cancel(stack, tenant_id):
    before = dt.datetime.now(dt.timezone.utc)
    reply = rest_create(stack, tenant_id)
    assert reply.status == 200, reply.body
    sub = reply.json()
    assert sub["id"].startswith("sub_") and len(sub["id"]) == 36
    assert (sub["tenant_id"], sub["plan_id"], sub["billing_email"], sub["status"]) == (
        tenant_id,
        "standard",
        "billing@example.com",
        "ACTIVE",
    )
    created = dt.datetime.fromisoformat(sub["created_at"])
    assert before - dt.timedelta(seconds=1) <= created <= dt.datetime.now(dt.timezone.utc)
    assert dt.datetime.fromisoformat(sub["current_period_start"]) == created
    assert dt.datetime.fromisoformat(sub["current_period_end"]) == periods.add_months(created, 1)
    assert "canceled_at" not in sub

    assert stack.rest("GET", f"/billing/subscriptions/{sub['id']}").json() == sub

    reply = stack.rest(
        "PUT",
        f"/billing/subscriptions/{sub['id']}",
        body={"plan_id": "premium", "billing_email": "finance@example.com"},
    )
    assert reply.status == 200, reply.body
    updated = reply.json()
    assert (updated["plan_id"], updated["billing_email"]) == ("premium", "finance@example.com")
    assert updated["current_period_start"] == sub["current_period_start"]  # anniversary unchanged
    assert dt.datetime.fromisoformat(updated["updated_at"]) >= created

    reply = stack.rest("DELETE", f"/billing/subscriptions/{sub['id']}")
    assert reply.status == 200, reply.body
    canceled = reply.json()
    assert canceled["status"] == "CANCELED" and canceled["plan_id"] == "premium"
    assert dt.datetime.fromisoformat(canceled["canceled_at"]) >= created

    again = stack.rest("DELETE", f"/billing/subscriptions/{sub['id']}")
    assert again.status == 200 and again.json() == canceled  # idempotent: same canceled_at
    assert stack.rest("GET", f"/billing/subscriptions/{sub['id']}").json() == canceled  # record kept

    stored, changes = rows(tenant_id)
    assert len(stored) == 1 and stored[0].anchor_at == created
    assert changes == [(sub["id"], "standard"), (sub["id"], "premium")]


def test_grpc_create_get_update_cancel(stack, subs, tenant_id):
    auth = stack.auth(stack.admin_key)
    sub = subs.CreateSubscription(
        pb.CreateSubscriptionRequest(tenant_id=tenant_id, plan_id="free", billing_email="ops@example.com"),
        metadata=auth,
    )
    assert sub.status == Status.ACTIVE and sub.plan_id == "free" and not sub.HasField("canceled_at")
    assert sub.current_period_start == sub.created_at
    assert subs.GetSubscription(pb.GetSubscriptionRequest(id=sub.id), metadata=auth) == sub

    upgraded = subs.UpdateSubscription(pb.UpdateSubscriptionRequest(id=sub.id, plan_id="enterprise"), metadata=auth)
    assert upgraded.plan_id == "enterprise" and upgraded.billing_email == "ops@example.com"
    downgraded = subs.UpdateSubscription(pb.UpdateSubscriptionRequest(id=sub.id, plan_id="standard"), metadata=auth)
    assert downgraded.plan_id == "standard"

    canceled = subs.CancelSubscription(pb.CancelSubscriptionRequest(id=sub.id), metadata=auth)
    assert canceled.status == Status.CANCELED and canceled.HasField("canceled_at")
    assert subs.CancelSubscription(pb.CancelSubscriptionRequest(id=sub.id), metadata=auth) == canceled
    assert rows(tenant_id)[1] == [(sub.id, "free"), (sub.id, "enterprise"), (sub.id, "standard")]


def test_same_plan_is_no_change_and_no_history(stack, tenant_id):
    sub = rest_create(stack, tenant_id).json()
    reply = stack.rest("PUT", f"/billing/subscriptions/{sub['id']}", body={"plan_id": "standard"})
    assert reply.status == 200 and reply.json() == sub  # updated_at untouched too
    assert stack.rest("PUT", f"/billing/subscriptions/{sub['id']}", body={}).json() == sub
    assert rows(tenant_id)[1] == [(sub["id"], "standard")]


# --- bad input: 400 naming the field, 404, 409; a failed call writes nothing ---------------------


@pytest.mark.parametrize("missing", ["tenant_id", "plan_id", "billing_email"])
def test_rest_create_missing_field_is_400_naming_it(stack, tenant_id, missing):
    body = {"tenant_id": tenant_id, "plan_id": "standard", "billing_email": "a@example.com"}
    del body[missing]
    reply = stack.rest("POST", "/billing/subscriptions", body=body)
    assert reply.status == 400
    assert reply.json()["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert missing in reply.json()["message"] and violated_fields(reply.json()) == [missing]
    assert rows(tenant_id) == ([], [])


def test_rest_create_unknown_plan_and_bad_email_are_400(stack, tenant_id):
    reply = rest_create(stack, tenant_id, plan_id="platinum")
    assert reply.status == 400 and "platinum" in reply.json()["message"]
    assert violated_fields(reply.json()) == ["plan_id"]
    reply = rest_create(stack, tenant_id, email="not-an-email")
    assert reply.status == 400 and violated_fields(reply.json()) == ["billing_email"]
    assert rows(tenant_id) == ([], [])


def test_rest_second_active_subscription_is_409_and_after_cancel_allowed(stack, tenant_id):
    first = rest_create(stack, tenant_id).json()
    reply = rest_create(stack, tenant_id, plan_id="premium")
    assert reply.status == 409
    body = reply.json()
    assert body["code"] == grpc.StatusCode.ALREADY_EXISTS.value[0] and first["id"] in body["message"]
    assert body["details"][0]["reason"] == "ACTIVE_SUBSCRIPTION_EXISTS"
    assert len(rows(tenant_id)[0]) == 1
    stack.rest("DELETE", f"/billing/subscriptions/{first['id']}")
    assert rest_create(stack, tenant_id, plan_id="premium").status == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_rest_unknown_subscription_is_404(stack, method):
    reply = stack.rest(method, "/billing/subscriptions/sub_nope", body={} if method == "PUT" else None)
    assert reply.status == 404
    assert reply.json()["details"][0]["reason"] == "SUBSCRIPTION_NOT_FOUND"


def test_rest_update_of_canceled_is_400_and_changes_nothing(stack, tenant_id):
    sub = rest_create(stack, tenant_id).json()
    canceled = stack.rest("DELETE", f"/billing/subscriptions/{sub['id']}").json()
    reply = stack.rest("PUT", f"/billing/subscriptions/{sub['id']}", body={"plan_id": "premium"})
    assert reply.status == 400
    assert reply.json()["code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "CANCELED" in reply.json()["message"]
    assert stack.rest("GET", f"/billing/subscriptions/{sub['id']}").json() == canceled
    assert rows(tenant_id)[1] == [(sub["id"], "standard")]


def test_rest_update_unknown_plan_or_bad_email_is_400_and_changes_nothing(stack, tenant_id):
    sub = rest_create(stack, tenant_id).json()
    reply = stack.rest("PUT", f"/billing/subscriptions/{sub['id']}", body={"plan_id": "platinum"})
    assert reply.status == 400 and violated_fields(reply.json()) == ["plan_id"]
    reply = stack.rest(
        "PUT", f"/billing/subscriptions/{sub['id']}", body={"plan_id": "premium", "billing_email": "nope"}
    )
    assert reply.status == 400 and violated_fields(reply.json()) == ["billing_email"]
    assert stack.rest("GET", f"/billing/subscriptions/{sub['id']}").json() == sub
    assert rows(tenant_id)[1] == [(sub["id"], "standard")]


def test_grpc_errors_carry_codes_and_fields(stack, subs, tenant_id):
    auth = stack.auth(stack.admin_key)
    create = subs.CreateSubscription
    error = grpc_error(
        create, pb.CreateSubscriptionRequest(plan_id="free", billing_email="a@example.com"), metadata=auth
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and grpc_fields(error) == ["tenant_id"]
    error = grpc_error(
        create,
        pb.CreateSubscriptionRequest(tenant_id=tenant_id, plan_id="gold", billing_email="a@example.com"),
        metadata=auth,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and grpc_fields(error) == ["plan_id"]
    error = grpc_error(
        create, pb.CreateSubscriptionRequest(tenant_id=tenant_id, plan_id="free", billing_email="a@"), metadata=auth
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and grpc_fields(error) == ["billing_email"]

    sub = create(
        pb.CreateSubscriptionRequest(tenant_id=tenant_id, plan_id="free", billing_email="a@example.com"), metadata=auth
    )
    error = grpc_error(
        create,
        pb.CreateSubscriptionRequest(tenant_id=tenant_id, plan_id="premium", billing_email="a@example.com"),
        metadata=auth,
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS

    for call, request in [
        (subs.GetSubscription, pb.GetSubscriptionRequest(id="sub_missing")),
        (subs.UpdateSubscription, pb.UpdateSubscriptionRequest(id="sub_missing", plan_id="free")),
        (subs.CancelSubscription, pb.CancelSubscriptionRequest(id="sub_missing")),
    ]:
        assert grpc_error(call, request, metadata=auth).code() == grpc.StatusCode.NOT_FOUND

    subs.CancelSubscription(pb.CancelSubscriptionRequest(id=sub.id), metadata=auth)
    error = grpc_error(
        subs.UpdateSubscription, pb.UpdateSubscriptionRequest(id=sub.id, plan_id="premium"), metadata=auth
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(rows(tenant_id)[0]) == 1
    assert (
        grpc_error(subs.GetSubscription, pb.GetSubscriptionRequest(id=sub.id)).code() == grpc.StatusCode.UNAUTHENTICATED
    )


# --- tenant isolation -----------------------------------------------------------------------------


def test_rest_tenant_keys_see_only_their_own(stack, tenant_id):
    other = tenant_id + "-other"
    mine, theirs = stack.tenant_key(tenant_id), stack.tenant_key(other)
    reply = rest_create(stack, tenant_id, key=mine)
    assert reply.status == 200
    sub = reply.json()
    assert rest_create(stack, tenant_id, key=theirs).status == 403  # may create only for itself
    assert stack.rest("GET", f"/billing/subscriptions/{sub['id']}", key=mine).json() == sub

    for method, body in [("GET", None), ("PUT", {"plan_id": "premium"}), ("DELETE", None)]:
        reply = stack.rest(method, f"/billing/subscriptions/{sub['id']}", key=theirs, body=body)
        assert reply.status == 404, method  # no existence leak
        assert reply.json()["message"] == "subscription 'sub_nope' not found".replace("sub_nope", sub["id"])
    reply = stack.rest("GET", f"/billing/subscriptions/tenant/{tenant_id}", key=theirs)
    assert reply.status == 403 and reply.json()["details"][0]["reason"] == "TENANT_MISMATCH"

    assert stack.rest("GET", f"/billing/subscriptions/tenant/{tenant_id}", key=mine).json()["subscriptions"] == [sub]
    assert stack.rest("GET", f"/billing/subscriptions/{sub['id']}").status == 200  # admin sees all
    assert (
        stack.rest("PUT", f"/billing/subscriptions/{sub['id']}", key=mine, body={"plan_id": "premium"}).json()[
            "plan_id"
        ]
        == "premium"
    )
    assert stack.rest("DELETE", f"/billing/subscriptions/{sub['id']}", key=mine).json()["status"] == "CANCELED"
    assert rows(tenant_id)[1] == [(sub["id"], "standard"), (sub["id"], "premium")]
    assert rows(other) == ([], [])


def test_grpc_tenant_isolation(stack, subs, tenant_id):
    mine, theirs = stack.auth(stack.tenant_key(tenant_id)), stack.auth(stack.tenant_key(tenant_id + "-x"))
    sub = subs.CreateSubscription(
        pb.CreateSubscriptionRequest(tenant_id=tenant_id, plan_id="free", billing_email="a@example.com"), metadata=mine
    )
    error = grpc_error(
        subs.CreateSubscription,
        pb.CreateSubscriptionRequest(tenant_id=tenant_id, plan_id="free", billing_email="a@example.com"),
        metadata=theirs,
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (
        grpc_error(subs.GetSubscription, pb.GetSubscriptionRequest(id=sub.id), metadata=theirs).code()
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        grpc_error(subs.CancelSubscription, pb.CancelSubscriptionRequest(id=sub.id), metadata=theirs).code()
        == grpc.StatusCode.NOT_FOUND
    )
    error = grpc_error(
        subs.ListTenantSubscriptions, pb.ListTenantSubscriptionsRequest(tenant_id=tenant_id), metadata=theirs
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert subs.GetSubscription(pb.GetSubscriptionRequest(id=sub.id), metadata=mine) == sub


# --- list: status filter and pagination -----------------------------------------------------------


def three_subscriptions(stack, tenant_id) -> list[str]:
    """Two canceled and one active, returned newest first."""
    ids = []
    for plan in ["free", "standard", "premium"]:
        ids.append(rest_create(stack, tenant_id, plan_id=plan).json()["id"])
        if plan != "premium":
            stack.rest("DELETE", f"/billing/subscriptions/{ids[-1]}")
    return ids[::-1]


def test_rest_list_paginates_newest_first_and_filters_by_status(stack, tenant_id):
    ids = three_subscriptions(stack, tenant_id)
    path = f"/billing/subscriptions/tenant/{tenant_id}"
    first = stack.rest("GET", path, params={"page_size": 2})
    assert first.status == 200, first.body
    assert [s["id"] for s in first.json()["subscriptions"]] == ids[:2]
    token = first.json()["next_page_token"]
    assert token
    last = stack.rest("GET", path, params={"page_size": 2, "page_token": token}).json()
    assert [s["id"] for s in last["subscriptions"]] == ids[2:]
    assert last.get("next_page_token", "") == ""

    assert [s["id"] for s in stack.rest("GET", path).json()["subscriptions"]] == ids
    active = stack.rest("GET", path, params={"status": "ACTIVE"}).json()["subscriptions"]
    assert [s["id"] for s in active] == ids[:1]
    canceled = stack.rest("GET", path, params={"status": "CANCELED"}).json()["subscriptions"]
    assert [s["id"] for s in canceled] == ids[1:]
    assert [s["id"] for s in stack.rest("GET", path, params={"page_size": 501}).json()["subscriptions"]] == ids
    assert stack.rest("GET", path, params={"page_size": -1}).status == 400
    assert stack.rest("GET", path, params={"page_token": "garbage"}).status == 400
    other_filter = stack.rest("GET", path, params={"page_size": 1, "page_token": token, "status": "CANCELED"})
    assert other_filter.status == 400 and "page_token" in other_filter.json()["message"]
    other_parent = stack.rest("GET", f"{path}-other", params={"page_size": 2, "page_token": token})
    assert other_parent.status == 400 and "page_token" in other_parent.json()["message"]
    assert stack.rest("GET", f"/billing/subscriptions/tenant/{tenant_id}-none").json().get("subscriptions", []) == []


def test_grpc_list_paginates_and_filters(stack, subs, tenant_id):
    ids = three_subscriptions(stack, tenant_id)
    auth = stack.auth(stack.admin_key)
    page = subs.ListTenantSubscriptions(
        pb.ListTenantSubscriptionsRequest(tenant_id=tenant_id, page_size=2), metadata=auth
    )
    assert [s.id for s in page.subscriptions] == ids[:2] and page.next_page_token
    last = subs.ListTenantSubscriptions(
        pb.ListTenantSubscriptionsRequest(tenant_id=tenant_id, page_size=2, page_token=page.next_page_token),
        metadata=auth,
    )
    assert [s.id for s in last.subscriptions] == ids[2:] and last.next_page_token == ""
    canceled = subs.ListTenantSubscriptions(
        pb.ListTenantSubscriptionsRequest(tenant_id=tenant_id, status=Status.CANCELED), metadata=auth
    )
    assert [s.id for s in canceled.subscriptions] == ids[1:]
    error = grpc_error(subs.ListTenantSubscriptions, pb.ListTenantSubscriptionsRequest(), metadata=auth)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and grpc_fields(error) == ["tenant_id"]


# --- the one-active rule under concurrency -----------------------------------------------------------


@pytest.mark.parametrize("door", ["rest", "grpc"])
def test_concurrent_creates_give_one_active_subscription(stack, subs, tenant_id, door):
    callers = 8
    start = threading.Barrier(callers)

    def create(index: int) -> int:
        start.wait()
        if door == "rest":
            return rest_create(stack, tenant_id, email=f"c{index}@example.com").status
        try:
            subs.CreateSubscription(
                pb.CreateSubscriptionRequest(
                    tenant_id=tenant_id, plan_id="standard", billing_email=f"c{index}@example.com"
                ),
                metadata=stack.auth(stack.admin_key),
            )
            return 200
        except grpc.RpcError as error:
            return {grpc.StatusCode.ALREADY_EXISTS: 409}.get(error.code(), error.code())

    with concurrent.futures.ThreadPoolExecutor(callers) as pool:
        outcomes = list(pool.map(create, range(callers)))
    assert sorted(outcomes, key=str) == [200] + [409] * (callers - 1)
    stored, changes = rows(tenant_id)
    assert [s.status for s in stored] == ["ACTIVE"]
    assert changes == [(stored[0].id, "standard")]
