"""The gateway's two jobs for the platform's API: admit a request (ext_authz) and meter the
requests that were forwarded (access-log stream).

Admission, in one call per request: key -> tenant -> ACTIVE subscription -> plan; the tenant's
standing denial if it has one (standing_denial: other hard limits, and the credits' 402s); then
the request's route cost (the plan's route_costs) taken from the tier limit in the tenant's
gateway window (separate from its billing-API window) and, for a plan with no overage price, from
the period's quota cap, both in one atomic limiter step.

Staleness bound: the key and the tenant's subscription are cached for CACHE_SECONDS per server
process, so a revoked key, a plan change or a cancel takes effect at the gateway within
CACHE_SECONDS (the contract allows 5 s). The quota counter lives in the limiter, not in the
cache; the cached recorded usage only seeds it (it is a floor), so staleness there admits nothing
extra.

A refusal at the quota cap also announces `quota.exhausted` (a webhook event, once per
subscription period) outside the hot path's caches; see Gateway._announce_exhausted.

A tenant id outside the identifier alphabet (a row older than the alphabet) is refused 403
INVALID_TENANT_ID: Envoy could not forward it anyway.

Limiter store unreachable (Redis down): a plan without a quota cap FAILS OPEN, as the billing
API's interceptor does (limits protect capacity); a capped plan FAILS CLOSED (503), because its
cap is a billing fact that cannot be checked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math

from server.domain import decimals, webhooks
from server.domain import gateway as rules
from server.domain.access import KeyScope, Principal
from server.domain.errors import DomainError, PermissionDenied, ResourceExhausted
from server.domain.identifiers import identifier_problem
from server.domain.meters import REQUESTS_METER
from server.domain.periods import Period, period_containing
from server.domain.plans import RouteCost, Tier
from server.domain.subscriptions import SubscriptionStatus
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.domain.usage import MAX_BATCH
from server.observability import metrics
from server.persistence import db, plan_versions
from server.persistence.models import Plan, PlanVersion, Subscription
from server.ratelimit.algorithm import Decision, LimiterUnavailable, Quota, RateLimiter
from server.resources import quota_message
from server.services import events, invoices, keys, usage

log = logging.getLogger("billing.gateway")

CACHE_SECONDS = STALENESS_SECONDS
ANNOUNCED_SECONDS = 3600.0
WINDOW_PREFIX = "gateway:"
# Metering acts for the system, not for a caller: the gateway itself vouches for the events.
METERING = Principal(key_id=0, scope=KeyScope.ADMIN)


@dataclasses.dataclass(frozen=True)
class ActivePlan:
    subscription_id: str
    anchor_at: dt.datetime
    plan_id: str
    tier: Tier
    limit_per_minute: int
    included_requests: int
    capped: bool  # no overage price: the plan admits exactly its included requests per period
    route_costs: tuple[RouteCost, ...] = ()
    # Other hard_limit charges (another meter, or a filter): enforced by standing_denial.
    other_hard_limits: bool = False


@dataclasses.dataclass(frozen=True)
class Admission:
    tenant_id: str
    subscription_id: str
    plan_id: str
    decision: Decision | None  # None: the limiter store is down and the plan fails open
    cost: int = 1
    quota: rules.PeriodQuota | None = None  # the capped period, for the IETF headers


class Refused(ResourceExhausted):
    """Denied by the tier limit or the quota cap; transport turns `decision` into the 429's headers."""

    def __init__(self, message: str, *, decision: Decision, quota: rules.PeriodQuota | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.decision = decision
        self.quota = quota


def _in_session(query, *args):
    """Run a cache miss's query in its own database session: the common case, all hits, opens
    none (on SQLite opening one cost ~400 µs, four fifths of a whole check)."""
    with db.session():
        return query(*args)


def _active_plan(tenant_id: str) -> ActivePlan | None:
    """The tenant's active subscription on the plan version it is pinned to: its rate limit, and
    the requests quota of its `requests` charge (capped where that charge has hard_limit)."""
    row = (
        Subscription.select(Subscription.id, Subscription.anchor_at, Plan.id, Plan.tier, PlanVersion)
        .join(Plan)
        .switch(Subscription)
        .join(
            PlanVersion,
            on=(PlanVersion.plan == Subscription.plan) & (PlanVersion.version == Subscription.plan_version),
            attr="pinned",
        )
        .where((Subscription.tenant_id == tenant_id) & (Subscription.status == SubscriptionStatus.ACTIVE))
        .first()
    )
    if row is None:
        return None
    terms = plan_versions.terms_of(row.pinned)
    requests = next((c for c in terms.charges if c.meter_id == REQUESTS_METER and not c.filter), None)
    others = any(c.hard_limit for c in terms.charges if c is not requests)
    return ActivePlan(
        subscription_id=row.id,
        anchor_at=row.anchor_at,
        plan_id=row.plan.id,
        tier=row.plan.tier,
        limit_per_minute=terms.rate_limit_per_minute,
        included_requests=requests.included if requests else 0,
        capped=requests is not None and requests.hard_limit,
        route_costs=terms.route_costs,
        other_hard_limits=others,
    )


def standing_denial(subscription_id: str, now: dt.datetime) -> DomainError | None:
    """The tenant's denial that does not depend on this request, computed from the period's
    figures (the same rating as the invoice) and cached per subscription for CACHE_SECONDS by the
    Gateway, so it holds at most that long after the usage that caused it is recorded:

    - 429 QUOTA_EXHAUSTED for a `hard_limit` charge other than the exact requests cap (another
      meter, or a filtered charge): its figure in the segment in force has reached its included
      units. Such a figure is known only once the usage is ingested (metering lag, ~0.2 s, plus
      this cache), so a burst can pass it by that much; the unfiltered `requests` cap is instead
      counted exactly in the limiter.
    - The credits' 402s (CREDITS_EXHAUSTED, SPEND_CAP_REACHED) belong here too, as one call to the
      spend-control service (a denial reason or None) returned as a FailedPrecondition with that
      reason, which the transport answers 402: THE one place the gateway consults it.
    """
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
    """Admission with its caches; one per server process, shared by its worker threads."""

    def __init__(self, limiter: RateLimiter, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.limiter = limiter
        self._principals: TtlCache[Principal] = TtlCache(cache_seconds)
        self._plans: TtlCache[ActivePlan | None] = TtlCache(cache_seconds)
        self._recorded: TtlCache[int] = TtlCache(cache_seconds)
        self._announced: TtlCache[None] = TtlCache(ANNOUNCED_SECONDS)
        self._denials: TtlCache[DomainError | None] = TtlCache(cache_seconds)

    def admit(self, headers: dict[str, str], now: dt.datetime, *, method: str = "GET", path: str = "/") -> Admission:
        """Admit one request (`method` and `path` choose its route cost) or raise the DomainError
        that is its denial. Opens a database session only for what the caches miss."""
        key = rules.api_key(headers)
        principal = (
            self._principals.get(key, lambda: _in_session(keys.authenticate, key)) if key else keys.authenticate(None)
        )
        if principal.is_admin or principal.tenant_id is None:
            raise PermissionDenied(
                "admin keys are not tenant traffic: call the gateway with a tenant key", reason="ADMIN_KEY"
            )
        tenant_id = principal.tenant_id
        if problem := identifier_problem(tenant_id):
            # Stored before ids had an alphabet: Envoy cannot write it into x-tenant-id, so the
            # request could only end as Envoy's 503. An operator moves the tenant to a valid id.
            raise PermissionDenied(f"the key's tenant id {problem}", reason="INVALID_TENANT_ID")
        plan = self._plans.get(tenant_id, lambda: _in_session(_active_plan, tenant_id))
        if plan is None:
            raise PermissionDenied(f"tenant {tenant_id!r} has no active subscription", reason="NO_ACTIVE_SUBSCRIPTION")
        if plan.other_hard_limits and (
            denial := self._denials.get(
                plan.subscription_id, lambda: _in_session(standing_denial, plan.subscription_id, now)
            )
        ):
            raise denial
        period = period_containing(plan.anchor_at, now)
        cost = rules.route_cost(plan.route_costs, method, path)
        quota = self._quota(plan, period, now) if plan.capped else None
        try:
            decision = self.limiter.hit(WINDOW_PREFIX + tenant_id, plan.limit_per_minute, quota=quota, cost=cost)
        except LimiterUnavailable:
            metrics.record_decision("gateway", plan.tier, None)
            if quota:
                raise
            return Admission(tenant_id, plan.subscription_id, plan.plan_id, decision=None, cost=cost)
        metrics.record_decision("gateway", plan.tier, decision)
        shown = _period_quota(plan, decision, period, now) if quota else None
        if not decision.allowed:
            if decision.quota_exhausted:
                self._announce_exhausted(tenant_id, plan, period, now)
            raise _refusal(plan, decision, period, now, shown)
        return Admission(tenant_id, plan.subscription_id, plan.plan_id, decision, cost=cost, quota=shown)

    def _announce_exhausted(self, tenant_id: str, plan: ActivePlan, period: Period, now: dt.datetime) -> None:
        """quota.exhausted, once per subscription period (the event's dedup key); this process asks
        the database at most once an hour per period, not on every refused request. A failure is
        logged and retried at a later refusal: the denial itself never depends on it."""
        name = f"{plan.subscription_id}:{int(period.start.timestamp())}"
        try:
            self._announced.get(name, lambda: _in_session(_emit_exhausted, tenant_id, plan, period, now))
        except Exception:
            log.exception("quota.exhausted for %s not recorded", plan.subscription_id)

    def _quota(self, plan: ActivePlan, period: Period, now: dt.datetime) -> Quota:
        name = f"{plan.subscription_id}:{int(period.start.timestamp())}"
        recorded = self._recorded.get(
            name, lambda: _in_session(usage.period_requests, plan.subscription_id, period.start)
        )
        return Quota(
            name=name,
            included=plan.included_requests,
            floor=recorded,
            expires_in=math.ceil((period.end - now).total_seconds()),
        )


def _emit_exhausted(tenant_id: str, plan: ActivePlan, period: Period, now: dt.datetime) -> None:
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


def _period_quota(plan: ActivePlan, decision: Decision, period: Period, now: dt.datetime) -> rules.PeriodQuota:
    return rules.PeriodQuota(
        included=plan.included_requests,
        used=decision.quota_used,
        period_seconds=round((period.end - period.start).total_seconds()),
        seconds_left=max(0, math.ceil((period.end - now).total_seconds())),
    )


def _refusal(
    plan: ActivePlan, decision: Decision, period: Period, now: dt.datetime, quota: rules.PeriodQuota | None
) -> Refused:
    if decision.quota_exhausted:
        reason, retry_after = "QUOTA_EXHAUSTED", math.ceil((period.end - now).total_seconds())
        message = (
            f"plan {plan.plan_id!r} has used its {plan.included_requests} included requests this period "
            f"(until {period.end.isoformat()}) and bills no overage"
        )
    else:
        reason, retry_after = "RATE_LIMITED", decision.reset_seconds
        message = f"rate limit of {plan.limit_per_minute} requests per minute exceeded for plan {plan.plan_id!r}"
    return Refused(message, reason=reason, retry_after_seconds=max(1, retry_after), decision=decision, quota=quota)


def meter(requests: list[rules.LoggedRequest], now: dt.datetime) -> int:
    """Record the forwarded requests as usage through the same path as TrackUsage (one
    transaction per subscription and batch, deduplicated by request id, so a retried batch
    counts nothing twice); returns how many were newly accepted. A subscription that refuses
    its events (deleted meanwhile) is logged and skipped, not retried."""
    accepted = 0
    for subscription_id, tracked in rules.usage_events(requests).items():
        for start in range(0, len(tracked), MAX_BATCH):
            try:
                result = usage.track(METERING, subscription_id, tracked[start : start + MAX_BATCH], now=now)
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
