"""The scheduler's jobs: plain functions of `now` returning a summary dict, so tests drive time.
Each takes the settings as its second argument (whether it reads them or not), so `run_job` calls
them all alike.

Every job is idempotent and safe to kill at any point. Each work item (one subscription period,
one invoice, one alert, one batch of purged events, one e-mail) is one transaction, and what
makes a rerun harmless lives in the database: one invoice per (subscription, period_start), one
outbox row per dedup key, a period advanced in the same transaction that invoiced it. A crash
rolls back the item it was in; the next run picks it up again. Each run logs one line with
job, rows, duration_ms and the job's own counts as fields, and counts in the job metrics.

Run them through `run_job` (a database session and, on PostgreSQL, the leader lock).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time

import peewee as pw

from server.config import Settings
from server.domain import rating
from server.domain import usage as usage_rules
from server.domain.emails import EmailTemplate
from server.domain.errors import AlreadyExists, DomainError
from server.domain.invoice_state import InvoiceStatus
from server.domain.issuer import Issuer
from server.domain.periods import period, period_containing
from server.domain.subscriptions import SubscriptionStatus
from server.notifications import sender as senders
from server.notifications.email import build_message
from server.observability import metrics
from server.persistence import db, models, plan_versions
from server.persistence.db import database, for_update
from server.persistence.models import (
    LIVE_INVOICE,
    Invoice,
    OutboxMessage,
    PlanVersion,
    RecordedUsageEvent,
    Subscription,
    UsagePeriod,
)
from server.persistence.read_models import InvoiceView
from server.scheduler.leader import leadership
from server.services import invoices
from server.services.outbox import enqueue

log = logging.getLogger("billing.scheduler")

MAX_PERIODS_PER_RUN = 24  # catch-up bound per subscription and run; the next run continues
PURGE_BATCH = 5000
# Delays after the 1st, 2nd, ... failed delivery: 10 attempts spread over 28 h 51 min, then the
# row is a dead letter (dead_at set) until an operator retries it.
BACKOFF = tuple(dt.timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120, 240, 480, 720))
MAX_ATTEMPTS = len(BACKOFF) + 1
# A claimed row is retried after this if its sender died before marking it.
SEND_LEASE = dt.timedelta(minutes=5)

# Set on SIGTERM by `billing-scheduler run`: a running job finishes the item in hand (one
# transaction, or one e-mail) and returns early; the next run, in this process or another, goes on.
STOPPING = threading.Event()


def _until_stopped(items):
    for item in items:
        if STOPPING.is_set():
            return
        yield item


def _logged(job):
    @functools.wraps(job)
    def run(now: dt.datetime, settings: Settings, **kwargs) -> dict:
        started = time.perf_counter()
        summary = {"job": job.__name__, **job(now, settings, **kwargs)}
        summary["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        log.info("job %s done", job.__name__, extra={"fields": summary})
        return summary

    return run


def _due(sub: Subscription, now: dt.datetime) -> bool:
    if sub.status == SubscriptionStatus.ACTIVE:
        return sub.current_period_end <= now
    if sub.status == SubscriptionStatus.CANCELED and sub.canceled_at is not None and sub.canceled_at <= now:
        return invoices.live_invoice(sub.id, sub.current_period_start) is None
    return False


def _issue(sub: Subscription, now: dt.datetime, issuer: Issuer, period_start: dt.datetime | None = None) -> InvoiceView:
    """Invoice the period (once: a live invoice generated earlier, by an admin or by a run that
    crashed after committing, is reused) and mark it SENT, which queues the e-mail. An invoice
    issued PAID (a total of 0) is owed nothing and sent nothing."""
    try:
        invoice = invoices.generate_invoice(sub.id, now=now, issuer=issuer, period_start=period_start)
    except AlreadyExists:
        live = invoices.live_invoice(sub.id, period_start or sub.current_period_start)
        if live is None:  # voided or deleted since: no invoice to reuse, the conflict stands
            raise
        invoice = invoices.get_invoice(live.id)
    if invoice.status == InvoiceStatus.PENDING:
        invoice = invoices.set_status(invoice.id, InvoiceStatus.SENT, now=now)
    return invoice


def _close_period(subscription_id: str, now: dt.datetime, issuer: Issuer) -> InvoiceView | None:
    """One transaction: invoice the current period and, for an ACTIVE subscription, move on to the
    next period. None if nothing is due."""
    with database.atomic():
        sub = for_update(Subscription.select().where(Subscription.id == subscription_id)).first()
        if sub is None or not _due(sub, now):
            return None
        invoice = _issue(sub, now, issuer)
        if sub.status == SubscriptionStatus.ACTIVE:
            nxt = period(sub.anchor_at, period_containing(sub.anchor_at, sub.current_period_start).index + 1)
            (
                Subscription.update(current_period_start=nxt.start, current_period_end=nxt.end, updated_at=now)
                .where(Subscription.id == sub.id)
                .execute()
            )
        return invoice


def _reopened_periods(now: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """Ended periods before a subscription's current one whose every invoice is VOID or deleted."""
    live = Invoice.alias()  # another invoice of the same period
    covered = live.select(live.id).where(
        (live.subscription == Invoice.subscription) & (live.period_start == Invoice.period_start) & models.live(live)
    )
    query = (
        Invoice.select(Invoice.subscription, Invoice.period_start)
        .distinct()
        .join(Subscription, on=(Invoice.subscription == Subscription.id))
        .where(
            ~LIVE_INVOICE
            & (Invoice.period_end <= now)
            & (Invoice.period_start < Subscription.current_period_start)
            & ~pw.fn.EXISTS(covered)
        )
        .order_by(Invoice.subscription, Invoice.period_start)
    )
    return [(row.subscription_id, row.period_start) for row in query]


