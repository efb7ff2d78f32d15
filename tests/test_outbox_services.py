"""services/outbox.py and services/retention.py called directly, each test on a SQLite database of
its own (so counts are exactly the test's), with an explicit `now`: queuing once per dedup key,
what the operator's counts and dead letters show, a retry, claiming the row due exactly now, a
failure's backoff up to the dead letter, and the purge of raw events received before the cutoff
(one received exactly at it is kept)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from factories import insert_subscription
from server.domain.access import KeyScope, Principal
from server.domain.emails import EmailTemplate
from server.domain.issuer import Issuer
from server.domain.periods import period
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.models import OutboxMessage, RecordedUsageEvent
from server.services import invoices, outbox, retention, usage
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def outbox_database(tmp_path):
    with own_database("sqlite", tmp_path), db.session():
        yield


def at(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(UTC) if value is not None else None


def queue(key: str, now: dt.datetime = T0, template: EmailTemplate = EmailTemplate.USAGE_ALERT) -> bool:
    with db.database.atomic():
        return outbox.enqueue(template=template, recipient="a@example.com", payload={"k": key}, dedup_key=key, now=now)


def row(key: str) -> OutboxMessage:
    return OutboxMessage.get(OutboxMessage.dedup_key == key)


def set_row(key: str, **values) -> None:
    OutboxMessage.update(**values).where(OutboxMessage.dedup_key == key).execute()


# --- queuing ---------------------------------------------------------------------------------------


def test_a_message_is_queued_once_per_dedup_key_due_at_once():
    with db.database.atomic():
        first = outbox.enqueue(
            template=EmailTemplate.INVOICE_ISSUED,
            recipient="billing@example.com",
            payload={"z": 1, "a": [2]},
            dedup_key="k1",
            now=T0,
        )
    assert first is True
    assert queue("k1", T0 + US) is False
    stored = row("k1")
    assert (stored.template, stored.recipient, stored.payload) == (
        "invoice_issued",
        "billing@example.com",
        '{"a": [2], "z": 1}',
    )
    assert (at(stored.created_at), at(stored.next_attempt_at), stored.attempts) == (T0, T0, 0)
    assert (stored.sent_at, stored.dead_at, stored.last_error) == (None, None, None)


# --- the operator's view: counts, backlog, dead letters, retry --------------------------------------


def test_counts_and_backlog_tell_waiting_retrying_and_dead_rows_apart():
    assert outbox.counts() == {"pending": 0, "retrying": 0, "dead": 0}
    assert outbox.backlog() == (0, None, 0)
    queue("fresh", T0)  # queued in another order than created_at's
    queue("retrying", T0 - US)
    queue("dead", T0 - 2 * US)
    queue("sent", T0 - 3 * US)
    set_row("sent", sent_at=T0)
    set_row("dead", attempts=outbox.MAX_ATTEMPTS, dead_at=T0)
    set_row("retrying", attempts=1)  # one failure already makes it retrying
    assert outbox.counts() == {"pending": 2, "retrying": 1, "dead": 1}
    assert outbox.backlog() == (2, T0 - US, 1)


def test_dead_letters_are_listed_latest_death_first_up_to_the_limit():
    for n, key in enumerate(["a", "b", "c", "d"]):
        queue(key, T0 + n * US)
    set_row("a", dead_at=T0 + dt.timedelta(hours=1))
    set_row("b", dead_at=T0 + dt.timedelta(hours=2))
    set_row("c", dead_at=T0 + dt.timedelta(hours=1))
    set_row("d", dead_at=T0, sent_at=T0)  # sent after all: not a dead letter
    assert [r.dedup_key for r in outbox.dead_letters()] == ["b", "a", "c"]
    assert [r.dedup_key for r in outbox.dead_letters(limit=2)] == ["b", "a"]


def test_at_most_a_hundred_dead_letters_are_listed_by_default():
    OutboxMessage.insert_many(
        [
            dict(
                dedup_key=f"m{n}",
                template="usage_alert",
                recipient="a@example.com",
                payload="{}",
                created_at=T0,
                next_attempt_at=T0,
                attempts=outbox.MAX_ATTEMPTS,
                dead_at=T0 + n * US,
            )
            for n in range(101)
        ]
    ).execute()
    listed = outbox.dead_letters()
    assert (len(listed), listed[0].dedup_key, listed[-1].dedup_key) == (100, "m100", "m1")


def test_a_retry_revives_a_dead_letter_only():
    queue("dead")
    queue("alive")
    queue("sent")
    set_row("dead", attempts=outbox.MAX_ATTEMPTS, dead_at=T0, last_error="SMTPError: no")
    set_row("sent", attempts=1, dead_at=T0, sent_at=T0)
    later = T0 + dt.timedelta(days=1)
    assert outbox.retry(row("dead").id, later) is True
    revived = row("dead")
    assert (revived.attempts, revived.dead_at, at(revived.next_attempt_at)) == (0, None, later)
    assert outbox.retry(row("dead").id, later) is False  # no longer dead
    assert outbox.retry(row("alive").id, later) is False
    assert outbox.retry(row("sent").id, later) is False
    assert outbox.retry(10_000, later) is False
    assert (row("sent").attempts, at(row("sent").dead_at)) == (1, T0)


def test_an_invoice_email_shows_its_invoice_and_a_usage_alert_shows_none():
    sub = insert_subscription("acme", plan="premium", anchor=ANCHOR)
    first = period(ANCHOR, 0)
    invoice = invoices.generate_invoice(sub.id, now=first.end, issuer=Issuer("B", "A", "T"), principal=ADMIN)
    payload = json.dumps({"invoice_id": invoice.id})
    for template in (EmailTemplate.INVOICE_ISSUED, EmailTemplate.INVOICE_OVERDUE, EmailTemplate.CREDIT_NOTE):
        shown = outbox.invoice_for(str(template), payload)
        assert shown is not None and (shown.id, shown.number) == (invoice.id, invoice.number)
    invoices.delete_invoice(invoice.id, now=first.end, principal=ADMIN)
    assert outbox.invoice_for("invoice_issued", payload).id == invoice.id  # deleted since: still shown
    assert outbox.invoice_for("usage_alert", payload) is None


# --- delivery: claim, sent, failed ------------------------------------------------------------------


def test_the_row_due_exactly_now_is_claimed_and_leased_and_one_due_later_is_not(monkeypatch):
    options: list[dict] = []
    real = outbox.for_update
    monkeypatch.setattr(outbox, "for_update", lambda query, **kw: options.append(kw) or real(query, **kw))
    queue("later", T0 + US)
    assert outbox.claim_next(T0) is None
    queue("now", T0)
    claimed = outbox.claim_next(T0)
    assert claimed is not None and claimed.dedup_key == "now"
    assert at(row("now").next_attempt_at) == T0 + outbox.SEND_LEASE
    assert at(row("later").next_attempt_at) == T0 + US
    assert outbox.claim_next(T0) is None  # leased
    assert options == [{"skip_locked": True}] * 3


def test_the_oldest_due_row_is_claimed_first_ties_by_id_and_sent_or_dead_rows_never():
    queue("sent", T0 - 3 * US)
    queue("dead", T0 - 2 * US)
    queue("b", T0)
    queue("a", T0)
    queue("old", T0 - US)
    set_row("sent", sent_at=T0)
    set_row("dead", dead_at=T0)
    claimed = [outbox.claim_next(T0).dedup_key for _ in range(3)]
    assert (claimed, outbox.claim_next(T0)) == (["old", "b", "a"], None)


def test_mark_sent_stamps_that_row_only():
    queue("one")
    queue("two")
    outbox.mark_sent(row("one"), T0 + US)
    assert (at(row("one").sent_at), row("two").sent_at) == (T0 + US, None)


def test_a_failure_backs_off_and_the_last_allowed_one_makes_a_dead_letter():
    queue("m")
    queue("other")
    set_row("m", attempts=outbox.MAX_ATTEMPTS - 2)
    assert outbox.mark_failed(row("m"), ValueError("boom"), T0) == (outbox.MAX_ATTEMPTS - 1, False)
    failed = row("m")
    assert (failed.attempts, failed.last_error, failed.dead_at) == (outbox.MAX_ATTEMPTS - 1, "ValueError: boom", None)
    assert at(failed.next_attempt_at) == T0 + outbox.BACKOFF[-1]
    later = T0 + dt.timedelta(hours=12)
    assert outbox.mark_failed(failed, OSError("x" * 3000), later) == (outbox.MAX_ATTEMPTS, True)
    dead = row("m")
    assert (dead.attempts, at(dead.dead_at), at(dead.next_attempt_at)) == (outbox.MAX_ATTEMPTS, later, later)
    assert dead.last_error == ("OSError: " + "x" * 3000)[:2000] and len(dead.last_error) == 2000
    untouched = row("other")
    assert (untouched.attempts, untouched.last_error, untouched.dead_at) == (0, None, None)


def test_the_first_failure_waits_a_minute():
    queue("m")
    assert outbox.mark_failed(row("m"), RuntimeError("down"), T0) == (1, False)
    assert (at(row("m").next_attempt_at), row("m").last_error) == (T0 + dt.timedelta(minutes=1), "RuntimeError: down")


def test_the_backoff_schedule_and_its_clamping():
    schedule = tuple(dt.timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120, 240, 480, 720))
    assert (schedule, 10, dt.timedelta(minutes=5)) == (outbox.BACKOFF, outbox.MAX_ATTEMPTS, outbox.SEND_LEASE)
    assert [outbox.backoff(n) for n in (-1, 0, 1, 2, 8, 9, 10, 11)] == [
        dt.timedelta(minutes=m) for m in (1, 1, 1, 5, 480, 720, 720, 720)
    ]


# --- retention ---------------------------------------------------------------------------------------


def received(sub, *times: dt.datetime) -> None:
    for n, when in enumerate(times):
        usage.track(ADMIN, sub.id, [RawEvent(f"e{n}", "/v1/x", 1, ANCHOR)], now=when)


def kept() -> list[dt.datetime]:
    return sorted(at(e.received_at) for e in RecordedUsageEvent.select())


def test_events_received_before_the_cutoff_go_and_one_exactly_at_it_stays():
    sub = insert_subscription("acme", anchor=ANCHOR)
    cutoff = ANCHOR + dt.timedelta(days=40)
    received(sub, cutoff - 2 * US, cutoff - US, cutoff, cutoff + US)
    assert retention.purge_events(cutoff, batch=10) == 2
    assert kept() == [cutoff, cutoff + US]
    assert retention.purge_events(cutoff, batch=10) == 0


def test_a_purge_deletes_at_most_its_batch():
    sub = insert_subscription("acme", anchor=ANCHOR)
    cutoff = ANCHOR + dt.timedelta(days=40)
    received(sub, *(cutoff - n * US for n in range(1, 4)))
    assert retention.purge_events(cutoff, batch=2) == 2
    assert len(kept()) == 1
    assert retention.purge_events(cutoff, batch=2) == 1
    assert kept() == []
