"""Idempotency keys (docs/api.md, Conventions): which keys are valid, what makes a retry
"the same request", whose keys are whose, how long an answer is kept, which answers are kept,
and what a record already stored under a key means for a new call with it.

Pure: the interceptor reads the key and the request, the store keeps the records.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
from collections.abc import Sequence
from typing import NoReturn

from server.domain.access import Principal
from server.domain.errors import DomainError, InvalidArgument

HEADER = "idempotency-key"  # gRPC metadata; the REST header Idempotency-Key arrives as it
REPLAYED_HEADER = "idempotent-replayed"  # on an answer given again
MAX_KEY_LENGTH = 255
# Methods whose google.api.http rule has one of these verbs change something: they take a key.
MUTATING_VERBS = frozenset({"post", "put", "patch", "delete"})
KEPT_FOR = dt.timedelta(hours=24)
# A call still marked running this long after it claimed its key was lost with its process (no
# call runs this long: Envoy gives up after 60 s): a retry may claim the key again.
RUNNING_LEASE = dt.timedelta(minutes=5)
# Answers that are not kept: the key is released so that a retry runs again. A server error
# (or a lost database) comes from a call whose transaction did not commit, so running it again
# is what the client needs; keeping it would make the key useless until it expires. Every other
# answer, a refusal of the request included, is the request's answer and is kept.
RELEASED_CODES = frozenset({"INTERNAL", "UNAVAILABLE", "UNKNOWN"})


class KeyInUse(DomainError):
    """The first call with the key is still running: retry once it has answered (409)."""

    code = "ABORTED"
    default_reason = "IDEMPOTENCY_KEY_IN_USE"

    def __init__(self) -> None:
        super().__init__("a request with this Idempotency-Key is still running; retry once it has answered")


class KeyMismatch(DomainError):
    """The key was used for a different request: a new request needs a new key (409)."""

    code = "ALREADY_EXISTS"
    default_reason = "IDEMPOTENCY_KEY_MISMATCH"

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used with a different request; use a new key for a new request")


def call_key(values: Sequence[str]) -> str | None:
    """The call's key from the values its metadata has under HEADER: None without one; refused
    (400 naming the header) when empty, longer than MAX_KEY_LENGTH, not printable ASCII, or
    given twice."""
    if not values:
        return None
    if len(values) > 1:
        _refuse("is given more than once")
    key = values[0]
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        _refuse(f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


def _refuse(problem: str) -> NoReturn:
    raise InvalidArgument(
        f"header Idempotency-Key (gRPC metadata {HEADER}) {problem}",
        field="Idempotency-Key",
        reason="INVALID_IDEMPOTENCY_KEY",
    )


def holder(principal: Principal) -> str:
    """Whose key space a call's key is in: its tenant's, or the admins' (one space for every
    admin key, as one operator's retries may come through any of them)."""
    return "admin" if principal.is_admin else f"tenant:{principal.tenant_id}"


def fingerprint(method: str, request: bytes) -> str:
    """What a retry must repeat: the method and the request message (serialized deterministically:
    the same request over REST and gRPC, fields in any order, gives the same bytes)."""
    return hashlib.sha256(method.encode() + b"\n" + request).hexdigest()


def keeps(code: str) -> bool:
    """Whether an answer with this status code is kept for replays (see RELEASED_CODES)."""
    return code not in RELEASED_CODES


@dataclasses.dataclass(frozen=True)
class Record:
    """What the store holds under a key: the request's fingerprint, whether its answer is in,
    when its call claimed the key and when the record expires."""

    fingerprint: str
    answered: bool
    claimed_at: dt.datetime
    expires_at: dt.datetime


class Reuse(enum.Enum):
    REPLAY = "replay"  # give the stored answer again
    CLAIM = "claim"  # the record is void (expired, or its call lost): run the call as if new


def reuse(record: Record, fingerprint: str, now: dt.datetime) -> Reuse:
    """A new call with a key whose record exists: replay, claim it afresh, or refuse (KeyMismatch,
    KeyInUse). An expired record is as good as absent, whatever it held."""
    if record.expires_at <= now:
        return Reuse.CLAIM
    if record.fingerprint != fingerprint:
        raise KeyMismatch()
    if record.answered:
        return Reuse.REPLAY
    if record.claimed_at + RUNNING_LEASE <= now:
        return Reuse.CLAIM
    raise KeyInUse()
