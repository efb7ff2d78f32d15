"""Transactional outbox: queue an e-mail in the caller's transaction, with the state change
that causes it. A dedup key makes queuing idempotent: a rerun after a crash queues nothing twice."""

from __future__ import annotations

import datetime as dt
import json

from server.domain.emails import EmailTemplate
from server.persistence.bulk import insert_ignore_returning
from server.persistence.db import database
from server.persistence.models import OutboxMessage


def enqueue(*, template: EmailTemplate, recipient: str, payload: dict, dedup_key: str, now: dt.datetime) -> bool:
    """Queue one e-mail; False if one with `dedup_key` was already queued. Call inside a transaction.
    RETURNING says whether the row went in: SQLite's last row id survives an ignored INSERT."""
    columns = [
        OutboxMessage.dedup_key,
        OutboxMessage.template,
        OutboxMessage.recipient,
        OutboxMessage.payload,
        OutboxMessage.created_at,
        OutboxMessage.next_attempt_at,
        OutboxMessage.attempts,
    ]
    row = (dedup_key, str(template), recipient, json.dumps(payload, sort_keys=True), now, now, 0)
    return bool(insert_ignore_returning(OutboxMessage, columns, [row], returning=OutboxMessage.id))


def counts() -> dict[str, int]:
    """Rows waiting to be sent, waiting after a failure, and given up (dead letters)."""
    unsent = OutboxMessage.sent_at.is_null()
    return {
        "pending": OutboxMessage.select().where(unsent & OutboxMessage.dead_at.is_null()).count(),
        "retrying": OutboxMessage.select()
        .where(unsent & OutboxMessage.dead_at.is_null() & (OutboxMessage.attempts > 0))
        .count(),
        "dead": OutboxMessage.select().where(unsent & OutboxMessage.dead_at.is_null(False)).count(),
    }


def backlog() -> tuple[int, dt.datetime | None, int]:
    """For the metrics: rows waiting (not dead), when the oldest of them was queued, dead letters."""
    waiting = OutboxMessage.sent_at.is_null() & OutboxMessage.dead_at.is_null()
    oldest = OutboxMessage.select(OutboxMessage.created_at).where(waiting).order_by(OutboxMessage.created_at).first()
    counted = counts()
    return counted["pending"], oldest.created_at if oldest else None, counted["dead"]


def dead_letters(limit: int = 100) -> list[OutboxMessage]:
    return list(
        OutboxMessage.select()
        .where(OutboxMessage.sent_at.is_null() & OutboxMessage.dead_at.is_null(False))
        .order_by(OutboxMessage.dead_at.desc(), OutboxMessage.id)
        .limit(limit)
    )


def retry(message_id: int, now: dt.datetime) -> bool:
    """Give a dead letter a fresh set of attempts, due now; False if there is no such dead letter."""
    with database.atomic():
        return bool(
            OutboxMessage.update(dead_at=None, attempts=0, next_attempt_at=now)
            .where(
                (OutboxMessage.id == message_id)
                & OutboxMessage.sent_at.is_null()
                & OutboxMessage.dead_at.is_null(False)
            )
            .execute()
        )