def _reissue(subscription_id: str, period_start: dt.datetime, now: dt.datetime, issuer: Issuer) -> InvoiceView | None:
    with database.atomic():
        sub = for_update(Subscription.select().where(Subscription.id == subscription_id)).first()
        if sub is None or invoices.live_invoice(sub.id, period_start) is not None:
            return None
        return _issue(sub, now, issuer, period_start)


@_logged
def period_invoicing(now: dt.datetime, settings: Settings) -> dict:
    """Invoice every subscription whose period has ended, mark the invoice SENT (the e-mail is queued
    in the same transaction) and advance the period; one transaction per subscription period.

    An ACTIVE subscription several periods behind gets one invoice per elapsed period, oldest
    first (up to MAX_PERIODS_PER_RUN per run). A CANCELED subscription gets its final invoice
    (its current period, billed up to the cancellation) once canceled_at has passed. An ended
    period whose invoice was voided or deleted is open again and invoiced anew.
    """
    current_invoice = Invoice.select(Invoice.id).where(
        (Invoice.subscription == Subscription.id)
        & (Invoice.period_start == Subscription.current_period_start)
        & LIVE_INVOICE
    )
    candidates = [
        s.id
        for s in Subscription.select(Subscription.id)
        .where(
            ((Subscription.status == SubscriptionStatus.ACTIVE) & (Subscription.current_period_end <= now))
            | (
                (Subscription.status == SubscriptionStatus.CANCELED)
                & (Subscription.canceled_at <= now)
                & ~pw.fn.EXISTS(current_invoice)
            )
        )
        .order_by(Subscription.current_period_end, Subscription.id)
    ]
    invoiced = errors = 0
    for subscription_id in _until_stopped(candidates):
        for _ in range(MAX_PERIODS_PER_RUN):
            try:
                if _close_period(subscription_id, now, settings.issuer) is None:
                    break
            except Exception:
                log.exception("period_invoicing failed for %s", subscription_id)
                errors += 1
                break
            invoiced += 1
    reissued = 0
    for subscription_id, period_start in _until_stopped(_reopened_periods(now)):
        try:
            reissued += _reissue(subscription_id, period_start, now, settings.issuer) is not None
        except Exception:
            log.exception("period_invoicing failed to reissue %s %s", subscription_id, period_start)
            errors += 1
    return {
        "rows": invoiced + reissued,
        "subscriptions": len(candidates),
        "invoiced": invoiced,
        "reissued": reissued,
        "errors": errors,
    }


