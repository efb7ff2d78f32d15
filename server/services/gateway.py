"""The gateway's two jobs for the platform's API: admit a request (ext_authz) and meter the
requests that were forwarded (access-log stream).

Admission, in one call per request: key -> tenant -> ACTIVE subscription -> plan; then the tier
limit in the tenant's gateway window (separate from its billing-API window) and, for a plan with
no overage price, the period's quota cap, both in one atomic limiter step.

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

from server.domain import gateway as rules
from server.domain import webhooks
from server.domain.access import SYSTEM, Principal
from server.domain.errors import DomainError, PermissionDenied, ResourceExhausted
from server.domain.identifiers import identifier_problem
from server.domain.meters import REQUESTS_METER
from server.domain.periods import Cycle, Period
from server.domain.plans import Tier
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.domain.usage import MAX_BATCH
from server.observability import metrics
from server.persistence import active_subscriptions, db, plan_versions
from server.persistence.models import Plan, PlanVersion, Subscription
from server.ratelimit.algorithm import Decision, LimiterUnavailable, Quota, RateLimiter
from server.resources import quota_message
from server.services import events, keys, spend_control, usage

log = logging.getLogger("billing.gateway")

CACHE_SECONDS = STALENESS_SECONDS
ANNOUNCED_SECONDS = 3600.0
WINDOW_PREFIX = "gateway:"


@dataclasses.dataclass(frozen=True)
class ActivePlan:
    subscription_id: str
    cycle: Cycle
    plan_id: str
    tier: Tier
    limit_per_minute: int
    included_requests: int
    capped: bool  # no overage price: the plan admits exactly its included requests per period


@dataclasses.dataclass(frozen=True)
class Admission:
    tenant_id: str
    subscription_id: str
    plan_id: str
    decision: Decision | None  # None: the limiter store is down and the plan fails open


class Refused(ResourceExhausted):
    """Denied by the tier limit or the quota cap; transport turns `decision` into the 429's headers."""

    def __init__(self, message: str, *, decision: Decision, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.decision = decision


def _in_session(query, *args):
    """Run a cache miss's query in its own database session: the common case, all hits, opens
    none (on SQLite opening a session costs most of a whole check)."""
    with db.session():
        return query(*args)


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
    return ActivePlan(
        subscription_id=row.id,
        cycle=row.cycle,
        plan_id=row.plan.id,
        tier=row.plan.tier,
        limit_per_minute=terms.rate_limit_per_minute,
        included_requests=requests.included if requests else 0,
        capped=requests is not None and requests.hard_limit,
    )


class Gateway:
    """Admission with its caches; one per server process, shared by its worker threads."""

    def __init__(self, limiter: RateLimiter, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.limiter = limiter
        self._principals: TtlCache[Principal] = TtlCache(cache_seconds)
        self._plans: TtlCache[ActivePlan | None] = TtlCache(cache_seconds)
        self._recorded: TtlCache[int] = TtlCache(cache_seconds)
        self._announced: TtlCache[None] = TtlCache(ANNOUNCED_SECONDS)

    def admit(self, headers: dict[str, str], now: dt.datetime) -> Admission:
        """Admit one request or raise the DomainError that is its denial. Opens a database
        session only for what the caches miss."""
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
        if spent := spend_control.denial(tenant_id, plan.subscription_id, now):
            raise spent
        period = plan.cycle.containing(now)
        quota = self._quota(plan, period, now) if plan.capped else None
        try:
            decision = self.limiter.hit(WINDOW_PREFIX + tenant_id, plan.limit_per_minute, quota=quota)
        except LimiterUnavailable:
            metrics.record_decision("gateway", plan.tier, None)
            if quota:
                raise
            return Admission(tenant_id, plan.subscription_id, plan.plan_id, decision=None)
        metrics.record_decision("gateway", plan.tier, decision)
        if not decision.allowed:
            if decision.quota_exhausted:
                self._announce_exhausted(tenant_id, plan, period, now)
            raise _refusal(plan, decision, period, now)
        return Admission(tenant_id, plan.subscription_id, plan.plan_id, decision)

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


def _refusal(plan: ActivePlan, decision: Decision, period: Period, now: dt.datetime) -> Refused:
    if decision.quota_exhausted:
        reason, retry_after = "QUOTA_EXHAUSTED", math.ceil((period.end - now).total_seconds())
        message = (
            f"plan {plan.plan_id!r} has used its {plan.included_requests} included requests this period "
            f"(until {period.end.isoformat()}) and bills no overage"
        )
    else:
        reason, retry_after = "RATE_LIMITED", decision.reset_seconds
        message = f"rate limit of {plan.limit_per_minute} requests per minute exceeded for plan {plan.plan_id!r}"
    return Refused(message, reason=reason, retry_after_seconds=max(1, retry_after), decision=decision)


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
