"""services/spend_control.py called directly on a SQLite database of its own, with an explicit `now`
(no Envoy, no gRPC server): the spend a subscription is judged on (its balance in its own currency
only, credit expiring exactly now, what an early invoice already billed), a PREPAID plan stopped
exactly at its balance and a spend cap reached exactly, the denial's reason and wording word for
word, the cache (per subscription and tenant generation, forgotten by `invalidate`, trusted for
exactly its staleness bound), and each crossing announced once with its dedup key and figures.
Fast enough for the mutation gate (`[tool.mutation-gate]` in pyproject.toml)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import uuid

import pytest

from factories import insert_subscription
from server.domain import credits as rules
from server.domain import webhooks
from server.domain.access import KeyScope, Principal
from server.domain.issuer import Issuer
from server.domain.periods import period
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.models import CreditGrant, CreditLedgerEntry, Subscription, WebhookEvent
from server.services import credits, invoices, plans, spend_control, usage
from server.services import webhooks as endpoints
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ISSUER = Issuer("Billing Co", "1 Loopback Road", "TAX-1")
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)  # Jan 31 09:30 -> Feb 28 09:30
MIDDLE = FIRST.start + dt.timedelta(days=10)


@pytest.fixture(scope="module", autouse=True)
def spend_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("spend")), db.session():
        yield


@pytest.fixture
def tenant() -> str:
    """A new tenant, with a webhook endpoint so every event it is sent is written."""
    tenant_id = f"sp-{uuid.uuid4().hex[:10]}"
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant_id, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    return tenant_id


@pytest.fixture
def fresh_cache(monkeypatch):
    """The module's cache and generations, new for the test, on a clock the test moves."""
    clock = [1000.0]
    monkeypatch.setattr(spend_control, "_decisions", TtlCache(STALENESS_SECONDS, clock=lambda: clock[0]))
    monkeypatch.setattr(spend_control, "_generations", {})
    monkeypatch.setattr(spend_control, "_counter", itertools.count(1))
    return clock


def new_plan(billing: str = "POSTPAID", currency: str = "USD", price: str = "100") -> str:
    plan_id = f"sp-{uuid.uuid4().hex[:10]}"
    plans.create_plan(
        ADMIN,
        {
            "id": plan_id,
            "name": "Spend",
            "monthly_fee_cents": 0,
            "rate_limit_per_minute": 60,
            "billing": billing,
            "currency": currency,
            "charges": [{"id": "calls", "meter_id": "requests", "model": "PER_UNIT", "unit_price": price}],
        },
        now=ANCHOR,
    )
    return plan_id


def subscribed(tenant_id: str, billing: str = "POSTPAID", currency: str = "USD", **limits) -> Subscription:
    sub = insert_subscription(tenant_id, plan=new_plan(billing, currency), anchor=ANCHOR)
    if limits:
        Subscription.update(**limits).where(Subscription.id == sub.id).execute()
    return Subscription.get_by_id(sub.id)


def track(sub: Subscription, count: int, when: dt.datetime = MIDDLE) -> None:
    raw = [RawEvent(uuid.uuid4().hex, "/v1/x", count, when)]
    assert usage.track(ADMIN, sub.id, raw, now=FIRST.end).accepted == 1


def grant(tenant_id: str, cents: int, **fields) -> credits.CreditGrantView:
    return credits.create_grant(ADMIN, credits.NewGrant(tenant_id, cents, **fields), now=ANCHOR)


def events_of(tenant_id: str, kind: str) -> list[dict]:
    rows = WebhookEvent.select().where((WebhookEvent.tenant_id == tenant_id) & (WebhookEvent.type == kind))
    return [{**json.loads(row.body), "dedup_key": row.dedup_key} for row in rows.order_by(WebhookEvent.created_at)]


def all_events(tenant_id: str) -> list[str]:
    rows = WebhookEvent.select().where(WebhookEvent.tenant_id == tenant_id).order_by(WebhookEvent.created_at)
    return [row.type for row in rows if row.type != "credit_grant.created"]