@_logged
def overdue_sweep(now: dt.datetime, settings: Settings, *, limit: int = 1000) -> dict:
    """SENT invoices past due_at become OVERDUE (which queues the reminder), one transaction each."""
    due = [
        i.id
        for i in Invoice.select(Invoice.id)
        .where((Invoice.status == InvoiceStatus.SENT) & (Invoice.due_at < now) & Invoice.deleted_at.is_null())
        .order_by(Invoice.due_at, Invoice.id)
        .limit(limit)
    ]
    overdue = skipped = 0
    for invoice_id in _until_stopped(due):
        try:
            invoices.set_status(invoice_id, InvoiceStatus.OVERDUE, now=now)
            overdue += 1
        except DomainError:  # paid, voided or deleted since the query: nothing to do
            skipped += 1
    return {"rows": overdue, "overdue": overdue, "skipped": skipped}


@_logged
def usage_alerts(now: dt.datetime, settings: Settings) -> dict:
    """Queue a `usage_alert` once per subscription period and threshold (80%, 100% of included
    requests) for ACTIVE subscriptions; plans with no included requests get none. The included
    requests are those of the plan version each subscription is pinned to (read once per version):
    a newer version of its plan never changes them."""
    rows = (
        Subscription.select(
            Subscription.id,
            Subscription.tenant_id,
            Subscription.billing_email,
            Subscription.current_period_start,
            Subscription.current_period_end,
            PlanVersion,
            UsagePeriod.requests,
        )
        .join(
            PlanVersion,
            on=(PlanVersion.plan == Subscription.plan) & (PlanVersion.version == Subscription.plan_version),
            attr="pinned",
        )
        .switch(Subscription)
        .join(
            UsagePeriod,
            on=(
                (UsagePeriod.subscription == Subscription.id)
                & (UsagePeriod.period_start == Subscription.current_period_start)
            ),
            attr="usage",
        )
        .where((Subscription.status == SubscriptionStatus.ACTIVE) & (UsagePeriod.requests > 0))
        .order_by(Subscription.id)
    )
    included_of: dict[int, int] = {}
    queued = 0
    checked = 0
    for row in _until_stopped(rows):
        if row.pinned.id not in included_of:
            included_of[row.pinned.id] = rating.legacy_terms(plan_versions.terms_of(row.pinned).charges)[0]
        included = included_of[row.pinned.id]
        if not included or row.usage.requests * 100 < included * usage_rules.ALERT_THRESHOLDS[0]:
            continue
        checked += 1
        start = row.current_period_start
        for threshold in usage_rules.ALERT_THRESHOLDS:
            if row.usage.requests * 100 < included * threshold:
                continue
            payload = {
                "subscription_id": row.id,
                "tenant_id": row.tenant_id,
                "plan": row.pinned.name,
                "threshold": threshold,
                "requests": row.usage.requests,
                "included": included,
                "period_start": start.isoformat(),
                "period_end": row.current_period_end.isoformat(),
            }
            with database.atomic():
                queued += enqueue(
                    template=EmailTemplate.USAGE_ALERT,
                    recipient=row.billing_email,
                    payload=payload,
                    dedup_key=f"{EmailTemplate.USAGE_ALERT}:{row.id}:{start.isoformat()}:{threshold}",
                    now=now,
                )
    return {"rows": queued, "over_threshold": checked, "queued": queued}


