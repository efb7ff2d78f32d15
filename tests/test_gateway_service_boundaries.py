"""services/gateway.py called directly on a SQLite database of its own, with an explicit `now` (no
Envoy, no gRPC server): a key's grant and each denial's reason and wording, the terms a grant
carries (the pinned version's rate limit, route costs, the quota of a capped plan and its floor at
exactly the quota), a hard limit on a filtered charge at exactly its included units, the credit
denial exactly at the balance, quota.exhausted announced once per period, and metering in batches.
Fast enough for the mutation gate (`[tool.mutation-gate]` in pyproject.toml)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid

import pytest
from prometheus_client import REGISTRY

from factories import insert_subscription, recorded_event_ids
from server.domain import webhooks
from server.domain.access import KeyScope, Principal
from server.domain.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from server.domain.gateway import LoggedRequest
from server.domain.identifiers import identifier_problem
from server.domain.issuer import Issuer
from server.domain.periods import Anchor, period
from server.domain.plans import RouteCost, Tier
from server.domain.ttl_cache import TtlCache
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.models import Subscription, WebhookEvent
from server.services import credits, gateway, invoices, keys, plans, spend_control, usage
from server.services import subscriptions as subscription_service
from server.services import webhooks as endpoints
from server.services.gateway import ActivePlan, Gateway, Grant
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)  # Jan 31 09:30 -> Feb 28 09:30
SECOND = period(ANCHOR, 1)
MIDDLE = FIRST.start + dt.timedelta(days=10)
ISSUER = Issuer("Billing Co", "1 Loopback Road", "TAX-1")


@pytest.fixture(scope="module", autouse=True)
def gateway_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("gateway")), db.session():
        yield


@pytest.fixture
def tenant() -> str:
    """A new tenant, with a webhook endpoint so every event it is sent is written."""
    tenant_id = f"gw-{uuid.uuid4().hex[:10]}"
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant_id, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    return tenant_id


def at(value: dt.datetime) -> dt.datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def new_plan(*versions: dict) -> str:
    """A plan published once per `versions` (each the fields over a no-fee 60/min plan)."""
    plan_id = f"gp-{uuid.uuid4().hex[:10]}"
    for n, fields in enumerate(versions or ({},), start=1):
        raw = {"id": plan_id, "name": "Gateway", "monthly_fee_cents": 0, "rate_limit_per_minute": 60, **fields}
        if n == 1:
            plans.create_plan(ADMIN, raw, now=ANCHOR)
        else:
            plans.publish_version(ADMIN, plan_id, raw, now=ANCHOR)
    return plan_id


def charge(charge_id: str, *, included: int = 0, price: str = "0", hard_limit: bool = False, **more) -> dict:
    return {
        "id": charge_id,
        "meter_id": "requests",
        "model": "PER_UNIT",
        "included": included,
        "unit_price": price,
        "hard_limit": hard_limit,
        **more,
    }


HEAVY = {"endpoint": "/v1/heavy"}


def subscribed(tenant: str, plan_id: str = "standard") -> tuple[Subscription, str]:
    """A subscription from ANCHOR and a key of its tenant."""
    return insert_subscription(tenant, plan=plan_id, anchor=ANCHOR), keys.create_key(now=ANCHOR, tenant_id=tenant)


def track(subscription_id: str, *events: tuple[str, int, dt.datetime], endpoint: str = "/v1/x") -> None:
    raw = [RawEvent(event_id, endpoint, count, when) for event_id, count, when in events]
    assert usage.track(ADMIN, subscription_id, raw, now=FIRST.end).accepted == len(raw)


def denied(key: str | None, now: dt.datetime = MIDDLE):
    with pytest.raises(Exception) as error:
        Gateway().grant(key, now)
    return error.value


def events_of(tenant_id: str, kind: str) -> list[dict]:
    rows = WebhookEvent.select().where((WebhookEvent.tenant_id == tenant_id) & (WebhookEvent.type == kind))
    return [{**json.loads(row.body), "dedup_key": row.dedup_key} for row in rows.order_by(WebhookEvent.created_at)]


def decisions(tier: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "billing_ratelimit_decisions_total", {"door": "gateway", "tier": tier, "decision": outcome}
    )
    return value or 0.0


# --- who is refused, and why -----------------------------------------------------------------------


def test_a_missing_or_unknown_key_is_401_and_an_admin_or_gateway_key_is_403(tenant):
    subscribed(tenant)
    missing, unknown = denied(None), denied("bk_unknown")
    assert (type(missing), missing.reason) == (Unauthenticated, "MISSING_API_KEY")
    assert (type(unknown), unknown.reason) == (Unauthenticated, "INVALID_API_KEY")
    for key in (keys.create_key(now=ANCHOR, admin=True), keys.create_gateway_key(now=ANCHOR)):
        error = denied(key)
        assert (type(error), error.reason, error.message) == (
            PermissionDenied,
            "ADMIN_KEY",
            "admin keys are not tenant traffic: call the gateway with a tenant key",
        )


def test_a_tenant_id_outside_the_identifier_alphabet_is_403_naming_the_problem():
    key = "bk_" + uuid.uuid4().hex
    keys._store(key, KeyScope.TENANT, "Old Tenant", ANCHOR)
    insert_subscription("Old Tenant", anchor=ANCHOR)
    error = denied(key)
    assert (type(error), error.reason, error.message) == (
        PermissionDenied,
        "INVALID_TENANT_ID",
        f"the key's tenant id {identifier_problem('Old Tenant')}",
    )


def test_a_tenant_without_an_active_subscription_is_403(tenant):
    key = keys.create_key(now=ANCHOR, tenant_id=tenant)
    error = denied(key)
    assert (type(error), error.reason, error.message) == (
        PermissionDenied,
        "NO_ACTIVE_SUBSCRIPTION",
        f"tenant {tenant!r} has no active subscription",
    )
    insert_subscription(tenant, anchor=ANCHOR, status="CANCELED", canceled_at=ANCHOR)
    assert denied(key).reason == "NO_ACTIVE_SUBSCRIPTION"


# --- what a grant carries --------------------------------------------------------------------------


def test_an_uncapped_plan_is_granted_its_terms_without_a_period_or_floor(tenant):
    sub, key = subscribed(tenant)
    track(sub.id, ("a", 5, MIDDLE))
    grant = Gateway().grant(key, MIDDLE)
    assert (grant.tenant_id, grant.period, grant.quota_floor) == (tenant, None, 0)
    plan = grant.plan
    assert (plan.subscription_id, plan.plan_id, plan.tier, plan.limit_per_minute, plan.included_requests) == (
        sub.id,
        "standard",
        Tier.STANDARD,
        200,
        100_000,
    )
    assert (plan.capped, plan.route_costs, plan.other_hard_limits) == (False, (), False)
    assert (plan.cycle.period(0).start, plan.cycle.period(0).end) == (FIRST.start, FIRST.end)
    assert plan.cycle.containing(SECOND.start) == SECOND


def test_a_capped_plan_is_granted_its_period_and_the_usage_so_far_as_its_floor_up_to_exactly_the_quota(tenant):
    sub, key = subscribed(tenant, "free")  # 10,000 included, no overage: capped
    track(sub.id, ("a", 9_999, FIRST.start), ("b", 1, FIRST.end - US), ("next", 3, SECOND.start))
    at_quota = Gateway().grant(key, FIRST.end - US)
    assert at_quota == Grant(tenant, at_quota.plan, FIRST, 10_000)
    assert (at_quota.plan.capped, at_quota.plan.included_requests, at_quota.plan.limit_per_minute) == (
        True,
        10_000,
        50,
    )
    assert (at_quota.plan.tier, at_quota.plan.plan_id) == (Tier.FREE, "free")
    # Exactly at the period's end the next period is granted, its own usage the floor.
    assert Gateway().grant(key, FIRST.end) == Grant(tenant, at_quota.plan, SECOND, 3)


def test_a_capped_grant_cuts_its_period_by_the_subscriptions_anchor_kind_and_zone(tenant):
    """CALENDAR in Berlin: the first period ends at April's first midnight there (22:00 UTC, CEST)."""
    now = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    sub = insert_subscription(tenant, plan="free", anchor=now, billing_anchor=Anchor.CALENDAR, timezone="Europe/Berlin")
    key = keys.create_key(now=now, tenant_id=tenant)
    grant = Gateway().grant(key, dt.datetime(2026, 3, 31, 21, 59, tzinfo=UTC))
    assert (grant.period.start, grant.period.end) == (now, dt.datetime(2026, 3, 31, 22, tzinfo=UTC))
    later = Gateway().grant(key, dt.datetime(2026, 3, 31, 22, tzinfo=UTC))
    assert (later.period.start, later.period.end) == (
        dt.datetime(2026, 3, 31, 22, tzinfo=UTC),
        dt.datetime(2026, 4, 30, 22, tzinfo=UTC),
    )
    assert later.plan.subscription_id == sub.id


