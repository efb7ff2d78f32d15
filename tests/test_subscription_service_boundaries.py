"""services/subscriptions.py called directly on a SQLite database of its own, with an explicit
`now`: what a create writes (periods, trial end, plan history, event), the plan a key may start on
or move to and each refusal's reason, field and wording, a plan change now (its history row and the
usage at exactly its instant) or at the period's end (the pending plan), a cancellation now or at
the period's end, and what an update that changes nothing leaves alone. Fast enough for the
mutation gate (`[tool.mutation-gate]` in pyproject.toml)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import peewee as pw
import pytest

from factories import insert_subscription
from server.domain import webhooks
from server.domain.access import KeyScope, Principal
from server.domain.credits import MAX_GRANT_CENTS
from server.domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from server.domain.periods import Cycle, period
from server.domain.subscriptions import Effective
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.models import Plan, PlanChange, Subscription, WebhookEvent
from server.services import plans, segment_usage, spend_control, usage
from server.services import subscriptions as service
from server.services import webhooks as endpoints
from server.services.subscriptions import NewSubscription, SubscriptionChange
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)  # Jan 31 09:30 -> Feb 28 09:30
MIDDLE = FIRST.start + dt.timedelta(days=10)


@pytest.fixture(scope="module", autouse=True)
def subscription_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("subscriptions")), db.session():
        yield


@pytest.fixture
def tenant() -> str:
    """A new tenant, with a webhook endpoint so every event it is sent is written."""
    tenant_id = f"sub-{uuid.uuid4().hex[:10]}"
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant_id, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    return tenant_id


def tenant_key(tenant_id: str) -> Principal:
    return Principal(key_id=7, scope=KeyScope.TENANT, tenant_id=tenant_id)


def at(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def new_plan(
    *, currency: str = "USD", trial_days: int = 0, private: bool = False, versions: int = 1, fee: bool = True
) -> str:
    """A plan of `versions` versions (version n: a fee of n x 1000 cents, or none), each request 100 cents."""
    plan_id = f"p-{uuid.uuid4().hex[:10]}"
    for n in range(1, versions + 1):
        raw = {
            "id": plan_id,
            "name": f"Plan v{n}",
            "monthly_fee_cents": n * 1000 if fee else 0,
            "currency": currency,
            "rate_limit_per_minute": 100,
            "trial_days": trial_days,
            "private": private,
            "charges": [{"id": "calls", "meter_id": "requests", "model": "PER_UNIT", "unit_price": "100"}],
        }
        if n == 1:
            plans.create_plan(ADMIN, raw, now=ANCHOR)
        else:
            plans.publish_version(ADMIN, plan_id, raw, now=ANCHOR)
    return plan_id


def create(tenant_id: str, plan_id: str = "standard", *, now: dt.datetime = ANCHOR, principal=ADMIN, **fields):
    request = NewSubscription(tenant_id, plan_id, fields.pop("billing_email", "ops@example.com"), **fields)
    return service.create_subscription(principal, request, now=now)


def update(subscription_id: str, *, now: dt.datetime = MIDDLE, principal=ADMIN, **fields):
    return service.update_subscription(principal, subscription_id, SubscriptionChange(**fields), now=now)


def refusal(error: DomainError) -> tuple[str, str, list[str]]:
    return error.reason, error.message, [v.field for v in error.violations]


def events_of(tenant_id: str) -> list[tuple[str, dict]]:
    rows = WebhookEvent.select().where(WebhookEvent.tenant_id == tenant_id).order_by(WebhookEvent.created_at)
    return [(row.type, json.loads(row.body)) for row in rows]


def history(subscription_id: str) -> list[tuple[str, int, dt.datetime]]:
    rows = PlanChange.select().where(PlanChange.subscription == subscription_id).order_by(PlanChange.id)
    return [(row.plan_id, row.plan_version, at(row.effective_at)) for row in rows]


def stored(subscription_id: str) -> Subscription:
    return Subscription.get_by_id(subscription_id)


def untouched(neighbour) -> None:
    """Another tenant's subscription is exactly as it was created (a write names its row only)."""
    row = stored(neighbour.id)
    assert (row.status, row.billing_email, row.cancel_at, row.canceled_at, row.plan_id, at(row.updated_at)) == (
        "ACTIVE",
        "ops@example.com",
        None,
        None,
        "standard",
        neighbour.updated_at,
    )