@_logged
def daily_rollup(now: dt.datetime, settings: Settings, *, batch: int = PURGE_BATCH) -> dict:
    """Purge raw usage events received before the retention window, in bounded batches.

    The counters that usage, daily and analytics read (UsageHourly, UsagePeriod) are kept on the
    write path, so there is nothing left to fold here. Deduplication by event_id is guaranteed
    within retention (BILLING_USAGE_RETENTION_DAYS, default 35 days): a retry older than that
    would count again.
    """
    cutoff = now - dt.timedelta(days=settings.usage_retention_days)
    purged = batches = 0
    while not STOPPING.is_set():
        with database.atomic():
            ids = (
                RecordedUsageEvent.select(RecordedUsageEvent.id)
                .where(RecordedUsageEvent.received_at < cutoff)
                .limit(batch)
            )
            deleted = RecordedUsageEvent.delete().where(RecordedUsageEvent.id.in_(ids)).execute()
        purged += deleted
        batches += 1
        if deleted < batch:
            break
    return {"rows": purged, "purged": purged, "batches": batches, "cutoff": cutoff.isoformat()}


def backoff(attempts: int) -> dt.timedelta:
    """Delay after the `attempts`-th failure (1-based), for attempts < MAX_ATTEMPTS."""
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


def _claim_next(now: dt.datetime) -> OutboxMessage | None:
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


@_logged
def deliver_outbox(now: dt.datetime, settings: Settings, *, sender=None, limit: int = 100) -> dict:
    """Send due outbox rows (unsent, next_attempt_at <= now), oldest first, at most `limit`.

    A row is claimed in one short transaction (its next attempt moved a lease ahead; PostgreSQL
    claims with FOR UPDATE SKIP LOCKED, so concurrent senders take different rows), sent with no
    transaction open, so a slow SMTP server never holds the database's write lock, and marked
    sent, or given an exponential backoff, in a second one. A crash before the send leaves the
    row to be retried when the lease ends: nothing is lost. The one window left is a crash after
    the SMTP server accepted the message and before it was marked: it is sent again after the
    lease, with the same Message-ID (derived from the dedup key), so receivers can drop the copy.
    """
    sender = sender or senders.from_settings(settings)
    sent = failed = dead = 0
    for _ in _until_stopped(range(limit)):
        row = _claim_next(now)
        if row is None:
            break
        try:
            message = build_message(
                template=row.template,
                recipient=row.recipient,
                payload=row.payload,
                dedup_key=row.dedup_key,
                from_address=settings.mail_from,
            )
            sender.send(message, row.dedup_key)
        except Exception as error:  # noqa: BLE001 - any failure is retried later
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
            log.warning(
                "outbox %s failed (attempt %d%s): %s", row.dedup_key, attempts, ", given up" if given_up else "", error
            )
            failed += 1
            dead += given_up
        else:
            OutboxMessage.update(sent_at=now).where(OutboxMessage.id == row.id).execute()
            sent += 1
    return {"rows": sent, "sent": sent, "failed": failed, "dead": dead}


JOBS = {
    "period_invoicing": period_invoicing,
    "overdue_sweep": overdue_sweep,
    "usage_alerts": usage_alerts,
    "daily_rollup": daily_rollup,
    "deliver_outbox": deliver_outbox,
}


def run_job(name: str, now: dt.datetime, settings: Settings, **kwargs) -> dict:
    """Run one job in its own database session, if this scheduler holds the job's leader lock."""
    job = JOBS[name]
    started = time.perf_counter()
    try:
        with db.session(), leadership(name) as leader:
            if not leader:
                summary = {"job": name, "rows": 0, "skipped": "another scheduler holds the lock", "duration_ms": 0}
                log.info("job %s skipped", name, extra={"fields": summary})
                metrics.JOB_RUNS.labels(name, "skipped").inc()
                return summary
            summary = job(now, settings, **kwargs)
    except Exception:
        metrics.JOB_RUNS.labels(name, "failure").inc()
        raise
    metrics.JOB_RUNS.labels(name, "success").inc()
    metrics.JOB_DURATION_SECONDS.labels(name).observe(time.perf_counter() - started)
    metrics.JOB_LAST_SUCCESS.labels(name).set_to_current_time()
    return summary
