"""The gateway's two jobs for the platform's API: grant a key what Envoy needs to admit its
requests, and meter the requests that were forwarded (access-log stream).

A grant (Gateway.grant, asked by Envoy's Lua filter at most once per GRANT_SECONDS per key; see
envoy/gateway.lua, which counts the tier window and the quota itself): key -> tenant -> ACTIVE
subscription -> plan (rate limit, route costs, the requests quota of a capped plan with the
period's recorded usage as its floor), or the key's denial: 401, 403, the standing denials of
standing_denial (other hard limits; the credits' 402s). Read fresh from the database each time
(one grant per key per GRANT_SECONDS is cheap), so a revoked key, a plan change, a cancel or a new
denial takes effect at the gateway within GRANT_SECONDS (the contract allows 5 s).

A refusal at the quota cap announces `quota.exhausted` (a webhook event, once per subscription
period) from the access-log stream, off the request path; see Gateway.record_refusals.

A tenant id outside the identifier alphabet (a row older than the alphabet) is refused 403
INVALID_TENANT_ID: Envoy could not forward it anyway.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import math

from server.domain import decimals, webhooks
from server.domain import gateway as rules
from server.domain.access import SYSTEM
from server.domain.errors import DomainError, PermissionDenied, ResourceExhausted
from server.domain.identifiers import identifier_problem
from server.domain.meters import REQUESTS_METER
from server.domain.periods import Cycle, Period
from server.domain.plans import RouteCost, Tier
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.domain.usage import MAX_BATCH
from server.observability import metrics
from server.persistence import active_subscriptions, db, plan_versions
from server.persistence.models import Plan, PlanVersion, Subscription
from server.resources import quota_message
from server.services import events, invoices, keys, spend_control, usage

log = logging.getLogger("billing.gateway")

GRANT_SECONDS = STALENESS_SECONDS
ANNOUNCED_SECONDS = 3600.0


@dataclasses.dataclass(frozen=True)
class ActivePlan:
    subscription_id: str
    cycle: Cycle
    plan_id: str
    tier: Tier
    limit_per_minute: int
    included_requests: int
    capped: bool  # no overage price: the plan admits exactly its included requests per period
    route_costs: tuple[RouteCost, ...] = ()
    # Other hard_limit charges (another meter, or a filter): enforced by standing_denial.
    other_hard_limits: bool = False


@dataclasses.dataclass(frozen=True)
class Grant:
    """A key's admission terms for GRANT_SECONDS; `quota_floor` and `period` only for a capped plan."""

    tenant_id: str
    plan: ActivePlan
    period: Period | None = None
    quota_floor: int = 0


def _active_plan(tenant_id: str) -> ActivePlan | None:
    """The tenant's active subscription on the plan version it is pinned to: its rate limit, and
    the requests quota of its `requests` charge (capped where that charge has hard_limit)."""
    row = (
        active_subscriptions.of_tenant(
            tenant_id,
            Subscription.id,
            Subscription.anchor_at,
            Subscription.billing_anchor,
            Subscription.timezone,
            Plan.id,
            Plan.tier,
            PlanVersion,
        )
        .join(Plan)
        .switch(Subscription)
        .join(
            PlanVersion,
            on=(PlanVersion.plan == Subscription.plan) & (PlanVersion.version == Subscription.plan_version),
            attr="pinned",
        )
        .first()
    )
    if row is None:
        return None
    terms = plan_versions.terms_of(row.pinned)
    requests = next((c for c in terms.charges if c.meter_id == REQUESTS_METER and not c.filter), None)
    others = any(c.hard_limit for c in terms.charges if c is not requests)
    return ActivePlan(
        subscription_id=row.id,
        cycle=row.cycle,
        plan_id=row.plan.id,
        tier=row.plan.tier,
        limit_per_minute=terms.rate_limit_per_minute,
        included_requests=requests.included if requests else 0,
        capped=requests is not None and requests.hard_limit,
        route_costs=terms.route_costs,
        other_hard_limits=others,
    )


def standing_denial(tenant_id: str, plan: ActivePlan, now: dt.datetime) -> DomainError | None:
    """The tenant's denial that does not depend on the request, computed at each grant (off the
    request path), so it holds at most GRANT_SECONDS after what caused it is recorded:

    - 429 QUOTA_EXHAUSTED for a `hard_limit` charge other than the exact requests cap (another
      meter, or a filtered charge): its figure in the segment in force, rated as the invoice
      rates it, has reached its included units. Such a figure is known only once the usage is
      ingested (metering lag, ~0.2 s, plus the grant's age), so a burst can pass it by that much;
      the unfiltered `requests` cap is instead counted exactly in Envoy (envoy/gateway.lua).
    - 402 CREDITS_EXHAUSTED (a PREPAID plan's credit spent) and 402 SPEND_CAP_REACHED (the
      subscription's cap reached), after the hard limits: the one place the gateway consults
      spend control (services/spend_control.py, cached there for its own bound).
    """
    if plan.other_hard_limits and (exhausted := _exhausted_hard_limit(plan.subscription_id, now)):
        return exhausted
    return spend_control.denial(tenant_id, plan.subscription_id, now)