# --- create ----------------------------------------------------------------------------------------


def test_a_create_writes_the_first_period_the_trial_end_the_history_and_the_event(tenant):
    plan_id = new_plan(trial_days=14, versions=2)
    view = create(tenant, plan_id, billing_email=" ops@acme.io ", spend_cap_cents=5000, low_balance_alert_cents=1000)
    assert view.id.startswith("sub_") and len(view.id) == 36 and int(view.id[4:], 16) >= 0
    assert (view.tenant_id, view.plan_id, view.plan_version, view.billing_email, view.status) == (
        tenant,
        plan_id,
        2,
        "ops@acme.io",
        "ACTIVE",
    )
    assert (view.anchor_at, view.current_period_start, view.current_period_end) == (ANCHOR, FIRST.start, FIRST.end)
    assert (view.created_at, view.updated_at, view.canceled_at, view.cancel_at) == (ANCHOR, ANCHOR, None, None)
    assert view.trial_end == ANCHOR + dt.timedelta(days=14)
    assert (view.pending_plan_id, view.pending_plan_version) == (None, None)
    assert (view.billing_anchor, view.timezone, view.spend_cap_cents, view.low_balance_alert_cents) == (
        "ANNIVERSARY",
        "UTC",
        5000,
        1000,
    )
    row = stored(view.id)
    assert (row.plan_id, row.plan_version, at(row.trial_end), row.spend_cap_cents) == (
        plan_id,
        2,
        ANCHOR + dt.timedelta(days=14),
        5000,
    )
    assert history(view.id) == [(plan_id, 2, ANCHOR)]
    [(kind, body)] = events_of(tenant)
    assert (kind, body["type"], body["created_at"]) == ("subscription.created", kind, "2026-01-31T09:30:00Z")
    assert (body["data"]["id"], body["data"]["tenant_id"], body["data"]["plan_version"]) == (view.id, tenant, 2)


def test_a_plan_without_a_trial_gives_no_trial_end_and_the_calendar_anchor_its_zones_month(tenant):
    now = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    view = create(tenant, now=now, billing_anchor="CALENDAR", timezone="Europe/Berlin")
    assert view.trial_end is None
    assert (view.billing_anchor, view.timezone) == ("CALENDAR", "Europe/Berlin")
    # The first calendar period ends at the next month's start in Berlin (CEST from March 29: UTC+2).
    assert (view.current_period_start, view.current_period_end) == (now, dt.datetime(2026, 3, 31, 22, tzinfo=UTC))
    row = stored(view.id)
    assert (row.billing_anchor, row.timezone, at(row.current_period_end)) == (
        "CALENDAR",
        "Europe/Berlin",
        dt.datetime(2026, 3, 31, 22, tzinfo=UTC),
    )
    assert (view.spend_cap_cents, view.low_balance_alert_cents) == (None, None)


def test_a_tenant_key_subscribes_its_own_tenant_only_on_the_latest_version_of_a_public_plan(tenant):
    plan_id = new_plan(versions=2)
    with pytest.raises(PermissionDenied):
        create("someone-else", plan_id, principal=tenant_key(tenant))
    with pytest.raises(PermissionDenied) as named:
        create(tenant, plan_id, principal=tenant_key(tenant), plan_version=1)
    assert refusal(named.value) == ("ADMIN_ONLY", "naming a plan_version needs an admin key", [])
    private = new_plan(private=True)
    with pytest.raises(InvalidArgument) as hidden:
        create(tenant, private, principal=tenant_key(tenant))
    assert refusal(hidden.value) == ("UNKNOWN_PLAN", f"plan_id {private!r} is not a known plan", ["plan_id"])
    view = create(tenant, plan_id, principal=tenant_key(tenant))
    assert (view.tenant_id, view.plan_version) == (tenant, 2)


