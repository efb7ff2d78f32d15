"""Spend control: whether a subscription may still spend (PREPAID credit, spend cap), for the
gateway's hot path, and the spend webhooks (credits.low, credits.exhausted, spend_cap.reached).

`denial(tenant_id, subscription_id, now)` is the one call the gateway makes: the answer is cached
per subscription for STALENESS_SECONDS, so a gateway call costs no database query; a miss
evaluates the spend in its own database session (the period rated by the invoice's own rating,
services/invoices.rated_period, and the tenant's balance) and announces the lines it is past.
Writes that move the answer in this process (a grant, a void, a cap change, an invoice issued or
voided) call `invalidate`; other processes' writes (the scheduler's invoices) reach the gateway
within the cache's bound. Either way a stop or a lift takes effect within 5 s of the usage or the
write (usage reaches the rating within the access log's flush and the group commit).

Each crossing is announced once: the event's dedup key names the line and its episode (for the
credit lines, the latest credit that came in and the alert value; for the cap, the period and the
cap), so repeated evaluations past the same line write nothing, and a new grant, cap or period
starts a new crossing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import threading

import peewee as pw

from server.domain import credits as rules
from server.domain import webhooks
from server.domain.errors import FailedPrecondition
from server.domain.plans import Billing
from server.domain.subscriptions import SubscriptionStatus
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.persistence import active_subscriptions, db, plan_versions
from server.persistence.models import CreditGrant, CreditLedgerEntry, Subscription
from server.resources import spend_alert_message
from server.services import events, invoices

log = logging.getLogger("billing.spend")

EVENT_TYPES = {
    rules.Crossing.LOW: webhooks.EventType.CREDITS_LOW,
    rules.Crossing.EXHAUSTED: webhooks.EventType.CREDITS_EXHAUSTED,
    rules.Crossing.SPEND_CAP: webhooks.EventType.SPEND_CAP_REACHED,
}


class PaymentRequired(FailedPrecondition):
    """The gateway's 402: a PREPAID plan out of credit, or a spend cap reached."""


@dataclasses.dataclass(frozen=True)
class SpendNow:
    subscription_id: str
    tenant_id: str
    currency: str
    period_start: dt.datetime
    spend: rules.Spend
    latest_credit: int  # id of the latest ledger entry that added credit (0: none)


def _grants(tenant_id: str, currency: str) -> list[rules.Grant]:
    query = CreditGrant.select().where((CreditGrant.tenant_id == tenant_id) & (CreditGrant.currency == currency))
    return [row.rules() for row in query]


def credit_balance(tenant_id: str, currency: str, now: dt.datetime) -> int:
    """What the tenant's grants in `currency` can still pay at `now`."""
    return rules.balance(_grants(tenant_id, currency), currency, now)


def _credit(tenant_id: str, currency: str, now: dt.datetime) -> tuple[int, bool, int]:
    """(balance, ever granted in the currency, id of the latest entry that added credit)."""
    grants = _grants(tenant_id, currency)
    latest = (
        CreditLedgerEntry.select(pw.fn.MAX(CreditLedgerEntry.id))
        .join(CreditGrant)
        .where(
            (CreditLedgerEntry.tenant_id == tenant_id)
            & (CreditGrant.currency == currency)
            & (CreditLedgerEntry.amount_cents > 0)
        )
        .scalar()
    )
    return rules.balance(grants, currency, now), bool(grants), latest or 0


