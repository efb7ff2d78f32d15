"""A limiter decision as response headers (gRPC metadata, which Envoy turns into HTTP headers),
the same for the billing API and the gateway."""

from __future__ import annotations

from server.ratelimit.algorithm import Decision


def decision_headers(decision: Decision) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(decision.limit),
        "x-ratelimit-remaining": str(decision.remaining),
        "x-ratelimit-reset": str(decision.reset_seconds),
    }


def refusal_headers(decision: Decision, retry_after_seconds: int) -> dict[str, str]:
    return {**decision_headers(decision), "retry-after": str(retry_after_seconds)}