def test_an_admin_may_start_on_a_private_plan_or_a_named_version_but_not_an_unknown_one(tenant):
    plan_id = new_plan(versions=2)
    with pytest.raises(InvalidArgument) as missing:
        create(tenant, plan_id, plan_version=3)
    assert refusal(missing.value) == (
        "UNKNOWN_PLAN_VERSION",
        f"plan_version 3 is not a version of plan {plan_id!r}",
        ["plan_version"],
    )
    with pytest.raises(InvalidArgument) as unknown:
        create(tenant, "no-such-plan")
    assert refusal(unknown.value) == ("UNKNOWN_PLAN", "plan_id 'no-such-plan' is not a known plan", ["plan_id"])
    assert create(tenant, plan_id, plan_version=1).plan_version == 1
    other = f"{tenant}-b"
    assert create(other, new_plan(private=True)).status == "ACTIVE"


def test_an_archived_plan_takes_no_new_subscription_but_keeps_its_own(tenant):
    plan_id = new_plan(versions=2)
    kept = create(tenant, plan_id, plan_version=1)
    plans.archive_plan(ADMIN, plan_id, now=ANCHOR)
    with pytest.raises(InvalidArgument) as archived:
        create(f"{tenant}-b", plan_id)
    assert refusal(archived.value) == (
        "PLAN_ARCHIVED",
        f"plan_id {plan_id!r} is archived: it takes no new subscriptions",
        ["plan_id"],
    )
    # Already on it: it may still move to the plan's latest version.
    moved = update(kept.id, plan_id=plan_id)
    assert (moved.plan_id, moved.plan_version) == (plan_id, 2)


def test_a_private_plan_the_subscription_is_on_stays_reachable_to_its_tenant_key(tenant):
    private = new_plan(private=True, versions=2)
    view = create(tenant, private, plan_version=1)
    moved = update(view.id, principal=tenant_key(tenant), plan_id=private)
    assert (moved.plan_id, moved.plan_version) == (private, 2)
    with pytest.raises(InvalidArgument) as hidden:
        update(view.id, principal=tenant_key(tenant), plan_id=new_plan(private=True))
    assert hidden.value.reason == "UNKNOWN_PLAN"


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        ({"plan_id": "  "}, "MISSING_FIELD", "plan_id"),
        ({"billing_email": "no-at-sign"}, "INVALID_EMAIL", "billing_email"),
        ({"tenant_id": "Not An Id"}, "INVALID_IDENTIFIER", "tenant_id"),
        ({"spend_cap_cents": 0}, "INVALID_ARGUMENT", "spend_cap_cents"),
        ({"low_balance_alert_cents": 0}, "INVALID_ARGUMENT", "low_balance_alert_cents"),
        ({"spend_cap_cents": MAX_GRANT_CENTS + 1}, "INVALID_ARGUMENT", "spend_cap_cents"),
        ({"timezone": "Mars/Olympus"}, "UNKNOWN_TIMEZONE", "timezone"),
    ],
)
def test_a_bad_create_is_400_naming_its_field_and_writes_nothing(tenant, fields, reason, field):
    request = {"tenant_id": tenant, "plan_id": "standard", "billing_email": "ops@example.com", **fields}
    with pytest.raises(InvalidArgument) as error:
        service.create_subscription(ADMIN, NewSubscription(**request), now=ANCHOR)
    assert (error.value.reason, [v.field for v in error.value.violations]) == (reason, [field])
    assert Subscription.select().where(Subscription.tenant_id == tenant).count() == 0


def test_a_second_active_subscription_is_409_naming_the_first_and_leaves_no_row(tenant):
    first = create(tenant)
    with pytest.raises(AlreadyExists) as error:
        create(tenant, "premium", now=MIDDLE)
    assert refusal(error.value) == (
        "ACTIVE_SUBSCRIPTION_EXISTS",
        f"tenant {tenant!r} already has an active subscription {first.id!r}",
        [],
    )
    assert [row.id for row in Subscription.select().where(Subscription.tenant_id == tenant)] == [first.id]
    assert [kind for kind, _ in events_of(tenant)] == ["subscription.created"]
    service.cancel_subscription(ADMIN, first.id, now=MIDDLE)
    again = create(tenant, "premium", now=MIDDLE)
    assert (again.plan_id, again.created_at) == ("premium", MIDDLE)


