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
from server.domain.subscriptions import SubscriptionStatus
from server.persistence.db import database
from server.persistence.models import Plan, Subscription
from server.ratelimit.algorithm import RateLimiter

FREE_PLAN_ID = "free"


@dataclasses.dataclass(frozen=True)
class TenantLimit:
    tier: Tier
    limit_per_minute: int


_TENANT = "\x00tenant\x00"  # placeholder for the tenant id in the compiled lookup


class TierLookup:
    """The tenant's active plan's tier and limit; the "free" plan's without an active subscription.

    One query: the partial unique index on ACTIVE subscriptions per tenant, then the plan by key.
    Its SQL is compiled at the first call, for the database bound then, and kept by this object
    (each interceptor and servicer holds one): peewee's query building costs ~150 µs a call, the
    query itself ~13 µs on SQLite, and this runs on every limited call.
    """

    def __init__(self) -> None:
        self._compiled: tuple[str, list] | None = None

    def __call__(self, tenant_id: str) -> TenantLimit:
        if self._compiled is None:
            active_plan = Subscription.select(Subscription.plan).where(
                (Subscription.tenant_id == _TENANT) & (Subscription.status == SubscriptionStatus.ACTIVE)
            )
            self._compiled = (
                Plan.select(Plan.tier, Plan.rate_limit_per_minute)
                .where(Plan.id == pw.fn.COALESCE(active_plan, FREE_PLAN_ID))
                .limit(1)
                .sql()
            )
        sql, params = self._compiled
        row = database.execute_sql(sql, [tenant_id if p == _TENANT else p for p in params]).fetchone()
        return TenantLimit(tier=Tier(row[0]), limit_per_minute=row[1])


@dataclasses.dataclass(frozen=True)
class RateLimitReport:
    tenant_id: str
    tier: Tier
    limit_per_minute: int
    remaining: int
    reset_seconds: int


def get_rate_limit(principal: Principal, tenant_id: str, limiter: RateLimiter, tiers: TierLookup) -> RateLimitReport:
    """Endpoint 18: peeks, consuming nothing. A tenant key's own call to it was already counted
    by the interceptor, so the report includes that call (and matches its x-ratelimit headers).
    reset_seconds follows the proto: seconds until one more call is allowed, 0 while some remain."""
    require_tenant_path(principal, tenant_id)
    limit = tiers(tenant_id)
    state = limiter.peek(tenant_id, limit.limit_per_minute)
    return RateLimitReport(
        tenant_id=tenant_id,
        tier=limit.tier,
        limit_per_minute=limit.limit_per_minute,
        remaining=state.remaining,
        reset_seconds=0 if state.remaining > 0 else state.reset_seconds,
    )
