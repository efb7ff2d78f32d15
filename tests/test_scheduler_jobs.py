"""Scheduler jobs end to end on SQLite and PostgreSQL: invoices, overdue reminders and usage alerts
reach a real SMTP server (aiosmtpd); outages are retried; crashes midway lose and duplicate nothing.

Jobs are driven with explicit `now`. Tests that count the rows a job reports run on a database
of their own (`own_database_url`, both backends), so the count is exactly theirs; the others share
the stack's database and look at their own subscriptions and recipients only.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import uuid

import pytest
from aiosmtpd.controller import Controller
from pypdf import PdfReader

from factories import insert_subscription
from processes import free_port
from server.config import Settings
from server.domain.periods import add_months
from server.notifications.sender import SmtpSender
from server.persistence import db
from server.persistence.models import Invoice, OutboxMessage, RecordedUsageEvent, Subscription, UsagePeriod
from server.scheduler import jobs
from server.scheduler.jobs import run_job
from server.services import invoices
from server.services.outbox import SEND_LEASE, enqueue

UTC = dt.timezone.utc
SETTINGS = Settings()  # the defaults: the issuer on the PDF, 35 days of usage retention


class Collector:
    """Keeps every accepted message; answers 451 once to each address in `refuse_once`."""

    def __init__(self):
        self.messages = []
        self.refuse_once = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_once:
            self.refuse_once.discard(address)
            return "451 4.3.0 try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def to(self, address):
        return [m for rcpts, m in self.messages if address in rcpts]


@pytest.fixture
def smtp():
    handler = Collector()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield handler, SmtpSender("127.0.0.1", controller.port)
    finally:
        controller.stop()


@pytest.fixture
def now():
    return dt.datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def make_sub(now):
    """A subscription anchored `months` months and a day ago (so `months` periods have ended)."""

    def make(plan="standard", months=1, requests=0, status="ACTIVE", canceled_days_ago=None):
        anchor = add_months(now - dt.timedelta(days=1), -months)
        tenant = f"tenant-{uuid.uuid4().hex[:10]}"
        canceled_at = now - dt.timedelta(days=canceled_days_ago) if canceled_days_ago is not None else None
        sub = insert_subscription(tenant, plan=plan, anchor=anchor, status=status, canceled_at=canceled_at)
        with db.session():
            if requests:
                UsagePeriod.create(subscription=sub.id, period_start=anchor, requests=requests)
        return sub

    return make


def invoices_of(sub):
    with db.session():
        return list(Invoice.select().where(Invoice.subscription == sub.id).order_by(Invoice.period_start))


def outbox_of(sub):
    with db.session():
        return list(
            OutboxMessage.select().where(OutboxMessage.recipient == sub.billing_email).order_by(OutboxMessage.id)
        )


def deliver_all(sender, at):
    while run_job("deliver_outbox", at, SETTINGS, sender=sender)["sent"]:
        pass


def test_three_emails_arrive_over_smtp(own_database_url, smtp, make_sub, now):
    handler, sender = smtp
    billed = make_sub("standard")
    heavy = make_sub("standard", months=0, requests=100_000)  # current period, 100% of included

    summary = run_job("period_invoicing", now, SETTINGS)
    assert summary["job"] == "period_invoicing" and summary["rows"] == 1 and "duration_ms" in summary
    [invoice] = invoices_of(billed)
    assert invoice.status == "SENT" and invoice.total_cents == 2900
    with db.session():
        advanced = Subscription.get_by_id(billed.id)
    assert advanced.current_period_start == billed.current_period_end
    assert advanced.current_period_start <= now < advanced.current_period_end

    later = now + dt.timedelta(days=15)
    assert run_job("overdue_sweep", later, SETTINGS)["rows"] == 1
    assert run_job("usage_alerts", now, SETTINGS)["rows"] == 2
    deliver_all(sender, later)

    issued, overdue = handler.to(billed.billing_email)
    assert issued["Subject"] == f"Invoice {invoice.number}: $29.00 due {invoice.due_at:%Y-%m-%d}"
    assert issued["To"] == billed.billing_email and issued["From"] == "billing@localhost"
    assert "$29.00" in issued.get_body(("plain",)).get_content()
    assert "$29.00" in issued.get_body(("html",)).get_content()
    [attachment] = list(issued.iter_attachments())
    assert attachment.get_filename() == f"{invoice.number}.pdf"
    text = PdfReader(io.BytesIO(attachment.get_content())).pages[0].extract_text()
    assert invoice.number in text and "$29.00" in text
    assert overdue["Subject"] == f"Overdue: invoice {invoice.number} for $29.00"
    assert "overdue" in overdue.get_body(("plain",)).get_content()

    alerts = handler.to(heavy.billing_email)
    assert sorted(m["Subject"] for m in alerts) == [
        "Usage alert: 100% of included requests used (Standard plan)",
        "Usage alert: 80% of included requests used (Standard plan)",
    ]
    assert "100,000" in alerts[0].get_body(("plain",)).get_content()

    # Everything again: nothing new is invoiced, queued or sent.
    count = len(handler.messages)
    for job in ("period_invoicing", "overdue_sweep", "usage_alerts"):
        run_job(job, later, SETTINGS)
    deliver_all(sender, later)
    assert len(invoices_of(billed)) == 1 and len(outbox_of(heavy)) == 2
    assert len(handler.to(billed.billing_email)) == 2 and len(handler.to(heavy.billing_email)) == 2
    assert all(rcpts != [billed.billing_email] for rcpts, _ in handler.messages[count:])


def test_smtp_outage_is_retried_with_backoff_then_sent_once(stack, smtp, make_sub, now):
    handler, sender = smtp
    sub = make_sub("premium")
    run_job("period_invoicing", now, SETTINGS)
    [row] = outbox_of(sub)

    run_job("deliver_outbox", now, SETTINGS, sender=SmtpSender("127.0.0.1", free_port(), timeout=2))  # nobody listening
    [row] = outbox_of(sub)
    assert row.sent_at is None and row.attempts == 1 and row.next_attempt_at == now + dt.timedelta(minutes=1)
    assert row.last_error

    handler.refuse_once.add(sub.billing_email)
    run_job("deliver_outbox", now + dt.timedelta(seconds=59), SETTINGS, sender=sender)  # not due yet
    assert outbox_of(sub)[0].attempts == 1 and not handler.to(sub.billing_email)
    run_job("deliver_outbox", now + dt.timedelta(minutes=1), SETTINGS, sender=sender)  # due: 451
    [row] = outbox_of(sub)
    assert row.attempts == 2 and "451" in row.last_error
    assert row.next_attempt_at == now + dt.timedelta(minutes=6)

    deliver_all(sender, now + dt.timedelta(minutes=6))
    deliver_all(sender, now + dt.timedelta(hours=2))
    [row] = outbox_of(sub)
    assert row.sent_at == now + dt.timedelta(minutes=6)
    [message] = handler.to(sub.billing_email)
    assert "$99.00" in message["Subject"]


class Crash(BaseException):
    """A kill midway: not an Exception, so nothing in the job catches it."""


def test_crash_midway_then_rerun_loses_and_duplicates_nothing(stack, smtp, make_sub, now, monkeypatch):
    handler, sender = smtp
    subs = [make_sub("standard") for _ in range(3)]
    mine = {s.id for s in subs}
    real = invoices.set_status
    seen = []

    def crash_on_second(invoice_id, status, *, now, principal):
        invoice = real(invoice_id, status, now=now, principal=principal)  # the e-mail is queued, then the process dies
        if invoice.subscription_id in mine:
            seen.append(invoice.subscription_id)
            if len(seen) == 2:
                raise Crash()
        return invoice

    monkeypatch.setattr(invoices, "set_status", crash_on_second)
    with pytest.raises(Crash):
        run_job("period_invoicing", now, SETTINGS)
    done = seen[0]
    assert [len(invoices_of(s)) for s in subs] == [int(s.id == done) for s in subs]
    assert [len(outbox_of(s)) for s in subs] == [int(s.id == done) for s in subs]
    with db.session():
        assert Subscription.get_by_id(seen[1]).current_period_start == subs[0].current_period_start

    monkeypatch.setattr(invoices, "set_status", real)
    run_job("period_invoicing", now, SETTINGS)
    run_job("period_invoicing", now, SETTINGS)
    for sub in subs:
        [invoice] = invoices_of(sub)
        assert invoice.period_start == sub.current_period_start and invoice.status == "SENT"
        assert [m.template for m in outbox_of(sub)] == ["invoice_issued"]

    # A crash in the sender after the SMTP server accepted: the claimed row stays unsent, is left
    # alone while its lease runs, then goes once more with the same Message-ID, and never again.
    class CrashAfterSend:
        def send(self, message, key):
            sender.send(message, key)
            raise Crash()

    with pytest.raises(Crash):
        run_job("deliver_outbox", now, SETTINGS, sender=CrashAfterSend())

    def received_counts():
        return sorted(len(handler.to(sub.billing_email)) for sub in subs)

    deliver_all(sender, now)
    assert received_counts() == [1, 1, 1]
    deliver_all(sender, now + SEND_LEASE)
    deliver_all(sender, now + SEND_LEASE)
    assert received_counts() == [1, 1, 2]
    for sub in subs:
        assert len({m["Message-ID"] for m in handler.to(sub.billing_email)}) == 1


def test_elapsed_periods_each_invoiced_once(own_database_url, make_sub, now):
    sub = make_sub("standard", months=3)
    assert run_job("period_invoicing", now, SETTINGS)["rows"] == 3
    run_job("period_invoicing", now, SETTINGS)
    starts = [i.period_start for i in invoices_of(sub)]
    assert starts == [add_months(sub.anchor_at, k) for k in range(3)]
    with db.session():
        current = Subscription.get_by_id(sub.id)
    assert current.current_period_start == add_months(sub.anchor_at, 3) <= now < current.current_period_end


def test_canceled_subscription_gets_one_final_invoice(stack, make_sub, now):
    sub = make_sub("standard", months=0, status="CANCELED", canceled_days_ago=0)
    run_job("period_invoicing", now, SETTINGS)
    run_job("period_invoicing", now + dt.timedelta(days=40), SETTINGS)
    [invoice] = invoices_of(sub)
    assert invoice.status == "SENT" and invoice.period_start == sub.current_period_start
    with db.session():
        assert Subscription.get_by_id(sub.id).current_period_start == sub.current_period_start
    assert [m.template for m in outbox_of(sub)] == ["invoice_issued"]


def test_daily_rollup_purges_raw_events_past_retention_in_batches(own_database_url, make_sub, now):
    sub = make_sub("standard", months=0)
    with db.session():
        for i, age in enumerate([40, 39, 36, 34, 1]):
            received = now - dt.timedelta(days=age)
            RecordedUsageEvent.create(
                subscription=sub.id,
                event_id=f"e{i}",
                endpoint="/x",
                count=1,
                occurred_at=received,
                received_at=received,
            )
    summary = run_job("daily_rollup", now, SETTINGS, batch=2)
    assert summary["rows"] == 3 and summary["batches"] == 2
    with db.session():
        kept = sorted(e.event_id for e in RecordedUsageEvent.select().where(RecordedUsageEvent.subscription == sub.id))
    assert kept == ["e3", "e4"]
    assert run_job("daily_rollup", now, SETTINGS)["rows"] == 0


def test_a_stopping_scheduler_finishes_the_item_in_hand_and_no_more(stack, now):
    """SIGTERM sets STOPPING: the e-mail being sent is sent and marked; the rest wait for the next run."""
    with db.session():
        for _ in range(3):
            with db.database.atomic():
                enqueue(
                    template="usage_alert",
                    recipient="stop@example.com",
                    dedup_key=f"stop:{uuid.uuid4().hex}",
                    payload={
                        "subscription_id": "s",
                        "tenant_id": "t",
                        "plan": "Free",
                        "threshold": 80,
                        "requests": 8,
                        "included": 10,
                        "period_start": now.isoformat(),
                        "period_end": now.isoformat(),
                    },
                    now=now,
                )

    class StopDuringSend:
        sent = 0

        def send(self, message, key):
            jobs.STOPPING.set()  # the signal arrives while this e-mail is in hand
            self.sent += 1

    sender = StopDuringSend()
    try:
        assert run_job("deliver_outbox", now, SETTINGS, sender=sender)["sent"] == 1
    finally:
        jobs.STOPPING.clear()
    assert sender.sent == 1
