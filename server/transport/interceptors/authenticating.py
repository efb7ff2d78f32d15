"""API keys to Principals for the servicers; health and portal pages need no key."""

from __future__ import annotations

from server.domain.access import Principal, refuse_gateway_key
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.services import keys
from server.transport import context as call_context
from server.transport.interceptors.chain import Layer
from server.transport.interceptors.methods import KEYLESS_METHODS


def bearer_token(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class AuthInterceptor(Layer):
    """A valid key's Principal is cached for `cache_seconds` (a revoked key is refused at most
    that late, ttl_cache.STALENESS_SECONDS); an unknown or revoked key is looked up every time."""

    def __init__(self, cache_seconds: float = STALENESS_SECONDS) -> None:
        self._principals: TtlCache[Principal] = TtlCache(cache_seconds)

    def wraps(self, method, handler):
        return super().wraps(method, handler) and method not in KEYLESS_METHODS

    def around(self, behavior, request, context, method):
        key = bearer_token(context.invocation_metadata())
        principal = self._principals.get(key, lambda: keys.authenticate(key)) if key else keys.authenticate(key)
        refuse_gateway_key(principal)
        token = call_context.bind_principal(principal)
        try:
            return behavior(request, context)
        finally:
            call_context.unbind_principal(token)