def test_an_integrity_error_that_is_not_the_one_active_rule_is_not_turned_into_a_409(tenant, monkeypatch):
    taken = insert_subscription(f"{tenant}-x", status="CANCELED", anchor=ANCHOR, canceled_at=ANCHOR)
    monkeypatch.setattr(service, "new_id", lambda: taken.id)
    with pytest.raises(pw.IntegrityError):
        create(tenant)


def test_new_ids_are_sub_and_32_hex_digits_each_different():
    made = {service.new_id() for _ in range(3)}
    assert len(made) == 3 and all(i.startswith("sub_") and len(i) == 36 and int(i[4:], 16) >= 0 for i in made)


# --- read and list ---------------------------------------------------------------------------------


def test_a_read_names_its_field_and_hides_another_tenants_subscription(tenant):
    view = create(tenant)
    assert service.get_subscription(tenant_key(tenant), view.id).id == view.id
    with pytest.raises(InvalidArgument) as empty:
        service.get_subscription(ADMIN, " ")
    assert refusal(empty.value) == ("MISSING_FIELD", "id is required", ["id"])
    with pytest.raises(InvalidArgument) as default:
        service.find_subscription("", principal=ADMIN)
    assert refusal(default.value) == ("MISSING_FIELD", "subscription_id is required", ["subscription_id"])
    with pytest.raises(NotFound) as stranger:
        service.get_subscription(tenant_key("someone-else"), view.id)
    with pytest.raises(NotFound) as missing:
        service.get_subscription(ADMIN, "sub_nothing")
    assert refusal(missing.value) == ("SUBSCRIPTION_NOT_FOUND", "subscription 'sub_nothing' not found", [])
    assert stranger.value.message == f"subscription {view.id!r} not found"
    assert service.find_subscription(f" {view.id} ", principal=ADMIN).id == view.id


def test_the_write_paths_read_the_subscription_under_its_lock(tenant, monkeypatch):
    """On PostgreSQL the lock is FOR UPDATE (SQLite's writers are serialized anyway): each write
    reads through the locked query, the plain reads through the other."""
    view = create(tenant)
    used: list[str] = []
    for name in ("_LOCKED", "_UNLOCKED"):
        prepared = getattr(service, name)
        monkeypatch.setattr(prepared, "rows", lambda *v, _rows=prepared.rows, _n=name: used.append(_n) or _rows(*v))
    service.get_subscription(ADMIN, view.id)
    assert used == ["_UNLOCKED"]
    update(view.id, billing_email="new@example.com")
    assert used[1] == "_LOCKED"
    used.clear()
    service.cancel_subscription(ADMIN, view.id, now=MIDDLE, at_period_end=True)
    assert used[0] == "_LOCKED"
    used.clear()
    service.find_subscription(view.id, principal=ADMIN, lock=True)
    service.find_subscription(view.id, principal=ADMIN)
    assert used == ["_LOCKED", "_UNLOCKED"]