def test_a_grant_reads_the_version_the_subscription_is_pinned_to_with_its_route_costs(tenant):
    routes = [
        {"method": "*", "path_prefix": "/v1/search", "cost": 5},
        {"method": "GET", "path_prefix": "/v1/a", "cost": 2},
    ]
    plan_id = new_plan(
        {
            "rate_limit_per_minute": 5,
            "charges": [charge("calls", included=100, hard_limit=True)],
            "route_costs": routes,
        },
        {"rate_limit_per_minute": 500, "charges": [charge("calls", included=10**6, price="1")]},
    )
    sub, key = subscribed(tenant, plan_id)
    assert sub.plan_version == 1
    grant = Gateway().grant(key, MIDDLE)
    assert grant.plan == ActivePlan(
        subscription_id=sub.id,
        cycle=grant.plan.cycle,
        plan_id=plan_id,
        tier=Tier.UNSPECIFIED,
        limit_per_minute=5,
        included_requests=100,
        capped=True,
        route_costs=(RouteCost("*", "/v1/search", 5), RouteCost("GET", "/v1/a", 2)),
        other_hard_limits=False,
    )
    assert (grant.period, grant.quota_floor) == (FIRST, 0)
    Subscription.update(plan_version=2).where(Subscription.id == sub.id).execute()
    moved = Gateway().grant(key, MIDDLE)
    assert (moved.plan.limit_per_minute, moved.plan.included_requests, moved.plan.capped, moved.period) == (
        500,
        10**6,
        False,
        None,
    )


