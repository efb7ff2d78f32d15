"""The tier rate-limit interceptor: after authentication, before the handler.

Every call made with a tenant key counts against the tenant's tier limit (looked up by
server/ratelimit/service.py and cached per tenant for ttl_cache.STALENESS_SECONDS: a plan change or
a cancel applies to this process's calls at most that late). Admitted: the x-ratelimit-* values go
out as INITIAL metadata (Envoy turns them into response headers; trailing metadata is dropped on
success).
Refused: ResourceExhausted before the handler runs; its metadata (retry-after and x-ratelimit-*)
travels in the status's trailing metadata, which Envoy turns into the 429's headers, and
RetryInfo carries the delay for gRPC clients. Admin keys are not limited and get no headers.

Limiter unreachable (Redis down): FAIL OPEN. The call proceeds without x-ratelimit-* headers and
a warning is logged (once per second at most). Rate limits protect capacity; they are not a
billing fact, so an outage of the limiter store should not become an outage of the billing API.
"""

from __future__ import annotations

from server.domain.errors import ResourceExhausted
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.observability import metrics
from server.ratelimit.algorithm import LimiterUnavailable, RateLimiter
from server.ratelimit.service import TenantLimit, tenant_limit
from server.transport import context as call_context
from server.transport import initial_metadata
from server.transport.interceptors.chain import Layer
from server.transport.interceptors.methods import KEYLESS_METHODS
from server.transport.rate_limit_headers import decision_headers, refusal_headers


class RateLimitInterceptor(Layer):
    """Applies to the methods that authenticate (not health); must come after AuthInterceptor."""

    def __init__(self, limiter: RateLimiter, cache_seconds: float = STALENESS_SECONDS) -> None:
        self.limiter = limiter
        self._limits: TtlCache[TenantLimit] = TtlCache(cache_seconds)

    def wraps(self, method, handler):
        return super().wraps(method, handler) and method not in KEYLESS_METHODS

    def around(self, behavior, request, context, method):
        principal = call_context.current_principal()
        if principal.is_admin or principal.tenant_id is None:
            return behavior(request, context)
        tenant_id = principal.tenant_id
        limit = self._limits.get(tenant_id, lambda: tenant_limit(tenant_id))
        try:
            decision = self.limiter.hit(principal.tenant_id, limit.limit_per_minute)
        except LimiterUnavailable:
            metrics.record_decision("api", limit.tier, None)
            return behavior(request, context)
        metrics.record_decision("api", limit.tier, decision)
        if not decision.allowed:
            retry_after = max(1, decision.reset_seconds)
            raise ResourceExhausted(
                f"rate limit of {limit.limit_per_minute} calls per minute exceeded for tier {limit.tier}",
                retry_after_seconds=retry_after,
                metadata=refusal_headers(decision, retry_after),
            )
        initial_metadata.attach(context, tuple(decision_headers(decision).items()))
        return behavior(request, context)
