"""The scheduler's jobs: plain functions of `now` returning a summary dict, so tests drive time.
Each takes the settings as its second argument (whether it reads them or not), so `run_job` calls
them all alike.

Every job is idempotent and safe to kill at any point. Each work item (one subscription period,
one invoice, one alert, one batch of purged events, one e-mail) is one transaction, and what
makes a rerun harmless lives in the database: one invoice per (subscription, period_start), one
outbox row per dedup key, a period advanced in the same transaction that invoiced it. A crash
rolls back the item it was in; the next run picks it up again. Each run logs one line with
job, rows, duration_ms and the job's own counts as fields, and counts in the job metrics.

The work itself is services' (billing_runs, outbox, retention); a job loops over it, stops early
when asked, counts and logs. Run them through `run_job` (a database session and, on PostgreSQL,
the leader lock).
"""

from __future__ import annotations

import datetime as dt
import email.message
import functools
import logging
import threading
import time

from server.config import Settings
from server.domain.errors import DomainError
from server.notifications import sender as senders
from server.notifications.email import build_message
from server.observability import metrics
from server.persistence import db
from server.scheduler.leader import leadership
from server.services import billing_runs, idempotency, lifecycle, outbox, retention

log = logging.getLogger("billing.scheduler")

MAX_PERIODS_PER_RUN = 24  # catch-up bound per subscription and run; the next run continues
PURGE_BATCH = 5000

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


@_logged
def period_invoicing(now: dt.datetime, settings: Settings) -> dict:
    """Invoice every subscription whose period has ended, mark the invoice SENT (the e-mail is queued
    in the same transaction) and advance the period; one transaction per subscription period.

    An ACTIVE subscription several periods behind gets one invoice per elapsed period, oldest
    first (up to MAX_PERIODS_PER_RUN per run). A CANCELED subscription gets its final invoice
    (its current period, billed up to the cancellation) once canceled_at has passed. An ended
    period whose invoice was voided or deleted is open again and invoiced anew.
    """
    candidates = billing_runs.periods_due(now)
    invoiced = errors = 0
    for subscription_id in _until_stopped(candidates):
        for _ in range(MAX_PERIODS_PER_RUN):
            try:
                if billing_runs.close_period(subscription_id, now, settings.issuer) is None:
                    break
            except Exception:
                log.exception("period_invoicing failed for %s", subscription_id)
                errors += 1
                break
            invoiced += 1
    reissued = 0
    for subscription_id, period_start in _until_stopped(billing_runs.reopened_periods(now)):
        try:
            reissued += billing_runs.reissue(subscription_id, period_start, now, settings.issuer) is not None
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
    due = billing_runs.overdue(now, limit)
    overdue = skipped = 0
    for invoice_id in _until_stopped(due):
        try:
            billing_runs.mark_overdue(invoice_id, now)
            overdue += 1
        except DomainError:  # paid, voided or deleted since the query: nothing to do
            skipped += 1
    return {"rows": overdue, "overdue": overdue, "skipped": skipped}


@_logged
def usage_alerts(now: dt.datetime, settings: Settings) -> dict:
    """Queue a `usage_alert` once per subscription period and threshold (80%, 100% of included
    requests) for ACTIVE subscriptions; plans with no included requests get none."""
    queued = checked = 0
    for row in _until_stopped(billing_runs.over_alert_threshold()):
        checked += 1
        queued += billing_runs.queue_usage_alerts(row, now)
    return {"rows": queued, "over_threshold": checked, "queued": queued}


@_logged
def trial_notices(now: dt.datetime, settings: Settings) -> dict:
    """Webhook subscription.trial_will_end for ACTIVE subscriptions whose trial ends within
    3 days, once per subscription, one transaction each."""
    due = lifecycle.trial_notices_due(now)
    sent = 0
    for subscription_id in _until_stopped(due):
        sent += lifecycle.announce_trial_end(subscription_id, now=now)
    return {"rows": sent, "due": len(due), "announced": sent}


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
        deleted = retention.purge_events(cutoff, batch)
        purged += deleted
        batches += 1
        if deleted < batch:
            break
    return {"rows": purged, "purged": purged, "batches": batches, "cutoff": cutoff.isoformat()}


@_logged
def idempotency_purge(now: dt.datetime, settings: Settings, *, batch: int = PURGE_BATCH) -> dict:
    """Delete Idempotency-Key records past their 24 hours (an expired record is void already:
    this only bounds the table), in bounded batches, one transaction each."""
    purged = batches = 0
    while not STOPPING.is_set():
        deleted = idempotency.purge_expired(now, batch)
        purged += deleted
        batches += 1
        if deleted < batch:
            break
    return {"rows": purged, "purged": purged, "batches": batches}


def outbox_email(row, from_address: str) -> email.message.EmailMessage:
    """The e-mail an outbox row stands for, an invoice's as it was snapshotted at issue."""
    return build_message(
        template=row.template,
        recipient=row.recipient,
        payload=row.payload,
        dedup_key=row.dedup_key,
        from_address=from_address,
        invoice=outbox.invoice_for(row.template, row.payload),
    )


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
        row = outbox.claim_next(now)
        if row is None:
            break
        try:
            sender.send(outbox_email(row, settings.mail_from), row.dedup_key)
        except Exception as error:  # noqa: BLE001 - any failure is retried later
            attempts, given_up = outbox.mark_failed(row, error, now)
            log.warning(
                "outbox %s failed (attempt %d%s): %s", row.dedup_key, attempts, ", given up" if given_up else "", error
            )
            failed += 1
            dead += given_up
        else:
            outbox.mark_sent(row, now)
            sent += 1
    return {"rows": sent, "sent": sent, "failed": failed, "dead": dead}


JOBS = {
    "period_invoicing": period_invoicing,
    "overdue_sweep": overdue_sweep,
    "usage_alerts": usage_alerts,
    "trial_notices": trial_notices,
    "daily_rollup": daily_rollup,
    "deliver_outbox": deliver_outbox,
    "idempotency_purge": idempotency_purge,
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
