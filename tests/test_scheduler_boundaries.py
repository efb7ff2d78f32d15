"""The scheduler's jobs at their boundaries, on a SQLite database of each test's own (so a job's
counts are exactly the test's), called with an explicit `now`: a period invoiced exactly when it
ends, an invoice due exactly now (not yet overdue), usage at exactly a threshold, a raw event at
exactly the retention cutoff, an e-mail due exactly now and its backoff schedule. These are the
comparisons a fault planted by hand (`<` for `<=`, a window one step off) survived in the
end-to-end suite, whose clock is the real one. Fast enough for the mutation gate."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time

import pytest
from prometheus_client import REGISTRY

from factories import insert_subscription
from server.config import Settings
from server.domain.access import KeyScope, Principal
from server.domain.periods import period
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.models import Invoice, OutboxMessage, RecordedUsageEvent, Subscription, UsagePeriod
from server.scheduler import jobs
from server.services import invoices, usage
from server.services.outbox import MAX_ATTEMPTS, SEND_LEASE, backoff, enqueue
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
SETTINGS = Settings()
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)
STANDARD_INCLUDED = 100_000  # the standard plan's included requests (server/catalogue/plans.json)


@pytest.fixture(autouse=True)
def scheduler_database(tmp_path):
    with own_database("sqlite", tmp_path), db.session():
        yield


def subscription(tenant: str = "acme", **kwargs) -> Subscription:
    return insert_subscription(tenant, anchor=kwargs.pop("anchor", ANCHOR), **kwargs)


def invoice_rows(sub) -> list[Invoice]:
    return list(Invoice.select().where(Invoice.subscription == sub.id).order_by(Invoice.period_start))


def at(value: dt.datetime) -> dt.datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# --- period_invoicing ------------------------------------------------------------------------------


def test_a_period_is_invoiced_exactly_when_it_ends_and_the_next_one_begins():
    sub = subscription()
    before = jobs.period_invoicing(FIRST.end - US, SETTINGS)
    assert (before["subscriptions"], before["invoiced"], invoice_rows(sub)) == (0, 0, [])
    done = jobs.period_invoicing(FIRST.end, SETTINGS)
    assert (done["subscriptions"], done["invoiced"], done["reissued"], done["errors"], done["rows"]) == (1, 1, 0, 0, 1)
    [invoice] = invoice_rows(sub)
    assert (invoice.status, at(invoice.period_start), at(invoice.period_end)) == ("SENT", FIRST.start, FIRST.end)
    assert at(invoice.due_at) == FIRST.end + invoices.PAYMENT_TERMS
    second = period(ANCHOR, 1)
    advanced = Subscription.get_by_id(sub.id)
    assert (at(advanced.current_period_start), at(advanced.current_period_end)) == (second.start, second.end)
    assert at(advanced.updated_at) == FIRST.end
    assert jobs.period_invoicing(FIRST.end, SETTINGS)["invoiced"] == 0


def test_a_subscription_periods_behind_is_invoiced_once_per_period_up_to_the_bound_per_run():
    behind = jobs.MAX_PERIODS_PER_RUN + 1
    sub = subscription()
    now = period(ANCHOR, behind - 1).end
    assert jobs.period_invoicing(now, SETTINGS)["invoiced"] == jobs.MAX_PERIODS_PER_RUN
    assert jobs.period_invoicing(now, SETTINGS)["invoiced"] == 1
    assert [at(i.period_start) for i in invoice_rows(sub)] == [period(ANCHOR, n).start for n in range(behind)]


def test_a_canceled_subscription_gets_its_final_invoice_exactly_when_the_cancellation_takes_effect():
    canceled_at = FIRST.start + dt.timedelta(days=3)
    sub = subscription(status="CANCELED", canceled_at=canceled_at)
    subscription("never", status="CANCELED")  # canceled_at unknown: nothing to bill
    assert jobs.period_invoicing(canceled_at - US, SETTINGS)["invoiced"] == 0
    done = jobs.period_invoicing(canceled_at, SETTINGS)
    assert (done["subscriptions"], done["invoiced"]) == (1, 1)
    [invoice] = invoice_rows(sub)
    assert (at(invoice.period_start), invoice.status) == (FIRST.start, "SENT")
    again = jobs.period_invoicing(FIRST.end, SETTINGS)
    assert (again["subscriptions"], again["invoiced"]) == (0, 0)
    assert at(Subscription.get_by_id(sub.id).current_period_start) == FIRST.start


def test_a_voided_invoice_of_an_ended_period_is_issued_anew():
    sub = subscription()
    jobs.period_invoicing(FIRST.end, SETTINGS)
    [first] = invoice_rows(sub)
    invoices.set_status(first.id, "VOID", now=FIRST.end, principal=ADMIN)
    done = jobs.period_invoicing(FIRST.end, SETTINGS)  # the period ended exactly now: open again
    assert (done["invoiced"], done["reissued"], done["rows"]) == (0, 1, 1)
    statuses = sorted((i.status, at(i.period_start)) for i in invoice_rows(sub))
    assert statuses == [("SENT", FIRST.start), ("VOID", FIRST.start)]
    assert jobs.period_invoicing(FIRST.end, SETTINGS)["reissued"] == 0


# --- overdue_sweep ---------------------------------------------------------------------------------


def test_an_invoice_due_exactly_now_is_not_yet_overdue():
    sub = subscription()
    jobs.period_invoicing(FIRST.end, SETTINGS)
    [invoice] = invoice_rows(sub)
    due = at(invoice.due_at)
    assert jobs.overdue_sweep(due, SETTINGS)["overdue"] == 0
    swept = jobs.overdue_sweep(due + US, SETTINGS)
    assert (swept["overdue"], swept["skipped"], swept["rows"]) == (1, 0, 1)
    assert Invoice.get_by_id(invoice.id).status == "OVERDUE"
    assert OutboxMessage.select().where(OutboxMessage.template == "invoice_overdue").count() == 1


def test_the_sweep_takes_at_most_its_limit_oldest_due_first():
    subs = [subscription(f"t{n}", anchor=ANCHOR + dt.timedelta(hours=n)) for n in range(3)]
    for n in range(3):  # issued an hour apart, so due an hour apart
        jobs.period_invoicing(period(ANCHOR + dt.timedelta(hours=n), 0).end, SETTINGS)
    late = period(ANCHOR + dt.timedelta(hours=2), 0).end + invoices.PAYMENT_TERMS + US
    assert jobs.overdue_sweep(late, SETTINGS, limit=2)["overdue"] == 2
    assert [invoice_rows(s)[0].status for s in subs] == ["OVERDUE", "OVERDUE", "SENT"]


# --- usage_alerts ----------------------------------------------------------------------------------


def alerts_of(sub) -> list[int]:
    rows = OutboxMessage.select().where(OutboxMessage.template == "usage_alert").order_by(OutboxMessage.id)
    return [json.loads(r.payload)["threshold"] for r in rows if json.loads(r.payload)["subscription_id"] == sub.id]


@pytest.mark.parametrize(
    ("requests", "thresholds"),
    [
        (STANDARD_INCLUDED * 80 // 100 - 1, []),
        (STANDARD_INCLUDED * 80 // 100, [80]),  # exactly at the first threshold
        (STANDARD_INCLUDED - 1, [80]),
        (STANDARD_INCLUDED, [80, 100]),  # exactly the included requests
    ],
)
def test_usage_alerts_fire_at_exactly_each_threshold(requests, thresholds):
    sub = subscription()
    UsagePeriod.create(subscription=sub.id, period_start=FIRST.start, requests=requests)
    done = jobs.usage_alerts(FIRST.start + dt.timedelta(days=1), SETTINGS)
    assert (done["queued"], done["over_threshold"]) == (len(thresholds), 1 if thresholds else 0)
    assert alerts_of(sub) == thresholds
    assert jobs.usage_alerts(FIRST.start + dt.timedelta(days=2), SETTINGS)["queued"] == 0  # once per period


def test_an_alert_names_the_subscription_and_its_period():
    sub = subscription()
    UsagePeriod.create(subscription=sub.id, period_start=FIRST.start, requests=STANDARD_INCLUDED)
    jobs.usage_alerts(FIRST.start, SETTINGS)
    message = OutboxMessage.select().where(OutboxMessage.template == "usage_alert").first()
    assert message.recipient == sub.billing_email
    assert json.loads(message.payload) == {
        "subscription_id": sub.id,
        "tenant_id": "acme",
        "plan": "Standard",
        "threshold": 80,
        "requests": STANDARD_INCLUDED,
        "included": STANDARD_INCLUDED,
        "period_start": FIRST.start.isoformat(),
        "period_end": FIRST.end.isoformat(),
    }
    assert message.dedup_key == f"usage_alert:{sub.id}:{FIRST.start.isoformat()}:80"


def test_a_canceled_subscription_gets_no_usage_alert():
    sub = subscription(status="CANCELED", canceled_at=FIRST.start + US)
    UsagePeriod.create(subscription=sub.id, period_start=FIRST.start, requests=STANDARD_INCLUDED)
    assert jobs.usage_alerts(FIRST.start + dt.timedelta(days=1), SETTINGS)["over_threshold"] == 0


# --- daily_rollup ----------------------------------------------------------------------------------


def received(sub, *times: dt.datetime) -> None:
    for n, when in enumerate(times):
        usage.track(ADMIN, sub.id, [RawEvent(f"e{n}-{when.timestamp()}", "/v1/x", 1, FIRST.start)], now=when)


def test_a_raw_event_received_exactly_at_the_retention_cutoff_is_kept():
    sub = subscription()
    now = FIRST.start + dt.timedelta(days=SETTINGS.usage_retention_days, hours=1)
    cutoff = now - dt.timedelta(days=SETTINGS.usage_retention_days)
    received(sub, cutoff - US, cutoff, cutoff + US)
    done = jobs.daily_rollup(now, SETTINGS)
    assert (done["purged"], done["batches"], done["cutoff"]) == (1, 1, cutoff.isoformat())
    kept = sorted(at(e.received_at) for e in RecordedUsageEvent.select())
    assert kept == [cutoff, cutoff + US]


@pytest.mark.parametrize(("old", "batches"), [(4, 3), (5, 3), (3, 2)])
def test_the_purge_runs_in_batches_until_one_comes_back_short(old, batches):
    sub = subscription()
    now = FIRST.start + dt.timedelta(days=SETTINGS.usage_retention_days + 1)
    received(sub, *[FIRST.start + n * US for n in range(old)], now)
    done = jobs.daily_rollup(now, SETTINGS, batch=2)
    assert (done["purged"], done["batches"], done["rows"]) == (old, batches, old)
    assert RecordedUsageEvent.select().count() == 1


# --- deliver_outbox --------------------------------------------------------------------------------


class Sender:
    """Records what it sends; fails the first `fail` sends."""

    def __init__(self, fail: int = 0, error: BaseException | None = None):
        self.sent: list[str] = []
        self.fail = fail
        self.error = error

    def send(self, message, dedup_key: str) -> None:
        if self.error is not None:
            raise self.error
        if self.fail:
            self.fail -= 1
            raise ConnectionError("SMTP down")
        self.sent.append(dedup_key)


T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def queue(key: str, now: dt.datetime = T0) -> None:
    with db.database.atomic():
        enqueue(template="usage_alert", recipient="a@example.com", payload=_alert_payload(), dedup_key=key, now=now)


def _alert_payload() -> dict:
    return {
        "subscription_id": "sub_1",
        "tenant_id": "acme",
        "plan": "Standard",
        "threshold": 80,
        "requests": 80,
        "included": 100,
        "period_start": FIRST.start.isoformat(),
        "period_end": FIRST.end.isoformat(),
    }


def outbox(key: str) -> OutboxMessage:
    return OutboxMessage.get(OutboxMessage.dedup_key == key)


def test_an_email_due_exactly_now_is_sent_and_one_due_later_waits():
    queue("now")
    queue("later", T0 + US)
    sender = Sender()
    done = jobs.deliver_outbox(T0, SETTINGS, sender=sender)
    assert (done["sent"], done["failed"], done["dead"], sender.sent) == (1, 0, 0, ["now"])
    assert at(outbox("now").sent_at) == T0 and outbox("later").sent_at is None


def test_a_run_sends_at_most_its_limit_oldest_first():
    for n in range(3):
        queue(f"m{n}", T0 + n * US)
    sender = Sender()
    assert jobs.deliver_outbox(T0 + dt.timedelta(minutes=1), SETTINGS, sender=sender, limit=2)["sent"] == 2
    assert sender.sent == ["m0", "m1"]


def test_failures_back_off_on_the_schedule_then_the_row_is_a_dead_letter():
    queue("flaky")
    now, schedule = T0, []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        done = jobs.deliver_outbox(now, SETTINGS, sender=Sender(fail=1))
        row = outbox("flaky")
        assert (done["failed"], row.attempts, row.last_error) == (1, attempt, "ConnectionError: SMTP down")
        if attempt < MAX_ATTEMPTS:
            assert (done["dead"], row.dead_at) == (0, None)
            schedule.append(at(row.next_attempt_at) - now)
            assert jobs.deliver_outbox(at(row.next_attempt_at) - US, SETTINGS, sender=Sender())["sent"] == 0
            now = at(row.next_attempt_at)
    assert schedule == [dt.timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120, 240, 480, 720)]
    assert (done["dead"], at(row.dead_at), at(row.next_attempt_at)) == (1, now, now)
    assert jobs.deliver_outbox(now + dt.timedelta(days=30), SETTINGS, sender=Sender())["sent"] == 0


def test_the_backoff_of_an_attempt_count_out_of_range_is_clamped_to_the_schedule():
    assert [backoff(n) for n in (0, 1, 9, 10)] == [dt.timedelta(minutes=m) for m in (1, 1, 720, 720)]


def test_a_sender_that_dies_mid_send_leaves_the_row_leased_for_exactly_the_lease():
    queue("crash")
    with pytest.raises(SystemExit):
        jobs.deliver_outbox(T0, SETTINGS, sender=Sender(error=SystemExit("killed")))
    row = outbox("crash")
    assert (row.attempts, row.sent_at, at(row.next_attempt_at)) == (0, None, T0 + SEND_LEASE)
    assert jobs.deliver_outbox(T0 + SEND_LEASE - US, SETTINGS, sender=Sender())["sent"] == 0
    assert jobs.deliver_outbox(T0 + SEND_LEASE, SETTINGS, sender=Sender())["sent"] == 1


# --- running a job ---------------------------------------------------------------------------------


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_run_job_returns_the_summary_and_counts_the_run_by_result(monkeypatch):
    runs = {
        result: sample("billing_job_runs_total", job="daily_rollup", result=result) for result in ("success", "failure")
    }
    timed = sample("billing_job_duration_seconds_count", job="daily_rollup")
    summary = jobs.run_job("daily_rollup", T0, SETTINGS)
    assert (summary["job"], summary["rows"], summary["purged"]) == ("daily_rollup", 0, 0)
    assert isinstance(summary["duration_ms"], float) and summary["duration_ms"] >= 0
    assert sample("billing_job_runs_total", job="daily_rollup", result="success") == runs["success"] + 1
    assert sample("billing_job_duration_seconds_count", job="daily_rollup") == timed + 1
    assert sample("billing_job_last_success_timestamp_seconds", job="daily_rollup") > 0

    def broken(now, settings):
        raise RuntimeError("boom")

    monkeypatch.setitem(jobs.JOBS, "daily_rollup", broken)
    with pytest.raises(RuntimeError, match="boom"):
        jobs.run_job("daily_rollup", T0, SETTINGS)
    assert sample("billing_job_runs_total", job="daily_rollup", result="failure") == runs["failure"] + 1
    assert sample("billing_job_runs_total", job="daily_rollup", result="success") == runs["success"] + 1


def test_a_stopping_scheduler_starts_no_new_item():
    queue("held")
    jobs.STOPPING.set()
    try:
        assert jobs.deliver_outbox(T0, SETTINGS, sender=Sender())["sent"] == 0
        assert jobs.daily_rollup(T0, SETTINGS)["batches"] == 0
    finally:
        jobs.STOPPING.clear()
    assert jobs.deliver_outbox(T0, SETTINGS, sender=Sender())["sent"] == 1


def test_a_job_another_scheduler_leads_is_skipped_and_counted(monkeypatch, caplog):
    @contextlib.contextmanager
    def follower(name):
        assert name == "daily_rollup"
        yield False

    monkeypatch.setattr(jobs, "leadership", follower)
    skipped = sample("billing_job_runs_total", job="daily_rollup", result="skipped")
    with caplog.at_level(logging.INFO, logger="billing.scheduler"):
        summary = jobs.run_job("daily_rollup", T0, SETTINGS)
    assert summary == {
        "job": "daily_rollup",
        "rows": 0,
        "skipped": "another scheduler holds the lock",
        "duration_ms": 0,
    }
    assert sample("billing_job_runs_total", job="daily_rollup", result="skipped") == skipped + 1
    [record] = [r for r in caplog.records if r.name == "billing.scheduler"]
    assert (record.getMessage(), record.fields) == ("job daily_rollup skipped", summary)


def test_run_job_passes_the_jobs_own_arguments_and_times_it():
    sub = subscription()
    now = FIRST.start + dt.timedelta(days=SETTINGS.usage_retention_days + 1)
    received(sub, FIRST.start, FIRST.start + US)
    seconds = sample("billing_job_duration_seconds_sum", job="daily_rollup")
    started = time.time()
    summary = jobs.run_job("daily_rollup", now, SETTINGS, batch=1)
    assert (summary["purged"], summary["batches"]) == (2, 3)
    assert 0 <= sample("billing_job_duration_seconds_sum", job="daily_rollup") - seconds < 60
    assert sample("billing_job_last_success_timestamp_seconds", job="daily_rollup") >= int(started)


def test_the_oldest_due_email_goes_first_whatever_the_order_it_was_queued_in():
    queue("later", T0 + US)
    queue("sooner", T0)
    sender = Sender()
    jobs.deliver_outbox(T0 + US, SETTINGS, sender=sender)
    assert sender.sent == ["sooner", "later"]


def test_an_invoice_an_admin_generated_for_the_period_is_reused_and_sent():
    sub = subscription()
    early = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=SETTINGS.issuer, principal=ADMIN)
    done = jobs.period_invoicing(FIRST.end, SETTINGS)
    assert (done["invoiced"], done["errors"]) == (1, 0)
    [invoice] = invoice_rows(sub)
    assert (invoice.id, invoice.status) == (early.id, "SENT")
    assert at(Subscription.get_by_id(sub.id).current_period_start) == period(ANCHOR, 1).start


def test_a_voided_period_reopens_whatever_another_subscription_or_period_holds():
    mine, neighbour = subscription("mine"), subscription("neighbour")  # the same periods
    second = period(ANCHOR, 1)
    jobs.period_invoicing(second.end, SETTINGS)  # two periods each
    voided = invoice_rows(mine)[0]
    invoices.set_status(voided.id, "VOID", now=second.end, principal=ADMIN)
    done = jobs.period_invoicing(second.end, SETTINGS)
    assert (done["reissued"], done["invoiced"]) == (1, 0)
    assert sorted((i.status, at(i.period_start)) for i in invoice_rows(mine)) == [
        ("SENT", FIRST.start),
        ("SENT", second.start),
        ("VOID", FIRST.start),
    ]
    assert len(invoice_rows(neighbour)) == 2


def test_voided_periods_are_reissued_oldest_first():
    sub = subscription()
    third = period(ANCHOR, 2)
    jobs.period_invoicing(third.end, SETTINGS)
    for invoice in invoice_rows(sub):
        invoices.set_status(invoice.id, "VOID", now=third.end, principal=ADMIN)
    assert jobs.period_invoicing(third.end, SETTINGS)["reissued"] == 3
    reissued = sorted((i.number, at(i.period_start)) for i in invoice_rows(sub) if i.status == "SENT")
    assert [start for _, start in reissued] == [period(ANCHOR, n).start for n in range(3)]


def test_a_voided_invoice_of_the_period_still_running_is_not_reissued():
    sub = subscription()
    mid = FIRST.start + dt.timedelta(days=10)
    early = invoices.generate_invoice(sub.id, now=mid, issuer=SETTINGS.issuer, principal=ADMIN)
    invoices.set_status(early.id, "VOID", now=mid, principal=ADMIN)
    done = jobs.period_invoicing(mid, SETTINGS)
    assert (done["invoiced"], done["reissued"]) == (0, 0)
    assert [i.status for i in invoice_rows(sub)] == ["VOID"]


def test_an_invoice_email_goes_from_the_sender_to_the_rows_recipient_and_shows_the_issued_invoice():
    sub = subscription()
    jobs.period_invoicing(FIRST.end, SETTINGS)
    [invoice] = invoice_rows(sub)
    row = OutboxMessage.get(OutboxMessage.dedup_key == f"invoice_issued:{invoice.id}")
    message = jobs.outbox_email(row, "billing@example.com")
    assert (message["From"], message["To"]) == ("billing@example.com", row.recipient)
    assert message["Subject"] == f"Invoice {invoice.number}: $29.00 due {invoice.due_at:%Y-%m-%d}"
    assert invoice.number in message.get_body(("plain",)).get_content()
