"""Subscription lifecycle end to end, on SQLite and PostgreSQL, through REST via Envoy and gRPC, and
through the scheduler's own clock (`billing-scheduler run-once JOB --now T` as a process): trials
billed from trial_end to the microsecond, the trial_will_end notice sent once, cancellation at the
period's end carried out once by two racing schedulers, and plan changes scheduled for the period's
end. Tests share the stack's database and look at their own subscriptions only."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import uuid

import pytest

from billing.v1 import subscription_pb2 as pb
from billing.v1 import subscription_pb2_grpc
from grpc_errors import grpc_error
from processes import BIN
from server.domain.money import div_round_half_up
from server.domain.periods import add_months, period
from server.persistence import db
from server.persistence.models import PlanChange, Subscription, WebhookEvent

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
Effective = pb.UpdateSubscriptionRequest.Effective


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def rfc3339(instant: dt.datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def run_once(stack, job: str, now: dt.datetime) -> subprocess.Popen:
    """The scheduler's run-once as operators start it, on the stack's database, its clock at `now`."""
    env = {**os.environ, "DATABASE_URL": stack.settings.database_url, "OUTBOX_DIR": str(stack.workdir / "outbox")}
    env.pop("SMTP_URL", None)
    return subprocess.Popen(
        [str(BIN / "billing-scheduler"), "run-once", job, "--now", rfc3339(now), "--allow-future"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def schedule(stack, job: str, now: dt.datetime) -> dict:
    return finished(run_once(stack, job, now))


def publish(stack, **plan) -> str:
    """A plan of this test's own (an id no other test bills on)."""
    plan_id = f"lc-{uuid.uuid4().hex[:10]}"
    body = {"id": plan_id, "name": "Pro", "monthly_fee_cents": "3000", "rate_limit_per_minute": 300, **plan}
    reply = stack.rest("POST", "/billing/plans", body=body)
    assert reply.status == 200, reply.body
    return plan_id


def backdate(subscription_id: str, by: dt.timedelta) -> None:
    """Move a new subscription's every instant `by` into the past, as if created then (events can
    be dated only up to 5 minutes ahead: a trial's boundary is tested once it has passed)."""
    with db.session():
        sub = Subscription.get_by_id(subscription_id)
        for name in ("anchor_at", "created_at", "updated_at"):
            setattr(sub, name, getattr(sub, name) - by)
        first = period(sub.anchor_at, 0)
        sub.current_period_start, sub.current_period_end = first.start, first.end
        sub.trial_end = sub.trial_end - by if sub.trial_end else None
        sub.save()
        for change in PlanChange.select().where(PlanChange.subscription == subscription_id):
            change.effective_at -= by
            change.save()


def events_of(tenant_id: str, event_type: str) -> list[dict]:
    with db.session():
        rows = WebhookEvent.select().where((WebhookEvent.tenant_id == tenant_id) & (WebhookEvent.type == event_type))
        return [json.loads(row.body)["data"] for row in rows]


def listen(stack, tenant_id: str) -> None:
    """An endpoint for every event type: what the subscription's events are written for."""
    body = {"tenant_id": tenant_id, "url": "http://127.0.0.1:9/hook"}
    assert stack.rest("POST", "/billing/webhooks", body=body).status == 200


def lines(invoice: dict) -> list[tuple[str, str, str]]:
    return [(item["description"], item["quantity"], item["amount_cents"]) for item in invoice["line_items"]]


def invoices(stack, subscription_id: str) -> list[dict]:
    reply = stack.rest("GET", f"/billing/invoices/subscription/{subscription_id}")
    assert reply.status == 200, reply.body
    return reply.json()["invoices"]


def get(stack, subscription_id: str) -> dict:
    return stack.rest("GET", f"/billing/subscriptions/{subscription_id}").json()


@pytest.fixture
def subs(stack):
    return stack.stub(subscription_pb2_grpc.SubscriptionServiceStub)


# --- trials ---------------------------------------------------------------------------------------


