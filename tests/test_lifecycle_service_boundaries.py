"""services/lifecycle.py called directly, each test on a SQLite database of its own (so what a query
finds is exactly the test's rows), with an explicit `now`: a cancellation taking effect at its
instant (exactly the period's end, not the scheduler's clock), a pending plan started at exactly
the next period's first instant, which trials are due a notice (one ending exactly now is not, one
ending exactly NOTICE from now is) and in which order, and the notice itself: due exactly at its
lead time, not a microsecond before, not once the trial has ended, once per subscription, only for
an ACTIVE one with a listener. Each write names its own row only; each event's body is checked
field by field. Fast enough for the mutation gate (`[tool.mutation-gate]` in pyproject.toml)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from factories import insert_subscription
from server.domain import trials, webhooks
from server.domain.access import KeyScope, Principal
from server.domain.periods import period
from server.persistence import db
from server.persistence.models import PlanChange, Subscription, WebhookDelivery, WebhookEvent
from server.services import lifecycle, plans
from server.services import webhooks as endpoints
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST, SECOND = period(ANCHOR, 0), period(ANCHOR, 1)  # Jan 31 09:30 -> Feb 28 09:30 -> Mar 31 09:30
LATER = FIRST.end + dt.timedelta(hours=2)  # the scheduler's clock, after the period's end
TRIAL_END = dt.datetime(2026, 2, 10, 12, 0, tzinfo=UTC)
DUE_FROM = TRIAL_END - trials.NOTICE  # Feb 7 12:00: the first instant the notice is due


@pytest.fixture(autouse=True)
def lifecycle_database(tmp_path):
    with own_database("sqlite", tmp_path), db.session():
        yield


def at(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def stamp(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def listening(tenant_id: str) -> str:
    """A webhook endpoint of the tenant's that wants every event; its id."""
    endpoint = endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant_id, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    return endpoint.id


def sub(subscription_id: str, *, listener: bool = True, tenant: str | None = None, **fields) -> Subscription:
    """A subscription of its own tenant (named after it unless `tenant` says) from ANCHOR, with
    `fields` set on its row."""
    tenant_id = tenant or f"t-{subscription_id}"
    if listener:
        listening(tenant_id)
    status = fields.pop("status", "ACTIVE")
    insert_subscription(tenant_id, subscription_id=subscription_id, anchor=ANCHOR, status=status)
    if fields:
        Subscription.update(**fields).where(Subscription.id == subscription_id).execute()
    return Subscription.get_by_id(subscription_id)


def two_version_plan() -> str:
    """A plan of two versions (version n: a fee of n x 1000 cents)."""
    plan_id = f"p-{uuid.uuid4().hex[:10]}"
    for n in (1, 2):
        raw = {
            "id": plan_id,
            "name": f"Plan v{n}",
            "monthly_fee_cents": n * 1000,
            "currency": "USD",
            "rate_limit_per_minute": 100,
            "trial_days": 0,
            "private": False,
            "charges": [{"id": "calls", "meter_id": "requests", "model": "PER_UNIT", "unit_price": "100"}],
        }
        if n == 1:
            plans.create_plan(ADMIN, raw, now=ANCHOR)
        else:
            plans.publish_version(ADMIN, plan_id, raw, now=ANCHOR)
    return plan_id


def events() -> list[tuple[str, str, str | None, dt.datetime, dict]]:
    """Every event written: (type, tenant, dedup key, created_at, data), oldest first."""
    rows = WebhookEvent.select().order_by(WebhookEvent.created_at, WebhookEvent.id)
    out = []
    for row in rows:
        body = json.loads(row.body)
        assert (body["id"], body["type"], body["created_at"]) == (row.id, row.type, stamp(at(row.created_at)))
        out.append((str(row.type), row.tenant_id, row.dedup_key, at(row.created_at), body["data"]))
    return out


def row_of(subscription_id: str) -> tuple:
    row = Subscription.get_by_id(subscription_id)
    return (
        str(row.status),
        row.plan_id,
        row.plan_version,
        row.pending_plan_id,
        row.pending_plan_version,
        at(row.cancel_at),
        at(row.canceled_at),
        at(row.updated_at),
    )


def history(subscription_id: str) -> list[tuple[str, int, dt.datetime]]:
    rows = PlanChange.select().where(PlanChange.subscription == subscription_id).order_by(PlanChange.id)
    return [(row.plan_id, row.plan_version, at(row.effective_at)) for row in rows]