def spend_now(subscription: Subscription, now: dt.datetime) -> SpendNow | None:
    """The subscription's spend in its current period: accrued by the invoice's own rating
    (everything the invoice would total now, before credits) against its tenant's balance. None
    for a subscription with no line to cross (POSTPAID, no cap, no alert, never granted credit
    in its currency): its period is not rated, which is most of the gateway's tenants."""
    version = plan_versions.pinned(subscription)
    prepaid = version.billing == Billing.PREPAID
    balance, has_credit, latest = _credit(subscription.tenant_id, version.currency, now)
    limits = (subscription.spend_cap_cents, subscription.low_balance_alert_cents)
    if not (prepaid or has_credit or any(limit is not None for limit in limits)):
        return None
    period = invoices.period_of(subscription, subscription.current_period_start)
    _, ratings = invoices.rated_period(subscription, period)
    billed = invoices.live_invoice(subscription.id, period.start)  # the period was invoiced early
    return SpendNow(
        subscription_id=subscription.id,
        tenant_id=subscription.tenant_id,
        currency=version.currency,
        period_start=period.start,
        spend=rules.Spend(
            balance_cents=balance,
            accrued_cents=sum(rated.total_cents for rated in ratings),
            prepaid=prepaid,
            has_credit=has_credit,
            spend_cap_cents=subscription.spend_cap_cents,
            low_balance_alert_cents=subscription.low_balance_alert_cents,
            billed_cents=billed.subtotal_cents if billed else 0,
        ),
        latest_credit=latest,
    )


def _episode(found: SpendNow, crossing: rules.Crossing) -> list[object]:
    spend = found.spend
    if crossing is rules.Crossing.SPEND_CAP:
        return [found.period_start.isoformat(), spend.spend_cap_cents]
    if crossing is rules.Crossing.LOW:
        return [found.latest_credit, spend.low_balance_alert_cents]
    return [found.latest_credit]


def announce(found: SpendNow, now: dt.datetime) -> None:
    """Queue the webhook of each line the spend is past, once per crossing (its dedup key)."""
    crossed = rules.crossed(found.spend)
    if not crossed:
        return
    spend = found.spend
    data = spend_alert_message(
        subscription_id=found.subscription_id,
        tenant_id=found.tenant_id,
        currency=found.currency,
        balance_cents=spend.balance_cents,
        accrued_cents=spend.accrued_cents,
        spend_cap_cents=spend.spend_cap_cents,
        low_balance_alert_cents=spend.low_balance_alert_cents,
    )
    with db.database.atomic():
        for crossing in crossed:
            key = rules.crossing_key(crossing, found.subscription_id, _episode(found, crossing))
            events.emit(EVENT_TYPES[crossing], found.tenant_id, data, now=now, dedup_key=key)


def _evaluate(subscription_id: str, now: dt.datetime) -> str | None:
    """In the caller's database session (the gateway's grant, one session)."""
    subscription = Subscription.get_or_none(Subscription.id == subscription_id)
    if subscription is None or subscription.status != SubscriptionStatus.ACTIVE:
        return None
    found = spend_now(subscription, now)
    if found is None:
        return None
    try:
        announce(found, now)
    except Exception:  # the denial never depends on the webhook; the next evaluation retries it
        log.exception("spend webhooks of %s not recorded", subscription_id)
    return rules.denial(found.spend)


_decisions: TtlCache[str | None] = TtlCache(STALENESS_SECONDS)
_generations: dict[str, int] = {}
_counter = itertools.count(1)
_lock = threading.Lock()


def denial(tenant_id: str, subscription_id: str, now: dt.datetime) -> PaymentRequired | None:
    """The gateway's spend check: the 402 to answer, or None to admit. Cached (see the module)."""
    reason = _decisions.get((subscription_id, _generations.get(tenant_id, 0)), lambda: _evaluate(subscription_id, now))
    if reason is None:
        return None
    if reason == "CREDITS_EXHAUSTED":
        message = f"tenant {tenant_id!r} has no prepaid credit left for this period's spend"
    else:
        message = f"subscription {subscription_id!r} has reached its spend cap for this period"
    return PaymentRequired(message, reason=reason)


def invalidate(tenant_id: str) -> None:
    """Forget this process's cached answers for the tenant (after a write that moves them)."""
    with _lock:
        _generations[tenant_id] = next(_counter)


def refresh(tenant_id: str, now: dt.datetime) -> None:
    """After a committed write: forget the cached answers and announce the tenant's crossings now
    (not only when gateway traffic next asks)."""
    invalidate(tenant_id)
    subscription = active_subscriptions.of_tenant(tenant_id).first()
    if subscription is None:
        return
    try:
        found = spend_now(subscription, now)
        if found is not None:
            announce(found, now)
    except Exception:
        log.exception("spend webhooks of %s not recorded", subscription.id)