def test_a_list_is_newest_first_filtered_by_status_in_pages_of_the_size_asked(tenant):
    create(f"{tenant}-neighbour", now=ANCHOR + dt.timedelta(hours=5))
    made = []
    for n in range(3):
        now = ANCHOR + dt.timedelta(hours=n)
        made.append(create(tenant, now=now).id)
        if n < 2:
            service.cancel_subscription(ADMIN, made[-1], now=now)
    newest_first = list(reversed(made))
    rows, token = service.list_tenant_subscriptions(ADMIN, tenant)
    assert ([r.id for r in rows], token) == (newest_first, "")
    active, _ = service.list_tenant_subscriptions(tenant_key(tenant), tenant, status="ACTIVE")
    canceled, _ = service.list_tenant_subscriptions(ADMIN, tenant, status="CANCELED")
    assert ([r.id for r in active], [r.id for r in canceled]) == (newest_first[:1], newest_first[1:])
    page, token = service.list_tenant_subscriptions(ADMIN, tenant, page_size=2)
    assert [r.id for r in page] == newest_first[:2] and token
    rest, last = service.list_tenant_subscriptions(ADMIN, tenant, page_size=2, page_token=token)
    assert ([r.id for r in rest], last) == (newest_first[2:], "")
    with pytest.raises(InvalidArgument) as bad:
        service.list_tenant_subscriptions(ADMIN, tenant, status="GONE")
    assert refusal(bad.value) == ("INVALID_ARGUMENT", "status 'GONE' is not a subscription status", ["status"])
    with pytest.raises(PermissionDenied):
        service.list_tenant_subscriptions(tenant_key("someone-else"), tenant)
    with pytest.raises(InvalidArgument) as invalid:
        service.list_tenant_subscriptions(ADMIN, "Not An Id")
    assert invalid.value.reason == "INVALID_IDENTIFIER"


# --- update ----------------------------------------------------------------------------------------


def test_period_end_without_a_plan_is_400_on_effective_and_now_without_one_is_fine(tenant):
    neighbour = create(f"{tenant}-neighbour")
    view = create(tenant)
    with pytest.raises(InvalidArgument) as error:
        update(view.id, effective=Effective.PERIOD_END, billing_email="x@example.com")
    assert refusal(error.value) == ("MISSING_FIELD", "effective PERIOD_END needs a plan_id", ["effective"])
    assert stored(view.id).billing_email == "ops@example.com"
    changed = update(view.id, billing_email="  new@example.com ")
    assert (changed.billing_email, changed.updated_at) == ("new@example.com", MIDDLE)
    assert stored(view.id).billing_email == "new@example.com"
    untouched(neighbour)


def test_an_empty_or_blank_email_keeps_it_and_a_bad_one_is_400(tenant):
    view = create(tenant)
    for blank in ("", "   "):
        assert update(view.id, billing_email=blank).billing_email == "ops@example.com"
    with pytest.raises(InvalidArgument) as bad:
        update(view.id, billing_email="x@")
    assert (bad.value.reason, [v.field for v in bad.value.violations]) == ("INVALID_EMAIL", ["billing_email"])
    assert stored(view.id).billing_email == "ops@example.com"
    assert [kind for kind, _ in events_of(tenant)] == ["subscription.created"]


def test_an_update_that_changes_nothing_writes_nothing_and_announces_nothing(tenant):
    view = create(tenant, spend_cap_cents=700_000)
    same = update(
        view.id,
        plan_id="standard",
        billing_email="ops@example.com",
        spend_cap_cents=700_000,
        cancel_at_period_end=False,
    )
    assert (same.updated_at, same.plan_version, same.spend_cap_cents) == (ANCHOR, 1, 700_000)
    assert history(view.id) == [("standard", 1, ANCHOR)]
    assert [kind for kind, _ in events_of(tenant)] == ["subscription.created"]


def test_the_spend_limits_are_set_removed_with_0_and_checked_by_name(tenant):
    view = create(tenant)
    both = update(view.id, spend_cap_cents=5000, low_balance_alert_cents=200)
    assert (both.spend_cap_cents, both.low_balance_alert_cents, both.updated_at) == (5000, 200, MIDDLE)
    row = stored(view.id)
    assert (row.spend_cap_cents, row.low_balance_alert_cents) == (5000, 200)
    cap_only = update(view.id, spend_cap_cents=0)
    assert (cap_only.spend_cap_cents, cap_only.low_balance_alert_cents) == (None, 200)
    assert update(view.id, low_balance_alert_cents=0).low_balance_alert_cents is None
    for field in ("spend_cap_cents", "low_balance_alert_cents"):
        with pytest.raises(InvalidArgument) as error:
            update(view.id, **{field: -1})
        assert refusal(error.value) == (
            "INVALID_ARGUMENT",
            f"{field} must be between 1 and {MAX_GRANT_CENTS}",
            [field],
        )
    assert [kind for kind, _ in events_of(tenant)].count("subscription.updated") == 3