def _exhausted_hard_limit(subscription_id: str, now: dt.datetime) -> DomainError | None:
    subscription = Subscription.get_by_id(subscription_id)
    period = invoices.period_of(subscription, subscription.current_period_start)
    _, ratings = invoices.rated_period(subscription, period)
    for rated in ratings[-1].charges if ratings else ():
        charge = rated.charge
        counted_exactly = charge.meter_id == REQUESTS_METER and not charge.filter
        if charge.hard_limit and not counted_exactly and rated.quantity >= rated.included * decimals.SCALE:
            return ResourceExhausted(
                f"charge {charge.id!r} has used its {rated.included} included units this period "
                f"(until {period.end.isoformat()}) and is a hard limit",
                reason="QUOTA_EXHAUSTED",
                retry_after_seconds=max(1, math.ceil((period.end - now).total_seconds())),
            )
    return None


class Gateway:
    """Grants, and the announcements of refusals; one per server process."""

    def __init__(self) -> None:
        self._announced: TtlCache[None] = TtlCache(ANNOUNCED_SECONDS)

    def grant(self, key: str | None, now: dt.datetime) -> Grant:
        """The grant of `key`, or the DomainError that is its denial; one database session."""
        with db.session():
            principal = keys.authenticate(key)
            if principal.is_admin or principal.tenant_id is None:
                raise PermissionDenied(
                    "admin keys are not tenant traffic: call the gateway with a tenant key", reason="ADMIN_KEY"
                )
            tenant_id = principal.tenant_id
            if problem := identifier_problem(tenant_id):
                # Stored before ids had an alphabet: Envoy cannot write it into x-tenant-id, so the
                # request could only end as Envoy's 503. An operator moves the tenant to a valid id.
                raise PermissionDenied(f"the key's tenant id {problem}", reason="INVALID_TENANT_ID")
            plan = _active_plan(tenant_id)
            if plan is None:
                raise PermissionDenied(
                    f"tenant {tenant_id!r} has no active subscription", reason="NO_ACTIVE_SUBSCRIPTION"
                )
            if denial := standing_denial(tenant_id, plan, now):
                raise denial
            if not plan.capped:
                return Grant(tenant_id, plan)
            period = plan.cycle.containing(now)
            return Grant(tenant_id, plan, period, usage.period_requests(plan.subscription_id, period.start))

    def record_refusals(self, requests: list[rules.LoggedRequest], now: dt.datetime) -> None:
        """The decision metrics of logged requests, and quota.exhausted for a refusal at a cap,
        once per subscription period (the event's dedup key); this process asks the database at
        most once an hour per period. A failure is logged and retried at a later refusal."""
        for request in requests:
            metrics.record_outcome("gateway", request.tier, request.refused.lower() or "allowed")
            if request.refused != "QUOTA_EXHAUSTED":
                continue
            try:
                self._announced.get(request.subscription_id, functools.partial(_emit_now, request.tenant_id, now))
            except Exception:
                log.exception("quota.exhausted for %s not recorded", request.subscription_id)


def _emit_now(tenant_id: str, now: dt.datetime) -> None:
    with db.session():
        _emit_exhausted(tenant_id, now)


def _emit_exhausted(tenant_id: str, now: dt.datetime) -> None:
    plan = _active_plan(tenant_id)
    if plan is None:
        return
    period = plan.cycle.containing(now)
    data = quota_message(
        subscription_id=plan.subscription_id,
        tenant_id=tenant_id,
        plan_id=plan.plan_id,
        included=plan.included_requests,
        period=period,
    )
    with db.database.atomic():
        events.emit(
            webhooks.EventType.QUOTA_EXHAUSTED,
            tenant_id,
            data,
            now=now,
            dedup_key=f"{webhooks.EventType.QUOTA_EXHAUSTED}:{plan.subscription_id}:{period.start.isoformat()}",
        )


def meter(requests: list[rules.LoggedRequest], now: dt.datetime) -> int:
    """Record the forwarded requests as usage through the same path as TrackUsage (one
    transaction per subscription and batch, deduplicated by request id, so a retried batch
    counts nothing twice); returns how many were newly accepted. A subscription that refuses
    its events (deleted meanwhile) is logged and skipped, not retried."""
    accepted = 0
    for subscription_id, tracked in rules.usage_events(requests).items():
        for start in range(0, len(tracked), MAX_BATCH):
            try:
                result = usage.track(SYSTEM, subscription_id, tracked[start : start + MAX_BATCH], now=now)
            except DomainError as error:
                log.warning("gateway usage for %s refused: %s", subscription_id, error.message)
                continue
            accepted += result.accepted
            if result.rejections:
                log.warning(
                    "gateway usage for %s: %d events rejected (%s)",
                    subscription_id,
                    len(result.rejections),
                    result.rejections[0].reason,
                )
    return accepted