def test_a_plan_charging_requests_only_through_a_filter_has_no_requests_quota(tenant):
    plan_id = new_plan({"charges": [charge("heavy", included=7, price="1", filter=HEAVY)]})
    _, key = subscribed(tenant, plan_id)
    plan = Gateway().grant(key, MIDDLE).plan
    assert (plan.included_requests, plan.capped, plan.other_hard_limits) == (0, False, False)


# --- standing denials ------------------------------------------------------------------------------


def test_a_hard_limit_on_a_filtered_charge_denies_at_exactly_its_included_units(tenant):
    plan_id = new_plan(
        {
            "charges": [
                charge("calls", included=1000, price="1"),
                charge("heavy", included=3, hard_limit=True, filter=HEAVY),
            ]
        }
    )
    sub, key = subscribed(tenant, plan_id)
    track(sub.id, ("h1", 2, MIDDLE), endpoint="/v1/heavy")
    track(sub.id, ("other", 50, MIDDLE))
    granted = Gateway().grant(key, MIDDLE)
    assert (granted.plan.other_hard_limits, granted.plan.capped, granted.period) == (True, False, None)
    track(sub.id, ("h2", 1, MIDDLE), endpoint="/v1/heavy")
    now = FIRST.end - dt.timedelta(seconds=10.5)
    error = denied(key, now)
    assert (type(error), error.reason, error.retry_after_seconds) == (ResourceExhausted, "QUOTA_EXHAUSTED", 11)
    assert error.message == (
        f"charge 'heavy' has used its 3 included units this period (until {FIRST.end.isoformat()}) and is a hard limit"
    )
    assert denied(key, FIRST.end - dt.timedelta(seconds=0.25)).retry_after_seconds == 1
    # The subscription not yet moved on to its next period: the wait is at least one second.
    assert denied(key, FIRST.end + dt.timedelta(hours=1)).retry_after_seconds == 1


def test_usage_in_a_trial_ending_exactly_now_does_not_reach_a_hard_limit_and_usage_at_its_end_does(tenant):
    """The trial's segment is rated on nothing: the hard limit reads the segment in force after it."""
    plan_id = new_plan({"charges": [charge("heavy", included=1, hard_limit=True, filter=HEAVY)]})
    sub, key = subscribed(tenant, plan_id)
    Subscription.update(trial_end=MIDDLE).where(Subscription.id == sub.id).execute()
    track(sub.id, ("in-trial", 5, MIDDLE - US), endpoint="/v1/heavy")
    assert Gateway().grant(key, MIDDLE).plan.other_hard_limits is True
    track(sub.id, ("at-end", 1, MIDDLE), endpoint="/v1/heavy")
    error = denied(key, MIDDLE)
    assert (error.reason, error.message) == (
        "QUOTA_EXHAUSTED",
        f"charge 'heavy' has used its 1 included units this period (until {FIRST.end.isoformat()}) and is a hard limit",
    )


