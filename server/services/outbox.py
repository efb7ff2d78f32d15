"""Transactional outbox: queue an e-mail in the caller's transaction, with the state change
that causes it. A dedup key makes queuing idempotent: a rerun after a crash queues nothing twice."""

from __future__ import annotations

import datetime as dt
import json

from server.domain.emails import EmailTemplate
from server.persistence.bulk import insert_ignore_returning
from server.persistence.db import database, for_update
from server.persistence.models import Invoice, OutboxMessage
from server.persistence.read_models import InvoiceView, invoice_view

# Delays after the 1st, 2nd, ... failed delivery: 10 attempts spread over 27 h 51 min, then the
# row is a dead letter (dead_at set) until an operator retries it.
BACKOFF = tuple(dt.timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120, 240, 480, 720))
MAX_ATTEMPTS = len(BACKOFF) + 1
# A claimed row is retried after this if its sender died before marking it.
SEND_LEASE = dt.timedelta(minutes=5)


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


def invoice_for(template: str, payload: str) -> InvoiceView | None:
    """The invoice an invoice or credit-note e-mail shows (with its credit notes), read at delivery
    (a deleted one too: the e-mail was owed when the row was queued); None for a usage alert, which
    carries its figures."""
    if template not in (EmailTemplate.INVOICE_ISSUED, EmailTemplate.INVOICE_OVERDUE, EmailTemplate.CREDIT_NOTE):
        return None
    return invoice_view(Invoice.get_by_id(json.loads(payload)["invoice_id"]))


def backoff(attempts: int) -> dt.timedelta:
    """Delay after the `attempts`-th failure (1-based), for attempts < MAX_ATTEMPTS."""
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


def claim_next(now: dt.datetime) -> OutboxMessage | None:
    """Take the oldest due row by pushing its next attempt past the lease, in a short transaction."""
    with database.atomic():
        query = (
            OutboxMessage.select()
            .where(
                OutboxMessage.sent_at.is_null()
                & OutboxMessage.dead_at.is_null()
                & (OutboxMessage.next_attempt_at <= now)
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(1)
        )
        row = for_update(query, skip_locked=True).first()
        if row is not None:
            OutboxMessage.update(next_attempt_at=now + SEND_LEASE).where(OutboxMessage.id == row.id).execute()
        return row


def mark_sent(row: OutboxMessage, now: dt.datetime) -> None:
    OutboxMessage.update(sent_at=now).where(OutboxMessage.id == row.id).execute()


def mark_failed(row: OutboxMessage, error: Exception, now: dt.datetime) -> tuple[int, bool]:
    """Record a failed attempt: the next one after its backoff, or, at MAX_ATTEMPTS, a dead letter.
    Returns (attempts so far, whether delivery was given up)."""
    attempts = row.attempts + 1
    given_up = attempts >= MAX_ATTEMPTS
    (
        OutboxMessage.update(
            attempts=attempts,
            last_error=f"{type(error).__name__}: {error}"[:2000],
            next_attempt_at=now if given_up else now + backoff(attempts),
            dead_at=now if given_up else None,
        )
        .where(OutboxMessage.id == row.id)
        .execute()
    )
    return attempts, given_up
