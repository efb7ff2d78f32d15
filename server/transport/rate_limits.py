"""RateLimitService: endpoint 18."""

from __future__ import annotations

from billing.v1 import rate_limit_pb2, rate_limit_pb2_grpc
from server.ratelimit import service
from server.ratelimit.algorithm import RateLimiter
from server.transport.context import current_principal


class RateLimitServicer(rate_limit_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    def GetRateLimit(self, request, context):
        report = service.get_rate_limit(current_principal(), request.tenant_id, self._limiter)
        return rate_limit_pb2.RateLimitStatus(
            tenant_id=report.tenant_id,
            tier=report.tier,
            limit_per_minute=report.limit_per_minute,
            remaining=report.remaining,
            reset_seconds=report.reset_seconds,
        )
