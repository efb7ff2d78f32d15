"""Idempotency-Key use cases: begin a keyed call (claim its key, or find the answer to replay),
keep its answer or release its key, and purge expired records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from server.domain import idempotency as rules
from server.persistence import idempotency as store

# Claim attempts before answering IN_USE: each miss means another call claimed, released or
# took over the key between our two statements, which two in a row already make unlikely.
CLAIM_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class Answer:
    """A call's answer as kept: gRPC status code (0 OK), the response message or the
    google.rpc.Status, and an error's trailing metadata."""

    code: int
    body: bytes
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Claim:
    """The key is this call's: it runs, then `keep`s its answer or `release`s the key."""

    holder: str
    key: str
    token: str


def begin(holder: str, key: str, fingerprint: str, now: dt.datetime) -> Claim | Answer:
    """Claim the key for a new call, or return the answer of the call that had it (raises
    KeyMismatch or KeyInUse per domain/idempotency.py `reuse`)."""
    for _ in range(CLAIM_ATTEMPTS):
        token = store.claim(holder, key, fingerprint, now)
        if token is not None:
            return Claim(holder, key, token)
        found = store.find(holder, key)
        if found is None:  # released since our INSERT failed: try again
            continue
        if rules.reuse(found.record(), fingerprint, now) is rules.Reuse.REPLAY:
            assert found.code is not None and found.body is not None  # a replay is of an answered record
            return Answer(found.code, bytes(found.body), json.loads(found.metadata or "{}"))
        token = store.claim_again(found, fingerprint, now)
        if token is not None:
            return Claim(holder, key, token)
    raise rules.KeyInUse()


def keep(claim: Claim, answer: Answer) -> None:
    store.answer(
        claim.holder,
        claim.key,
        claim.token,
        answer.code,
        answer.body,
        json.dumps(answer.metadata, sort_keys=True) if answer.metadata else None,
    )


def release(claim: Claim) -> None:
    store.release(claim.holder, claim.key, claim.token)


def purge_expired(now: dt.datetime, limit: int) -> int:
    return store.purge_expired(now, limit)
