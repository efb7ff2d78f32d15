"""Idempotency-Key records: one row per (holder, key), claimed by an INSERT that the unique index
admits once, so that of two calls with one key, on one replica or two, exactly one runs.

Each function is its own short transaction, apart from the call it guards: the claim must be
visible to every other replica while the call runs, and a call's own work commits in its own
transactions (usage tracking's group commit among them). Writes after the claim name the claim's
token, so that a call that lost its key to a later claim (RUNNING_LEASE) cannot write over it.
"""

from __future__ import annotations

import datetime as dt
import secrets

import peewee as pw

from server.domain import idempotency as rules
from server.persistence.db import database
from server.persistence.models import BaseModel, UTCDateTimeField


class IdempotencyKey(BaseModel):
    """A key's request (its fingerprint) and, once its call has answered, the answer: a gRPC
    status code with the response message (OK) or the google.rpc.Status (an error) and the
    error's trailing metadata as JSON."""

    id = pw.AutoField()
    holder = pw.CharField(max_length=160)
    key = pw.CharField(max_length=rules.MAX_KEY_LENGTH)
    fingerprint = pw.CharField(max_length=64)
    claim = pw.CharField(max_length=32)
    claimed_at = UTCDateTimeField()
    expires_at = UTCDateTimeField(index=True)
    code = pw.IntegerField(null=True)  # null while the call runs
    body = pw.BlobField(null=True)
    metadata = pw.TextField(null=True)

    class Meta:
        table_name = "idempotency_key"
        indexes = ((("holder", "key"), True),)

    def record(self) -> rules.Record:
        return rules.Record(self.fingerprint, self.code is not None, self.claimed_at, self.expires_at)


def _mine(holder: str, key: str, claim: str):
    return (IdempotencyKey.holder == holder) & (IdempotencyKey.key == key) & (IdempotencyKey.claim == claim)


def claim(holder: str, key: str, fingerprint: str, now: dt.datetime) -> str | None:
    """Insert the key's record as running; its claim token, or None when the key has a record."""
    token = secrets.token_hex(16)
    try:
        with database.atomic():
            IdempotencyKey.insert(
                holder=holder,
                key=key,
                fingerprint=fingerprint,
                claim=token,
                claimed_at=now,
                expires_at=now + rules.KEPT_FOR,
            ).execute()
    except pw.IntegrityError:
        return None
    return token


def find(holder: str, key: str) -> IdempotencyKey | None:
    return IdempotencyKey.get_or_none((IdempotencyKey.holder == holder) & (IdempotencyKey.key == key))


def claim_again(found: IdempotencyKey, fingerprint: str, now: dt.datetime) -> str | None:
    """Take over a void record (expired, or its call lost) for a new call: a new token, unless
    another call took it over first (the record's token changed since `found` was read)."""
    token = secrets.token_hex(16)
    with database.atomic():
        taken = (
            IdempotencyKey.update(
                fingerprint=fingerprint,
                claim=token,
                claimed_at=now,
                expires_at=now + rules.KEPT_FOR,
                code=None,
                body=None,
                metadata=None,
            )
            .where(_mine(found.holder, found.key, found.claim))
            .execute()
        )
    return token if taken else None


def answer(holder: str, key: str, claim: str, code: int, body: bytes, metadata: str | None) -> None:
    with database.atomic():
        (
            IdempotencyKey.update(code=code, body=body, metadata=metadata)
            .where(_mine(holder, key, claim) & IdempotencyKey.code.is_null())
            .execute()
        )


def release(holder: str, key: str, claim: str) -> None:
    with database.atomic():
        IdempotencyKey.delete().where(_mine(holder, key, claim) & IdempotencyKey.code.is_null()).execute()


def purge_expired(now: dt.datetime, limit: int) -> int:
    """Delete up to `limit` expired records in one transaction; how many went."""
    with database.atomic():
        expired = IdempotencyKey.select(IdempotencyKey.id).where(IdempotencyKey.expires_at <= now).limit(limit)
        return IdempotencyKey.delete().where(IdempotencyKey.id.in_(expired)).execute()
