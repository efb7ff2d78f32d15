"""The rate-limit service: which tier limit applies to a tenant, and endpoint 18's report.

The tier lookup is one indexed query (the partial unique index on ACTIVE subscriptions per
tenant, joined to the plan by primary key); the interceptor caches its answer per tenant for a
bounded time (server/transport/interceptors/rate_limiting.py), so a plan change or a cancel applies within that
bound on every replica, with nothing to invalidate.
"""

from __future__ import annotations

import dataclasses

import peewee as pw

from server.domain.access import Principal, require_tenant_path
from server.domain.plans import Tier
from server.persistence import active_subscriptions
from server.persistence.models import Plan, PlanVersion, Subscription
from server.persistence.prepared import Prepared
from server.ratelimit.algorithm import RateLimiter

FREE_PLAN_ID = "free"


@dataclasses.dataclass(frozen=True)
class TenantLimit:
    tier: Tier
    limit_per_minute: int


# One query: the partial unique index on ACTIVE subscriptions per tenant, the plan by key and the
# version the subscription is pinned to (its rate limit: a newer version never changes it; the
# "free" plan's latest figures without an active subscription). It runs on every limited call the
# interceptor's cache misses, so it is composed once (building it with peewee on each call costs
# several times what running it does).
_TENANT_PLAN = Prepared(
    Plan,
    [Subscription.tenant_id, Subscription.tenant_id],
    lambda tenant_id, same_tenant_id: (
        Plan.select(
            Plan.tier,
            pw.fn.COALESCE(
                active_subscriptions.of_tenant(same_tenant_id, PlanVersion.rate_limit_per_minute).join(
                    PlanVersion,
                    on=(PlanVersion.plan == Subscription.plan) & (PlanVersion.version == Subscription.plan_version),
                ),
                Plan.rate_limit_per_minute,
            ).alias("rate_limit_per_minute"),
        )
        .where(Plan.id == pw.fn.COALESCE(active_subscriptions.of_tenant(tenant_id, Subscription.plan), FREE_PLAN_ID))
        .limit(1)
    ),
)


def tenant_limit(tenant_id: str) -> TenantLimit:
    """The tier and rate limit of the tenant's active subscription (its pinned version's limit);
    the "free" plan's without an active subscription."""
    [plan] = _TENANT_PLAN.rows(tenant_id, tenant_id)
    return TenantLimit(tier=plan.tier, limit_per_minute=plan.rate_limit_per_minute)


@dataclasses.dataclass(frozen=True)
class RateLimitReport:
    tenant_id: str
    tier: Tier
    limit_per_minute: int
    remaining: int
    reset_seconds: int


def get_rate_limit(principal: Principal, tenant_id: str, limiter: RateLimiter) -> RateLimitReport:
    """Endpoint 18: peeks, consuming nothing. A tenant key's own call to it was already counted
    by the interceptor, so the report includes that call (and matches its x-ratelimit headers).
    reset_seconds follows the proto: seconds until one more call is allowed, 0 while some remain."""
    require_tenant_path(principal, tenant_id)
    limit = tenant_limit(tenant_id)
    state = limiter.peek(tenant_id, limit.limit_per_minute)
    return RateLimitReport(
        tenant_id=tenant_id,
        tier=limit.tier,
        limit_per_minute=limit.limit_per_minute,
        remaining=state.remaining,
        reset_seconds=0 if state.remaining > 0 else state.reset_seconds,
    )