def test_a_new_spend_cap_takes_effect_at_once_and_announces_its_crossing(tenant):
    """Three requests at 100 cents: a cap of exactly 300 is reached. Without the refresh the gateway
    would keep its cached 'admit' for up to its staleness bound."""
    plan_id = new_plan(fee=False)
    view = create(tenant, plan_id)
    usage.track(ADMIN, view.id, [RawEvent("a", "/v1/x", 3, MIDDLE - US)], now=MIDDLE)
    assert spend_control.denial(tenant, view.id, MIDDLE) is None
    update(view.id, spend_cap_cents=301)
    assert spend_control.denial(tenant, view.id, MIDDLE) is None
    assert "spend_cap.reached" not in [kind for kind, _ in events_of(tenant)]
    update(view.id, spend_cap_cents=300, now=MIDDLE + US)
    reached = [body for kind, body in events_of(tenant) if kind == "spend_cap.reached"]
    assert len(reached) == 1
    denial = spend_control.denial(tenant, view.id, MIDDLE + 2 * US)
    assert denial is not None and denial.reason == "SPEND_CAP_REACHED"
    reached = [body for kind, body in events_of(tenant) if kind == "spend_cap.reached"]
    assert len(reached) == 1
    assert (reached[0]["created_at"], reached[0]["data"]["subscription_id"]) == (
        "2026-02-10T09:30:00.000001Z",
        view.id,
    )


def test_a_plan_change_now_is_dated_now_and_usage_at_exactly_its_instant_moves_to_it(tenant):
    view = create(tenant)
    usage.track(
        ADMIN,
        view.id,
        [RawEvent("before", "/v1/x", 5, MIDDLE - US), RawEvent("at", "/v1/x", 7, MIDDLE)],
        now=MIDDLE,
    )
    assert segment_usage.requests_by_segment(view.id, FIRST.start) == {FIRST.start: 12}
    changed = update(view.id, plan_id="premium")
    assert (changed.plan_id, changed.plan_version, changed.updated_at) == ("premium", 1, MIDDLE)
    row = stored(view.id)
    assert (row.plan_id, row.plan_version) == ("premium", 1)
    assert history(view.id) == [("standard", 1, ANCHOR), ("premium", 1, MIDDLE)]
    assert {at(k): v for k, v in segment_usage.requests_by_segment(view.id, FIRST.start).items()} == {
        FIRST.start: 5,
        MIDDLE: 7,
    }
    [(_, body)] = [(k, b) for k, b in events_of(tenant) if k == "subscription.updated"]
    assert (body["data"]["plan_id"], body["data"]["tenant_id"], body["created_at"]) == (
        "premium",
        tenant,
        "2026-02-10T09:30:00Z",
    )


def test_a_newer_version_of_the_same_plan_is_a_migration_with_its_history_row(tenant):
    plan_id = new_plan(versions=2)
    view = create(tenant, plan_id, plan_version=1)
    moved = update(view.id, plan_id=plan_id, plan_version=2)
    assert (moved.plan_id, moved.plan_version) == (plan_id, 2)
    assert history(view.id) == [(plan_id, 1, ANCHOR), (plan_id, 2, MIDDLE)]
    back = update(view.id, plan_id=plan_id, plan_version=1, now=MIDDLE + US)
    assert back.plan_version == 1 and history(view.id)[-1] == (plan_id, 1, MIDDLE + US)


def test_a_plan_in_another_currency_is_refused_now_and_at_period_end(tenant):
    view = create(tenant)
    euro = new_plan(currency="EUR")
    for effective in (Effective.NOW, Effective.PERIOD_END):
        with pytest.raises(InvalidArgument) as error:
            update(view.id, plan_id=euro, effective=effective)
        assert refusal(error.value) == (
            "CURRENCY_MISMATCH",
            f"plan_id {euro!r} is priced in EUR, not the subscription's currency USD",
            ["plan_id"],
        )
    row = stored(view.id)
    assert (row.plan_id, row.pending_plan_id) == ("standard", None)
    assert history(view.id) == [("standard", 1, ANCHOR)]
    assert update(view.id, plan_id=new_plan(), effective=Effective.PERIOD_END).pending_plan_version == 1


