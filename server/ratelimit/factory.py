"""The limiter backend the settings choose: in-process (the embedded default, one replica) or
Redis (REDIS_URL: replicas share one limit)."""

from __future__ import annotations

from server.config import Settings
from server.ratelimit.algorithm import RateLimiter


def build_limiter(settings: Settings) -> RateLimiter:
    if settings.redis_url is None:
        from server.ratelimit.memory import InProcessRateLimiter

        return InProcessRateLimiter()
    from server.ratelimit.redis_store import RedisRateLimiter

    return RedisRateLimiter(settings.redis_url)