def test_a_trial_bills_from_its_end_to_the_microsecond(stack, tenant_id, subs):
    plan_id = publish(
        stack, trial_days=2, charges=[{"id": "calls", "meter_id": "requests", "model": "PER_UNIT", "unit_price": "100"}]
    )
    sub = stack.subscribe(tenant_id, plan=plan_id)
    assert at(sub["trial_end"]) == at(sub["created_at"]) + dt.timedelta(days=2)
    backdate(sub["id"], dt.timedelta(days=10))
    sub = get(stack, sub["id"])
    trial_end, start, end = at(sub["trial_end"]), at(sub["current_period_start"]), at(sub["current_period_end"])
    assert start + dt.timedelta(days=2) == trial_end < dt.datetime.now(UTC)

    reply = stack.track(
        sub["id"],
        [
            {"event_id": "before", "endpoint": "/v1/x", "timestamp": rfc3339(trial_end - US)},
            {"event_id": "at", "endpoint": "/v1/x", "timestamp": rfc3339(trial_end)},
        ],
    )
    assert reply.json()["accepted"] == 2, reply.body
    usage = stack.rest("GET", f"/billing/metrics/usage/{sub['id']}").json()
    assert (usage["total_requests"], usage["overage_requests"], usage["estimated_overage_cents"]) == ("2", "1", "100")

    invoice = stack.generate_invoice(sub["id"]).json()
    whole, paid = (end - start) // US, (end - trial_end) // US
    fee = div_round_half_up(3000 * paid, whole)
    span = f"{trial_end:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC"
    assert lines(invoice) == [
        (f"Pro plan, free trial, {start:%Y-%m-%d %H:%M:%S} to {trial_end:%Y-%m-%d %H:%M:%S} UTC", "1", "0"),
        (f"Pro plan, {span}", "1", str(fee)),
        (f"Pro plan, calls: 1 requests over 0 included, {span}", "1", "100"),
    ]
    assert invoice["total_cents"] == str(fee + 100)
    # gRPC reads the same trial end.
    read = subs.GetSubscription(pb.GetSubscriptionRequest(id=sub["id"]), metadata=stack.auth(stack.admin_key))
    assert read.trial_end.ToDatetime(tzinfo=UTC) == trial_end


def test_a_plan_without_trial_days_gives_no_trial(stack, tenant_id):
    sub = stack.subscribe(tenant_id)
    assert "trial_end" not in sub


def test_trial_will_end_is_sent_once_three_days_before_by_the_scheduler(stack, tenant_id):
    plan_id = publish(stack, trial_days=5)
    listen(stack, tenant_id)
    sub = stack.subscribe(tenant_id, plan=plan_id)
    notice = at(sub["trial_end"]) - dt.timedelta(days=3)
    schedule(stack, "trial_notices", notice - dt.timedelta(seconds=1))
    assert events_of(tenant_id, "subscription.trial_will_end") == []
    racing = [run_once(stack, "trial_notices", notice) for _ in range(2)]
    for process in racing:
        finished(process)
    schedule(stack, "trial_notices", notice + dt.timedelta(hours=1))
    [sent] = events_of(tenant_id, "subscription.trial_will_end")
    assert (sent["id"], sent["trial_end"]) == (sub["id"], sub["trial_end"])


# --- cancel at the period's end --------------------------------------------------------------------


def test_cancel_at_period_end_is_carried_out_once_by_two_racing_schedulers(stack, tenant_id):
    listen(stack, tenant_id)
    sub = stack.subscribe(tenant_id)
    path = f"/billing/subscriptions/{sub['id']}"
    end = at(sub["current_period_end"])

    set_ = stack.rest("DELETE", path, params={"at_period_end": "true"})
    assert set_.status == 200, set_.body
    body = set_.json()
    assert (body["status"], at(body["cancel_at"]), body["cancel_at_period_end"]) == ("ACTIVE", end, True)
    assert "canceled_at" not in body
    assert stack.rest("DELETE", path, params={"at_period_end": "true"}).json() == body  # repeated: the same

    undone = stack.rest("PUT", path, body={"cancel_at_period_end": False}).json()
    assert ("cancel_at" in undone, undone["cancel_at_period_end"], undone["status"]) == (False, False, "ACTIVE")
    assert stack.rest("DELETE", path, params={"at_period_end": "true"}).json()["cancel_at_period_end"] is True

    schedule(stack, "period_invoicing", end - US)
    assert (get(stack, sub["id"])["status"], invoices(stack, sub["id"])) == ("ACTIVE", [])

    racing = [run_once(stack, "period_invoicing", end) for _ in range(2)]
    for process in racing:
        finished(process)
    schedule(stack, "period_invoicing", end + dt.timedelta(days=40))

    after = get(stack, sub["id"])
    assert (after["status"], at(after["canceled_at"]), at(after["cancel_at"])) == ("CANCELED", end, end)
    assert at(after["current_period_start"]) == at(sub["current_period_start"])
    [invoice] = invoices(stack, sub["id"])
    assert (invoice["status"], at(invoice["period_start"]), at(invoice["period_end"])) == (
        "SENT",
        at(sub["current_period_start"]),
        end,
    )
    assert lines(invoice) == [("Standard plan, monthly fee", "1", "2900")]
    assert len(events_of(tenant_id, "subscription.canceled")) == 1