def test_the_exact_requests_cap_is_left_to_envoy_when_another_hard_limit_is_checked(tenant):
    plan_id = new_plan(
        {
            "charges": [
                charge("calls", included=10, hard_limit=True),
                charge("heavy", included=3, hard_limit=True, filter=HEAVY),
            ]
        }
    )
    sub, key = subscribed(tenant, plan_id)
    track(sub.id, ("all", 10, MIDDLE))
    grant = Gateway().grant(key, MIDDLE)
    assert (grant.plan.capped, grant.plan.other_hard_limits, grant.quota_floor, grant.period) == (True, True, 10, FIRST)


def test_a_prepaid_plan_is_denied_exactly_when_its_usage_reaches_the_credit_balance(tenant):
    plan_id = new_plan({"billing": "PREPAID", "charges": [charge("calls", price="100")]})
    sub, key = subscribed(tenant, plan_id)
    credits.create_grant(ADMIN, credits.NewGrant(tenant, 300), now=ANCHOR)
    track(sub.id, ("a", 2, MIDDLE))
    assert Gateway().grant(key, MIDDLE).plan.subscription_id == sub.id
    track(sub.id, ("b", 1, MIDDLE))
    spend_control.invalidate(tenant)
    error = denied(key)
    assert (type(error), error.reason, error.message) == (
        spend_control.PaymentRequired,
        "CREDITS_EXHAUSTED",
        f"tenant {tenant!r} has no prepaid credit left for this period's spend",
    )


def test_credit_that_expires_exactly_now_no_longer_admits_a_prepaid_plan(tenant):
    plan_id = new_plan({"billing": "PREPAID", "charges": [charge("calls", price="100")]})
    sub, key = subscribed(tenant, plan_id)
    expiry = MIDDLE + dt.timedelta(hours=1)
    credits.create_grant(ADMIN, credits.NewGrant(tenant, 1000, expires_at=expiry), now=ANCHOR)
    track(sub.id, ("a", 2, MIDDLE))
    assert Gateway().grant(key, expiry - US).plan.subscription_id == sub.id
    spend_control.invalidate(tenant)
    assert denied(key, expiry).reason == "CREDITS_EXHAUSTED"


def test_a_spend_cap_denies_and_a_hard_limit_is_reported_before_it(tenant):
    plan_id = new_plan(
        {"charges": [charge("calls", price="100"), charge("heavy", included=1, hard_limit=True, filter=HEAVY)]}
    )
    sub, key = subscribed(tenant, plan_id)
    Subscription.update(spend_cap_cents=200).where(Subscription.id == sub.id).execute()
    track(sub.id, ("a", 2, MIDDLE))
    error = denied(key)
    assert (error.reason, error.message) == (
        "SPEND_CAP_REACHED",
        f"subscription {sub.id!r} has reached its spend cap for this period",
    )
    [reached] = events_of(tenant, "spend_cap.reached")
    assert (reached["created_at"], reached["data"]["subscription_id"]) == ("2026-02-10T09:30:00Z", sub.id)
    track(sub.id, ("h", 1, MIDDLE), endpoint="/v1/heavy")
    spend_control.invalidate(tenant)
    assert denied(key).reason == "QUOTA_EXHAUSTED"
    plan = gateway._active_plan(tenant)
    assert gateway.standing_denial(tenant, plan, MIDDLE).reason == "QUOTA_EXHAUSTED"
    quiet = ActivePlan(**{**plan.__dict__, "other_hard_limits": False})
    assert gateway.standing_denial(tenant, quiet, MIDDLE).reason == "SPEND_CAP_REACHED"


# --- quota.exhausted -------------------------------------------------------------------------------


def logged(sub: Subscription, tenant: str, refused: str = "", tier: str = "FREE", n: int = 0) -> LoggedRequest:
    return LoggedRequest(
        subscription_id=sub.id,
        request_id=f"r{n}-{uuid.uuid4().hex[:6]}",
        method="GET",
        path="/v1/a",
        started_at=MIDDLE,
        forwarded=not refused,
        tenant_id=tenant,
        tier=tier,
        refused=refused,
    )