def latest_credit_id(tenant_id: str) -> int:
    return max(
        row.id
        for row in CreditLedgerEntry.select().where(
            (CreditLedgerEntry.tenant_id == tenant_id) & (CreditLedgerEntry.amount_cents > 0)
        )
    )


# --- the spend judged -----------------------------------------------------------------------------


def test_the_credit_balance_is_the_currencys_only_and_credit_expiring_exactly_now_is_gone(tenant):
    expiry = MIDDLE + DAY
    grant(tenant, 300, expires_at=expiry)
    grant(tenant, 40)
    grant(tenant, 5000, currency="EUR")
    assert spend_control.credit_balance(tenant, "USD", expiry - US) == 340
    assert spend_control.credit_balance(tenant, "USD", expiry) == 40
    assert spend_control.credit_balance(tenant, "EUR", expiry) == 5000
    assert spend_control.credit_balance(tenant, "GBP", expiry) == 0


def test_a_postpaid_subscription_with_no_line_to_cross_is_not_rated(tenant):
    sub = subscribed(tenant)
    grant(tenant, 500, currency="EUR")  # credit in another currency is no line
    track(sub, 3)
    assert spend_control.spend_now(sub, MIDDLE) is None


@pytest.mark.parametrize(
    "billing,limits,credit",
    [
        ("PREPAID", {}, False),
        ("POSTPAID", {}, True),
        ("POSTPAID", {"spend_cap_cents": 1}, False),
        ("POSTPAID", {"low_balance_alert_cents": 1}, False),
    ],
)
def test_each_line_makes_the_spend_rated(tenant, billing, limits, credit):
    sub = subscribed(tenant, billing, **limits)
    if credit:
        grant(tenant, 1)
    track(sub, 2)
    found = spend_control.spend_now(sub, MIDDLE)
    assert found is not None
    assert found.spend.accrued_cents == 200
    assert found.spend.prepaid is (billing == "PREPAID")
    assert found.spend.has_credit is credit


def test_the_spend_now_with_every_figure(tenant):
    sub = subscribed(tenant, "PREPAID", spend_cap_cents=10_000, low_balance_alert_cents=250)
    grant(tenant, 300)
    latest = latest_credit_id(tenant)
    usd = grant(tenant, 200)
    latest = latest_credit_id(tenant)
    grant(tenant, 77, currency="EUR")  # a later credit, in another currency
    credits.void_grant(ADMIN, usd.id, now=ANCHOR + DAY)  # a later entry, negative
    CreditGrant.update(expires_at=MIDDLE).where(CreditGrant.id == grant(tenant, 9000).id).execute()
    latest = latest_credit_id(tenant)  # expired exactly now: not in the balance, still the latest credit
    track(sub, 2)
    found = spend_control.spend_now(sub, MIDDLE)
    assert found == spend_control.SpendNow(
        subscription_id=sub.id,
        tenant_id=tenant,
        currency="USD",
        period_start=FIRST.start,
        spend=rules.Spend(
            balance_cents=300,
            accrued_cents=200,
            prepaid=True,
            has_credit=True,
            spend_cap_cents=10_000,
            low_balance_alert_cents=250,
            billed_cents=0,
        ),
        latest_credit=latest,
    )


def test_the_latest_credit_is_the_latest_positive_entry_of_the_currency(tenant):
    sub = subscribed(tenant, "PREPAID")
    cent = grant(tenant, 1)
    [entry] = CreditLedgerEntry.select().where(CreditLedgerEntry.grant == cent.id)
    assert spend_control.spend_now(sub, MIDDLE).latest_credit == entry.id
    with db.database.atomic():
        credits.record_applied(tenant, "in_x", credits.apply_to_invoice(tenant, "USD", 1, MIDDLE), MIDDLE)
    credits.void_grant(ADMIN, cent.id, now=MIDDLE)  # a VOIDED entry of 0, the latest
    amounts = [row.amount_cents for row in CreditLedgerEntry.select().where(CreditLedgerEntry.grant == cent.id)]
    assert amounts == [1, -1, 0]
    found = spend_control.spend_now(sub, MIDDLE)
    assert (found.latest_credit, found.spend.balance_cents, found.spend.has_credit) == (entry.id, 0, True)