def test_cancel_at_period_end_over_grpc_and_undo_by_presence(stack, tenant_id, subs):
    auth = stack.auth(stack.admin_key)
    sub = stack.subscribe(tenant_id)
    set_ = subs.CancelSubscription(pb.CancelSubscriptionRequest(id=sub["id"], at_period_end=True), metadata=auth)
    assert (set_.status, set_.cancel_at_period_end, set_.cancel_at) == (
        pb.Subscription.ACTIVE,
        True,
        set_.current_period_end,
    )
    # cancel_at_period_end absent: left as it is.
    kept = subs.UpdateSubscription(
        pb.UpdateSubscriptionRequest(id=sub["id"], billing_email="new@example.com"), metadata=auth
    )
    assert kept.cancel_at_period_end is True
    undone = subs.UpdateSubscription(
        pb.UpdateSubscriptionRequest(id=sub["id"], cancel_at_period_end=False), metadata=auth
    )
    assert (undone.cancel_at_period_end, undone.HasField("cancel_at")) == (False, False)
    again = subs.UpdateSubscription(
        pb.UpdateSubscriptionRequest(id=sub["id"], cancel_at_period_end=True), metadata=auth
    )
    assert again.cancel_at == again.current_period_end
    # Canceling at once instead: canceled now, nothing left set for later.
    now = subs.CancelSubscription(pb.CancelSubscriptionRequest(id=sub["id"]), metadata=auth)
    assert (now.status, now.HasField("cancel_at"), now.HasField("canceled_at")) == (
        pb.Subscription.CANCELED,
        False,
        True,
    )


# --- plan changes scheduled for the period's end --------------------------------------------------


def test_a_scheduled_change_starts_the_next_period_without_proration(stack, tenant_id):
    sub = stack.subscribe(tenant_id)
    path = f"/billing/subscriptions/{sub['id']}"
    end = at(sub["current_period_end"])

    pending = stack.rest("PUT", path, body={"plan_id": "premium", "effective": "PERIOD_END"}).json()
    assert (pending["plan_id"], pending["pending_plan_id"], pending["pending_plan_version"]) == (
        "standard",
        "premium",
        1,
    )
    newer = stack.rest("PUT", path, body={"plan_id": "enterprise", "effective": "PERIOD_END"}).json()
    assert (newer["plan_id"], newer["pending_plan_id"]) == ("standard", "enterprise")

    euro = publish(stack, currency="EUR")
    refused = stack.rest("PUT", path, body={"plan_id": euro, "effective": "PERIOD_END"})
    assert refused.status == 400 and refused.json()["details"][0]["reason"] == "CURRENCY_MISMATCH", refused.body
    no_plan = stack.rest("PUT", path, body={"effective": "PERIOD_END"})
    assert no_plan.status == 400 and "effective" in no_plan.json()["message"], no_plan.body
    assert get(stack, sub["id"])["pending_plan_id"] == "enterprise"

    schedule(stack, "period_invoicing", end)
    moved = get(stack, sub["id"])
    assert (moved["plan_id"], moved["pending_plan_id"], moved["pending_plan_version"]) == ("enterprise", "", 0)
    assert (at(moved["current_period_start"]), at(moved["current_period_end"])) == (
        end,
        add_months(at(sub["created_at"]), 2),
    )
    [first] = invoices(stack, sub["id"])
    assert lines(first) == [("Standard plan, monthly fee", "1", "2900")]
    second = stack.generate_invoice(sub["id"]).json()
    assert lines(second) == [("Enterprise plan, monthly fee", "1", "49900")]


