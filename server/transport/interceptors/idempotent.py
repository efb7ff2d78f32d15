"""Idempotency-Key on every mutating method: a retry gets the first answer again, with
`idempotent-replayed: true`, and does nothing (rules in domain/idempotency.py, records in
persistence/idempotency.py).

Mutating means a POST, PUT, PATCH or DELETE in the method's google.api.http rule, read from the
descriptor; a key on any other method is ignored. Only unary methods are wrapped (chain.Layer):
the billing API has no streaming method, and a stream's answer is not one message to keep.

The layer is the innermost, after the key's holder is known (authentication), and after the
checks that refuse a request before any method runs (validation, rate limit, path binding): like
Stripe's, those answers are not kept, as nothing ran; a retry is refused the same way, or runs
once the reason has gone. What the method itself answers is kept (a refusal such as a plan that
does not exist included), except a server error: INTERNAL, UNAVAILABLE (RELEASED_CODES) or any
exception other than a domain error releases the key, so that a retry runs again.

A success is sent as the bytes kept, the first time as on every replay (the response serializer
passes them through); a replayed error is its stored google.rpc.Status. The marker is initial
metadata on both: Envoy turns trailing metadata into headers only on a trailers-only answer,
which an error after the rate limit's initial metadata (a tenant key's) is not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging

from google.rpc import code_pb2, status_pb2

from server.domain import idempotency as rules
from server.domain.errors import DomainError
from server.services import idempotency
from server.transport import context as call_context
from server.transport import initial_metadata, path_binding
from server.transport.errors import Replayed, status_message
from server.transport.interceptors.chain import Layer
from server.transport.interceptors.error_boundary import DATABASE_LOST
from server.transport.interceptors.methods import KEYLESS_METHODS

log = logging.getLogger("billing.transport")

REPLAYED = ((rules.REPLAYED_HEADER, "true"),)


@functools.cache
def mutates(method: str) -> bool:
    rule = path_binding.http_rule(method)
    return rule is not None and rule[0] in rules.MUTATING_VERBS


@dataclasses.dataclass(frozen=True)
class StoredResponse:
    """A kept response message, serialized as first sent."""

    data: bytes


class IdempotencyInterceptor(Layer):
    def wraps(self, method, handler):
        return super().wraps(method, handler) and method not in KEYLESS_METHODS and mutates(method)

    def wrap(self, method, handler):
        serialize = handler.response_serializer

        def serializer(response) -> bytes:
            return response.data if isinstance(response, StoredResponse) else serialize(response)

        wrapped = super().wrap(method, handler)
        return wrapped._replace(response_serializer=serializer)  # type: ignore[attr-defined]

    def around(self, behavior, request, context, method):
        key = rules.call_key([value for name, value in context.invocation_metadata() if name == rules.HEADER])
        if key is None:
            return behavior(request, context)
        holder = rules.holder(call_context.current_principal())
        fingerprint = rules.fingerprint(method, request.SerializeToString(deterministic=True))
        begun = idempotency.begin(holder, key, fingerprint, dt.datetime.now(dt.timezone.utc))
        if isinstance(begun, idempotency.Answer):
            return _replay(begun, context)
        try:
            response = behavior(request, context)
        except DomainError as error:
            if rules.keeps(error.code):
                status = status_message(error)
                idempotency.keep(begun, idempotency.Answer(status.code, status.SerializeToString(), error.metadata))
            else:
                _release(begun)
            raise
        except BaseException:
            _release(begun)
            raise
        data = response.SerializeToString(deterministic=True)
        idempotency.keep(begun, idempotency.Answer(code_pb2.OK, data))
        return StoredResponse(data)  # the first answer's bytes are its replays' bytes


def _replay(answer: idempotency.Answer, context) -> StoredResponse:
    initial_metadata.attach(context, REPLAYED)
    if answer.code != code_pb2.OK:
        raise Replayed(status_pb2.Status.FromString(answer.body), answer.metadata)
    return StoredResponse(answer.body)


def _release(claim: idempotency.Claim) -> None:
    """Free the key for a retry; with the database gone it stays claimed until RUNNING_LEASE."""
    try:
        idempotency.release(claim)
    except DATABASE_LOST as error:
        log.warning("idempotency key not released: %s", type(error).__name__)