def test_the_latest_credit_is_0_without_any(tenant):
    sub = subscribed(tenant, "PREPAID")
    found = spend_control.spend_now(sub, MIDDLE)
    assert (found.latest_credit, found.spend.has_credit, found.spend.balance_cents) == (0, False, 0)


def test_a_period_invoiced_early_counts_what_it_billed(tenant):
    sub = subscribed(tenant, "PREPAID")
    grant(tenant, 1000)
    track(sub, 3)
    invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    found = spend_control.spend_now(Subscription.get_by_id(sub.id), FIRST.end)
    assert (found.spend.billed_cents, found.spend.accrued_cents, found.spend.balance_cents) == (300, 300, 700)
    assert found.spend.available_cents == 700


# --- the gateway's denial -------------------------------------------------------------------------


def test_a_prepaid_plan_is_admitted_below_its_balance_and_denied_exactly_at_it(tenant, fresh_cache):
    sub = subscribed(tenant, "PREPAID")
    grant(tenant, 300)
    grant(tenant, 5000, expires_at=MIDDLE)  # expires exactly now: no longer admits
    track(sub, 2)
    assert spend_control.denial(tenant, sub.id, MIDDLE) is None
    track(sub, 1)
    spend_control.invalidate(tenant)
    error = spend_control.denial(tenant, sub.id, MIDDLE)
    assert isinstance(error, spend_control.PaymentRequired)
    assert (error.code, error.reason, error.message) == (
        "FAILED_PRECONDITION",
        "CREDITS_EXHAUSTED",
        f"tenant {tenant!r} has no prepaid credit left for this period's spend",
    )


def test_a_spend_cap_is_reached_exactly_at_it(tenant, fresh_cache):
    sub = subscribed(tenant, spend_cap_cents=300)
    track(sub, 2)
    assert spend_control.denial(tenant, sub.id, MIDDLE) is None
    track(sub, 1)
    spend_control.invalidate(tenant)
    error = spend_control.denial(tenant, sub.id, MIDDLE)
    assert (type(error), error.reason, error.message) == (
        spend_control.PaymentRequired,
        "SPEND_CAP_REACHED",
        f"subscription {sub.id!r} has reached its spend cap for this period",
    )


def test_no_denial_for_a_missing_a_canceled_or_an_unlined_subscription(tenant, fresh_cache):
    assert spend_control.denial(tenant, "sub_missing", MIDDLE) is None
    canceled = subscribed(tenant, "PREPAID", status="CANCELED")
    assert spend_control.denial(tenant, canceled.id, MIDDLE) is None
    plain = subscribed(f"{tenant}-b")
    track(plain, 5)
    assert spend_control.denial(f"{tenant}-b", plain.id, MIDDLE) is None


def test_the_answer_is_cached_per_subscription_until_invalidated(tenant, fresh_cache, monkeypatch):
    calls = []
    answers = {"sub_a": "CREDITS_EXHAUSTED", "sub_b": None}

    def evaluate(subscription_id, now):
        calls.append(subscription_id)
        return answers[subscription_id]

    monkeypatch.setattr(spend_control, "_evaluate", evaluate)
    assert spend_control.denial(tenant, "sub_a", MIDDLE).reason == "CREDITS_EXHAUSTED"
    assert spend_control.denial(tenant, "sub_b", MIDDLE) is None
    answers["sub_a"] = None
    assert spend_control.denial(tenant, "sub_a", MIDDLE).reason == "CREDITS_EXHAUSTED"  # cached
    assert calls == ["sub_a", "sub_b"]
    spend_control.invalidate(tenant)
    assert spend_control.denial(tenant, "sub_a", MIDDLE) is None
    answers["sub_a"] = "SPEND_CAP_REACHED"
    spend_control.invalidate(tenant)  # a second write moves it again
    assert spend_control.denial(tenant, "sub_a", MIDDLE).reason == "SPEND_CAP_REACHED"
    spend_control.invalidate(f"{tenant}-other")  # another tenant's write moves nothing here
    answers["sub_a"] = None
    assert spend_control.denial(tenant, "sub_a", MIDDLE).reason == "SPEND_CAP_REACHED"
    assert calls == ["sub_a", "sub_b", "sub_a", "sub_a"]