def test_a_refusal_at_the_cap_is_announced_once_per_period_and_counted(tenant):
    sub, _ = subscribed(tenant, "free")
    before = {o: decisions("FREE", o) for o in ("allowed", "quota_exhausted", "rate_limited")}
    gw = Gateway()
    gw.record_refusals(
        [
            logged(sub, tenant),
            logged(sub, tenant, "RATE_LIMITED"),
            logged(sub, tenant, "QUOTA_EXHAUSTED"),
            logged(sub, tenant, "QUOTA_EXHAUSTED"),
        ],
        MIDDLE,
    )
    after = {o: decisions("FREE", o) - before[o] for o in before}
    assert after == {"allowed": 1, "quota_exhausted": 2, "rate_limited": 1}
    [event] = events_of(tenant, "quota.exhausted")
    assert event["dedup_key"] == f"quota.exhausted:{sub.id}:{FIRST.start.isoformat()}"
    assert event["created_at"] == "2026-02-10T09:30:00Z"
    assert event["data"] == {
        "subscription_id": sub.id,
        "tenant_id": tenant,
        "plan_id": "free",
        "included_requests": "10000",
        "period_start": "2026-01-31T09:30:00Z",
        "period_end": "2026-02-28T09:30:00Z",
    }


def test_each_subscription_refused_in_one_batch_is_announced(tenant):
    one, _ = subscribed(tenant, "free")
    other_tenant = f"{tenant}-2"
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(other_tenant, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    two, _ = subscribed(other_tenant, "free")
    Gateway().record_refusals(
        [logged(one, tenant, "QUOTA_EXHAUSTED"), logged(two, other_tenant, "QUOTA_EXHAUSTED")], MIDDLE
    )
    assert [e["data"]["subscription_id"] for e in events_of(tenant, "quota.exhausted")] == [one.id]
    assert [e["data"]["subscription_id"] for e in events_of(other_tenant, "quota.exhausted")] == [two.id]


def test_the_database_is_asked_at_most_once_an_hour_per_subscription(tenant, monkeypatch):
    sub, _ = subscribed(tenant, "free")
    asked: list[tuple[str, dt.datetime]] = []
    emit = gateway._emit_exhausted
    monkeypatch.setattr(gateway, "_emit_exhausted", lambda t, now: asked.append((t, now)) or emit(t, now))
    clock = [0.0]
    gw = Gateway()
    assert gw._announced.ttl == gateway.ANNOUNCED_SECONDS
    gw._announced = TtlCache(gateway.ANNOUNCED_SECONDS, clock=lambda: clock[0])
    gw.record_refusals([logged(sub, tenant, "QUOTA_EXHAUSTED")], MIDDLE)
    clock[0] = gateway.ANNOUNCED_SECONDS - 1
    gw.record_refusals([logged(sub, tenant, "QUOTA_EXHAUSTED")], SECOND.start)
    assert asked == [(tenant, MIDDLE)]
    clock[0] = gateway.ANNOUNCED_SECONDS
    gw.record_refusals([logged(sub, tenant, "RATE_LIMITED"), logged(sub, tenant, "QUOTA_EXHAUSTED")], SECOND.start)
    assert asked == [(tenant, MIDDLE), (tenant, SECOND.start)]
    assert [e["data"]["period_start"] for e in events_of(tenant, "quota.exhausted")] == [
        "2026-01-31T09:30:00Z",
        "2026-02-28T09:30:00Z",
    ]


def test_a_failed_announcement_is_logged_not_raised_and_retried_at_the_next_refusal(tenant, monkeypatch, caplog):
    sub, _ = subscribed(tenant, "free")
    calls: list[str] = []

    def broken(tenant_id, now):
        calls.append(tenant_id)
        raise RuntimeError("database gone")

    monkeypatch.setattr(gateway, "_emit_exhausted", broken)
    gw = Gateway()
    with caplog.at_level(logging.ERROR, logger="billing.gateway"):
        gw.record_refusals([logged(sub, tenant, "QUOTA_EXHAUSTED"), logged(sub, tenant, "QUOTA_EXHAUSTED")], MIDDLE)
    assert calls == [tenant, tenant]
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("billing.gateway", f"quota.exhausted for {sub.id} not recorded")
    ] * 2
    monkeypatch.undo()
    gw.record_refusals([logged(sub, tenant, "QUOTA_EXHAUSTED")], MIDDLE)
    assert len(events_of(tenant, "quota.exhausted")) == 1


