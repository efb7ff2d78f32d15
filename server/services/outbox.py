"""Transactional outbox: queue an e-mail in the caller's transaction, with the state change
that causes it. A dedup key makes queuing idempotent: a rerun after a crash queues nothing twice."""

from __future__ import annotations

import datetime as dt
import json

from server.persistence.models import OutboxMessage


def enqueue(*, template: str, recipient: str, payload: dict, dedup_key: str, now: dt.datetime) -> bool:
    """Queue one e-mail; False if one with `dedup_key` was already queued. Call inside a transaction."""
    inserted = (OutboxMessage.insert(
        dedup_key=dedup_key, template=template, recipient=recipient, payload=json.dumps(payload, sort_keys=True),
        created_at=now, next_attempt_at=now, attempts=0)
        .on_conflict_ignore().execute())
    return bool(inserted)