def test_the_cached_answer_is_trusted_for_exactly_the_staleness_bound(tenant, fresh_cache, monkeypatch):
    assert STALENESS_SECONDS == 2.0
    assert spend_control._decisions.ttl == STALENESS_SECONDS
    answers = ["SPEND_CAP_REACHED"]
    monkeypatch.setattr(spend_control, "_evaluate", lambda subscription_id, now: answers[-1])
    assert spend_control.denial(tenant, "sub_x", MIDDLE).reason == "SPEND_CAP_REACHED"
    answers.append(None)
    fresh_cache[0] += STALENESS_SECONDS - 0.001
    assert spend_control.denial(tenant, "sub_x", MIDDLE).reason == "SPEND_CAP_REACHED"
    fresh_cache[0] += 0.001
    assert spend_control.denial(tenant, "sub_x", MIDDLE) is None


def test_generations_are_distinct_from_the_never_invalidated_one(tenant, fresh_cache):
    spend_control.invalidate(tenant)
    spend_control.invalidate(f"{tenant}-b")
    assert spend_control._generations == {tenant: 1, f"{tenant}-b": 2}


def test_the_first_invalidation_forgets_an_answer_cached_before_any(tenant, fresh_cache, monkeypatch):
    answers = ["CREDITS_EXHAUSTED"]
    monkeypatch.setattr(spend_control, "_evaluate", lambda subscription_id, now: answers[-1])
    assert spend_control.denial(tenant, "sub_y", MIDDLE).reason == "CREDITS_EXHAUSTED"
    answers.append(None)
    spend_control.invalidate(tenant)  # the first generation handed out: 1
    assert spend_control.denial(tenant, "sub_y", MIDDLE) is None


def test_the_evaluation_is_passed_the_subscription_and_instant(tenant, fresh_cache, monkeypatch):
    seen = []
    monkeypatch.setattr(spend_control, "_evaluate", lambda subscription_id, now: seen.append((subscription_id, now)))
    assert spend_control.denial(tenant, "sub_z", MIDDLE) is None
    assert seen == [("sub_z", MIDDLE)]


def test_a_webhook_that_cannot_be_recorded_does_not_change_the_denial(tenant, fresh_cache, monkeypatch, caplog):
    sub = subscribed(tenant, spend_cap_cents=100)
    track(sub, 1)

    def broken(found, now):
        raise RuntimeError("outbox down")

    monkeypatch.setattr(spend_control, "announce", broken)
    with caplog.at_level(logging.ERROR, logger="billing.spend"):
        assert spend_control.denial(tenant, sub.id, MIDDLE).reason == "SPEND_CAP_REACHED"
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("billing.spend", f"spend webhooks of {sub.id} not recorded")
    ]
    assert caplog.records[0].exc_info is not None


# --- crossings announced once ---------------------------------------------------------------------


def test_each_crossing_is_announced_once_with_its_dedup_key_and_figures(tenant, fresh_cache):
    sub = subscribed(tenant, "PREPAID", spend_cap_cents=300, low_balance_alert_cents=50)
    grant(tenant, 300)
    latest = latest_credit_id(tenant)
    track(sub, 3)
    assert spend_control.denial(tenant, sub.id, MIDDLE).reason == "CREDITS_EXHAUSTED"
    assert all_events(tenant) == ["credits.low", "credits.exhausted", "spend_cap.reached"]
    [low] = events_of(tenant, "credits.low")
    [exhausted] = events_of(tenant, "credits.exhausted")
    [reached] = events_of(tenant, "spend_cap.reached")
    assert low["dedup_key"] == f"credits.low:{sub.id}:{latest}:50"
    assert exhausted["dedup_key"] == f"credits.exhausted:{sub.id}:{latest}"
    assert reached["dedup_key"] == f"spend_cap.reached:{sub.id}:{FIRST.start.isoformat()}:300"
    assert low["created_at"] == "2026-02-10T09:30:00Z"
    data = low["data"]
    assert {k: str(v) for k, v in data.items()} == {
        "subscription_id": sub.id,
        "tenant_id": tenant,
        "currency": "USD",
        "credit_balance_cents": "300",
        "accrued_cents": "300",
        "spend_cap_cents": "300",
        "low_balance_alert_cents": "50",
    }
    assert exhausted["data"] == data and reached["data"] == data
    spend_control.invalidate(tenant)
    spend_control.denial(tenant, sub.id, MIDDLE + DAY)
    assert len(all_events(tenant)) == 3


