"""Per-call state set by interceptors and read by servicers (same worker thread)."""

from __future__ import annotations

import contextvars

from server.domain.access import Principal

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def current_principal() -> Principal:
    return _principal.get()


def bind_principal(principal: Principal) -> contextvars.Token:
    return _principal.set(principal)


def unbind_principal(token: contextvars.Token) -> None:
    _principal.reset(token)