# --- cancel_at_period_end ---------------------------------------------------------------------------


def test_a_cancellation_at_the_period_end_is_dated_exactly_at_its_instant_not_the_schedulers_clock():
    sub("sub_cancel", cancel_at=FIRST.end)
    sub("sub_other", cancel_at=FIRST.end)  # the same setting: only the row named is canceled
    lifecycle.cancel_at_period_end(Subscription.get_by_id("sub_cancel"), now=LATER)

    assert row_of("sub_cancel") == ("CANCELED", "standard", 1, None, None, FIRST.end, FIRST.end, LATER)
    assert row_of("sub_other") == ("ACTIVE", "standard", 1, None, None, FIRST.end, None, ANCHOR)
    [(kind, tenant, dedup, created, data)] = events()
    assert (kind, tenant, dedup, created) == ("subscription.canceled", "t-sub_cancel", None, LATER)
    assert (data["id"], data["status"], data["canceled_at"], data["cancel_at"], data["updated_at"]) == (
        "sub_cancel",
        "CANCELED",
        stamp(FIRST.end),
        stamp(FIRST.end),
        stamp(LATER),
    )
    assert data["cancel_at_period_end"] is True
    assert WebhookDelivery.select().count() == 1


def test_a_cancellation_without_a_listener_still_cancels_and_writes_no_event():
    sub("sub_quiet", listener=False, cancel_at=FIRST.end)
    lifecycle.cancel_at_period_end(Subscription.get_by_id("sub_quiet"), now=FIRST.end)

    assert row_of("sub_quiet") == ("CANCELED", "standard", 1, None, None, FIRST.end, FIRST.end, FIRST.end)
    assert events() == []


# --- start_pending_plan ----------------------------------------------------------------------------


def test_a_pending_plan_starts_at_exactly_the_next_periods_first_instant_and_is_cleared():
    plan_id = two_version_plan()
    sub("sub_move", pending_plan_id=plan_id, pending_plan_version=2)
    sub("sub_stay", pending_plan_id=plan_id, pending_plan_version=2)
    lifecycle.start_pending_plan(Subscription.get_by_id("sub_move"), SECOND.start, now=LATER)

    assert row_of("sub_move") == ("ACTIVE", plan_id, 2, None, None, None, None, LATER)
    assert history("sub_move") == [("standard", 1, ANCHOR), (plan_id, 2, SECOND.start)]
    assert row_of("sub_stay") == ("ACTIVE", "standard", 1, plan_id, 2, None, None, ANCHOR)
    assert history("sub_stay") == [("standard", 1, ANCHOR)]
    [(kind, tenant, dedup, created, data)] = events()
    assert (kind, tenant, dedup, created) == ("subscription.updated", "t-sub_move", None, LATER)
    assert (data["id"], data["plan_id"], data["plan_version"], data["status"], data["updated_at"]) == (
        "sub_move",
        plan_id,
        2,
        "ACTIVE",
        stamp(LATER),
    )
    assert (data["pending_plan_id"], data["pending_plan_version"]) == ("", 0)  # cleared


def test_a_pending_plan_of_version_one_starts_on_version_one():
    plan_id = two_version_plan()
    sub("sub_v1", pending_plan_id=plan_id, pending_plan_version=1)
    lifecycle.start_pending_plan(Subscription.get_by_id("sub_v1"), SECOND.start, now=SECOND.start)

    assert row_of("sub_v1") == ("ACTIVE", plan_id, 1, None, None, None, None, SECOND.start)
    assert history("sub_v1") == [("standard", 1, ANCHOR), (plan_id, 1, SECOND.start)]


# --- trial_notices_due ------------------------------------------------------------------------------


def test_trial_notices_due_from_exactly_notice_before_the_end_up_to_but_not_at_the_end():
    now = DUE_FROM
    sub("sub_at_lead", trial_end=now + trials.NOTICE)  # due exactly at its lead time
    sub("sub_beyond", trial_end=now + trials.NOTICE + US)  # a microsecond too early
    sub("sub_ends_now", trial_end=now)  # the trial ends exactly now: no notice
    sub("sub_next", trial_end=now + US)  # ends a microsecond from now
    sub("sub_ended", trial_end=now - US)
    sub("sub_no_trial")
    sub("sub_canceled", status="CANCELED", trial_end=now + dt.timedelta(days=1), canceled_at=now - US)

    assert lifecycle.trial_notices_due(now) == ["sub_next", "sub_at_lead"]