def test_nothing_is_announced_below_every_line(tenant, fresh_cache):
    sub = subscribed(tenant, "PREPAID", spend_cap_cents=301, low_balance_alert_cents=1)
    grant(tenant, 302)
    track(sub, 3)
    assert spend_control.denial(tenant, sub.id, MIDDLE) is None
    assert all_events(tenant) == []
    found = spend_control.spend_now(sub, MIDDLE)
    spend_control.announce(found, MIDDLE)
    assert all_events(tenant) == []


def test_a_low_balance_is_announced_below_the_alert_not_at_it(tenant, fresh_cache):
    sub = subscribed(tenant, low_balance_alert_cents=100)
    grant(tenant, 400)
    track(sub, 3)
    found = spend_control.spend_now(sub, MIDDLE)
    spend_control.announce(found, MIDDLE)
    assert all_events(tenant) == []
    track(sub, 1, MIDDLE + US)
    spend_control.announce(spend_control.spend_now(sub, MIDDLE), MIDDLE)
    assert all_events(tenant) == ["credits.low", "credits.exhausted"]  # 400 - 400 = 0: below 100, and exhausted


def test_refresh_forgets_and_announces_the_tenants_crossings_now(tenant, fresh_cache):
    sub = subscribed(tenant, spend_cap_cents=200)
    grant(tenant, 1000, expires_at=MIDDLE + US)
    track(sub, 2)
    spend_control.refresh(tenant, MIDDLE)
    assert spend_control._generations == {tenant: 2}  # the grant's, then this one's
    [reached] = events_of(tenant, "spend_cap.reached")
    assert (reached["created_at"], reached["data"]["subscription_id"]) == ("2026-02-10T09:30:00Z", sub.id)


def test_refresh_of_a_tenant_without_an_active_subscription_only_forgets(tenant, fresh_cache, monkeypatch):
    sub = subscribed(tenant, spend_cap_cents=1)
    track(sub, 2)
    Subscription.update(status="CANCELED").where(Subscription.id == sub.id).execute()
    subscribed(f"{tenant}-b", spend_cap_cents=1)  # another tenant's, active
    monkeypatch.setattr(spend_control, "spend_now", lambda subscription, now: pytest.fail(subscription.id))
    spend_control.refresh(tenant, MIDDLE)
    assert spend_control._generations == {tenant: 1}
    assert all_events(tenant) == []


def test_refresh_of_a_subscription_with_no_line_announces_nothing(tenant, fresh_cache, monkeypatch):
    subscribed(tenant)
    monkeypatch.setattr(spend_control, "announce", lambda found, now: pytest.fail("announced nothing"))
    spend_control.refresh(tenant, MIDDLE)
    assert spend_control._generations == {tenant: 1}


def test_refresh_logs_what_it_could_not_record(tenant, fresh_cache, monkeypatch, caplog):
    sub = subscribed(tenant, spend_cap_cents=1)

    def broken(found, now):
        raise RuntimeError("outbox down")

    monkeypatch.setattr(spend_control, "announce", broken)
    with caplog.at_level(logging.ERROR, logger="billing.spend"):
        spend_control.refresh(tenant, MIDDLE)
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("billing.spend", f"spend webhooks of {sub.id} not recorded")
    ]
    assert caplog.records[0].exc_info is not None
    assert spend_control._generations == {tenant: 1}