def test_nothing_is_announced_for_a_tenant_no_longer_subscribed(tenant):
    sub, _ = subscribed(tenant, "free")
    subscription_service.cancel_subscription(ADMIN, sub.id, now=MIDDLE)
    Gateway().record_refusals([logged(sub, tenant, "QUOTA_EXHAUSTED")], MIDDLE)
    gateway._emit_exhausted(tenant, MIDDLE)
    assert events_of(tenant, "quota.exhausted") == []


# --- metering --------------------------------------------------------------------------------------


def forwarded(sub_id: str, request_id: str, *, cost: int = 1, when: dt.datetime = MIDDLE, **more) -> LoggedRequest:
    return LoggedRequest(sub_id, request_id, "GET", "/v1/a", when, True, cost=cost, **more)


def test_forwarded_requests_are_metered_in_batches_and_a_resent_batch_counts_nothing(tenant, monkeypatch):
    one, _ = subscribed(tenant)
    two, _ = subscribed(f"{tenant}-2")
    monkeypatch.setattr(gateway, "MAX_BATCH", 2)
    requests = [forwarded(one.id, f"a{n}", cost=n + 1) for n in range(5)]
    requests += [forwarded(two.id, "b0", cost=3), LoggedRequest(two.id, "b1", "GET", "/v1/a", MIDDLE, False)]
    requests += [forwarded(two.id, "b2", reported=("llm_tokens", {"model": "m"}))]
    assert gateway.meter(requests, FIRST.end) == 8
    assert recorded_event_ids(one.id) == {f"a{n}" for n in range(5)}
    assert recorded_event_ids(two.id) == {"b0", "b2", "b2:usage"}
    assert usage.period_requests(one.id, FIRST.start) == 15
    assert usage.period_requests(two.id, FIRST.start) == 4
    assert gateway.meter(requests, FIRST.end) == 0


def test_a_refused_subscription_is_logged_and_skipped_and_rejections_are_logged(tenant, caplog):
    live, _ = subscribed(tenant)
    requests = [
        forwarded("sub_gone", "g0"),
        forwarded(live.id, "early", when=ANCHOR - US),
        forwarded(live.id, "early2", when=ANCHOR - 2 * US),
        forwarded(live.id, "ok", cost=4),
    ]
    with caplog.at_level(logging.WARNING, logger="billing.gateway"):
        assert gateway.meter(requests, FIRST.end) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "billing.gateway"]
    assert messages == [
        "gateway usage for sub_gone refused: subscription 'sub_gone' not found",
        f"gateway usage for {live.id}: 2 events rejected (BEFORE_SUBSCRIPTION)",
    ]
    assert usage.period_requests(live.id, FIRST.start) == 4


def test_a_batch_refused_on_its_own_leaves_the_next_batch_of_the_subscription_counted(tenant, monkeypatch, caplog):
    sub, _ = subscribed(tenant)
    monkeypatch.setattr(gateway, "MAX_BATCH", 2)
    future = FIRST.end + dt.timedelta(minutes=6)  # past the 5 minutes of clock skew allowed
    requests = [forwarded(sub.id, "f0", when=future), forwarded(sub.id, "f1"), forwarded(sub.id, "f2", cost=6)]
    with caplog.at_level(logging.WARNING, logger="billing.gateway"):
        assert gateway.meter(requests, FIRST.end) == 1
    assert recorded_event_ids(sub.id) == {"f2"}
    [message] = [r.getMessage() for r in caplog.records if r.name == "billing.gateway"]
    assert message.startswith(f"gateway usage for {sub.id} refused: ") and "in the future" in message


def test_a_batchs_rejections_are_logged_by_count_and_the_first_ones_reason(tenant, caplog):
    sub, _ = subscribed(tenant)
    track(sub.id, ("seed", 1, MIDDLE))
    invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    requests = [
        forwarded(sub.id, "invoiced", when=MIDDLE),
        forwarded(sub.id, "early", when=ANCHOR - US),
        forwarded(sub.id, "next", when=SECOND.start),
    ]
    with caplog.at_level(logging.WARNING, logger="billing.gateway"):
        assert gateway.meter(requests, SECOND.start) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "billing.gateway"]
    assert messages == [f"gateway usage for {sub.id}: 2 events rejected (PERIOD_INVOICED)"]