def test_an_immediate_change_or_a_cancellation_drops_the_pending_change_over_grpc(stack, subs):
    auth = stack.auth(stack.admin_key)

    def pending_sub():
        sub = stack.subscribe(f"tenant-{uuid.uuid4().hex[:10]}")
        scheduled = subs.UpdateSubscription(
            pb.UpdateSubscriptionRequest(id=sub["id"], plan_id="premium", effective=Effective.PERIOD_END),
            metadata=auth,
        )
        assert (scheduled.plan_id, scheduled.pending_plan_id, scheduled.pending_plan_version) == (
            "standard",
            "premium",
            1,
        )
        return sub["id"]

    now = subs.UpdateSubscription(
        pb.UpdateSubscriptionRequest(id=pending_sub(), plan_id="enterprise", effective=Effective.NOW), metadata=auth
    )
    assert (now.plan_id, now.pending_plan_id) == ("enterprise", "")
    same = subs.UpdateSubscription(
        pb.UpdateSubscriptionRequest(id=pending_sub(), plan_id="standard", effective=Effective.PERIOD_END),
        metadata=auth,
    )
    assert (same.plan_id, same.pending_plan_id) == ("standard", "")
    for at_period_end in (False, True):
        canceled = subs.CancelSubscription(
            pb.CancelSubscriptionRequest(id=pending_sub(), at_period_end=at_period_end), metadata=auth
        )
        assert (canceled.pending_plan_id, canceled.pending_plan_version) == ("", 0)


def test_a_change_cannot_be_scheduled_for_a_period_end_that_cancels(stack, tenant_id, subs):
    auth = stack.auth(stack.admin_key)
    sub = stack.subscribe(tenant_id)
    subs.CancelSubscription(pb.CancelSubscriptionRequest(id=sub["id"], at_period_end=True), metadata=auth)
    error = grpc_error(
        subs.UpdateSubscription,
        pb.UpdateSubscriptionRequest(id=sub["id"], plan_id="premium", effective=Effective.PERIOD_END),
        metadata=auth,
    )
    assert error.code().name == "FAILED_PRECONDITION" and "cancel_at_period_end" in error.details()
    # Undoing the cancellation in the same request lets it through.
    both = subs.UpdateSubscription(
        pb.UpdateSubscriptionRequest(
            id=sub["id"], plan_id="premium", effective=Effective.PERIOD_END, cancel_at_period_end=False
        ),
        metadata=auth,
    )
    assert (both.cancel_at_period_end, both.pending_plan_id) == (False, "premium")
    unknown = grpc_error(
        subs.UpdateSubscription,
        pb.UpdateSubscriptionRequest(id=sub["id"], plan_id="premium", effective=9),
        metadata=auth,
    )
    assert unknown.code().name == "INVALID_ARGUMENT" and "effective" in unknown.details()


def test_a_scheduled_change_over_rest_refuses_an_unknown_effective(stack, tenant_id):
    sub = stack.subscribe(tenant_id)
    reply = stack.rest("PUT", f"/billing/subscriptions/{sub['id']}", body={"plan_id": "premium", "effective": "LATER"})
    assert reply.status == 400, reply.body


def test_a_late_scheduler_catches_up_a_scheduled_change_and_a_cancellation_in_order(stack, tenant_id):
    sub = stack.subscribe(tenant_id)
    path = f"/billing/subscriptions/{sub['id']}"
    first_end = at(sub["current_period_end"])
    assert stack.rest("PUT", path, body={"plan_id": "premium", "effective": "PERIOD_END"}).status == 200

    # Two periods go by before the scheduler runs: the first on the old plan, the second on the new one.
    second_end = add_months(at(sub["created_at"]), 2)
    schedule(stack, "period_invoicing", second_end + dt.timedelta(hours=1))
    by_period = sorted(invoices(stack, sub["id"]), key=lambda invoice: at(invoice["period_start"]))
    assert [lines(invoice) for invoice in by_period] == [
        [("Standard plan, monthly fee", "1", "2900")],
        [("Premium plan, monthly fee", "1", "9900")],
    ]
    moved = get(stack, sub["id"])
    assert (moved["plan_id"], at(moved["current_period_start"])) == ("premium", second_end)
    assert first_end < second_end

    # Set to cancel at the third period's end, run a month late: one more invoice, then canceled.
    assert stack.rest("DELETE", path, params={"at_period_end": "true"}).status == 200
    third_end = add_months(at(sub["created_at"]), 3)
    schedule(stack, "period_invoicing", third_end + dt.timedelta(days=31))
    after = get(stack, sub["id"])
    assert (after["status"], at(after["canceled_at"])) == ("CANCELED", third_end)
    assert len(invoices(stack, sub["id"])) == 3
