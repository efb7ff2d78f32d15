"""The billing API's server interceptors: layers, one module each, composed by `Chain` into one
grpc.ServerInterceptor (see chain.py for why one)."""

from __future__ import annotations

import grpc

from server.ratelimit.algorithm import RateLimiter
from server.transport.interceptors.authenticating import AuthInterceptor
from server.transport.interceptors.chain import Chain
from server.transport.interceptors.error_boundary import ErrorInterceptor
from server.transport.interceptors.idempotent import IdempotencyInterceptor
from server.transport.interceptors.observing import ObservingInterceptor
from server.transport.interceptors.path_checking import PathBindingInterceptor
from server.transport.interceptors.rate_limiting import RateLimitInterceptor
from server.transport.interceptors.validating import ValidationInterceptor


def default_interceptors(limiter: RateLimiter | None = None) -> list[grpc.ServerInterceptor]:
    """observation (metrics, call log) → errors → validation → auth → tier rate limit (only with a
    limiter: None turns rate limits off) → path binding → Idempotency-Key, outermost first."""
    layers = [ObservingInterceptor(), ErrorInterceptor(), ValidationInterceptor(), AuthInterceptor()]
    if limiter is not None:
        layers.append(RateLimitInterceptor(limiter))
    return [Chain([*layers, PathBindingInterceptor(), IdempotencyInterceptor()])]