def test_a_change_at_period_end_is_pending_replaced_by_a_newer_one_and_dropped_by_the_plan_in_force(tenant):
    view = create(tenant)
    pending = update(view.id, plan_id="premium", effective=Effective.PERIOD_END)
    assert (pending.plan_id, pending.pending_plan_id, pending.pending_plan_version) == ("standard", "premium", 1)
    assert (pending.updated_at, history(view.id)) == (MIDDLE, [("standard", 1, ANCHOR)])
    row = stored(view.id)
    assert (row.pending_plan_id, row.pending_plan_version) == ("premium", 1)
    newer = update(view.id, plan_id="enterprise", effective=Effective.PERIOD_END)
    assert (newer.pending_plan_id, newer.pending_plan_version) == ("enterprise", 1)
    dropped = update(view.id, plan_id="standard", effective=Effective.PERIOD_END)
    assert (dropped.plan_id, dropped.pending_plan_id, dropped.pending_plan_version) == ("standard", None, None)
    update(view.id, plan_id="premium", effective=Effective.PERIOD_END)
    now = update(view.id, plan_id="enterprise", now=MIDDLE + US)
    assert (now.plan_id, now.pending_plan_id, now.pending_plan_version) == ("enterprise", None, None)
    update(view.id, plan_id="premium", effective=Effective.PERIOD_END)
    kept = update(view.id, plan_id="enterprise", now=MIDDLE + 2 * US)
    assert (kept.plan_id, kept.pending_plan_id, history(view.id)[-1][0]) == ("enterprise", None, "enterprise")
    assert [kind for kind, _ in events_of(tenant)].count("subscription.updated") == 7


def test_cancel_at_period_end_is_the_periods_end_drops_a_pending_change_and_blocks_a_new_one(tenant):
    view = create(tenant)
    update(view.id, plan_id="premium", effective=Effective.PERIOD_END)
    canceling = update(view.id, cancel_at_period_end=True)
    assert (canceling.cancel_at, canceling.pending_plan_id, canceling.pending_plan_version) == (FIRST.end, None, None)
    assert (canceling.status, at(stored(view.id).cancel_at)) == ("ACTIVE", FIRST.end)
    with pytest.raises(FailedPrecondition) as error:
        update(view.id, plan_id="premium", effective=Effective.PERIOD_END)
    assert refusal(error.value) == (
        "CANCELS_AT_PERIOD_END",
        f"subscription {view.id!r} cancels at its period's end: a plan change then would never "
        "start (set cancel_at_period_end false first)",
        [],
    )
    with pytest.raises(FailedPrecondition):
        update(view.id, plan_id="premium", effective=Effective.PERIOD_END, cancel_at_period_end=True)
    # Undone in the same request, the change may be scheduled.
    both = update(view.id, plan_id="premium", effective=Effective.PERIOD_END, cancel_at_period_end=False)
    assert (both.cancel_at, both.pending_plan_id) == (None, "premium")
    assert stored(view.id).cancel_at is None
    # A plan change now is allowed while canceling at period end, and keeps the cancellation.
    update(view.id, cancel_at_period_end=True)
    moved = update(view.id, plan_id="enterprise", now=MIDDLE + US)
    assert (moved.plan_id, moved.cancel_at) == ("enterprise", FIRST.end)


def test_a_canceled_subscription_cannot_be_changed(tenant):
    view = create(tenant)
    service.cancel_subscription(ADMIN, view.id, now=MIDDLE)
    with pytest.raises(FailedPrecondition) as error:
        update(view.id, billing_email="new@example.com")
    assert refusal(error.value) == (
        "SUBSCRIPTION_CANCELED",
        f"subscription {view.id!r} is CANCELED and cannot be changed",
        [],
    )
    with pytest.raises(NotFound):
        update(view.id, principal=tenant_key("someone-else"), billing_email="new@example.com")
    with pytest.raises(InvalidArgument) as empty:
        update("", billing_email="new@example.com")
    assert [v.field for v in empty.value.violations] == ["id"]


