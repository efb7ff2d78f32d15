"""Per-call state set by interceptors and read by servicers and the call log (same worker thread)."""

from __future__ import annotations

import contextvars
import dataclasses
import random

from server.domain.access import Principal

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")
_call: contextvars.ContextVar[Call | None] = contextvars.ContextVar("call", default=None)


@dataclasses.dataclass
class Call:
    """What the call's log line says about who made it, filled in as interceptors learn it."""

    request_id: str
    principal: Principal | None = None


def current_principal() -> Principal:
    return _principal.get()


def bind_principal(principal: Principal) -> contextvars.Token:
    call = _call.get()
    if call is not None:
        call.principal = principal
    return _principal.set(principal)


def unbind_principal(token: contextvars.Token) -> None:
    _principal.reset(token)


def begin_call(metadata) -> tuple[Call, contextvars.Token]:
    call = Call(request_id(metadata))
    return call, _call.set(call)


def end_call(token: contextvars.Token) -> None:
    _call.reset(token)


def request_id(metadata) -> str:
    """The call's request id: the one already bound to it, else Envoy's x-request-id (so one
    request can be followed from Envoy's access log to ours), else a new one for a direct gRPC
    call: 128 random bits, which must be unique, not unpredictable (Python's generator, reseeded
    in a forked child; `secrets` made a system call on every call, measurable on a cached read)."""
    call = _call.get()
    if call is not None:
        return call.request_id
    return dict(metadata or ()).get("x-request-id") or f"{random.getrandbits(128):032x}"  # uuid4().hex's form