def test_trial_notices_due_soonest_first_ties_by_id():
    now = DUE_FROM
    sub("sub_c", trial_end=now + dt.timedelta(days=1))
    # A tie: sub_b is written first and its tenant sorts first, so only the order by id puts sub_a first.
    sub("sub_b", tenant="t-aa", trial_end=now + dt.timedelta(days=2))
    sub("sub_a", tenant="t-zz", trial_end=now + dt.timedelta(days=2))
    sub("sub_d", trial_end=now + dt.timedelta(hours=1))

    assert lifecycle.trial_notices_due(now) == ["sub_d", "sub_c", "sub_a", "sub_b"]
    assert lifecycle.trial_notices_due(now + dt.timedelta(days=1)) == ["sub_a", "sub_b"]  # sub_d, sub_c ended
    assert lifecycle.trial_notices_due(now - dt.timedelta(days=1)) == ["sub_d", "sub_c", "sub_a", "sub_b"]
    assert lifecycle.trial_notices_due(now - dt.timedelta(days=1) - US) == ["sub_d", "sub_c"]  # a, b one us too far


def test_no_trial_notices_due_without_trials():
    sub("sub_plain")
    sub("sub_gone", status="CANCELED", canceled_at=ANCHOR, trial_end=DUE_FROM + US)

    assert lifecycle.trial_notices_due(DUE_FROM) == []


# --- announce_trial_end -----------------------------------------------------------------------------


def test_the_trial_notice_is_due_exactly_at_its_lead_time_and_sent_once():
    endpoint_id = listening("t-sub_trial")
    insert_subscription("t-sub_trial", subscription_id="sub_trial", anchor=ANCHOR)
    Subscription.update(trial_end=TRIAL_END).where(Subscription.id == "sub_trial").execute()

    assert lifecycle.announce_trial_end("sub_trial", now=DUE_FROM - US) is False  # a microsecond early
    assert events() == []
    assert lifecycle.announce_trial_end("sub_trial", now=DUE_FROM) is True
    [(kind, tenant, dedup, created, data)] = events()
    assert (kind, tenant, dedup, created) == (
        "subscription.trial_will_end",
        "t-sub_trial",
        "subscription.trial_will_end:sub_trial",
        DUE_FROM,
    )
    assert (data["id"], data["tenant_id"], data["status"], data["trial_end"]) == (
        "sub_trial",
        "t-sub_trial",
        "ACTIVE",
        stamp(TRIAL_END),
    )
    assert [d.endpoint_id for d in WebhookDelivery.select()] == [endpoint_id]
    # Once per subscription: a second scheduler (or a later run) queues nothing.
    assert lifecycle.announce_trial_end("sub_trial", now=DUE_FROM + US) is False
    assert lifecycle.announce_trial_end("sub_trial", now=TRIAL_END - US) is False
    assert len(events()) == 1


def test_each_subscription_has_its_own_trial_notice():
    sub("sub_one", trial_end=TRIAL_END)
    sub("sub_two", trial_end=TRIAL_END)

    assert lifecycle.announce_trial_end("sub_one", now=TRIAL_END - US) is True  # the last instant it is due
    assert lifecycle.announce_trial_end("sub_two", now=DUE_FROM) is True
    assert [(e[1], e[2]) for e in events()] == [
        ("t-sub_two", "subscription.trial_will_end:sub_two"),
        ("t-sub_one", "subscription.trial_will_end:sub_one"),
    ]


def test_no_trial_notice_once_the_trial_has_ended_exactly_now():
    sub("sub_over", trial_end=TRIAL_END)

    assert lifecycle.announce_trial_end("sub_over", now=TRIAL_END) is False
    assert events() == []


def test_no_trial_notice_without_a_trial_a_subscription_or_an_active_one():
    sub("sub_none")
    sub("sub_canceled", status="CANCELED", canceled_at=ANCHOR, trial_end=TRIAL_END)

    assert lifecycle.announce_trial_end("sub_none", now=DUE_FROM) is False
    assert lifecycle.announce_trial_end("sub_canceled", now=DUE_FROM) is False
    assert lifecycle.announce_trial_end("sub_missing", now=DUE_FROM) is False
    assert events() == []


def test_no_trial_notice_is_queued_without_a_listener():
    sub("sub_unheard", listener=False, trial_end=TRIAL_END)

    assert lifecycle.announce_trial_end("sub_unheard", now=DUE_FROM) is False
    assert events() == []