# --- cancel ----------------------------------------------------------------------------------------


def test_a_cancel_now_ends_it_at_once_drops_what_is_pending_and_is_announced_once(tenant):
    neighbour = create(f"{tenant}-neighbour")
    view = create(tenant)
    update(view.id, plan_id="premium", effective=Effective.PERIOD_END, now=MIDDLE - US)
    update(view.id, cancel_at_period_end=False, now=MIDDLE - US)
    canceled = service.cancel_subscription(ADMIN, view.id, now=MIDDLE)
    assert (canceled.status, canceled.canceled_at, canceled.cancel_at, canceled.updated_at) == (
        "CANCELED",
        MIDDLE,
        None,
        MIDDLE,
    )
    assert (canceled.pending_plan_id, canceled.pending_plan_version) == (None, None)
    row = stored(view.id)
    assert (row.status, at(row.canceled_at), row.pending_plan_id) == ("CANCELED", MIDDLE, None)
    untouched(neighbour)
    again = service.cancel_subscription(ADMIN, view.id, now=MIDDLE + dt.timedelta(days=1))
    assert (again.status, at(again.canceled_at), at(again.updated_at)) == ("CANCELED", MIDDLE, MIDDLE)
    kinds = [kind for kind, _ in events_of(tenant)]
    assert kinds.count("subscription.canceled") == 1
    [(_, body)] = [(k, b) for k, b in events_of(tenant) if k == "subscription.canceled"]
    assert (body["data"]["id"], body["data"]["status"], body["data"]["tenant_id"], body["created_at"]) == (
        view.id,
        "CANCELED",
        tenant,
        "2026-02-10T09:30:00Z",
    )


def test_a_cancel_at_period_end_keeps_it_active_until_then_and_a_second_one_changes_nothing(tenant):
    neighbour = create(f"{tenant}-neighbour")
    view = create(tenant)
    update(view.id, plan_id="premium", effective=Effective.PERIOD_END, now=MIDDLE - US)
    set_ = service.cancel_subscription(ADMIN, view.id, now=MIDDLE, at_period_end=True)
    assert (set_.status, set_.cancel_at, set_.canceled_at, set_.updated_at) == ("ACTIVE", FIRST.end, None, MIDDLE)
    assert (set_.pending_plan_id, set_.pending_plan_version) == (None, None)
    row = stored(view.id)
    assert (row.status, at(row.cancel_at), row.pending_plan_id) == ("ACTIVE", FIRST.end, None)
    untouched(neighbour)
    again = service.cancel_subscription(ADMIN, view.id, now=MIDDLE + US, at_period_end=True)
    assert (again.id, at(again.cancel_at), at(again.updated_at), again.status) == (view.id, FIRST.end, MIDDLE, "ACTIVE")
    updated = [b for k, b in events_of(tenant) if k == "subscription.updated"]
    assert len(updated) == 2
    assert (updated[-1]["data"]["cancel_at_period_end"], updated[-1]["data"]["tenant_id"]) == (True, tenant)
    assert updated[-1]["created_at"] == "2026-02-10T09:30:00Z"
    # Then at once: canceled now, the period-end cancellation gone.
    now = service.cancel_subscription(ADMIN, view.id, now=MIDDLE + 2 * US)
    assert (now.status, now.cancel_at, now.canceled_at) == ("CANCELED", None, MIDDLE + 2 * US)
    assert stored(view.id).cancel_at is None
    with pytest.raises(NotFound):
        service.cancel_subscription(tenant_key("someone-else"), view.id, now=MIDDLE)
    with pytest.raises(InvalidArgument) as empty:
        service.cancel_subscription(ADMIN, "", now=MIDDLE)
    assert [v.field for v in empty.value.violations] == ["id"]


def test_the_cycle_of_a_created_subscription_is_the_one_its_periods_are_read_from(tenant):
    view = create(tenant, now=MIDDLE)
    assert stored(view.id).cycle.containing(MIDDLE) == Cycle(MIDDLE).period(0)
    assert Plan.get_by_id("standard").id == stored(view.id).plan_id
